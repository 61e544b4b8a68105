"""Pareto/NBD: Poisson purchases and exponential lifetimes (Schmittlein, Morrison & Colombo 1987).

While alive a customer buys as a Poisson process of rate ``λ ~ Gamma(r, rate α)``; her lifetime
is exponential with rate ``μ ~ Gamma(s, rate β)``, independent of ``λ``.

The likelihood (Fader & Hardie 2005, "A note on deriving the Pareto/NBD model and related
expressions", eq. 19-22) is

``L = Γ(r+x) α^r β^s / Γ(r) · [(α+T)^−(r+x) (β+T)^−s + s I]``,
``I = ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ``

(the second term integrates out ``λ`` and ``μ`` for a customer who died at ``τ`` between her last
purchase and ``T``). The usual closed form writes ``I`` as a difference of two Gauss
hypergeometric functions, one branch for ``α ≥ β`` and one for ``α < β``: the difference cancels
catastrophically when ``t_x`` is near ``T``, and ``2F1`` overflows or loses precision at large
``x``, long ``T`` or ``α`` close to ``β`` (lifetimes returns NaN there). Here ``I`` is computed
directly, in log space, by composite Gauss-Legendre quadrature (:func:`log_integral`):

* the variable is ``y = ln((c+τ)/(c+t_x))`` with ``c = min(α, β)``, in which the integrand
  ``exp ψ(y)`` is analytic in a strip of half-width π around the real axis and the power-law
  tails of long histories become exponentials;
* the range is cut into :data:`N_PANELS` panels at ``τ − t_x = h (2^j − 1)``, with ``h`` the
  scale on which the integrand first falls by ``e`` (``1/h`` is its log-slope at ``t_x``). The
  log-integrand is concave in ``τ``, so the fall over panel ``j`` is at most about ``2^j``: the
  panels holding the mass are resolved by :data:`N_NODES` nodes each to ~1e-11, whatever ``x``,
  ``T`` or ``α/β`` (checked against 40-digit mpmath evaluations of the closed form in
  ``tests/test_pareto_nbd.py``), and the panels beyond hold a negligible share.

The same expression, written once for ``numpy`` or ``pytensor.tensor`` (the ``xp`` argument), is
the PyTensor likelihood of the MLE and Bayesian fits (differentiable: the nodes are smooth
functions of the parameters) and the numpy ``P(alive)`` of the predictions.

A customer alive at ``T`` behaves from ``T`` on like a new customer with ``(r+x, α+T, s, β+T)``
(the posterior of ``λ`` and ``μ`` given survival factorises), so the conditional predictions are
``P(alive) ×`` the new-customer formulas at the updated parameters.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from scipy.special import gammaln, xlogy

from ..errors import ClvDataError
from .bayes import Reparametrisation
from .purchase import ContinuousPurchaseModel

#: Panels of the composite quadrature of the likelihood's integral (doubling widths).
N_PANELS = 16
#: Gauss-Legendre nodes per panel.
N_NODES = 8

_GL_X, _GL_W = np.polynomial.legendre.leggauss(N_NODES)
_POS = (_GL_X + 1.0) / 2.0     # node positions in [0, 1] within a panel
_WEIGHT = _GL_W / 2.0          # their weights (summing to 1)


# ---------------------------------------------------------------------------- the integral
def _integral_geometry(xp, r, alpha, s, beta, x, tx, T):
    """Quantities of :func:`log_integral` that do not depend on the node."""
    p, q = r + x, s + 1.0
    c = xp.minimum(alpha, beta)
    big_alpha = alpha >= beta
    p_small = xp.where(big_alpha, q, p)          # exponent of (c+τ)
    p_big = xp.where(big_alpha, p, q)            # exponent of (C+τ), C = max(α, β)
    zeta = xp.abs(alpha - beta) / (c + tx)       # (C+τ)/(c+τ) = 1 + ζ e^−y
    h = 1.0 / (p / (alpha + tx) + q / (beta + tx))
    Y = xp.log(c + T) - xp.log(c + tx)
    return {"c": c, "p_small": p_small, "p_big": p_big, "zeta": zeta, "h_rel": h / (c + tx), "Y": Y,
            "k": p + q - 1.0}


def _panel_edges(xp, g, panel):
    """Edges ``(lo, hi)`` in ``y`` of panel ``panel``: ``τ − t_x ∈ [h (2^j − 1), h (2^{j+1} − 1)]``
    clipped to ``T``; the last panel runs to ``T``."""
    Y = g["Y"]
    lo = xp.minimum(xp.log1p(g["h_rel"] * (2.0 ** panel - 1.0)), Y)
    hi = xp.where(panel >= N_PANELS - 1, Y, xp.minimum(xp.log1p(g["h_rel"] * (2.0 ** (panel + 1.0) - 1.0)), Y))
    return lo, hi


def _psi(xp, g, y):
    """``ψ(y) = (1 − p_c) y − p_C (y + ln(1 + ζ e^−y))``: the log-integrand in ``y`` without ``(c+t_x)^−k``."""
    return (1.0 - g["p_small"]) * y - g["p_big"] * (y + xp.log1p(g["zeta"] * xp.exp(-y)))


def log_integral(xp, r, alpha, s, beta, x, tx, T):
    """``ln ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ`` by composite Gauss-Legendre quadrature.

    Works for ``numpy`` (``xp=np``; then the nodes are looped over with a running log-sum-exp, so
    that draws x customers x nodes is never held in memory) and for ``pytensor.tensor`` (``xp=pt``;
    panels and nodes are two trailing axes). The result is ``−inf`` where ``T == t_x`` (to 1e-12).
    """
    # an interval shorter than ~1e-12 of T adds less than double precision resolves (relative
    # ~ s (T − t_x)/(β+T)) and, rounded to zero width in y, would make the gradient NaN
    equal = T - tx <= 1e-12 * (T + 1.0)
    T_safe = xp.where(equal, tx + 1.0, T)        # keeps the unused branch (and its gradient) finite
    g = _integral_geometry(xp, r, alpha, s, beta, x, tx, T_safe)
    if xp is np:
        top, total = -np.inf, 0.0
        for j in range(N_PANELS):
            lo, hi = _panel_edges(np, g, float(j))
            for u, w in zip(_POS, _WEIGHT):
                psi = _psi(np, g, lo + u * (hi - lo))
                new_top = np.maximum(top, psi)
                total = total * np.exp(top - new_top) + w * (hi - lo) * np.exp(psi - new_top)
                top = new_top
    else:
        gp = {k: pt.shape_padright(v, 2) if getattr(v, "ndim", 0) else v for k, v in g.items()}
        lo, hi = _panel_edges(pt, gp, pt.constant(np.arange(N_PANELS, dtype=float)[:, None]))
        psi = _psi(pt, gp, lo + pt.constant(_POS) * (hi - lo))          # (..., panel, node)
        top = pt.max(psi, axis=(-2, -1))
        total = (pt.constant(_WEIGHT) * (hi - lo) * pt.exp(psi - pt.shape_padright(top, 2))).sum(axis=(-2, -1))
    value = -g["k"] * xp.log(g["c"] + tx) + top + xp.log(total)
    return xp.where(equal, -np.inf, value)


def _log_terms(xp, params, x, tx, T):
    """ln of the two bracket terms of the likelihood: alive at ``T``, and died in ``(t_x, T)`` (times s)."""
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    log_alive = -(r + x) * xp.log(alpha + T) - s * xp.log(beta + T)
    log_dead = xp.log(s) + log_integral(xp, r, alpha, s, beta, x, tx, T)
    return log_alive, log_dead


# ---------------------------------------------------------------------------- likelihood
def log_likelihood(params: dict, data: dict):
    """Per-customer log-likelihood (Fader & Hardie 2005 note, eq. 19), in log space.

    ``ln L = lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[(α+T)^−(r+x) (β+T)^−s + s I]`` with ``I`` by
    :func:`log_integral` and the bracket by log-sum-exp.
    """
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    x, tx, T = data["frequency"], data["recency"], data["T"]
    log_alive, log_dead = _log_terms(pt, params, x, tx, T)
    return (pt.gammaln(r + x) - pt.gammaln(r) + r * pt.log(alpha) + s * pt.log(beta)
            + pt.logaddexp(log_alive, log_dead))


# ---------------------------------------------------------------------------- predictions
def probability_alive(params, frequency, recency, T):
    """P(alive at T | x, t_x, T) = (α+T)^−(r+x) (β+T)^−s / [(α+T)^−(r+x) (β+T)^−s + s I]
    (Fader & Hardie 2005 note, eq. 24), in log space."""
    log_alive, log_dead = _log_terms(np, params, frequency, recency, T)
    return np.exp(log_alive - np.logaddexp(log_alive, log_dead))


def _lifetime_factor(s, u):
    """``[1 − (1+u)^−(s−1)] / (s−1)``, and its limit ``ln(1+u)`` at ``s = 1``."""
    L = np.log1p(u)
    z = (s - 1.0) * L
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.abs(z) < 1e-8, 1.0 - z / 2.0, -np.expm1(-z) / np.where(z == 0, 1.0, z))
    return L * ratio


def expected_new(r, alpha, s, beta, t):
    """E[X(t)] for a new customer: ``r β / (α (s−1)) [1 − (β/(β+t))^(s−1)]`` (Fader & Hardie 2005
    note, eq. 17; its limit ``(r β/α) ln(1 + t/β)`` at ``s = 1``)."""
    return r / alpha * beta * _lifetime_factor(s, t / beta)


def expected_purchases(params, frequency, recency, T, *, t):
    """E[Y(t) | x, t_x, T] = (r+x)(β+T) / ((α+T)(s−1)) [1 − ((β+T)/(β+T+t))^(s−1)] P(alive)
    (Fader & Hardie 2005 note, eq. 27)."""
    return probability_alive(params, frequency, recency, T) * future_purchases_alive(params, frequency, T, t=t)


def future_purchases_alive(params, frequency, T, *, t):
    """E[Y(t)] of a customer alive at ``T`` with ``x`` purchases: the new-customer expectation at
    ``(r+x, α+T, s, β+T)`` (eq. 27 without ``P(alive)``)."""
    x = frequency
    return expected_new(params["r"] + x, params["alpha"] + T, params["s"], params["beta"] + T, t)


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] for a customer just acquired (Fader & Hardie 2005 note, eq. 17)."""
    return expected_new(params["r"], params["alpha"], params["s"], params["beta"], t)


#: Doubling panels on each side of the mode of :func:`probability_new`'s integrand (in ln τ).
_PMF_PANELS = 12


def _log_sigmoid(v):
    return -np.logaddexp(0.0, -v)


def probability_new(r, alpha, s, beta, t, n):
    """P(X(t) = n) for a new customer (Fader & Hardie 2006 note "Deriving an expression for
    P(X(t) = x) under the Pareto/NBD model"), before integrating over the death time:

    ``NB(n; r, α/(α+t)) (β/(β+t))^s + ∫_0^t s β^s (β+τ)^−(s+1) NB(n; r, α/(α+τ)) dτ``,

    the purchases of a customer alive throughout ``(0, t]`` plus those of one who died at ``τ``
    (``NB`` the negative binomial pmf of the gamma-Poisson count).

    The integral is taken in ``w = ln τ``, where the log-integrand
    ``ψ(w) = (n+1) w − (r+n) ln(α+e^w) − (s+1) ln(β+e^w)`` (plus a constant) is strictly concave:
    its mode ``w*`` is found by bisection on the decreasing ``ψ'``, and Gauss-Legendre panels of
    doubling widths ``σ, 2σ, 4σ, ...`` (``σ = 1/√−ψ''``) run from ``min(w*, ln t)`` to both sides,
    the right ones clipped at ``ln t``. Concavity bounds the fall of the integrand over each panel,
    so the rule keeps its accuracy (~1e-8 relative against mpmath where the probability is not
    negligible, i.e. above ~1e-100) for large ``r+x``, large ``n``
    and long horizons. Everything is evaluated in log space; ``n`` may be an array.
    """
    n = np.asarray(n, dtype=float)
    r, alpha, s, beta, t, n = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r, alpha, s, beta, t, n)))
    la, lb = np.log(alpha), np.log(beta)
    log_nb_const = gammaln(r + n) - gammaln(r) - gammaln(n + 1.0)
    with np.errstate(divide="ignore"):
        lt = np.log(t)
        log_alive = (log_nb_const + r * (la - np.log(alpha + t)) + xlogy(n, t) - n * np.log(alpha + t)
                     + s * (lb - np.log(beta + t)))
    alive = np.exp(log_alive)

    def dpsi(w):
        return (n + 1.0) - (r + n) * np.exp(_log_sigmoid(w - la)) - (s + 1.0) * np.exp(_log_sigmoid(w - lb))

    def psi(w):
        return (n + 1.0) * w - (r + n) * np.logaddexp(la, w) - (s + 1.0) * np.logaddexp(lb, w)

    # bracket of the mode: ψ'(lo) >= (n+1)/2 > 0 and ψ'(hi) <= −(r+s)/2 < 0
    total_rate = r + n + s + 1.0
    lo = np.minimum(la, lb) + np.log(0.5 * (n + 1.0) / total_rate)
    hi = np.maximum(la, lb) + np.log(2.0 * total_rate / (r + s))
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        up = dpsi(mid) > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    with np.errstate(invalid="ignore"):
        center = np.minimum(0.5 * (lo + hi), lt)
        sa, sb = np.exp(_log_sigmoid(center - la)), np.exp(_log_sigmoid(center - lb))
        curvature = (r + n) * sa * (1.0 - sa) + (s + 1.0) * sb * (1.0 - sb)
        slope = np.abs(dpsi(center))
        sigma = np.minimum(1.0 / np.sqrt(np.maximum(curvature, 1e-300)), 1.0 / np.maximum(slope, 1e-300))
        sigma = np.where(np.isfinite(sigma), np.minimum(sigma, 10.0), 10.0)
    log_const = np.log(s) + s * lb + log_nb_const + r * la
    xs, ws = np.polynomial.legendre.leggauss(N_NODES)
    top, total = -np.inf, 0.0
    for j in range(_PMF_PANELS):
        inner, outer = sigma * (2.0 ** j - 1.0), sigma * (2.0 ** (j + 1) - 1.0)
        left = (center - outer, center - inner)
        right = (np.minimum(center + inner, lt), np.minimum(center + outer, lt))
        for a_, b_ in (left, right):
            width = b_ - a_
            for xi, wi in zip(xs, ws):
                w = a_ + (xi + 1.0) / 2.0 * width
                val = psi(w)
                new_top = np.maximum(top, val)
                total = total * np.exp(top - new_top) + wi / 2.0 * width * np.exp(val - new_top)
                top = new_top
    with np.errstate(divide="ignore"):
        dead = np.where(t > 0, np.exp(log_const + top + np.log(total)), 0.0)
    return alive + dead


def probability_of_n_purchases(params, frequency, recency, T, *, t, n):
    """P(Y(t) = n | x, t_x, T): alive customers follow the new-customer law at ``(r+x, α+T, s, β+T)``."""
    x = frequency
    alive = probability_alive(params, frequency, recency, T)
    p_alive = probability_new(params["r"] + x, params["alpha"] + T, params["s"], params["beta"] + T, t, n)
    return alive * p_alive + (1.0 - alive) * (np.asarray(n) == 0)


def probability_of_n_purchases_new_customer(params, *, t, n):
    """P(X(t) = n) for a customer just acquired."""
    return probability_new(params["r"], params["alpha"], params["s"], params["beta"], t, n)


def purchase_pmf(params, frequency, recency, T, *, t, n_max):
    """Predictive pmf ``P(Y(t) = k | x, t_x, T)`` for ``k = 0 .. n_max−1`` and the tail
    ``P(Y(t) ≥ n_max)`` (one minus the rest), stacked on a new last axis of length ``n_max + 1``."""
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    x = np.asarray(frequency, dtype=float)
    r, alpha, s, beta, alive = np.broadcast_arrays(params["r"] + x, params["alpha"] + T, params["s"],
                                                   params["beta"] + T,
                                                   probability_alive(params, frequency, recency, T))
    r, alpha, s, beta, alive = (v[..., None] for v in (r, alpha, s, beta, alive))
    p_alive = probability_new(r, alpha, s, beta, t, np.arange(int(n_max), dtype=float))
    tail = np.clip(1.0 - p_alive.sum(axis=-1, keepdims=True), 0.0, 1.0)
    pmf = alive * np.concatenate([p_alive, tail], axis=-1)
    pmf[..., 0] += 1.0 - alive[..., 0]
    return pmf


def simulate_purchases(params, frequency, recency, T, *, t, rng):
    """One draw of each customer's repeat purchases in ``(T, T+t]`` from her individual-level
    posterior: alive with probability P(alive), then ``λ ~ Gamma(r+x, rate α+T)``,
    ``μ ~ Gamma(s, rate β+T)``, a remaining lifetime ``τ ~ Exponential(μ)`` and
    ``Poisson(λ min(t, τ))`` purchases."""
    x = np.asarray(frequency, dtype=float)
    r, alpha, s, beta, alive = np.broadcast_arrays(params["r"] + x, params["alpha"] + T, params["s"],
                                                   params["beta"] + T,
                                                   probability_alive(params, frequency, recency, T))
    is_alive = rng.random(alive.shape) < alive
    lam = rng.gamma(r, 1.0 / alpha)
    mu = rng.gamma(s, 1.0 / beta)
    tau = rng.exponential(1.0 / np.maximum(mu, 1e-300))
    return np.where(is_alive, rng.poisson(lam * np.minimum(t, tau)), 0)


# ---------------------------------------------------------------------------- Bayesian parametrisation
def _params_from_sampled(q: dict) -> dict:
    """``(r, α, s, β)`` from the sampled ``r``, ``s`` and mean times ``α/r``, ``β/s``."""
    return {"r": q["r"], "alpha": q["r"] * q["purchase_interval"], "s": q["s"], "beta": q["s"] * q["lifetime"]}


def _sampled_from_params(p: dict) -> dict:
    return {"r": p["r"], "purchase_interval": p["alpha"] / p["r"], "s": p["s"], "lifetime": p["beta"] / p["s"]}


#: What the Bayesian fits sample: the shapes ``r`` and ``s`` and the time between purchases and the
#: lifetime at the mean rates, ``α/r = 1/E[λ]`` and ``β/s = 1/E[μ]``. The data identify the mean rates
#: well; along the ridge of near-equal likelihood (on CDNOW the profile log-likelihood falls only 5.3
#: from the MLE's ``s = 0.61`` to ``s → ∞``, the homogeneous limit) ``s`` and ``β`` move together
#: (corr(ln s, ln β) ~ 0.98 on small logs) with ``β/s`` nearly fixed. Priors:
#:
#: * ``r``, ``s``: LogNormal(0, 1), i.e. the rates' coefficient of variation ``1/√r`` is within a
#:   factor ~7 of 1 with 95% probability. The flat tail of the likelihood towards ``s → ∞`` makes any
#:   proper prior decide how far a posterior runs along it; the old HalfNormal(5) priors (mean 4)
#:   pulled ``s`` there: on CDNOW posterior means of ``s`` 1.9 and ``β`` 60 against the MLE's 0.61 and
#:   11.7. This prior is centred on moderate heterogeneity and falls off on the log scale both ways.
#: * ``α/r``, ``β/s``: HalfCauchy with scale the mean customer age ``T``; its density is symmetric in
#:   ``ln(x/T)`` with exponential tails (``1/(2 cosh ln(x/T))``), so weak on the log scale and free
#:   of the time unit.
#:
#: Measured on CDNOW, NUTS 4 x 1,000 (``benchmarks/bench_bayes.py --parts pnbd``): posterior means
#: r −0.8%, α +0.0%, s +29%, β +57% from the MLE, at most 0.85 of the MLE's log-scale standard
#: errors; with the old parametrisation and priors s 1.81 and β 57 (3.5 standard errors off), 26
#: divergences, min bulk ESS 708 against 1,768 now, 5.6 leapfrog steps per draw against 4.4. What
#: remains is the ridge: the posterior mean of a log-normal-like ``β`` sits above its mode.
BAYES_PARAMETRISATION = Reparametrisation(
    priors={"r": ("LogNormal", {"mu": 0.0, "sigma": 1.0}),
            "purchase_interval": ("HalfCauchy", {"beta": 1.0}, {"beta": "T"}),
            "s": ("LogNormal", {"mu": 0.0, "sigma": 1.0}),
            "lifetime": ("HalfCauchy", {"beta": 1.0}, {"beta": "T"})},
    to_params=_params_from_sampled, from_params=_sampled_from_params)


# ---------------------------------------------------------------------------- estimator
class ParetoNBDModel(ContinuousPurchaseModel):
    """Pareto/NBD purchase and lifetime model (Schmittlein, Morrison & Colombo 1987).

    Parameters
    ----------
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`. The Bayesian fits sample ``r``, ``s``,
        ``purchase_interval = α/r`` and ``lifetime = β/s`` (:data:`BAYES_PARAMETRISATION`);
        ``priors=`` may replace their priors, or give priors of ``alpha``/``beta`` to sample the
        parameters themselves under :attr:`default_priors`.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``r``, ``alpha``, ``s``, ``beta``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_

    Examples
    --------
    >>> model = ParetoNBDModel().fit(rfm)              # doctest: +SKIP
    >>> model.expected_purchases(t=52)                 # doctest: +SKIP
    """

    display_name = "Pareto/NBD"
    short_names = ("pnbd", "paretonbd")
    param_names = ("r", "alpha", "s", "beta")
    default_priors = {
        "r": ("HalfNormal", {"sigma": 5.0}),
        "alpha": ("HalfNormal", {"sigma": 5.0}, {"sigma": "T"}),   # times: 5 x the mean age
        "s": ("HalfNormal", {"sigma": 5.0}),
        "beta": ("HalfNormal", {"sigma": 5.0}, {"sigma": "T"}),
    }
    bayes_parametrisation = BAYES_PARAMETRISATION
    log_likelihood = staticmethod(log_likelihood)
    #: The formulas of the purchase-model protocol (see :mod:`.purchase`).
    expected_purchases_formula = staticmethod(expected_purchases)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    probability_of_n_purchases_formula = staticmethod(probability_of_n_purchases)
    new_customer_formula = staticmethod(expected_purchases_new_customer)
    purchase_pmf_formula = staticmethod(purchase_pmf)
    simulate_purchases_formula = staticmethod(simulate_purchases)

    def initial_params(self, data, weights):
        rate = self.purchase_rate(data, weights)
        T = np.average(data["T"], weights=weights)
        return np.array([1.0, 1.0 / rate, 1.0, max(T, 1e-6)])
