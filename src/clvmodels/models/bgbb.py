"""BG/BB: the beta-geometric/beta-Bernoulli model of discrete transaction opportunities
(Fader, Hardie & Shang 2010, "Customer-base analysis in a discrete-time noncontractual setting",
Marketing Science 29(6)).

After her first transaction (opportunity 0) a customer has ``n`` further opportunities (e.g. one a
year). At the start of each she dies with probability ``θ ~ Beta(γ, δ)``; while alive she transacts
at it with probability ``p ~ Beta(α, β)``. Her history is ``x`` transactions, the last at
opportunity ``t_x`` (``x = t_x = 0`` without any), out of ``n`` (:func:`bgbb_summary` builds it
from a transaction log).

A customer alive at opportunity ``n`` has the posterior ``p ~ Beta(α+x, β+n−x)``,
``θ ~ Beta(γ, δ+n)``, so her future is that of a new customer with those parameters; the
conditional predictions are ``P(alive) ×`` the new-customer formulas at the updated parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betaln, digamma, gammaln

from ..errors import ClvDataError, data_error, renamed_argument
from ..validation import validate_columns
from .namespaces import NUMPY, as_namespace, likelihood

from .purchase import DiscretePurchaseModel, alive_in_periods, period_boundaries, scatter, split_over_periods


# ---------------------------------------------------------------------------- likelihood
def _log_likelihood(xp, params, x, tx, n, *, future=0):
    """Per-customer log-likelihood (Fader, Hardie & Shang 2010, eq. 5), in log space:

    ``L = B(α+x, β+n−x)/B(α, β) · B(γ, δ+n)/B(γ, δ)
    + Σ_{i=0}^{n−t_x−1} B(α+x, β+t_x−x+i)/B(α, β) · B(γ+1, δ+t_x+i)/B(γ, δ)``

    (alive throughout, or died at the start of opportunity ``t_x+i+1``), written once against a
    namespace ``xp`` (:mod:`.namespaces`). Returns ``(ln L, ln A)`` with ``A`` the first term at ``δ+n+future``
    (alive at opportunity ``n + future``), from which :func:`probability_alive` is ``A/L``.

    With PyTensor the sum runs over a trailing axis of length ``max(n − t_x)`` (the data are
    symbolic: the longest gap is known only when the function runs), the terms beyond each row's
    own length masked, and all terms are combined by one log-sum-exp; with numpy values or dual
    numbers the terms are looped over with a running log-sum-exp, so that draws x customers x gap
    is never held in memory.
    """
    xp = as_namespace(xp)
    alpha, beta, gamma, delta = params["alpha"], params["beta"], params["gamma"], params["delta"]
    ab, gd = xp.betaln(alpha, beta), xp.betaln(gamma, delta)

    def log_alive(future):
        return xp.betaln(alpha + x, beta + n - x) - ab + xp.betaln(gamma, delta + n + future) - gd

    def log_dead(x, tx, i, lift=lambda v: v):
        # lift: per-customer parameters (covariates) as a column against a trailing axis of terms
        return (xp.betaln(lift(alpha) + x, lift(beta) + tx - x + i) - lift(ab)
                + xp.betaln(lift(gamma) + 1.0, lift(delta) + tx + i) - lift(gd))

    alive = log_alive(0)
    gap = n - tx
    if not xp.symbolic:
        out = alive
        for i in range(int(np.max(gap)) if np.size(gap) else 0):
            out = xp.where(i < gap, xp.logaddexp(out, log_dead(x, tx, i)), out)
    else:
        import pytensor.tensor as pt  # xp is PyTensor's namespace: already imported

        i = pt.cast(pt.arange(pt.cast(pt.max(gap), "int64")), "float64")
        def column(v):
            return v[:, None] if getattr(v, "ndim", 0) == 1 else v

        dead = pt.switch(pt.lt(i, gap[:, None]), log_dead(x[:, None], tx[:, None], i, column), -np.inf)
        terms = pt.concatenate([alive[:, None], dead], axis=1)
        top = pt.max(terms, axis=1)            # finite: the 'alive' column always is
        out = top + pt.log(pt.exp(terms - top[:, None]).sum(axis=1))
    return out, (log_alive(future) if future else alive)


@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Per-customer log-likelihood (:func:`_log_likelihood`) in the namespace ``xp`` (:mod:`.namespaces`)."""
    return _log_likelihood(xp, params, data["frequency"], data["recency"], data["n_periods"])[0]


# ---------------------------------------------------------------------------- predictions
def probability_alive(params, frequency, recency, n_periods, *, t=0):
    """P(alive at opportunity ``n + t`` | x, t_x, n) (Fader, Hardie & Shang 2010, eq. 11 for
    ``t = 1``): ``B(α+x, β+n−x)/B(α, β) · B(γ, δ+n+t)/B(γ, δ) / L``."""
    log_l, log_alive = _log_likelihood(NUMPY, params, frequency, recency, n_periods, future=t)
    return np.exp(log_alive - log_l)


def expected_survived(gamma, delta, m):
    """``Σ_{j=1}^{m} B(γ, δ+j)/B(γ, δ)``: expected opportunities survived out of the next ``m``.

    Closed form (Fader, Hardie & Shang 2010, eq. 9 and 13) ``[δ − Γ(γ+δ)Γ(δ+m+1)/(Γ(δ)Γ(γ+δ+m))]/(γ−1)``,
    written ``δ (1 − e^z)/(γ−1)`` with ``z = D(1) − D(γ)``, ``D(c) = lnΓ(c+δ+m) − lnΓ(c+δ)``; at
    ``γ = 1`` (within 1e-8) its limit ``δ (ψ(δ+m+1) − ψ(δ+1))``. Real ``m`` interpolates.
    """
    def D(c):
        return gammaln(c + delta + m) - gammaln(c + delta)

    near_one = np.abs(gamma - 1.0) < 1e-8
    g = np.where(near_one, 2.0, gamma)
    generic = -np.expm1(D(1.0) - D(g)) / (g - 1.0)
    limit = digamma(delta + m + 1.0) - digamma(delta + 1.0)
    return delta * np.where(near_one, limit, generic)


def expected_purchases(params, frequency, recency, n_periods, *, t):
    """E[X(n, n+t) | x, t_x, n]: expected transactions in the next ``t`` opportunities (Fader,
    Hardie & Shang 2010, eq. 13): ``P(alive at n) · (α+x)/(α+β+n) · Σ_{j=1}^{t} B(γ, δ+n+j)/B(γ, δ+n)``."""
    alive = probability_alive(params, frequency, recency, n_periods)
    return alive * future_purchases_alive(params, frequency, n_periods, t=t)


def future_purchases_alive(params, frequency, n_periods, *, t):
    """Expected transactions in the next ``t`` opportunities of a customer alive at ``n``:
    ``(α+x)/(α+β+n) · Σ_{j=1}^{t} B(γ, δ+n+j)/B(γ, δ+n)`` (eq. 13 without ``P(alive)``)."""
    alpha, beta = params["alpha"], params["beta"]
    x, n = frequency, n_periods
    return (alpha + x) / (alpha + beta + n) * expected_survived(params["gamma"], params["delta"] + n, t)


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] = α/(α+β) · δ/(γ−1) · [1 − Γ(γ+δ)Γ(1+δ+t)/(Γ(γ+δ+t)Γ(1+δ))] (Fader, Hardie & Shang
    2010, eq. 9): expected transactions in the first ``t`` opportunities."""
    alpha, beta = params["alpha"], params["beta"]
    return alpha / (alpha + beta) * expected_survived(params["gamma"], params["delta"], t)


def probability_new(alpha, beta, gamma, delta, m, k):
    """P(X(m) = k) for a new customer (Fader, Hardie & Shang 2010, eq. 7), as a mixture over the
    number ``d`` of opportunities she survives: ``P(d) = B(γ+1, δ+d)/B(γ, δ)`` for ``d < m`` and
    ``B(γ, δ+m)/B(γ, δ)`` for ``d = m``, then ``k ~ BetaBinomial(d, α, β)``.

    ``k`` may be an array on a trailing axis; ``m`` is a non-negative integer.
    """
    m = int(m)
    k = np.asarray(k, dtype=float)
    total = 0.0
    for d in range(m + 1):
        log_pd = (betaln(gamma + 1.0, delta + d) if d < m else betaln(gamma, delta + m)) - betaln(gamma, delta)
        with np.errstate(invalid="ignore"):
            log_bb = (gammaln(d + 1.0) - gammaln(k + 1.0) - gammaln(np.maximum(d - k, 0.0) + 1.0)
                      + betaln(alpha + k, beta + np.maximum(d - k, 0.0)) - betaln(alpha, beta))
        total = total + np.where(k <= d, np.exp(log_pd + log_bb), 0.0)
    return total


def probability_of_n_purchases_new_customer(params, *, t, n):
    """P(X(t) = n) for a new customer over its first ``t`` opportunities (Fader, Hardie & Shang 2010, eq. 7)."""
    return probability_new(params["alpha"], params["beta"], params["gamma"], params["delta"], t, n)


def purchase_pmf(params, frequency, recency, n_periods, *, t, n_max):
    """Predictive pmf ``P(X(n, n+t) = k | x, t_x, n)`` for ``k = 0 .. n_max−1`` and the tail
    ``P(X ≥ n_max)``, on a new last axis of length ``n_max + 1``: alive customers (probability
    :func:`probability_alive`) follow :func:`probability_new` at ``(α+x, β+n−x, γ, δ+n)``.
    ``t`` must be a whole number of opportunities; the support is ``0..t``, so the tail is an exact sum."""
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    a, b, g, d, alive = _posterior(params, frequency, recency, n_periods, t)
    a, b, g, d, alive = (v[..., None] for v in (a, b, g, d, alive))
    p_alive = probability_new(a, b, g, d, int(t), np.arange(int(n_max), dtype=float))
    # the support is finite (at most t transactions): the tail is a sum, not one minus the rest
    tail = probability_new(a, b, g, d, int(t), np.arange(int(n_max), max(int(t), int(n_max) - 1) + 1, dtype=float))
    pmf = alive * np.concatenate([p_alive, tail.sum(axis=-1, keepdims=True)], axis=-1)
    pmf[..., 0] += 1.0 - alive[..., 0]
    return pmf


def _posterior(params, frequency, recency, n_periods, t):
    """A customer's individual-level posterior (FHS 2010, sec. 3): ``p ~ Beta(α+x, β+n−x)``,
    ``θ ~ Beta(γ, δ+n)`` given alive, and ``P(alive)``, broadcast together; ``t`` must be whole."""
    if int(t) != t:
        raise ClvDataError(f"BG/BB predicts whole transaction opportunities: t must be an integer, got {t!r}.")
    x, n = np.asarray(frequency, dtype=float), np.asarray(n_periods, dtype=float)
    return np.broadcast_arrays(params["alpha"] + x, params["beta"] + n - x, params["gamma"], params["delta"] + n,
                               probability_alive(params, frequency, recency, n_periods))


def simulate_purchases(params, frequency, recency, n_periods, *, t, rng):
    """One draw of each customer's transactions in the next ``t`` opportunities from her
    individual-level posterior: alive at ``n`` with probability P(alive), then
    ``p ~ Beta(α+x, β+n−x)``, ``θ ~ Beta(γ, δ+n)``; she survives ``min(G−1, t)`` more
    opportunities (``G ~ Geometric(θ)``) and transacts at each with probability ``p``.

    Per period (whole boundaries ``t = [t_1, ..., t_H]``): the ``Binomial(min(G−1, t_H), p)``
    transactions are spread over the opportunities she is alive at, uniformly without replacement
    (multivariate hypergeometric over the periods; :func:`~clvmodels.models.purchase.split_over_periods`)."""
    bounds, scalar = period_boundaries(t)
    a, b, g, d, alive = _posterior(params, frequency, recency, n_periods, bounds[-1])
    if np.any(bounds != np.round(bounds)):
        raise ClvDataError(f"BG/BB periods are whole numbers of opportunities, got boundaries {bounds}.")
    buys = rng.random(alive.shape) < alive                  # draws only for the customers alive
    theta = np.clip(rng.beta(g[buys], d[buys]), 1e-300, 1.0)
    survived = np.minimum(rng.geometric(theta) - 1, int(bounds[-1]))
    n = rng.binomial(survived, rng.beta(a[buys], b[buys]))
    some = n > 0
    buys[buys] = some
    if scalar:
        return scatter(buys, n[some])
    exposure = alive_in_periods(bounds, survived[some].astype(float))
    return scatter(buys, split_over_periods(n[some], exposure, rng, discrete=True), len(bounds))


# ---------------------------------------------------------------------------- estimator
class BetaGeoBetaBinomModel(DiscretePurchaseModel):
    """BG/BB model of discrete transaction opportunities (Fader, Hardie & Shang 2010).

    Fit on a frame with ``frequency``, ``recency`` and ``n_periods`` (:func:`bgbb_summary`), one row
    per customer or one per distinct history with ``weights`` (as in the papers' tables).

    Parameters
    ----------
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``alpha``, ``beta``, ``gamma``, ``delta``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_

    Examples
    --------
    >>> d = clvmodels.datasets.load_donations()                                        # doctest: +SKIP
    >>> m = BetaGeoBetaBinomModel().fit(d.rename(columns={"periods": "n_periods"}),
    ...                                 weights=d["weights"])                           # doctest: +SKIP
    >>> m.expected_purchases(t=5)                                                       # doctest: +SKIP
    """

    display_name = "BG/BB"
    short_names = ("bgbb",)
    param_names = ("alpha", "beta", "gamma", "delta")
    default_priors = {
        "alpha": ("HalfNormal", {"sigma": 10.0}),
        "beta": ("HalfNormal", {"sigma": 10.0}),
        "gamma": ("HalfNormal", {"sigma": 10.0}),
        "delta": ("HalfNormal", {"sigma": 10.0}),
    }
    #: Covariates, as BG/NBD's drop-out shapes: each beta shape its own coefficient, ``α_i = α exp(γ_α·z_i)``,
    #: ``β_i = β exp(γ_β·z_i)`` (purchase), ``γ_i = γ exp(γ_γ·z_i)``, ``δ_i = δ exp(γ_δ·z_i)`` (drop-out).
    covariate_links = {"purchase": (("alpha", 1.0), ("beta", 1.0)), "dropout": (("gamma", 1.0), ("delta", 1.0))}
    log_likelihood = staticmethod(log_likelihood)
    #: The formulas of the purchase-model protocol (see :mod:`.purchase`; ``t`` in opportunities).
    expected_purchases_formula = staticmethod(expected_purchases)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    new_customer_formula = staticmethod(expected_purchases_new_customer)
    purchase_pmf_formula = staticmethod(purchase_pmf)
    simulate_purchases_formula = staticmethod(simulate_purchases)

    def _data_arrays(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        data = validate_columns(rfm, self.data_columns)
        return _check_histories(rfm, data, self.data_columns)

    def probability_alive(self, rfm: pd.DataFrame | None = None, *, at: int | None = None, t: int = 0,
                          future: int | None = None, **kwargs):
        """Probability that each customer is alive at opportunity ``n + at`` (``at=1``: FHS 2010
        eq. 11, alive at the next opportunity), as ``at`` for the other purchase models. ``t`` is the
        same argument; ``future`` its deprecated name."""
        t = renamed_argument("probability_alive", "t", t, "future", future) if at is None else at
        self.check_window(t)
        return self._predict(probability_alive, rfm, name="probability_alive", t=float(t), **kwargs)

    def probability_of_n_purchases_new_customer(self, t: int, **kwargs) -> pd.Series | pd.DataFrame:
        """``P(X(t) = k)``, ``k = 0..t``, for a new customer over her first ``t`` opportunities
        (FHS 2010 eq. 7); multiply by the cohort size for the expected histogram."""
        self.check_window(t)
        ks = np.arange(int(t) + 1, dtype=float)
        grid = pd.DataFrame({"k": ks}, index=pd.Index(ks.astype(int), name="frequency"))
        return self._predict(lambda params, k: probability_of_n_purchases_new_customer(params, t=int(t), n=k),
                             grid, name="probability", columns=("k",), **kwargs)


def _check_histories(rfm, data, columns):
    x, tx, n = data["frequency"], data["recency"], data["n_periods"]
    for name, v in data.items():
        bad = (v < 0) | (v != np.round(v))
        if bad.any():
            raise data_error("BG/BB counts must be non-negative integers", column=name,
                             rows=rfm.loc[bad, list(columns)])
    bad = (tx > n) | (x > tx) | ((x == 0) & (tx > 0))
    if bad.any():
        raise data_error("Each history needs frequency <= recency <= n_periods (and recency 0 without "
                         "transactions)", column="recency", rows=rfm.loc[bad, list(columns)],
                         fix="Build the summary with clvmodels.bgbb_summary(...).")
    return data
