"""Pareto/NBD: Poisson purchases and exponential lifetimes (Schmittlein, Morrison & Colombo 1987).

While alive a customer buys as a Poisson process of rate ``λ ~ Gamma(r, rate α)``; her lifetime
is exponential with rate ``μ ~ Gamma(s, rate β)``, independent of ``λ``.

The likelihood (Fader & Hardie 2005, "A note on deriving the Pareto/NBD model and related
expressions", eq. 19-22) is

``L = Γ(r+x) α^r β^s / Γ(r) · [(α+T)^−(r+x) (β+T)^−s + s I]``,
``I = ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ``

(the second term integrates out ``λ`` and ``μ`` for a customer who died at ``τ`` between her last
purchase and ``T``). ``I`` is computed by :mod:`.pnbd_integral` (composite Gauss-Legendre
quadrature in log space, one compiled kernel with its exact gradient).

The likelihood, written once against a namespace ``xp`` (:mod:`.namespaces`), is that of the MLE
(dual numbers: values and exact gradients) and of the Bayesian fits (PyTensor, the integral a
compiled ``Op``), and the numpy ``P(alive)`` of the predictions.

A customer alive at ``T`` behaves from ``T`` on like a new customer with ``(r+x, α+T, s, β+T)``
(the posterior of ``λ`` and ``μ`` given survival factorises), so the conditional predictions are
``P(alive) ×`` the new-customer formulas at the updated parameters.

The predictive pmf (:func:`alive_pmf`) is a three-term recursion in the count over the
incomplete-beta form of the "died at ``τ``" term (Fader & Hardie 2006 note on ``P(X(t) = x)``),
run backwards once per (draw, distinct ``(x, T)``) for all counts at once, without special
functions; the quadrature :func:`probability_new_quadrature` remains as its fallback where the
recursion is unstable (``α ≫ β`` with windows longer than ``β``) and as the tests' oracle.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, hyp2f1, xlogy

from ..errors import ClvDataError
from .bayes import Reparametrisation
from .draws import CHUNK_ELEMENTS
from .namespaces import NUMPY, as_namespace, likelihood
from .pnbd_integral import log_integral
from .pnbd_timevarying import ParetoTimeVarying
from .quadrature import N_NODES, gauss_legendre
from .purchase import (ContinuousPurchaseModel, alive_times_future, mixture_pmf, next_purchase_before_dropout,
                       per_distinct_draw, period_boundaries, scatter, split_over_lifetime)
from .rows import per_distinct_pair


# ---------------------------------------------------------------------------- the two terms
def _log_terms(xp, params, x, tx, T):
    """ln of the two bracket terms of the likelihood: alive at ``T``, and died in ``(t_x, T)`` (times s)."""
    xp = as_namespace(xp)
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    log_dead = xp.log(s) + log_integral(xp, r, alpha, s, beta, x, tx, T)
    return log_alive_term(xp, params, x, T, T), log_dead


def log_alive_term(xp, params, x, purchase_time, lifetime_time):
    """``−(r+x) ln(α + A) − s ln(β + C)``: the "alive at ``T``" term, ``A`` and ``C`` the purchase and
    lifetime clocks at ``T`` (both ``T`` without time-varying covariates, :mod:`.pnbd_timevarying`)."""
    return -(params["r"] + x) * xp.log(params["alpha"] + purchase_time) - params["s"] * xp.log(params["beta"] + lifetime_time)


def log_likelihood_of_terms(params, x, log_alive, log_dead, xp):
    """``lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[e^log_alive + e^log_dead]`` (Fader & Hardie 2005
    note, eq. 19; the bracket's terms from :func:`_log_terms`, or with time-varying covariates
    Bachmann, Meierer & Näf 2021's, :mod:`.pnbd_timevarying`)."""
    r, alpha, s, beta = params["r"], params["alpha"], params["s"], params["beta"]
    return (xp.gammaln(r + x) - xp.gammaln(r) + r * xp.log(alpha) + s * xp.log(beta)
            + xp.logaddexp(log_alive, log_dead))


# ---------------------------------------------------------------------------- likelihood
@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Per-customer log-likelihood (Fader & Hardie 2005 note, eq. 19), in log space, in the namespace
    ``xp`` (:mod:`.namespaces`).

    ``ln L = lnΓ(r+x) − lnΓ(r) + r ln α + s ln β + ln[(α+T)^−(r+x) (β+T)^−s + s I]`` with ``I`` by
    :func:`log_integral` and the bracket by log-sum-exp.
    """
    x, tx, T = data["frequency"], data["recency"], data["T"]
    log_alive, log_dead = _log_terms(xp, params, x, tx, T)
    return log_likelihood_of_terms(params, x, log_alive, log_dead, xp)


# ---------------------------------------------------------------------------- predictions
def probability_alive(params, frequency, recency, T):
    """P(alive at T | x, t_x, T) = (α+T)^−(r+x) (β+T)^−s / [(α+T)^−(r+x) (β+T)^−s + s I]
    (Fader & Hardie 2005 note, eq. 24), in log space."""
    log_alive, log_dead = _log_terms(NUMPY, params, frequency, recency, T)
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
    return alive_times_future(probability_alive, future_purchases_alive, params, frequency, recency, T, t=t)


def future_purchases_alive(params, frequency, T, *, t):
    """E[Y(t)] of a customer alive at ``T`` with ``x`` purchases: the new-customer expectation at
    ``(r+x, α+T, s, β+T)`` (eq. 27 without ``P(alive)``)."""
    x = frequency
    return expected_new(params["r"] + x, params["alpha"] + T, params["s"], params["beta"] + T, t)


def survival(params, frequency, T, *, t):
    """P(alive at ``T+t`` | alive at ``T``) = ``((β+T)/(β+T+t))^s``: the exponential lifetime's
    survival averaged over ``μ ~ Gamma(s, β+T)``, the posterior of an alive customer (purchases do
    not change it)."""
    return np.exp(-params["s"] * np.log1p(np.asarray(t, dtype=float) / (params["beta"] + T)))


def next_purchase_time(params, frequency, recency, T):
    """``E[τ | τ < ∞, x, t_x, T]``, the expected time from ``T`` to the next purchase given that she
    makes one (before her lifetime ends). She must be alive at ``T``, with independent
    ``λ ~ Gamma(p, A)``, ``μ ~ Gamma(s, B)`` (``p = r+x``, ``A = α+T``, ``B = β+T``); given them the
    next purchase comes before death with probability ``λ/(λ+μ)`` and ``E[τ 1{τ<∞}] = λ/(λ+μ)²``.
    Writing ``1/(λ+μ)^n`` as ``∫ u^{n−1} e^{−(λ+μ)u} du/(n−1)!`` and averaging over the two gammas
    gives Euler integrals, so with ``c = p+s+1`` and ``w = 1 − A/B``

    ``E[λ/(λ+μ)] = p/(p+s) 2F1(s, 1; c; w)``, ``E[λ/(λ+μ)²] = p A/((p+s−1)(p+s)) 2F1(s, 2; c; w)``,

    and their ratio ``A/(p+s−1) 2F1(s, 2; c; w)/2F1(s, 1; c; w)`` (``inf`` for ``p+s <= 1``). For
    ``w < 0`` both ``2F1`` are taken after Pfaff's transformation in their second parameter,
    ``2F1(s, b; c; w) = (1−w)^{−b} 2F1(p+1, b; c; u)`` with ``u = w/(w−1) = 1 − B/A`` in ``(0, 1)``:
    the ratio is ``(B/A) 2F1(p+1, 2; c; u)/2F1(p+1, 1; c; u)``, whose series converge at ``u → 1``
    for a large ``s`` (the other transformation's would overflow). At ``s → 0`` (no drop-out) it is
    the Lomax mean ``A/(p−1)``, an upper bound; where scipy's ``2F1`` fails (parameters in the
    hundreds) the two integrals are evaluated by quadrature (:func:`_next_purchase_quadrature`)."""
    p, s, A, B = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (
        params["r"] + np.asarray(frequency, dtype=float), params["s"], params["alpha"] + T, params["beta"] + T)))
    c = p + s + 1.0
    w = 1.0 - A / B
    direct = w >= 0
    u = np.where(direct, w, 1.0 - B / A)
    with np.errstate(all="ignore"):
        ratio = np.where(direct, hyp2f1(s, 2.0, c, u) / hyp2f1(s, 1.0, c, u),
                         B / A * hyp2f1(p + 1.0, 2.0, c, u) / hyp2f1(p + 1.0, 1.0, c, u))
        out = A / (p + s - 1.0) * ratio
        # scipy's 2F1 fails for large parameters (s or r+x in the hundreds): a value that is not finite,
        # not positive or above the Lomax mean A/(p−1) of a customer who never dies is recomputed
        bad = ~(np.isfinite(out) & (out > 0) & ((p <= 1.0) | (out <= A / (p - 1.0) * (1.0 + 1e-9))))
    finite = p + s > 1.0
    redo = bad & finite
    if redo.any():
        out = np.array(out)
        out[redo] = _next_purchase_quadrature(p[redo], A[redo], s[redo], B[redo])
    return np.where(finite, out, np.inf)


def _next_purchase_quadrature(p, A, s, B):
    """:func:`next_purchase_time` by quadrature (:func:`~.purchase.next_purchase_before_dropout`): the
    survival ``(1+u/B)^−s`` is ``e^{−sv} (1 + (z−1)(1−e^{−v}))^{−s}`` in ``v = ln(1 + u/A)``
    (``z = A/B``), whose hazard ``s z/(z + (1−z) e^{−v})`` turns from ``s z`` to ``s`` around
    ``v_1 = ln(1 + 1/z)`` (a knee when ``s`` is large): pieces ``[0, v_1]``, ``[v_1, max(v_1, 1)]``
    and a tail of ``80/(p+s−1)``. ~1e-6 relative against 30-digit mpmath where scipy's ``2F1``
    fails (``tests/test_next_purchase.py``)."""
    z = A / B
    Z, S = z[:, None, None], s[:, None, None]

    def log_survival(v):
        return -S * v - S * np.log1p(-(Z - 1.0) * np.expm1(-v))

    def hazard(v):
        return s * z / (z + (1.0 - z) * np.exp(-v))

    v1 = np.log1p(1.0 / z)
    v2 = np.maximum(v1, 1.0)
    return next_purchase_before_dropout(p, A, log_survival, hazard,
                                        (v1, v2, v2 + 80.0 / np.maximum(p + s - 1.0, 1e-3)))


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] for a customer just acquired (Fader & Hardie 2005 note, eq. 17)."""
    return expected_new(params["r"], params["alpha"], params["s"], params["beta"], t)


#: Doubling panels on each side of the mode of :func:`probability_new_quadrature`'s integrand (in ln τ).
_PMF_PANELS = 12


def _log_sigmoid(v):
    return -np.logaddexp(0.0, -v)


def probability_new_quadrature(r, alpha, s, beta, t, n):
    """P(X(t) = n) for a new customer by quadrature over the death time: the fallback of
    :func:`alive_pmf` where its recursion is unstable, and the tests' oracle (Fader & Hardie 2006
    note "Deriving an expression for P(X(t) = x) under the Pareto/NBD model"):

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
    xs, ws = gauss_legendre(N_NODES)
    top, total = -np.inf, 0.0
    for j in range(_PMF_PANELS):
        inner, outer = sigma * (2.0 ** j - 1.0), sigma * (2.0 ** (j + 1) - 1.0)
        left = (center - outer, center - inner)
        right = (np.minimum(center + inner, lt), np.minimum(center + outer, lt))
        for a_, b_ in (left, right):
            width = b_ - a_
            for xi, wi in zip(xs, ws):
                w = a_ + xi * width
                val = psi(w)
                new_top = np.maximum(top, val)
                total = total * np.exp(top - new_top) + wi * width * np.exp(val - new_top)
                top = new_top
    with np.errstate(divide="ignore"):
        dead = np.where(t > 0, np.exp(log_const + top + np.log(total)), 0.0)
    return alive + dead


#: The backward recursion of :func:`alive_pmf` starts where the negative binomial bound on the
#: mass it neglects falls below ``exp(_LOG_NEGLECT)`` (about 1e-16).
_LOG_NEGLECT = -37.0
#: An element whose recursed pmf does not sum to one within this is recomputed by quadrature.
_SUM_TOLERANCE = 1e-10
#: Largest ``|κ| q`` (the factor by which the recursion's starting error shrinks per step, see
#: :func:`alive_pmf`) at which the recursion is used; beyond it the quadrature is.
_MAX_DECAY = 0.9


def _recursion_start(r, s, log_q, log_1mq, log_decay, n_max):
    """Where the backward recursion of :func:`alive_pmf` starts, per element: ``N ≥ n_max −
    _LOG_NEGLECT / ln(|κ| q)`` (its starting error, shrinking by ``|κ| q`` per step, is then
    negligible below ``n_max``) and beyond which the Chernoff bound ``P(N_R ≥ n) ≤ exp(R ln((1−q)(n+R)/R) + n ln(q (n+R)/n))`` of a negative binomial
    ``N_R ~ NB(R, q)`` with ``R = max(r, s+1)`` is below ``exp(_LOG_NEGLECT)``. The purchases of a customer
    alive at the start of the window are stochastically smaller than ``NB(r, q)`` (she may die), and
    beyond ``R q/(1−q)`` the recursion's homogeneous solutions decay relative to the pmf (see there)."""
    R = np.maximum(r, s + 1.0)

    def bound(n):
        return R * (log_1mq + np.log((n + R) / R)) + n * (log_q + np.log1p(R / n))

    mean = R * np.exp(log_q - log_1mq)
    lo = np.maximum(mean, 1.0)
    hi = lo + 1.0
    for _ in range(200):                      # doubling: the bound falls like n ln q beyond the mean
        over = bound(hi) > _LOG_NEGLECT
        if not over.any():
            break
        hi = np.where(over, lo + 2.0 * (hi - lo), hi)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        over = bound(mid) > _LOG_NEGLECT
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    spread = np.ceil(_LOG_NEGLECT / np.minimum(log_decay, -1e-3))
    return np.maximum(n_max + spread, np.ceil(hi) + 2.0)


def alive_pmf(r, alpha, s, beta, t: float, n_max: int) -> np.ndarray:
    """P(X(t) = n) for ``n = 0 .. n_max−1`` and ``P(X(t) ≥ n_max)`` of a customer alive at the start of
    the window, with (updated) parameters ``(r, α, s, β)``: shape ``broadcast(r, α, s, β) + (n_max+1,)``.

    Fader & Hardie 2006 note ("Deriving an expression for P(X(t) = x) under the Pareto/NBD model")
    start from the pmf as the customer alive throughout ``(0, t]`` plus one who died at ``τ`` (before
    turning the integral into their ``2F1`` closed form and finite sum, which cancel catastrophically
    for large ``x`` and ``t``):

    ``P(X(t) = n) = A_n + ∫_0^t s β^s (β+τ)^−(s+1) NB(n; r, α/(α+τ)) dτ``,
    ``A_n = NB(n; r, α/(α+t)) (β/(β+t))^s``.

    In ``z = τ/(α+τ)`` the death term is ``D_n = s (α/β) d_n``, ``d_n = C_n ∫_0^q z^n (1−z)^(r+s−1)
    (1−κz)^−(s+1) dz`` with ``C_n = Γ(r+n)/(Γ(r) n!)``, ``q = t/(α+t)`` and ``κ = 1 − α/β``. Integrating
    ``d/dz [z^n (1−z)^(r+s) (1−κz)^−s]`` over ``(0, q)`` gives the three-term recursion in the count

    ``(r+n−1) d_{n−1} = (n(1+κ) + r + s α/β) d_n − κ (n+1) d_{n+1} + A_n``,   ``n ≥ 1``,

    run backwards (:func:`_recurse`, on ``d_n / A_n``: no special function per step, rescaled where
    it would overflow, so ``x`` or ``n`` in the thousands are fine) from an ``N`` beyond which the
    neglected mass is below ~1e-16 (:func:`_recursion_start`), with ``d_{N+1} = d_{N+2} = 0``. Its homogeneous solutions grow backwards like
    ``n^−(s+1)`` and ``κ^n`` against the pmf's ``q^−n``, so the starting error shrinks by ``|κ| q`` per
    step (and, beyond the bulk, by ``q (1 + (s+1)/n)``): it decays whenever ``|κ| q < 1``, always
    when ``α ≤ β`` (``κ ≥ 0``) and for ``α > β`` unless the window ``t`` exceeds ``β`` and
    ``α > 2tβ/(t−β)``. Elements with ``|κ| q`` above :data:`_MAX_DECAY`, and any whose pmf does not sum to one within
    :data:`_SUM_TOLERANCE`, are computed by the quadrature :func:`probability_new_quadrature`
    instead (a documented fallback, also the tests' oracle). The tail is the sum of the pmf from
    ``n_max`` to ``N`` (positive terms: no cancellation). Cost: ``O(N)`` per element for all counts.
    """
    n_max = int(n_max)
    r, alpha, s, beta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r, alpha, s, beta)))
    shape = r.shape
    r, alpha, s, beta = (v.ravel() for v in (r, alpha, s, beta))
    out = np.zeros((r.size, n_max + 1))
    if t <= 0:
        out[:, 0] = 1.0
        return out.reshape(shape + (n_max + 1,))
    log_q = np.log(t) - np.log(alpha + t)
    log_1mq = np.log(alpha) - np.log(alpha + t)
    with np.errstate(divide="ignore"):
        log_decay = np.log(np.abs(beta - alpha) / beta) + log_q
    bad = log_decay > np.log(_MAX_DECAY)
    start = _recursion_start(r, s, log_q, log_1mq, log_decay, n_max)
    # elements grouped by where their recursion starts (within 25%), in chunks of bounded memory
    bucket = np.where(bad, -1, np.ceil(np.log(start) / np.log(1.25)))
    for b in np.unique(bucket[~bad]):
        members = np.flatnonzero(bucket == b)
        N = int(start[members].max())
        size = max(1, CHUNK_ELEMENTS // (N + 2))
        for i in range(0, len(members), size):
            idx = members[i:i + size]
            out[idx], failed = _recurse(r[idx], alpha[idx], s[idx], beta[idx], log_q[idx], log_1mq[idx], t, N, n_max)
            bad[idx[failed]] = True
    if bad.any():
        counts = np.arange(n_max, dtype=float)
        exact = probability_new_quadrature(r[bad, None], alpha[bad, None], s[bad, None], beta[bad, None], t, counts)
        out[bad, :n_max] = exact
        out[bad, n_max] = np.clip(1.0 - exact.sum(axis=1), 0.0, 1.0)
    return out.reshape(shape + (n_max + 1,))


def _recurse(r, alpha, s, beta, log_q, log_1mq, t, N, n_max):
    """The backward recursion of :func:`alive_pmf` from ``N`` for flat parameter arrays: the table
    ``(n, n_max + 1)`` and which elements failed its check.

    It runs on ``w_n = d_n / A_n`` (the death term relative to the alive-throughout term), for which
    the recursion has no special function at all: dividing it by ``A_{n−1}`` and using
    ``A_n / A_{n−1} = (r+n−1) q/n``,

    ``w_{n−1} = q/n · [(n(1+κ) + r + s α/β) w_n − κ q (r+n) w_{n+1} + 1]``,

    with ``w`` rescaled (a per-element log scale) where it would overflow. ``ln A_n`` are cumulative
    sums of ``ln((r+j) q/(j+1))`` as for BG/NBD, and the pmf is ``A_n (1 + s (α/β) w_n)``, in logs.
    """
    q = np.exp(log_q)
    kappa = (beta - alpha) / beta
    s_rho = s * alpha / beta
    j = np.arange(N + 1, dtype=float)[:, None]
    log_a = np.empty((N + 2, r.size))
    log_a[0] = r * log_1mq + s * (np.log(beta) - np.log(beta + t))
    np.cumsum(np.log(r + j) - np.log1p(j) + log_q, axis=0, out=log_a[1:])
    log_a[1:] += log_a[0]
    w = np.empty((N + 1, r.size))
    scale = np.zeros((N + 1, r.size))          # ln of the factor w has been divided by
    w1, w2 = np.zeros(r.size), np.zeros(r.size)  # w_n, w_{n+1} (scaled)
    S, inject = np.zeros(r.size), np.ones(r.size)
    one_k, kq, base = 1.0 + kappa, kappa * q, r + s_rho
    for n in range(N + 1, 0, -1):
        w0 = (q / n) * ((n * one_k + base) * w1 - kq * (r + n) * w2 + inject)
        if w0.max() > 1e200:                   # rescale the large ones
            big = w0 > 1e100
            f = np.where(big, w0, 1.0)
            w0, w1 = w0 / f, w1 / f
            S = S + np.log(f)
            inject = np.exp(-S)
        w[n - 1], scale[n - 1] = w0, S
        w1, w2 = w0, w1
    if scale.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.exp(log_a[:N + 1] + np.logaddexp(0.0, np.log(s_rho * w) + scale))
    else:                                      # w never rescaled (the usual case): no logs needed
        p = np.exp(log_a[:N + 1]) * (1.0 + s_rho * w)
    table = np.empty((r.size, n_max + 1))
    table[:, :n_max] = p[:n_max].T
    table[:, n_max] = p[n_max:].sum(axis=0)
    failed = ~np.isfinite(table).all(axis=1) | (np.abs(p.sum(axis=0) - 1.0) > _SUM_TOLERANCE) | (w < 0).any(axis=0)
    return table, failed


def probability_new(r, alpha, s, beta, t, n):
    """P(X(t) = n) for a new customer with parameters ``(r, α, s, β)`` (Fader & Hardie 2006 note on
    ``P(X(t) = x)``), by the recursion of :func:`alive_pmf`; ``n`` may be an array (broadcast against
    the parameters)."""
    n = np.asarray(n, dtype=float)
    if np.any((n < 0) | (n != np.round(n))):
        raise ClvDataError("n must hold non-negative integers.")
    r, alpha, s, beta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r, alpha, s, beta)))
    table = alive_pmf(r, alpha, s, beta, float(t), int(n.max(initial=0)) + 1)
    shape = np.broadcast_shapes(r.shape, n.shape)
    index = np.broadcast_to(n, shape).astype(np.int64)[..., None]
    return np.take_along_axis(np.broadcast_to(table, shape + table.shape[-1:]), index, axis=-1)[..., 0]


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
    ``P(Y(t) ≥ n_max)``, stacked on a new last axis of length ``n_max + 1``: ``P(alive)`` times the
    law of a customer alive at ``T`` (:func:`alive_pmf` at ``(r+x, α+T, s, β+T)``, evaluated once per
    distinct ``(x, T)`` and draw), plus the dead customers' mass at 0."""
    def future(x, age):
        return future_pmf(params, x, age, t=t, n_max=n_max)

    # the alive customers' law depends on (x, T) only: evaluated once per distinct pair
    return mixture_pmf(probability_alive(params, frequency, recency, T), per_distinct_pair(future, frequency, T, params=params))


def future_pmf(params, frequency, T, *, t, n_max):
    """:func:`purchase_pmf` of a customer alive at ``T``: :func:`alive_pmf` at ``(r+x, α+T, s, β+T)``."""
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    x = np.asarray(frequency, dtype=float)
    return alive_pmf(params["r"] + x, params["alpha"] + T, params["s"], params["beta"] + T, float(t), int(n_max))


def simulate_purchases(params, frequency, recency, T, *, t, rng):
    """One draw of each customer's repeat purchases in ``(T, T+t]`` from her individual-level
    posterior: alive with probability P(alive), then ``λ ~ Gamma(r+x, rate α+T)``,
    ``μ ~ Gamma(s, rate β+T)``, a remaining lifetime ``τ ~ Exponential(μ)`` and
    ``Poisson(λ min(t, τ))`` purchases.

    Per period (boundaries ``t = [t_1, ..., t_H]``): ``Poisson(λ a_i)`` purchases in period ``i``
    with ``a_i`` the time alive in it, drawn as the total ``Poisson(λ min(t_H, τ))`` spread over the
    periods in proportion to ``a_i`` (:func:`~clvmodels.models.purchase.split_over_lifetime`)."""
    bounds, scalar = period_boundaries(t)
    x = np.asarray(frequency, dtype=float)
    r, alpha, s, beta, alive = np.broadcast_arrays(params["r"] + x, params["alpha"] + T, params["s"],
                                                   params["beta"] + T,
                                                   per_distinct_draw(probability_alive, params, frequency, recency, T))
    buys = rng.random(alive.shape) < alive                  # draws only for the customers alive
    at = np.nonzero(buys)                                   # found once, read five times
    lam = rng.gamma(r[at], 1.0 / alpha[at])
    tau = rng.exponential(1.0 / np.maximum(rng.gamma(s[at], 1.0 / beta[at]), 1e-300))
    n = rng.poisson(lam * np.minimum(bounds[-1], tau))
    some = n > 0
    buys[buys] = some
    if scalar:
        return scatter(buys, n[some])
    return scatter(buys, split_over_lifetime(n[some], bounds, tau[some], rng), len(bounds))


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
    #: Covariates (CLVTools): ``α_i = α exp(−γ_trans·z_i)``, ``β_i = β exp(−γ_life·z_i)``: positive coefficients
    #: raise the purchase rate ``r/α_i`` and the drop-out rate ``s/β_i``.
    covariate_links = {"purchase": (("alpha", -1.0),), "dropout": (("beta", -1.0),)}
    covariate_effects = {"alpha": "the mean purchase rate (r/α)", "beta": "the mean drop-out rate (s/β)"}
    log_likelihood = staticmethod(log_likelihood)
    #: Time-varying purchase and drop-out covariates (Bachmann, Meierer & Näf 2021; :mod:`.pnbd_timevarying`).
    time_varying_model = ParetoTimeVarying(log_alive_term, log_likelihood_of_terms, _lifetime_factor, survival)
    #: The formulas of the purchase-model protocol (see :mod:`.purchase`).
    expected_purchases_formula = staticmethod(expected_purchases)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    probability_of_n_purchases_formula = staticmethod(probability_of_n_purchases)
    new_customer_formula = staticmethod(expected_purchases_new_customer)
    survival_formula = staticmethod(survival)
    next_purchase_time_formula = staticmethod(next_purchase_time)
    purchase_pmf_formula = staticmethod(purchase_pmf)
    future_pmf_formula = staticmethod(future_pmf)
    simulate_purchases_formula = staticmethod(simulate_purchases)

    def initial_params(self, data, weights):
        rate = self.purchase_rate(data, weights)
        T = np.average(data["T"], weights=weights)
        return np.array([1.0, 1.0 / rate, 1.0, max(T, 1e-6)])
