"""Pareto/GGG: regular purchase timing with individual regularity (Platzer & Reutterer 2016, "Ticking
away the moments: timing regularity helps to better predict customer activity", Marketing Science
35(5); R package BTYDplus, ``pggg.mcmc.DrawParameters``).

While alive, customer ``i``'s inter-purchase times are ``Gamma(k_i, rate k_i λ_i)`` (mean ``1/λ_i``;
the larger ``k_i``, the more regular; ``k_i = 1`` is Pareto/NBD's Poisson process); her lifetime after
the first purchase is ``τ_i ~ Exponential(μ_i)``. In the population ``λ_i ~ Gamma(r, rate α)``,
``μ_i ~ Gamma(s, rate β)`` and ``k_i ~ Gamma(t, rate γ)``. The likelihood reads ``(x, t_x, T)`` and
``litt`` (the sum of the logs of the inter-purchase times: :func:`clvmodels.rfm_summary` with
``litt=True``), and each customer's latents: the model has no closed-form marginal likelihood, so it is
fitted by MCMC only (:mod:`.pggg_mcmc`: lifetimes integrated out, and all the latents of customers
without repeat purchases, which are drawn exactly for the kept draws), and its predictions are for the
fitted customers, from their latent draws:

* ``P(alive at T)`` exactly per draw (:func:`probability_alive`);
* the future of a customer alive at ``T`` by exact simulation per draw (:func:`simulate_alive_future`:
  the next purchase comes after the Gamma waiting time conditioned on the gap ``T − t_x`` already
  waited, the rest are Gamma renewals, all before the remaining Exponential lifetime): expected
  purchases are Monte Carlo averages over the posterior's simulated futures, as BTYDplus's
  ``mcmc.DrawFutureTransactions``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import gammainccinv, gammaincc

from ..errors import ClvDataError, ModelKindError
from ..validation import validate_columns
from .cnbd import require_litt
from .draws import CHUNK_ELEMENTS, EXPECTED, check_finite, check_interval, interval_frame, quantiles, sample_frame
from .purchase import ContinuousPurchaseModel, period_boundaries, scatter
from .rows import data_fingerprint
from .settings import check_count, check_sampling
from . import pggg_mcmc

#: Seed of the simulated futures behind :func:`future_purchases_alive` (common random numbers).
FUTURE_SEED = 20160901


# ---------------------------------------------------------------------------- likelihood and P(alive)
def _latents(params: dict):
    """``(k, λ, μ)`` of a parameter dict of customer latents, or a clear error for population
    parameters (predictions of Pareto/GGG need each customer's own draws)."""
    if not all(name in params for name in pggg_mcmc.LATENTS):
        raise ModelKindError("Pareto/GGG's formulas read each customer's latent draws (k, lambda, mu), not the "
                             f"population parameters {sorted(params)}: use the fitted ParetoGGGModel's "
                             "probability_alive, expected_purchases and simulate_purchases for the customers it "
                             "was fitted on.")
    return (np.asarray(params[name], dtype=float) for name in pggg_mcmc.LATENTS)


def log_likelihood(params: dict, data: dict, xp=None):
    """Per-customer log-likelihood given the latents ``k, λ, μ``, the lifetime integrated out
    (Platzer & Reutterer 2016, eq. 5): ``kx ln(kλ) − x lnΓ(k) + (k−1) litt − kλ t_x − μ t_x
    + ln[1 − (kλ/(kλ+μ))^k P(k, (kλ+μ)(T−t_x))]`` (``P`` the regularized lower incomplete gamma
    function). Evaluated by the sampler's compiled kernel (:mod:`.pggg_mcmc`), numpy values only:
    ``xp`` must be numpy (or None)."""
    if xp not in (None, np) and getattr(xp, "name", "numpy") != "numpy":
        raise ModelKindError("Pareto/GGG's likelihood needs its latents and is evaluated by its own sampler "
                             "only (no dual-number or PyTensor evaluation).")
    k, lam, mu = _latents(params)
    ufunc = pggg_mcmc.kernels()[0]
    return ufunc(k, lam, mu, *(np.asarray(data[c], dtype=float) for c in ("frequency", "recency", "T", "litt")))


def probability_alive(params, frequency, recency, T):
    """P(τ > T | x, t_x, T, k, λ, μ) ``= e^{−μ(T−t_x)} Q(k, kλ(T−t_x)) / [1 − (kλ/(kλ+μ))^k P(k,
    (kλ+μ)(T−t_x))]`` (Platzer & Reutterer 2016, eq. 6 with the lifetime integrated out), per draw."""
    k, lam, mu = _latents(params)
    gap = np.asarray(T, dtype=float) - np.asarray(recency, dtype=float)
    return np.exp(pggg_mcmc.kernels()[1](k, lam, mu, gap))


def survival(params, frequency, T, *, t):
    """P(alive at ``T + t`` | alive at ``T``) ``= e^{−μ t}`` (the lifetime is memoryless)."""
    _, _, mu = _latents(params)
    return np.exp(-mu * np.asarray(t, dtype=float))


# ---------------------------------------------------------------------------- futures
def simulate_alive_future(k, lam, mu, gap, bounds: np.ndarray, rng) -> np.ndarray:
    """Exact draw of the purchases in the periods ``(0, b_1], ..., (b_{H−1}, b_H]`` after ``T`` of
    customers alive at ``T`` (flat arrays of latents and of gaps ``T − t_x``), counts ``(m, H)``.

    The remaining lifetime is ``Exp(μ)``; the first future purchase comes ``W − gap`` after ``T`` with
    ``W ~ Gamma(k, rate kλ)`` conditioned on ``W > gap`` (inverse cdf: ``W = Q^{−1}(k, V Q(k, kλ gap))/kλ``,
    ``V`` uniform; where ``Q`` underflows, the Gamma's asymptotic hazard ``kλ``: ``W = gap + Exp(kλ)``),
    each later one a ``Gamma(k, rate kλ)`` waiting time after the last."""
    m, n_periods = k.size, len(bounds)
    kl = k * lam
    end = np.minimum(rng.exponential(size=m) / mu, bounds[-1])
    q = gammaincc(k, kl * gap)
    v = rng.random(m)
    tail = q > 1e-300
    wait = np.empty(m)
    wait[tail] = gammainccinv(k[tail], v[tail] * q[tail]) / kl[tail] - gap[tail]
    wait[~tail] = -np.log1p(-v[~tail]) / kl[~tail]
    at = np.maximum(wait, 0.0)
    counts = np.zeros((m, n_periods), dtype=np.int64)
    active = np.flatnonzero(at <= end)
    while active.size:
        counts[active, np.minimum(np.searchsorted(bounds, at[active]), n_periods - 1)] += 1
        at[active] += rng.gamma(k[active]) / kl[active]
        active = active[at[active] <= end[active]]
    return counts


def simulate_purchases(params, frequency, recency, T, *, t, rng):
    """One exact draw of each customer's purchases in ``(T, T+t]`` (per period with boundaries
    ``t = [t_1, ..., t_H]``) per latent draw: alive with :func:`probability_alive`, then
    :func:`simulate_alive_future`."""
    bounds, scalar = period_boundaries(t)
    k, lam, mu = np.broadcast_arrays(*_latents(params))
    gap = np.broadcast_to(np.asarray(T, dtype=float) - np.asarray(recency, dtype=float), k.shape)
    alive = rng.random(k.shape) < probability_alive(params, frequency, recency, T)
    counts = simulate_alive_future(k[alive], lam[alive], mu[alive], gap[alive], bounds, rng)
    return scatter(alive, counts[:, 0]) if scalar else scatter(alive, counts, len(bounds))


def future_purchases_alive(params, frequency, recency, T, *, t):
    """E[Y(t)] in ``(T, T+t]`` of a customer alive at ``T``, per draw: one exact simulated future per
    draw (:func:`simulate_alive_future`, seeded :data:`FUTURE_SEED`, so repeated calls agree); its
    average over the posterior's draws is the Monte Carlo posterior mean (BTYDplus's approach).
    One window ``t`` (a number)."""
    if np.ndim(t) != 0:
        raise ClvDataError("Pareto/GGG's expected purchases take one window t (a number); its futures are "
                           "simulated, so DERT and other integrals over t are not available.")
    k, lam, mu = np.broadcast_arrays(*_latents(params))
    gap = np.broadcast_to(np.asarray(T, dtype=float) - np.asarray(recency, dtype=float), k.shape)
    counts = simulate_alive_future(k.ravel(), lam.ravel(), mu.ravel(), gap.ravel(), np.array([float(t)]),
                                   np.random.default_rng(FUTURE_SEED))
    return counts[:, 0].reshape(k.shape).astype(float)


def expected_purchases(params, frequency, recency, T, *, t):
    """E[Y(t) | x, t_x, T] per draw ``= P(alive) ×`` :func:`future_purchases_alive` (Monte Carlo)."""
    return probability_alive(params, frequency, recency, T) * future_purchases_alive(params, frequency, recency, T,
                                                                                     t=t)


# ---------------------------------------------------------------------------- estimator
class ParetoGGGModel(ContinuousPurchaseModel):
    """Pareto/GGG (Platzer & Reutterer 2016): Pareto/NBD with Gamma inter-purchase times of individual
    regularity ``k_i``. Bayesian only (MCMC over each customer's latents, :mod:`.pggg_mcmc`).

    Parameters
    ----------
    draws, tune, chains
        Recorded sweeps per chain, adapting sweeps per chain, number of chains.
    latent_draws
        Draws of each customer's latents kept for predictions, in all (equally spaced in the chains).
    cores
        Chains run at once (threads; default: all chains).
    priors
        Gamma priors of the hyperparameters ``{name: ("Gamma", {"alpha": shape, "beta": rate})}``;
        default ``Gamma(1e-3, 1e-3)`` each (vague).
    seed
        Seed of the sampler (and of the default simulated futures).

    The fit needs ``litt`` (``rfm_summary(..., litt=True)``). Predictions (``probability_alive``,
    ``expected_purchases``, ``simulate_purchases``) exist only for the customers the model was fitted
    on, with the histories it was fitted on; other customers are refused.

    Attributes (after ``fit``)
    --------------------------
    params_ : posterior means of ``r, alpha, s, beta, t, gamma``; posterior_draws_ : their draws
    idata_ : the posterior (hyperparameters; per-customer ``k, lambda, mu`` in group ``latent``) and the
    fitted customers' histories (``constant_data``); diagnostics_ (r_hat, ESS), acceptance_, converged_
    """

    display_name = "Pareto/GGG"
    short_names = ("pggg", "paretoggg")
    param_names = ("r", "alpha", "s", "beta", "t", "gamma")
    fit_columns = ("litt",)
    future_columns = ("frequency", "recency", "T")
    methods = ("mcmc",)
    default_priors = {name: ("Gamma", {"alpha": 1e-3, "beta": 1e-3}) for name in param_names}

    log_likelihood = staticmethod(log_likelihood)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    expected_purchases_formula = staticmethod(expected_purchases)
    simulate_purchases_formula = staticmethod(simulate_purchases)
    survival_formula = staticmethod(survival)

    def __init__(self, *, method: str = "mcmc", draws: int = 1400, tune: int = 700, chains: int = 4,
                 latent_draws: int = 400, cores: int | None = None, **kwargs):
        """``kwargs``: the settings every model has (``priors``, ``seed``, ``progressbar``; a penalizer or
        covariates are refused at fit: the model has neither)."""
        super().__init__(method=method, draws=draws, tune=tune, chains=chains, **kwargs)
        self.latent_draws = latent_draws
        self.cores = cores

    # ------------------------------------------------------------------ fitting
    def _prior_array(self) -> np.ndarray:
        """``(3, 4)``: per latent (``k, λ, μ``) the Gamma prior (shape, rate) of its population's shape and rate."""
        priors = {**self.default_priors, **(self.priors or {})}
        unknown = sorted(set(self.priors or {}) - set(self.param_names))
        if unknown:
            raise ClvDataError(f"ParetoGGGModel has no parameters {unknown}; priors are for {list(self.param_names)}.")
        values = {}
        for name, spec in priors.items():
            if not (isinstance(spec, tuple) and len(spec) >= 2 and spec[0] == "Gamma"
                    and set(spec[1]) == {"alpha", "beta"} and min(spec[1].values()) > 0):
                raise ClvDataError(f"The prior of {name!r} must be ('Gamma', {{'alpha': shape, 'beta': rate}}) with "
                                   f"positive values (the sampler's hyperpriors are Gamma), got {spec!r:.80}.")
            values[name] = (float(spec[1]["alpha"]), float(spec[1]["beta"]))
        return np.array([[*values[a], *values[b]] for a, b in pggg_mcmc.HYPERS])

    @staticmethod
    def _start(rfm: pd.DataFrame) -> dict[str, float]:
        """Where the chains start: Pareto/NBD's maximum-likelihood estimates (the model at ``k = 1``)."""
        import warnings

        from .pareto_nbd import ParetoNBDModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # a start only: the chains' own diagnostics judge the fit
            params = ParetoNBDModel().fit(rfm[["frequency", "recency", "T"]]).params_
        return {k: float(v) for k, v in params.items()}

    def fit(self, rfm: pd.DataFrame, *, method: str | None = None, weights=None, **kwargs) -> "ParetoGGGModel":
        """Sample the posterior of the hyperparameters and of every customer's ``k, λ, μ``; returns ``self``.

        ``method``: only ``"mcmc"``. Maximum likelihood, MAP and ADVI would need the likelihood
        marginal over the latents, which has no closed form, and NUTS would sample three latents per
        customer with gradients of the incomplete gamma function in its shape: the model's own
        Metropolis-within-Gibbs sampler (:mod:`.pggg_mcmc`) is used instead. For a maximum-likelihood
        fit of regular buyers use :class:`~clvmodels.ModifiedBetaGeoCNBDModel` (MBG/CNBD-k).
        ``kwargs``: ``draws``, ``tune``, ``chains``, ``latent_draws``, ``cores``, ``seed`` for this fit."""
        method = (method or self.method).lower()
        if method != "mcmc":
            raise ValueError(f"ParetoGGGModel is fitted by MCMC only (method='mcmc'), not {method!r}: its likelihood "
                             "needs each customer's latent regularity, purchase and drop-out rates, and the "
                             "marginal over them has no closed form, so there is no maximum-likelihood, MAP or "
                             "ADVI fit, and NUTS over three latents per customer (with gradients of the incomplete "
                             "gamma function in its shape) is far slower than the model's own sampler. For a "
                             "maximum-likelihood model of regular buyers use ModifiedBetaGeoCNBDModel (MBG/CNBD-k).")
        if self.penalizer or self.covariate_processes():
            raise ClvDataError("ParetoGGGModel has no penalizer and no covariates (its hyperpriors regularise it): "
                               "leave penalizer and *_covariates at their defaults.")
        if weights is not None:
            raise ClvDataError("ParetoGGGModel does not take weights: every customer has latents of her own, so "
                               "rows cannot stand for several customers. Pass one row per customer.")
        settings = {"draws": self.draws, "tune": self.tune, "chains": self.chains, "latent_draws": self.latent_draws,
                    "cores": self.cores, "seed": self.seed}
        unknown = sorted(set(kwargs) - set(settings))
        if unknown:
            raise TypeError(f"ParetoGGGModel.fit got unexpected arguments {unknown}; it takes {sorted(settings)}.")
        settings.update(kwargs)
        draws, tune, chains = check_sampling(settings["draws"], settings["tune"], settings["chains"])
        latent_draws = check_count("latent_draws", settings["latent_draws"], 1)
        require_litt(self, rfm)
        data = self._fit_arrays(rfm)
        one_time = data["frequency"] == 0
        if np.any(data["litt"][one_time] != 0):
            raise ClvDataError("Customers without repeat purchases must have litt = 0 (no inter-purchase times): "
                               f"{int(np.sum(data['litt'][one_time] != 0)):,} rows break this; recompute litt "
                               "with rfm_summary(..., litt=True).")
        cores = chains if settings["cores"] is None else max(1, int(settings["cores"]))
        out = pggg_mcmc.sample(data, chains=chains, tune=tune, draws=draws,
                               latent_draws=latent_draws, priors=self._prior_array(),
                               seed=settings["seed"], cores=cores, start=self._start(rfm), progressbar=self.progressbar)
        self._reset_fit()
        self._store(rfm, data, out)
        return self

    def _store(self, rfm: pd.DataFrame, data: dict, out: dict) -> None:
        """The fitted attributes from the sampler's output (see the class docstring)."""
        import xarray as xr

        from .bayes import check_chains, nuts_diagnostics

        hyper = out["hyper"]                                     # (chain, draw, 3, 2)
        posterior = {}
        for c, pair in enumerate(pggg_mcmc.HYPERS):
            for j, name in enumerate(pair):
                posterior[name] = (("chain", "draw"), hyper[:, :, c, j])
        ids = rfm.index.to_numpy()
        ids = ids.astype(str) if ids.dtype == object else ids
        latent = {name: (("chain", "draw", "customer"), out["latent"][:, :, c, :])
                  for c, name in enumerate(pggg_mcmc.LATENTS)}
        histories = {c: (("customer",), data[c]) for c in ("frequency", "recency", "T", "litt")}
        chains = hyper.shape[0]
        tree = xr.DataTree.from_dict({
            "posterior": xr.Dataset(posterior),
            "latent": xr.Dataset(latent, coords={"customer": ids}),
            "constant_data": xr.Dataset(histories, coords={"customer": ids}),
            "sample_stats": xr.Dataset({f"acceptance_{n}": (("chain",), out["acceptance"][:, c])
                                        for c, n in enumerate(pggg_mcmc.LATENTS)}),
        })
        names = list(self.param_names)
        self.idata_ = tree
        self.posterior_draws_ = {k: np.asarray(tree["posterior"][k].values, dtype=float).reshape(-1) for k in names}
        self.params_ = pd.Series({k: float(v.mean()) for k, v in self.posterior_draws_.items()},
                                 name="posterior_mean")[names]
        self.covariance_ = np.cov(np.log(np.column_stack([self.posterior_draws_[k] for k in names])), rowvar=False)
        self.diagnostics_ = nuts_diagnostics(tree, names)
        self.acceptance_ = {n: float(out["acceptance"][:, c].mean()) for c, n in enumerate(pggg_mcmc.LATENTS)}
        self.converged_ = check_chains("ParetoGGGModel", self.diagnostics_, chains, None, sampler="MCMC")
        self.method_ = "mcmc"
        self.sampler_ = "pggg-metropolis-within-gibbs"
        self.n_customers_ = self.n_unique_ = len(rfm)
        self.time_unit_ = rfm.attrs.get("time_unit")
        self.fingerprint_ = data_fingerprint(data, np.ones(len(rfm)))
        self.rfm_ = rfm

    # ------------------------------------------------------------------ predictions
    def _fitted_customers(self, rfm: pd.DataFrame | None) -> np.ndarray:
        """Positions among the fitted customers of those of ``rfm`` (all for None), refusing customers
        not fitted or whose history differs from the fitted one."""
        self._check_fitted()
        stored = self.idata_["constant_data"]
        ids = pd.Index(stored["customer"].values)
        if rfm is None:
            return np.arange(len(ids))
        query = rfm.index.to_numpy()
        query = query.astype(str) if ids.dtype == object and query.dtype != object else query
        where = ids.get_indexer(query)
        if np.any(where < 0):
            missing = rfm.index[where < 0]
            raise ClvDataError(f"ParetoGGGModel predicts only for the customers it was fitted on (its predictions read "
                               f"each customer's latent draws): {len(missing):,} of the {len(rfm):,} customers were "
                               f"not in the fit (e.g. {list(missing[:3])}). Refit on a table that includes them.")
        data = validate_columns(rfm, ("frequency", "recency", "T"))
        for column, values in data.items():
            fitted = np.asarray(stored[column].values)[where]
            if not np.allclose(values, fitted, rtol=1e-9, atol=1e-9):
                bad = rfm.index[~np.isclose(values, fitted, rtol=1e-9, atol=1e-9)]
                raise ClvDataError(f"ParetoGGGModel predicts from the histories it was fitted on, but column "
                                   f"{column!r} differs for {len(bad):,} customers (e.g. {list(bad[:3])}): refit on "
                                   "this table (a later cutoff needs a new fit).")
        return where

    def customer_draws(self, rfm: pd.DataFrame | None = None, n_draws: int | None = None,
                       seed: int | None = None) -> dict[str, np.ndarray]:
        """Each fitted customer's latent draws ``{"k", "lambda", "mu"}``, arrays ``(n_draws, customers)``
        (all kept draws, or ``n_draws`` of them chosen at random), for the customers of ``rfm``."""
        return self._draws_at(self._fitted_customers(rfm), n_draws, seed)

    def _draws_at(self, where: np.ndarray, n_draws: int | None, seed: int | None) -> dict[str, np.ndarray]:
        latent = self.idata_["latent"]
        total = latent.sizes["chain"] * latent.sizes["draw"]
        pick = slice(None) if n_draws is None or n_draws >= total else \
            np.sort(np.random.default_rng(seed).choice(total, size=int(n_draws), replace=False))
        return {name: np.asarray(latent[name].values, dtype=float).reshape(total, -1)[pick][:, where]
                for name in pggg_mcmc.LATENTS}

    def _evaluate(self, fn, rfm: pd.DataFrame, n_draws: int | None, seed: int | None, **fn_kwargs) -> np.ndarray:
        """``fn(latents, frequency, recency, T, **fn_kwargs)`` for the fitted customers of ``rfm`` over their
        latent draws, ``(draws, customers)``, in chunks of customers of at most :data:`~.draws.CHUNK_ELEMENTS`
        values."""
        where = self._fitted_customers(rfm)
        stored = self.idata_["constant_data"]
        data = {c: np.asarray(stored[c].values, dtype=float)[where] for c in ("frequency", "recency", "T")}
        params = self._draws_at(where, n_draws, seed)
        chunk = max(1, CHUNK_ELEMENTS // len(params["k"]))
        return np.concatenate([fn({k: v[:, i:i + chunk] for k, v in params.items()},
                                  **{c: v[i:i + chunk] for c, v in data.items()}, **fn_kwargs)
                               for i in range(0, len(where), chunk)], axis=1)

    def _predict(self, fn, rfm, *, name: str, columns=None, interval=None, n_draws=None, seed=None,
                 compress_rows: bool = True, **fn_kwargs):
        """``fn(latents, frequency, recency, T, **fn_kwargs)`` per fitted customer, over her latent draws:
        the mean, or with ``interval`` the interval over draws (:meth:`CLVModel._predict`'s schema)."""
        if columns is not None:
            raise ModelKindError(f"ParetoGGGModel has no {name} for new customers: its predictions are for the "
                                 "fitted customers, from their own latent draws.")
        if interval is not None and name == "expected_purchases":
            raise ClvDataError("ParetoGGGModel's expected purchases are Monte Carlo averages over simulated futures, "
                               "so an interval over its draws would mix process noise in: use simulate_purchases "
                               "for what each customer may buy, or probability_alive(interval=...).")
        rfm = self._rfm_or_fitted(rfm)
        values = self._evaluate(fn, rfm, n_draws, seed, **fn_kwargs)
        check_finite(values, name)
        if interval is None:
            return pd.Series(values.mean(axis=0), index=rfm.index, name=name)
        check_interval(interval)
        median, lower, upper = quantiles(values, [0.5, (1 - interval) / 2, (1 + interval) / 2])
        return interval_frame({"mean": values.mean(axis=0), "median": median, "lower": lower, "upper": upper},
                              rfm.index, interval, EXPECTED)

    def simulate_purchases(self, t, rfm: pd.DataFrame | None = None, *, seed: int | None = None) -> pd.DataFrame:
        """Predictive draws of each fitted customer's purchases in ``(T, T+t]``: one exact simulated future
        per kept latent draw (:func:`simulate_purchases`), a frame of ``(draws, customers)``
        (:func:`~clvmodels.models.draws.sample_frame`); its column means estimate :meth:`expected_purchases`."""
        self.check_window(t)
        rfm = self._rfm_or_fitted(rfm)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        counts = self._evaluate(simulate_purchases, rfm, None, None, t=float(t), rng=rng)
        return sample_frame(counts, rfm.index, f"purchases over t={float(t):g}")


__all__ = ["ParetoGGGModel", "log_likelihood", "probability_alive", "simulate_alive_future"]
