"""The model interface shared by every CLV model.

A model class declares its parameters, the RFM columns it reads, and its per-customer
log-likelihood, written once as a PyTensor expression (:meth:`CLVModel.log_likelihood`). From that
single expression:

* the maximum-likelihood fit (:mod:`clvmodels.models.mle`) compiles the weighted sum and its exact
  gradient and Hessian with respect to the log-parameters;
* the Bayesian fits (:mod:`clvmodels.models.bayes`: MAP, NUTS, ADVI) add priors and hand the same
  expression to PyMC as a potential.

Predictions are numpy functions of a parameter dict whose values broadcast: a point estimate is a
single draw, a posterior is a stack of draws (:meth:`CLVModel.parameter_draws`), and
:meth:`CLVModel._predict` turns either into per-customer point values or intervals, streaming over
customers in chunks so that draws x customers never has to fit in memory at once.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from ..errors import ClvDataError, NotFittedError
from ..validation import validate_columns  # the one definition (see clvmodels.validation)

#: Largest number of (draw x customer) values held in memory at once by predictions.
CHUNK_ELEMENTS = 4_000_000


class CLVModel:
    """Base class: scikit-learn style estimator contract plus the shared fitting/prediction plumbing.

    Subclasses set :attr:`param_names`, :attr:`data_columns` and implement
    :meth:`log_likelihood` and :meth:`_data_arrays`.
    """

    #: Names of the population parameters, in the order of the optimiser's vector.
    param_names: ClassVar[tuple[str, ...]] = ()
    #: Columns of the RFM frame the model reads.
    data_columns: ClassVar[tuple[str, ...]] = ()
    #: Default priors of the Bayesian fits: ``{param: ("Distribution", {kwargs})}``.
    default_priors: ClassVar[dict[str, tuple[str, dict[str, float]]]] = {}
    #: Pairs of beta-mixing shapes given a joint prior by default (see :mod:`.bayes`).
    joint_priors: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Purchase models: their ``expected_purchases(params, frequency, recency, T, *, t)`` formula,
    #: which is ``probability_alive(params, frequency, recency, T)`` times
    #: ``future_purchases_alive(params, frequency, T, *, t)`` (the expectation of a customer alive at
    #: ``T``, which does not depend on the recency); :func:`clvmodels.clv` uses the two factors.
    expected_purchases_formula: ClassVar = None
    probability_alive_formula: ClassVar = None
    future_purchases_formula: ClassVar = None
    #: Fit methods understood by :meth:`fit`.
    methods: ClassVar[tuple[str, ...]] = ("mle", "map", "nuts", "advi")

    def __init__(self, *, method: str = "mle", penalizer: float = 0.0, priors: dict | None = None,
                 draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int | None = None,
                 progressbar: bool = True):
        self.method = method
        self.penalizer = penalizer
        self.priors = priors
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.random_seed = random_seed
        self.progressbar = progressbar

    # ------------------------------------------------------------------ scikit-learn contract
    @classmethod
    def _get_param_names(cls) -> list[str]:
        import inspect

        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> "CLVModel":
        """Set constructor parameters (scikit-learn convention); returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}; valid: {valid}.")
            setattr(self, key, value)
        return self

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "params_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit(rfm) first.")

    # ------------------------------------------------------------------ the model's mathematics
    @staticmethod
    def log_likelihood(params: dict, data: dict):
        """Per-customer log-likelihood as a PyTensor expression. Abstract: every model class defines
        its own (e.g. :func:`clvmodels.models.bgnbd.log_likelihood`)."""
        raise NotImplementedError("A CLVModel subclass must define log_likelihood(params, data).")

    def initial_params(self, data: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        """Starting values of the optimiser (natural scale); subclasses may give better ones."""
        return np.ones(len(self.param_names))

    def _data_arrays(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        """Validated float arrays of :attr:`data_columns` (subclasses may add checks)."""
        return validate_columns(rfm, self.data_columns)

    # ------------------------------------------------------------------ fitting
    def fit(self, rfm: pd.DataFrame, *, method: str | None = None, weights=None, **kwargs) -> "CLVModel":
        """Fit the model to an RFM summary; returns ``self``.

        Parameters
        ----------
        rfm
            Frame with the model's :attr:`data_columns` (as made by :func:`clvmodels.rfm_summary`).
        method
            ``"mle"`` (maximum likelihood), ``"map"``, ``"nuts"`` or ``"advi"``; defaults to the
            constructor's ``method``.
        weights
            Optional number of customers each row stands for (e.g. a pre-aggregated table).
        **kwargs
            Passed to the fitting routine (e.g. ``draws``, ``chains`` for NUTS).
        """
        method = (method or self.method).lower()
        if method not in self.methods:
            raise ValueError(f"Unknown fit method {method!r}; choose one of {self.methods}.")
        data = self._data_arrays(rfm)
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            if weights.shape != (len(rfm),) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ClvDataError("weights must be one finite, non-negative number per row.")
        unique, w = compress(data, weights)
        self._reset_fit()
        if method == "mle":
            from .mle import fit_mle

            fit_mle(self, unique, w, **kwargs)
        else:
            from .bayes import fit_bayes

            fit_bayes(self, unique, w, method=method, **kwargs)
        self.method_ = method
        self.n_customers_ = int(round(w.sum()))
        self.n_unique_ = len(w)
        self.time_unit_ = rfm.attrs.get("time_unit") if hasattr(rfm, "attrs") else None
        from .persistence import data_fingerprint

        self.fingerprint_ = data_fingerprint(unique, w)
        self.rfm_ = rfm
        return self

    def _reset_fit(self) -> None:
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)

    # ------------------------------------------------------------------ parameters and draws
    def parameter_draws(self, n_draws: int | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        """Parameter values as arrays of shape ``(n_draws,)``.

        A Bayesian fit returns its posterior draws (all of them, or ``n_draws`` of them chosen at
        random). A maximum-likelihood fit returns its point estimate as one draw when ``n_draws`` is
        None, else ``n_draws`` draws from the asymptotic normal of the log-parameters (mean: the
        estimate, covariance: the inverse Hessian).
        """
        self._check_fitted()
        rng = np.random.default_rng(seed)
        posterior = getattr(self, "posterior_draws_", None)
        if posterior is not None:
            total = len(next(iter(posterior.values())))
            if n_draws is None or n_draws >= total:
                return {k: np.asarray(v, dtype=float) for k, v in posterior.items()}
            idx = rng.choice(total, size=n_draws, replace=False)
            return {k: np.asarray(v, dtype=float)[idx] for k, v in posterior.items()}
        point = np.log(np.array([self.params_[k] for k in self.param_names], dtype=float))
        if n_draws is None:
            return {k: np.array([v]) for k, v in zip(self.param_names, np.exp(point))}
        cov = getattr(self, "covariance_", None)
        if cov is None or not np.all(np.isfinite(cov)):
            raise ClvDataError(
                "This fit has no finite covariance matrix (the Hessian was singular or not "
                "positive definite), so parameter uncertainty cannot be drawn; refit with more "
                "data or a penalizer, or use a Bayesian method."
            )
        z = rng.multivariate_normal(point, cov, size=n_draws, method="eigh")
        return {k: np.exp(z[:, i]) for i, k in enumerate(self.param_names)}

    # ------------------------------------------------------------------ predictions
    def _rfm_or_fitted(self, rfm):
        self._check_fitted()
        if rfm is None and not hasattr(self, "rfm_"):
            raise ClvDataError(
                f"This {type(self).__name__} has no training data (it was loaded from a file, which "
                "does not store the training frame): pass the customers to score, e.g. rfm=..."
            )
        return self.rfm_ if rfm is None else rfm

    def _predict(
        self,
        fn: Callable[..., np.ndarray],
        rfm: pd.DataFrame | None,
        *,
        name: str,
        columns: tuple[str, ...] | None = None,
        interval: float | None = None,
        n_draws: int | None = None,
        seed: int | None = None,
        compress_rows: bool = True,
        **fn_kwargs,
    ) -> pd.Series | pd.DataFrame:
        """Evaluate ``fn(params, **data, **fn_kwargs)`` per customer and summarise over draws.

        Without ``interval``: a Series of point values (the value at the estimate for MLE; the
        posterior mean for Bayesian fits). With ``interval`` (e.g. 0.9): a frame with ``mean``,
        ``median``, ``lower`` and ``upper`` per customer, over parameter draws.
        ``compress_rows``: see :func:`summarise_draws`.
        """
        rfm = self._rfm_or_fitted(rfm)
        data = validate_columns(rfm, columns or self.data_columns)
        bayesian = getattr(self, "posterior_draws_", None) is not None
        if bayesian:
            draws = self.parameter_draws(n_draws, seed=seed)
        elif interval is None:
            draws = self.parameter_draws()
        else:
            draws = self.parameter_draws(n_draws or 1000, seed=seed)
        values = summarise_draws(fn, draws, data, interval=interval, compress_rows=compress_rows, **fn_kwargs)
        index = rfm.index
        if interval is None:
            return pd.Series(values["mean"], index=index, name=name)
        return pd.DataFrame(values, index=index)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Parameter table: estimates with standard errors and intervals (MLE), or posterior
        means, sd, HDIs, r_hat and ESS (Bayesian fits). Fit statistics are in ``attrs``."""
        self._check_fitted()
        if getattr(self, "posterior_draws_", None) is not None:
            from .bayes import bayes_summary

            return bayes_summary(self, level)
        from .mle import mle_summary

        table = mle_summary(self, level)
        table.attrs.update(log_likelihood=self.log_likelihood_, aic=self.aic_, bic=self.bic_,
                           converged=self.converged_, n_customers=self.n_customers_)
        return table

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Save the model to the directory ``path`` (JSON + netCDF, no pickle; written atomically).

        Load it with :func:`clvmodels.load_model`; see :mod:`clvmodels.models.persistence`.
        """
        from .persistence import save_model

        save_model(self, path)

    def _predict_over_t(self, formula, t, **kwargs):
        """``formula(params, *, t)`` (a new customer's prediction) for one or several horizons ``t``:
        a float for scalar ``t`` without interval, else a Series/frame indexed by ``t``."""
        ts = np.atleast_1d(np.asarray(t, dtype=float))
        check_t(ts)
        grid = pd.DataFrame({"t": ts}, index=pd.Index(ts, name="t"))
        out = self._predict(lambda params, t: formula(params, t=t), grid, name="expected_purchases",
                            columns=("t",), **kwargs)
        return float(out.iloc[0]) if np.ndim(t) == 0 and isinstance(out, pd.Series) else out

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        name = type(self).__name__
        if not self.is_fitted:
            return f"{name}(method={self.method!r}, unfitted)"
        ps = ", ".join(f"{k}={self.params_[k]:.4g}" for k in self.param_names)
        return f"{name}({ps}; {self.method_} on {self.n_customers_:,} customers)"

    def _repr_html_(self) -> str:
        if not self.is_fitted:
            return f"<p>{type(self).__name__} (unfitted)</p>"
        return f"<p><b>{repr(self)}</b></p>" + self.summary().to_html(float_format=lambda v: f"{v:.4g}")


# ---------------------------------------------------------------------------- helpers
def unique_rows(data: dict[str, np.ndarray]):
    """Unique rows of the equal-length arrays in ``data`` and, per original row, its unique row's index."""
    names = list(data)
    n = len(data[names[0]])
    key = np.zeros(n, dtype=np.int64)
    factor = 1
    for name in names:
        codes, uniques = pd.factorize(data[name])
        if factor * max(len(uniques), 1) > 2**62:  # too many combinations for one int64 key
            stacked = np.column_stack([data[k] for k in names])
            uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)
            return {k: uniq[:, i] for i, k in enumerate(names)}, inverse.ravel()
        key += codes.astype(np.int64) * factor
        factor *= max(len(uniques), 1)
    inverse = pd.factorize(key)[0]
    first = np.empty(inverse.max() + 1, dtype=np.int64)
    first[inverse] = np.arange(n)  # any representative: the rows of one code are identical
    return {k: v[first] for k, v in data.items()}, inverse


def compress(data: dict[str, np.ndarray], weights: np.ndarray | None = None):
    """Unique rows of ``data`` and the total weight of each (CLVTools' compression).

    Identical rows contribute identical likelihood terms, so fitting on the unique rows with their
    counts as weights gives exactly the same objective at a fraction of the cost.
    """
    uniq, inverse = unique_rows(data)
    w = np.bincount(inverse, weights=weights, minlength=len(next(iter(uniq.values())))).astype(float)
    keep = w > 0
    return {k: v[keep] for k, v in uniq.items()}, w[keep]


def summarise_draws(fn, draws: dict[str, np.ndarray], data: dict[str, np.ndarray], *, interval=None,
                    compress_rows: bool = True, finite: bool = True, **fn_kwargs) -> dict[str, np.ndarray]:
    """Per-customer mean (and median/interval) over draws of ``fn(params, **data)``.

    ``fn`` is evaluated once per distinct row of ``data`` (identical histories have identical
    predictions), streaming over rows in chunks of at most :data:`CHUNK_ELEMENTS` draw-row values.
    ``compress_rows=False`` evaluates it on every row instead: for formulas of a few arithmetic
    operations per row, cheaper than finding the distinct rows. ``finite=False``: a non-finite value
    is not an error but makes its row's mean non-finite (batch scoring rejects such customers one by one).
    """
    if not compress_rows:
        return _summarise_unique(fn, draws, data, interval=interval, finite=finite, **fn_kwargs)
    data, inverse = unique_rows(data)
    out = _summarise_unique(fn, draws, data, interval=interval, finite=finite, **fn_kwargs)
    return {k: v[inverse] for k, v in out.items()}


def _summarise_unique(fn, draws, data, *, interval=None, finite=True, **fn_kwargs):
    n_draws = len(next(iter(draws.values())))
    n = len(next(iter(data.values())))
    params = {k: np.asarray(v, dtype=float)[:, None] for k, v in draws.items()}
    chunk = max(1, CHUNK_ELEMENTS // max(n_draws, 1))
    out = {"mean": np.empty(n)}
    if interval is not None:
        if not 0 < interval < 1:
            raise ValueError(f"interval must be in (0, 1), got {interval}.")
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
    diff = above - below
    return np.where(t >= 0.5, above - diff * (1 - t), below + diff * t)  # numpy's _lerp


def check_t(t) -> None:
    """A prediction horizon (scalar or array) must be finite and non-negative."""
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ClvDataError(f"t must be finite and non-negative, got {t}.")


def check_n(n) -> None:
    """A purchase count must be a non-negative integer."""
    if int(n) != n or n < 0:
        raise ClvDataError(f"n must be a non-negative integer, got {n!r}.")


def check_finite(values: np.ndarray, what: str) -> None:
    """Raise instead of returning NaN or infinity silently."""
    if not np.all(np.isfinite(values)):
        bad = int((~np.isfinite(values)).sum())
        raise FloatingPointError(
            f"{what} produced {bad:,} non-finite value(s). This is a bug or an extreme parameter "
            "value: please report it with the model's parameters and the customers' histories."
        )


def warn_convergence(message: str) -> None:
    from ..errors import ConvergenceWarning

    warnings.warn(message, ConvergenceWarning, stacklevel=3)
