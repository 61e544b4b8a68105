"""GGompertz/NBD: Poisson purchases and Gompertz lifetimes with gamma heterogeneity (Bemmaor & Glady
2012, "Modeling purchasing behavior with sudden 'death': a flexible customer lifetime model",
Management Science 58(5), with Adler's 2022 comment; also in CLVTools as ``ggomnbd``).

While alive a customer buys as a Poisson process of rate ``λ ~ Gamma(r, rate α)``. Her lifetime is
Gompertz: hazard ``η b e^{bt}``, survival ``exp(−η (e^{bt} − 1))``, with ``η ~ Gamma(s, rate β)``
and ``b > 0`` common to all; across customers the survival is ``S(t) = (β/(β + e^{bt} − 1))^s``
and the lifetime density ``f(t) = s b e^{bt} β^s (β + e^{bt} − 1)^−(s+1)``. As ``b → 0`` with
``β/b`` fixed this is Pareto/NBD's lifetime (Pareto II with ``β_P = β/b``): on CDNOW the MLE runs to
that boundary (``b``, ``β → 0``) and the log-likelihood to Pareto/NBD's −9,594.98.

The likelihood (Bemmaor & Glady 2012, eq. 8) is

``L = Γ(r+x) α^r / Γ(r) · [(α+T)^−(r+x) S(T) + ∫_{t_x}^{T} (α+τ)^−(r+x) f(τ) dτ]``,

the second term in log space by the doubling Gauss-Legendre rule
(:func:`~.quadrature.log_doubling_quadrature`, written against the namespace ``xp``: the MLE's dual
numbers, PyTensor for the Bayesian fits).

A customer alive at ``T`` has ``λ ~ Gamma(r+x, α+T)`` and ``η ~ Gamma(s, β + e^{bT} − 1)``, so her
remaining lifetime has survival ``(1 + κ (e^{bv} − 1))^−s`` with ``κ = e^{bT}/(β + e^{bT} − 1)``;
her expected purchases in the next ``t`` are ``(r+x)/(α+T) ∫_0^t (1 + κ (e^{bv} − 1))^−s dv``.
"""

from __future__ import annotations

import numpy as np

from .namespaces import NUMPY, as_namespace, likelihood
from .purchase import (ContinuousPurchaseModel, alive_times_future, next_purchase_before_dropout, per_distinct_draw,
                       period_boundaries, scatter, split_over_lifetime)
from .quadrature import log_doubling_quadrature
from .rows import per_distinct_pair

#: Above this ``b t`` the logarithm of ``β + e^{bt} − 1`` is written ``b t + ln(1 + (β−1) e^{−bt})``.
_LARGE = 30.0


def _log_lifetime_base(xp, b, beta, t):
    """``ln(β + e^{bt} − 1)`` without overflow (both branches finite: PyTensor's gradient of the
    unused one must not be NaN)."""
    bt = b * t
    small = xp.log(beta + xp.expm1(xp.minimum(bt, _LARGE)))
    large = xp.maximum(bt, _LARGE) + xp.log1p((beta - 1.0) * xp.exp(-xp.maximum(bt, _LARGE)))
    return xp.where(bt < _LARGE, small, large)


def _log_terms(xp, params, x, tx, T):
    """ln of the bracket's two terms: alive at ``T``, and died at ``τ ∈ (t_x, T)``."""
    xp = as_namespace(xp)
    r, alpha, b, s, beta = (params[k] for k in ("r", "alpha", "b", "s", "beta"))
    p = r + x
    log_alive = -p * xp.log(alpha + T) + s * (xp.log(beta) - _log_lifetime_base(xp, b, beta, T))

    def log_f(tau):   # (α+τ)^−p f(τ), f the lifetime density
        return (-xp.pad_right(p, 2) * xp.log(xp.pad_right(alpha, 2) + tau)
                + xp.log(xp.pad_right(s * b, 2)) + xp.pad_right(s * xp.log(beta), 2) + xp.pad_right(b, 2) * tau
                - xp.pad_right(s + 1.0, 2) * _log_lifetime_base(xp, xp.pad_right(b, 2), xp.pad_right(beta, 2), tau))

    # the integrand's log-slope at t_x is at most p/(α+t_x) + b + (s+1) b in size
    h = 1.0 / (p / (alpha + tx) + (s + 2.0) * b)
    equal = T - tx <= 1e-12 * (T + 1.0)
    hi = xp.where(equal, tx + 1.0, T)         # keeps the unused branch finite
    log_died = xp.where(equal, -np.inf, log_doubling_quadrature(xp, log_f, tx, hi, h))
    return log_alive, log_died


@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Per-customer log-likelihood (Bemmaor & Glady 2012, eq. 8) in log space, in the namespace ``xp``."""
    r, alpha = params["r"], params["alpha"]
    x, tx, T = data["frequency"], data["recency"], data["T"]
    log_alive, log_died = _log_terms(xp, params, x, tx, T)
    return xp.gammaln(r + x) - xp.gammaln(r) + r * xp.log(alpha) + xp.logaddexp(log_alive, log_died)


# ---------------------------------------------------------------------------- predictions
def probability_alive(params, frequency, recency, T):
    """P(alive at T | x, t_x, T): the first term of the likelihood's bracket over the bracket."""
    log_alive, log_died = _log_terms(NUMPY, params, frequency, recency, T)
    return np.exp(log_alive - np.logaddexp(log_alive, log_died))


def _kappa(b, beta, T):
    """``κ = e^{bT}/(β + e^{bT} − 1) = 1/(1 − (1−β) e^{−bT})``: the remaining lifetime of a customer
    alive at ``T`` has survival ``(1 + κ (e^{bv} − 1))^−s``."""
    return 1.0 / (1.0 - (1.0 - beta) * np.exp(-b * np.asarray(T, dtype=float)))


def survival(params, frequency, T, *, t):
    """P(alive at ``T+t`` | alive at ``T``) = ``(1 + κ (e^{bt} − 1))^−s`` (:func:`_kappa`)."""
    b = params["b"]
    return np.exp(-params["s"] * np.log1p(_kappa(b, params["beta"], T) * np.expm1(b * np.asarray(t, dtype=float))))


def _expected_lifetime_within(s, b, kappa, t):
    """``∫_0^t (1 + κ (e^{bv} − 1))^−s dv``: the expected time alive within the next ``t``, by
    :func:`_log_quadrature` (the survival falls on the scale ``1/(b (1 + sκ))``)."""
    t = np.asarray(t, dtype=float)

    def log_f(v):
        return -np.asarray(s)[..., None, None] * np.log1p(np.asarray(kappa)[..., None, None]
                                                         * np.expm1(np.asarray(b)[..., None, None] * v))

    shape = np.broadcast_shapes(np.shape(s), np.shape(b), np.shape(kappa), t.shape)
    zero = np.zeros(shape)
    with np.errstate(divide="ignore"):
        out = np.exp(log_doubling_quadrature(NUMPY, log_f, zero, zero + t, zero + 1.0 / (b * (1.0 + s * kappa))))
    return np.where(t > 0, out, 0.0)


def future_purchases_alive(params, frequency, T, *, t):
    """E[Y(t)] of a customer alive at ``T``: ``(r+x)/(α+T)`` times :func:`_expected_lifetime_within`."""
    b, s = params["b"], params["s"]
    kappa = _kappa(b, params["beta"], T)
    return (params["r"] + frequency) / (params["alpha"] + T) * _expected_lifetime_within(s, b, kappa, t)


def expected_purchases(params, frequency, recency, T, *, t):
    """E[Y(t) | x, t_x, T] = P(alive) × :func:`future_purchases_alive` (:func:`~.purchase.alive_times_future`)."""
    return alive_times_future(probability_alive, future_purchases_alive, params, frequency, recency, T, t=t)


def next_purchase_time(params, frequency, recency, T):
    """``E[τ | τ < ∞, x, t_x, T]``, the expected time from ``T`` to the next purchase given that she
    makes one (before her lifetime ends): she must be alive at ``T``, with ``λ ~ Gamma(r+x, α+T)``
    and a remaining lifetime of survival ``S(u) = (1 + κ (e^{bu} − 1))^−s`` (:func:`survival`)
    independent of it; :func:`~.purchase.next_purchase_before_dropout` with
    ``ln S = −s (bu + ln(1 + (κ−1)(1 − e^{−bu})))`` (no overflow), the hazard in
    ``v = ln(1 + u/(α+T))`` ``s b u' κ/(κ + (1−κ) e^{−bu})`` (``u' = du/dv = (α+T) e^v``), the knee
    where ``κ (e^{bu} − 1) = 1`` and the end where ``S = e^{−100}``. At ``b → 0`` with ``β/b``
    fixed it is Pareto/NBD's (``tests/test_next_purchase.py``). It reads ``(x, T)`` only: evaluated
    once per distinct pair (:func:`~.rows.per_distinct_pair`)."""
    return per_distinct_pair(lambda x, age: _next_purchase_time(params, x, age), frequency, T, axis=-1, params=params)


def _next_purchase_time(params, x, T):
    """:func:`next_purchase_time` of the customers ``(x, T)``."""
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    rows = np.broadcast_arrays(params["r"] + x, params["alpha"] + T, params["b"], params["s"],
                               _kappa(params["b"], params["beta"], T))
    shape = rows[0].shape
    p, A, b, s, kappa = (np.ravel(v) for v in rows)
    A3, b3, s3, k3 = (v[:, None, None] for v in (A, b, s, kappa))

    def log_survival(v):
        bu = b3 * A3 * np.expm1(v)
        return -s3 * (bu + np.log1p(-(k3 - 1.0) * np.expm1(-bu)))

    def hazard(v):
        u = A * np.expm1(v)
        return s * b * A * np.exp(v) * kappa / (kappa + (1.0 - kappa) * np.exp(-b * u))

    def v_at(u):
        return np.log1p(u / A)

    end = v_at(np.logaddexp(0.0, 100.0 / s - np.log(kappa)) / b)
    knee = np.minimum(v_at(np.log1p(1.0 / kappa) / b), end)
    out = next_purchase_before_dropout(p, A, log_survival, hazard, (knee, np.minimum(np.maximum(knee, 1.0), end), end))
    return out.reshape(shape)


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] of a customer just acquired: ``r/α ∫_0^t S(v) dv`` (``κ = 1/β`` at ``T = 0``)."""
    b, s = params["b"], params["s"]
    return params["r"] / params["alpha"] * _expected_lifetime_within(s, b, 1.0 / params["beta"], t)


def simulate_purchases(params, frequency, recency, T, *, t, rng):
    """One draw of each customer's repeat purchases in ``(T, T+t]`` (or per period, boundaries
    ``t = [t_1, ..., t_H]``) from her posterior: alive with probability P(alive), then
    ``λ ~ Gamma(r+x, α+T)``, ``η' = η e^{bT} ~ Gamma(s, scale κ)``, a remaining lifetime
    ``v = ln(1 + E/η')/b`` with ``E ~ Exponential(1)`` (the inverse of ``exp(−η' (e^{bv} − 1))``) and
    ``Poisson(λ min(t, v))`` purchases, spread over the periods in proportion to the time alive in each."""
    bounds, scalar = period_boundaries(t)
    x = np.asarray(frequency, dtype=float)
    r, alpha, b, s, kappa, alive = np.broadcast_arrays(
        params["r"] + x, params["alpha"] + T, params["b"], params["s"], _kappa(params["b"], params["beta"], T),
        per_distinct_draw(probability_alive, params, frequency, recency, T))
    buys = rng.random(alive.shape) < alive
    at = np.nonzero(buys)                                   # found once, read five times
    lam = rng.gamma(r[at], 1.0 / alpha[at])
    eta = np.maximum(rng.gamma(s[at], kappa[at]), 1e-300)
    lifetime = np.log1p(rng.exponential(size=eta.shape) / eta) / b[at]
    n = rng.poisson(lam * np.minimum(bounds[-1], lifetime))
    some = n > 0
    buys[buys] = some
    if scalar:
        return scatter(buys, n[some])
    return scatter(buys, split_over_lifetime(n[some], bounds, lifetime[some], rng), len(bounds))


# ---------------------------------------------------------------------------- estimator
class GGompertzNBDModel(ContinuousPurchaseModel):
    """GGompertz/NBD purchase and lifetime model (Bemmaor & Glady 2012).

    Parameters
    ----------
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``r``, ``alpha``, ``b``, ``s``, ``beta``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_

    Where the data show no ageing of the drop-out rate the MLE runs to the Pareto/NBD boundary
    (``b`` and ``β`` towards 0 with ``β/b`` fixed): the fit then warns that it did not converge,
    and its log-likelihood is Pareto/NBD's (fit :class:`~clvmodels.ParetoNBDModel` instead).
    """

    display_name = "GGompertz/NBD"
    short_names = ("ggomnbd", "ggompertz")
    param_names = ("r", "alpha", "b", "s", "beta")
    default_priors = {
        "r": ("HalfNormal", {"sigma": 5.0}),
        "alpha": ("HalfNormal", {"sigma": 5.0}, {"sigma": "T"}),   # times: 5 x the mean age
        "b": ("HalfNormal", {"sigma": 1.0}),                      # per time unit
        "s": ("HalfNormal", {"sigma": 5.0}),
        "beta": ("HalfNormal", {"sigma": 5.0}),
    }
    log_likelihood = staticmethod(log_likelihood)
    #: The formulas of the purchase-model protocol (see :mod:`.purchase`).
    expected_purchases_formula = staticmethod(expected_purchases)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    new_customer_formula = staticmethod(expected_purchases_new_customer)
    survival_formula = staticmethod(survival)
    next_purchase_time_formula = staticmethod(next_purchase_time)
    simulate_purchases_formula = staticmethod(simulate_purchases)

    def initial_params(self, data, weights):
        rate = self.purchase_rate(data, weights)
        T = np.average(data["T"], weights=weights)
        return np.array([1.0, 1.0 / rate, 1.0 / max(T, 1e-6), 1.0, 1.0])


__all__ = ["GGompertzNBDModel"]
