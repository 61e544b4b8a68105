"""Parameter draws and their per-customer summaries: the one place where draws are chosen.

Every prediction is a numpy formula of a parameter dict whose values broadcast: a point estimate is
one draw, a posterior (or the asymptotic normal of an MLE) a stack of draws of shape
``(n_draws, 1)`` against customers ``(n,)``. :func:`parameter_draws` chooses the draws of one model,
:func:`model_draws` equally many of several models (a purchase and a spend model), and
:func:`summarise_draws` reduces a formula's values to per-customer means and intervals, streaming
over customers so that draws x customers never has to fit in memory at once.
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import ClvDataError
from .covariates import KEY_PREFIX
from .optimize import UNIDENTIFIED_LOG_SE
from .rows import unique_rows

#: Largest number of (draw x customer) values held in memory at once by predictions.
CHUNK_ELEMENTS = 4_000_000
#: Posterior draws averaged over by predictive distributions (``clvmodels.predictive``) when the
#: caller gives no ``n_draws``: a larger posterior (e.g. NUTS' 4 x 1,000) is subsampled without
#: replacement, seeded, and the Monte Carlo error of the results is reported with them.
PREDICTIVE_DRAWS = 500
#: Distinct parameter draws of a simulation by default (at most one per simulated future): each is
#: shared by ``n_samples / SIMULATION_DRAWS`` futures, so that formulas of the parameters and the
#: history (P(alive)) are evaluated once per draw rather than once per future.
SIMULATION_DRAWS = 200


def parameter_draws(model, n_draws: int | None = None, rng: np.random.Generator | None = None, *,
                    replace: bool = False) -> dict[str, np.ndarray]:
    """Parameter values of a fitted model as arrays of shape ``(n_draws,)``.

    A Bayesian fit gives its posterior draws: all of them when ``n_draws`` is None (or, without
    ``replace``, at least their number), else ``n_draws`` chosen at random (with ``replace``:
    resampled, so exactly ``n_draws`` even beyond the posterior's size). A maximum-likelihood fit
    gives its point estimate as one draw when ``n_draws`` is None, else ``n_draws`` draws from the
    asymptotic normal of the log-parameters (mean: the estimate, covariance: the inverse Hessian).
    """
    model._check_fitted()
    draws = _fitted_draws(model, n_draws, np.random.default_rng(rng), replace)
    n = len(next(iter(draws.values())))
    fixed = getattr(model, "structure_parameters", dict)()   # e.g. CNBD-k's k, read by its formulas
    return {**draws, **{k: np.full(n, float(v)) for k, v in fixed.items()}}


def _fitted_draws(model, n_draws, rng, replace) -> dict[str, np.ndarray]:
    """:func:`parameter_draws` of the fitted parameters."""
    posterior = getattr(model, "posterior_draws_", None)
    if posterior is not None:
        total = len(next(iter(posterior.values())))
        if n_draws is None or (not replace and n_draws >= total):
            return {k: np.asarray(v, dtype=float) for k, v in posterior.items()}
        idx = rng.choice(total, size=int(n_draws), replace=replace or n_draws > total)
        return {k: np.asarray(v, dtype=float)[idx] for k, v in posterior.items()}
    names = list(model.param_names)
    point = np.log(np.array([model.params_[k] for k in names], dtype=float))
    link = model._covariate_link()   # covariates: the free coefficients follow the log-parameters
    if link is not None:
        point = np.r_[point, [model.coefficients_[n.split("=")[0]] for n in link.free_names]]
    n_fixed = len(point)
    varying = getattr(model, "time_varying_coefficients_", None)   # time-varying covariates: last
    if varying is not None:
        point = np.r_[point, varying.to_numpy(dtype=float)]
    if n_draws is None:
        out = {k: np.array([v]) for k, v in zip(names, np.exp(point))}
        if link is not None:
            out.update(link.coefficients([np.array([v]) for v in point[len(names):n_fixed]]))
        if varying is not None:
            out.update({k: np.array([v]) for k, v in zip(varying.index, point[n_fixed:])})
        return out
    problem = covariance_problem(model)
    if problem is not None:
        if getattr(model, "draws_at_estimate_", False):
            return {k: np.repeat(v, int(n_draws)) for k, v in _fitted_draws(model, None, rng, replace).items()}
        raise ClvDataError(f"This {type(model).__name__} fit {problem}, so its parameter uncertainty cannot be "
                           "drawn; refit with more data or a penalizer, or use a Bayesian method.")
    cov = model.covariance_
    z = _normal_draws(model, point, cov, int(n_draws), rng)
    out = {k: np.exp(z[:, i]) for i, k in enumerate(names)}
    if link is not None:
        out.update(link.coefficients([z[:, i] for i in range(len(names), n_fixed)]))
    if varying is not None:
        out.update({k: z[:, n_fixed + j] for j, k in enumerate(varying.index)})
    return out


#: Rounds of draws :func:`_normal_draws` makes before it gives up on a model's ``draw_bounds``.
DRAW_ROUNDS = 50


def _normal_draws(model, point, cov, n: int, rng) -> np.ndarray:
    """``n`` draws from ``N(point, cov)`` (the log-parameters first) restricted by rejection to the
    model's ``draw_bounds`` (one round, the plain draws, where it declares none or all fall inside)."""
    bounds = [(model.param_names.index(k), np.log(v)) for k, v in model.draw_bounds.items()]
    kept, total = [], 0
    for _ in range(DRAW_ROUNDS):
        z = rng.multivariate_normal(point, cov, size=n, method="eigh")
        for i, low in bounds:
            z = z[z[:, i] > low]
        kept.append(z)
        total += len(z)
        if total >= n:
            return np.concatenate(kept)[:n]
    limits = ", ".join(f"{k} > {v:g}" for k, v in model.draw_bounds.items())
    raise ClvDataError(f"This {type(model).__name__} fit leaves almost no parameter uncertainty where its predictions "
                       f"exist ({limits}; estimates {model.params_.round(4).to_dict()}); refit with more data or a "
                       "penalizer, or use a Bayesian method.")


def covariance_problem(model) -> str | None:
    """Why :func:`parameter_draws` cannot draw a maximum-likelihood fit's parameters from their
    asymptotic normal, or ``None``: no finite covariance matrix (its Hessian singular or not positive
    definite, e.g. an estimate at a boundary), or parameters the data barely identify (a log-scale
    standard error above :data:`~.optimize.UNIDENTIFIED_LOG_SE`, which the fit warned of: draws
    would span factors beyond ``e^±10`` and overflow the formulas)."""
    cov = getattr(model, "covariance_", None)
    if cov is None or is_bayesian(model):
        return None
    if not np.all(np.isfinite(cov)):
        return "has no finite covariance matrix (the Hessian was singular or not positive definite)"
    se = np.sqrt(np.diag(cov))
    wide = se > UNIDENTIFIED_LOG_SE
    if not wide.any():
        return None
    names = list(model.param_names)
    link = model._covariate_link()
    names += list(link.free_names) if link is not None else []
    varying = getattr(model, "time_varying_coefficients_", None)
    names += list(varying.index) if varying is not None else []
    which = ", ".join(f"{n} (SE {v:.3g})" for n, v, w in zip(names, se, wide) if w)
    return (f"barely identifies {which}: standard errors above {UNIDENTIFIED_LOG_SE:g} on the fit's scale (log for "
            "the parameters)")


def at_estimate(model):
    """A shallow copy of ``model`` whose parameter draws (:func:`parameter_draws`) are all its point
    estimate, for a fit with a :func:`covariance_problem`: forecasts from it run, and their intervals
    leave out its parameter uncertainty, which the fit cannot estimate (whoever uses it says so).
    Its covariance and summary stay as they are."""
    known = copy.copy(model)
    known.draws_at_estimate_ = True
    return known


def predictive_draws(model, n_draws: int | None, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
    """:func:`parameter_draws` for a predictive distribution, and what they are.

    With ``n_draws`` None a posterior larger than :data:`PREDICTIVE_DRAWS` is subsampled to that
    many draws (without replacement, from ``rng``), rather than averaging over all of them; an MLE
    gives its point estimate. The second value describes the draws: ``{"n_draws": used,
    "posterior_draws": the posterior's size (None for an MLE), "subsampled": bool}``.
    """
    posterior = getattr(model, "posterior_draws_", None)
    total = None if posterior is None else len(next(iter(posterior.values())))
    if n_draws is None and total is not None and total > PREDICTIVE_DRAWS:
        n_draws = PREDICTIVE_DRAWS
    draws = parameter_draws(model, n_draws, rng)
    used = len(next(iter(draws.values())))
    return draws, {"n_draws": used, "posterior_draws": total, "subsampled": total is not None and used < total}


def check_interval(level) -> float:
    """An interval's level: a number strictly between 0 and 1 (e.g. 0.9)."""
    if not 0 < level < 1:
        raise ClvDataError(f"interval must be in (0, 1), e.g. 0.9; got {level!r}.")
    return float(level)


def is_bayesian(model) -> bool:
    """Whether a fitted model carries posterior draws (a NUTS or ADVI fit)."""
    return getattr(model, "posterior_draws_", None) is not None


def model_draws(*models, interval: float | None, n_draws: int | None, seed: int | None) -> list[dict]:
    """Parameter draws of each model, equally many: the estimates alone when none is Bayesian and
    no ``interval`` is asked for, else ``n_draws`` (default: the smallest posterior's size, or
    1,000) draws of each, seeded ``seed``, ``seed + 1``, ... so that the models' draws are independent."""
    if interval is None and not any(is_bayesian(m) for m in models):
        draws = [parameter_draws(m) for m in models]
    else:
        if n_draws is None:
            sizes = [len(next(iter(m.posterior_draws_.values()))) for m in models if is_bayesian(m)]
            n_draws = min(sizes) if sizes else 1000
        draws = [parameter_draws(m, n_draws, None if seed is None else seed + i) for i, m in enumerate(models)]
    n = min(len(next(iter(d.values()))) for d in draws)
    # one dict per model: models may share parameter names (BG/BB's and Gamma-Gamma's gamma)
    return [{k: v[:n] for k, v in d.items()} for d in draws]


def summarise_draws(fn, draws: dict[str, np.ndarray], data: dict[str, np.ndarray], *, interval=None,
                    compress_rows: bool = True, finite: bool = True, **fn_kwargs) -> dict[str, np.ndarray]:
    """Per-customer mean (and median/interval) over draws of ``fn(params, **data)``.

    ``fn`` is evaluated once per distinct row of ``data`` (identical histories have identical
    predictions; with covariate columns the rows are sorted by covariate profile, which a formula
    with covariates evaluates profile by profile, :func:`~clvmodels.models.covariates.per_profile`),
    streaming over rows in chunks of at most :data:`CHUNK_ELEMENTS` draw-row values.
    ``compress_rows=False`` evaluates it on every row instead: for formulas of a few arithmetic
    operations per row, cheaper than finding the distinct rows. ``finite=False``: a non-finite value
    is not an error but makes its row's mean non-finite (batch scoring rejects such customers one by one).
    """
    if not compress_rows:
        return _summarise_unique(fn, draws, data, interval=interval, finite=finite, **fn_kwargs)
    z = {k: v for k, v in data.items() if k.startswith(KEY_PREFIX)}   # covariates: rows sorted by profile
    data, inverse = unique_rows({**z, **data}, sort=bool(z))
    out = _summarise_unique(fn, draws, data, interval=interval, finite=finite, **fn_kwargs)
    return {k: v[inverse] for k, v in out.items()}


def _summarise_unique(fn, draws, data, *, interval=None, finite=True, **fn_kwargs):
    n_draws = len(next(iter(draws.values())))
    n = len(next(iter(data.values())))
    params = {k: np.asarray(v, dtype=float)[:, None] for k, v in draws.items()}
    chunk = max(1, CHUNK_ELEMENTS // max(n_draws, 1))
    out = {"mean": np.empty(n)}
    if interval is not None:
        check_interval(interval)
        for k in ("median", "lower", "upper"):
            out[k] = np.empty(n)
        qs = [0.5, (1 - interval) / 2, (1 + interval) / 2]
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        vals = fn(params, **{k: v[sl] for k, v in data.items()}, **fn_kwargs)
        vals = np.broadcast_to(vals, (n_draws, len(range(*sl.indices(n)))))
        if finite:
            check_finite(vals, fn.__name__)
        out["mean"][sl] = vals.mean(axis=0)
        if interval is not None:
            out["median"][sl], out["lower"][sl], out["upper"][sl] = quantiles(vals, qs)
    return out


#: What an interval describes, recorded in a result's ``attrs["uncertainty"]``.
EXPECTED = "expected value: parameter uncertainty only"
PREDICTIVE = "predictive: what the customer will actually do (parameter and process uncertainty)"


#: Column names of an interval, by what it describes: a predictive distribution's own quantiles,
#: or the quantiles of an expected value over parameter draws (``mean_*``, so that an interval of
#: the mean can never be read as one of what the customer will do).
INTERVAL_NAMES = {PREDICTIVE: {"median": "median", "lower": "lower", "upper": "upper"},
                  EXPECTED: {"median": "mean_median", "lower": "mean_lower", "upper": "mean_upper"}}


def interval_names(uncertainty: str) -> dict[str, str]:
    """``{"median": ..., "lower": ..., "upper": ...}``: the column names of an interval of the kind
    ``uncertainty`` (:data:`EXPECTED` or :data:`PREDICTIVE`)."""
    if uncertainty not in INTERVAL_NAMES:
        raise ValueError(f"uncertainty must be EXPECTED or PREDICTIVE, got {uncertainty!r}.")
    return INTERVAL_NAMES[uncertainty]


def interval_frame(columns: dict[str, np.ndarray], index, level: float, uncertainty: str):
    """The one schema of per-customer intervals: a frame with ``mean`` and the interval's median,
    lower and upper ends (and any extra columns), the level in ``attrs["interval"]`` and what the
    interval describes in ``attrs["uncertainty"]``.

    ``columns`` names the ends ``median``, ``lower``, ``upper``; the frame names them after
    ``uncertainty`` (:func:`interval_names`): ``median``/``lower``/``upper`` for a predictive
    distribution (:data:`PREDICTIVE`), ``mean_median``/``mean_lower``/``mean_upper`` for the
    uncertainty of an expected value (:data:`EXPECTED`, parameter uncertainty only)."""
    import pandas as pd

    names = interval_names(uncertainty)
    frame = pd.DataFrame({names.get(k, k): v for k, v in columns.items()}, index=index)
    frame.attrs.update(interval=float(level), uncertainty=uncertainty)
    return frame


def sample_frame(samples: np.ndarray, customers, quantity: str):
    """Simulated futures labelled: a frame of ``samples`` (one row per simulated future, index
    ``sample``; one column per customer, the ids of ``customers``), with what each value is in
    ``attrs["quantity"]`` and ``attrs["uncertainty"] = "predictive"``. ``.to_numpy()`` is the bare
    ``(n_samples, n_customers)`` array."""
    import pandas as pd

    frame = pd.DataFrame(samples, index=pd.RangeIndex(len(samples), name="sample"), columns=customers, copy=False)
    frame.attrs.update(quantity=quantity, uncertainty=PREDICTIVE)
    return frame


def quantiles(values: np.ndarray, qs) -> np.ndarray:
    """``np.quantile(values, qs, axis=0)`` (its default linear method, the same numbers bit for bit)
    with one partition for all of ``qs``: about 2x faster than numpy, which partitions per quantile."""
    n = values.shape[0]
    position = np.asarray(qs, dtype=float) * (n - 1)
    lo = np.floor(position).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    part = np.partition(values, np.unique(np.r_[lo, hi]), axis=0)
    t = (position - lo).reshape((-1,) + (1,) * (values.ndim - 1))
    below, above = part[lo], part[hi]
    with np.errstate(invalid="ignore"):
        diff = above - below
        lerp = np.where(t >= 0.5, above - diff * (1 - t), below + diff * t)  # numpy's _lerp
    # an infinite end (an expected wait that diverges): the quantile is that end, never inf − inf
    infinite = np.where(np.isinf(below) & (t < 1), below, np.where(t > 0, above, below))
    return np.where(np.isinf(below) | np.isinf(above), infinite, lerp)



def check_finite(values: np.ndarray, what: str) -> None:
    """Raise instead of returning NaN or infinity silently."""
    if not np.all(np.isfinite(values)):
        bad = int((~np.isfinite(values)).sum())
        raise FloatingPointError(
            f"{what} produced {bad:,} non-finite value(s). This is a bug or an extreme parameter "
            "value: please report it with the model's parameters and the customers' histories."
        )


__all__ = ["CHUNK_ELEMENTS", "EXPECTED", "INTERVAL_NAMES", "PREDICTIVE", "PREDICTIVE_DRAWS", "SIMULATION_DRAWS",
           "at_estimate", "check_finite", "check_interval", "covariance_problem", "interval_frame", "interval_names",
           "is_bayesian", "model_draws", "parameter_draws", "predictive_draws", "quantiles", "sample_frame",
           "summarise_draws"]
