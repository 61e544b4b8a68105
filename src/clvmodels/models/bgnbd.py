"""BG/NBD: the beta-geometric/negative-binomial purchase model (Fader, Hardie & Lee 2005).

While alive, a customer buys as a Poisson process of rate ``lambda ~ Gamma(r, rate alpha)``; after
every repeat purchase she drops out with probability ``p ~ Beta(a, b)``.

All of the model's mathematics is in this module: the log-likelihood (written once for numpy, dual
numbers and PyTensor, :mod:`.namespaces`: the MLE and the Bayesian fits) and the predictive formulas (numpy, broadcasting over parameter draws of shape
``(n_draws, 1)`` against customers of shape ``(n_customers,)``).

A customer alive at ``T`` with history ``(x, t_x, T)`` behaves from ``T`` on like a new customer with
the updated parameters ``(r+x, alpha+T, a, b+x)`` (the individual-level posterior of FHL 2005,
sec. 5). So every conditional prediction is ``P(alive) x`` the new-customer formula at the updated
parameters, and the new-customer formulas are written once.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc, betaln, expit, exprel, gammaln, hyp2f1, xlog1py, xlogy

from ..errors import ClvDataError
from .namespaces import likelihood
from .purchase import (ContinuousPurchaseModel, alive_times_future, mixture_pmf, per_distinct_draw, period_boundaries,
                       scatter, split_over_periods)
from .timevarying import TimeChange
from .rows import per_distinct_pair


# ---------------------------------------------------------------------------- likelihood
@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Per-customer log-likelihood, FHL 2005 eq. (6), in log space, in the namespace ``xp``
    (:mod:`.namespaces`).

    ``ln L = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    + ln[(α+T)^−(r+x) + 1{x>0} a/(b+x−1) (α+t_x)^−(r+x)]``, the bracket by log-sum-exp.
    It is the sum of :func:`frequency_terms` and :func:`history_terms`.
    """
    return frequency_terms(params, data, xp) + history_terms(params, data, xp)


@likelihood
def frequency_terms(params: dict, data: dict, xp):
    """The terms of eq. (6) that read only ``x``: ``lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x) − ln B(a, b)``."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = data["frequency"]
    return xp.gammaln(r + x) - xp.gammaln(r) + r * xp.log(alpha) + xp.betaln(a, b + x) - xp.betaln(a, b)


@likelihood
def history_terms(params: dict, data: dict, xp):
    """The bracket of eq. (6): ``ln[(α+T)^−(r+x) + 1{x>0} a/(b+x−1) (α+t_x)^−(r+x)]``."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x, tx, T = data["frequency"], data["recency"], data["T"]
    repeat = x > 0
    # b + x − 1 is only used where x > 0; keep it positive elsewhere so gradients stay finite
    bx1 = xp.where(repeat, b + x - 1, b)
    term_alive = -(r + x) * xp.log(alpha + T)
    term_dead = xp.where(repeat, xp.log(a) - xp.log(bx1) - (r + x) * xp.log(alpha + tx), -np.inf)
    return xp.logaddexp(term_alive, term_dead)


# ---------------------------------------------------------------------------- predictions
def log_odds_dead(params, frequency, recency, T):
    """``ln[P(dead)/P(alive)]`` at ``T``: ``ln(a/(b+x−1)) + (r+x) ln((α+T)/(α+t_x))`` for x > 0, −inf for x = 0."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = frequency
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = (np.log(a) - np.log(b + x - 1)
                + (r + x) * np.log1p((T - recency) / (alpha + recency)))
    return np.where(x > 0, odds, -np.inf)


def probability_alive(params, frequency, recency, T):
    """P(alive at T | x, t_x, T) = 1 / (1 + 1{x>0} a/(b+x−1) ((α+T)/(α+t_x))^(r+x)) (FHL 2005 eq. 11)."""
    return expit(-log_odds_dead(params, frequency, recency, T))


#: Half-width of the window around the removable singularities of :func:`expected_new` (``a = 1``
#: and ``a + b = 1``) inside which the value is interpolated linearly from its two edges.
SINGULAR_WINDOW = 1e-5


#: Below this ``z = t/(α+t)``, :func:`expected_new` sums its power series in ``z`` instead of
#: calling ``hyp2f1`` (whose ``1 − 2F1`` loses all digits when ``z`` is tiny).
SERIES_Z = 0.25


def expected_new(r, alpha, a, b, t):
    """E[X(t)] for a new customer (FHL 2005 eq. 9), evaluated after Euler's transformation.

    ``(α/(α+t))^r 2F1(r, b; a+b−1; z) = (1−z)^(a−1) 2F1(a+b−1−r, a−1; a+b−1; z)`` with
    ``z = t/(α+t)``: the transformed series has parameters that do not grow with ``r`` and ``b``, so
    it stays finite and accurate when they are updated by a large frequency.

    For small ``z`` the bracket ``1 − (1−z)^(a−1) 2F1(..)`` cancels to nothing in floating point, so
    there the value is summed as a power series in ``z`` (:func:`_expected_new_series`), which has
    no cancellation and no singularity. Elsewhere the closed form has two removable singularities,
    ``a = 1`` (the ``(a−1)`` division) and ``a + b = 1`` (the ``2F1`` pole at ``c = 0``), where it
    evaluates to ``0/0``: near them the series is tried first, and where it does not converge the
    value is interpolated linearly between the two edges of a :data:`SINGULAR_WINDOW` around the
    singularity (the expectation, ``E_p[(1 − (α/(α+pt))^r)/p]`` with ``p ~ Beta(a, b)``, is smooth
    in ``a`` and ``b``). A closed-form value that is not finite or not in ``[0, r t/α]`` (scipy's
    ``hyp2f1`` fails for some large or opposite-signed parameters) is recomputed from the
    untransformed ``2F1``, and failing that by quadrature (:func:`_expected_new_closed_form`).
    Checked against 50-digit mpmath: relative error ~1e-12 for typical parameters, below 1e-9
    for frequencies and ages up to 5,000 periods.
    """
    r, alpha, a, b, t = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (r, alpha, a, b, t)))
    z = t / (alpha + t)
    small = z < SERIES_Z
    # near a removable singularity the bridge loses digits to cancellation: try the series first
    singular = ~small & ((np.abs(a - 1.0) < SINGULAR_WINDOW) | (np.abs(a + b - 1.0) < SINGULAR_WINDOW))
    if not (small.any() or singular.any()):
        return _expected_new_bridged(r, alpha, a, b, t)
    out = np.empty(r.shape)
    flat_out = out.reshape(-1)
    flat = [v.reshape(-1) for v in (r, alpha, a, b, t)]
    rest = [np.flatnonzero(~(small | singular).reshape(-1))]
    for subset, max_terms in ((small, 400), (singular, 5000)):
        idx = np.flatnonzero(subset.reshape(-1))
        if idx.size:
            values, ok = _expected_new_series(*(v[idx] for v in flat), max_terms=max_terms)
            flat_out[idx[ok]] = values[ok]
            rest.append(idx[~ok])
    rest = np.concatenate(rest)
    if rest.size:
        flat_out[rest] = _expected_new_bridged(*(v[rest] for v in flat))
    return out


def _expected_new_series(r, alpha, a, b, t, max_terms: int = 400):
    """E[X(t)] by its power series in ``z = t/(α+t)``; returns ``(values, converged)``.

    With ``c = a+b−1``, ``ε = a−1``, ``A = c−r``, ``L = ln(1−z)``:
    ``E[X(t)] = −c L (e^(εL)−1)/(εL) − e^(εL) Σ_{k≥1} (A)_k (ε+1)_{k−1} / ((c+1)_{k−1} k!) z^k``
    (the closed form's ``c/ε [1 − e^(εL) 2F1(A, ε; c; z)]`` with the ``ε`` and ``c`` factors
    cancelled term by term). An element that did not converge, or whose terms are so much larger
    than the result that more than ~10 digits cancel, is reported as not converged.
    """
    c, eps = a + b - 1.0, a - 1.0
    A = c - r
    z = t / (alpha + t)
    L = -np.log1p(t / alpha)  # ln(1 − z), accurate for small z
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging element is reported below, not warned of
        term = A * z
        total = term.copy()
        largest = np.abs(term)
        for k in range(1, max_terms):
            term = term * ((A + k) * (eps + k) / ((c + k) * (k + 1.0)) * z)
            total += term
            largest = np.maximum(largest, np.abs(term))
            if np.all(np.abs(term) <= 1e-17 * np.abs(total)):
                break
        first = -c * L * exprel(eps * L)
        value = first - np.exp(eps * L) * total
    # the result is a difference: its relative error is ~1e-16 x (largest magnitude summed) / result
    scale = np.maximum(np.abs(first), largest)
    converged = (np.abs(term) <= 1e-16 * np.abs(total)) & (scale <= 1e10 * np.abs(value))
    converged &= _plausible(value, r, alpha, t)
    return value, converged


def _expected_new_bridged(r, alpha, a, b, t):
    """The closed form with its removable singularities ``a = 1`` and ``a + b = 1`` bridged."""
    near_a = np.abs(a - 1.0) < SINGULAR_WINDOW
    if near_a.any():
        lo = _expected_new_off_c(r, alpha, np.where(near_a, 1.0 - 2 * SINGULAR_WINDOW, a), b, t)
        hi = _expected_new_off_c(r, alpha, np.where(near_a, 1.0 + 2 * SINGULAR_WINDOW, a), b, t)
        weight = (a - (1.0 - 2 * SINGULAR_WINDOW)) / (4 * SINGULAR_WINDOW)
        return np.where(near_a, lo + weight * (hi - lo), hi)
    return _expected_new_off_c(r, alpha, a, b, t)


def _expected_new_off_c(r, alpha, a, b, t):
    """:func:`_expected_new_closed_form` with the ``a + b = 1`` singularity bridged (moving the
    larger of ``a`` and ``b``, so that it stays positive)."""
    c = a + b - 1.0
    near_c = np.abs(c) < SINGULAR_WINDOW
    if not near_c.any():
        return _expected_new_closed_form(r, alpha, a, b, t)
    move_a = a >= b
    step = np.where(near_c, 2 * SINGULAR_WINDOW, 0.0)
    a_lo, a_hi = np.where(move_a, a - c - step, a), np.where(move_a, a - c + step, a)
    b_lo, b_hi = np.where(move_a, b, b - c - step), np.where(move_a, b, b - c + step)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = _expected_new_closed_form(r, alpha, a_lo, b_lo, t)
        hi = _expected_new_closed_form(r, alpha, a_hi, b_hi, t)
        mid = lo + (c + 2 * SINGULAR_WINDOW) / (4 * SINGULAR_WINDOW) * (hi - lo)
        plain = _expected_new_closed_form(r, alpha, a, b, t)
    return np.where(near_c, mid, plain)


def _expected_new_closed_form(r, alpha, a, b, t):
    """FHL 2005 eq. (9) after Euler's transformation (see :func:`expected_new`).

    Where scipy's ``hyp2f1`` gives up on the transformed series (NaN or overflow, e.g.
    ``2F1(−59, 23; 179; 0.9)``: large parameters of opposite signs near ``z = 1``), the
    untransformed ``(α/(α+t))^r 2F1(r, b; c; z)`` is tried, and where that fails too the value is
    computed by quadrature (:func:`_expected_new_quadrature`).
    """
    c = a + b - 1.0
    z = t / (alpha + t)
    log1mz = -np.log1p(t / alpha)
    defined = np.isfinite(c / (a - 1.0)) & (np.abs(c) > 0) & np.isfinite(r * t / alpha) & np.isfinite(b)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        term = np.exp((a - 1.0) * log1mz) * hyp2f1(c - r, a - 1.0, c, z)
        value = c / (a - 1.0) * (1.0 - term)
        failed = ~_plausible(value, r, alpha, t) & defined
        if not failed.any():
            return value
        untransformed = c / (a - 1.0) * (1.0 - np.exp(r * log1mz) * hyp2f1(r, b, c, z))
    value = np.where(failed, untransformed, value)
    failed &= ~_plausible(value, r, alpha, t)
    if failed.any():
        flat = value.reshape(-1)
        r, alpha, a, b, t = (v.reshape(-1) for v in np.broadcast_arrays(r, alpha, a, b, t, value)[:5])
        for i in np.flatnonzero(failed):
            flat[i] = _expected_new_quadrature(r[i], alpha[i], a[i], b[i], t[i])
    return value


def _plausible(value, r, alpha, t):
    """``0 <= E[X(t)] <= E[λ] t = r t/α`` (a customer buys at most as a Poisson process of rate λ):
    scipy's ``hyp2f1`` sometimes returns a wrong finite value (e.g. −842 for
    ``2F1(170, −0.5; 171.5; 0.909)``-based ``E[X(5)]`` that is really 14.5); such values fail this."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(value) & (value >= 0) & (value <= r * t / alpha * (1 + 1e-9))


def _expected_new_quadrature(r: float, alpha: float, a: float, b: float, t: float) -> float:
    """E[X(t)] of one new customer as ``∫ (1 − (α/(α+pt))^r)/p · Beta(p; a, b) dp`` (FHL 2005,
    eq. 9 before integrating over ``p``: ``E[X(t) | λ, p] = (1 − e^(−λpt))/p``, then over ``λ``).

    ``(1 − (α/(α+pt))^r)/p`` is smooth on [0, 1] (its limit at 0 is ``r t/α``). A Beta density
    with an exponent below 0 (``a < 1`` or ``b < 1``) is singular at an end: QUADPACK's algebraic
    weight ``p^(a−1) (1−p)^(b−1)`` integrates it exactly; otherwise the density is bounded and is
    integrated in log space (no underflow for large ``a``, ``b``).
    """
    from scipy import integrate  # imported when a quadrature is needed (a fast start)

    def bought_per_p(p):
        if p == 0.0:
            return r * t / alpha
        return -np.expm1(-r * np.log1p(p * t / alpha)) / p

    log_norm = betaln(a, b)
    if min(a, b) < 1.0:
        # the singular factor(s) as QUADPACK's weight, the bounded rest in the integrand
        wa, wb = min(a - 1.0, 0.0), min(b - 1.0, 0.0)

        def bounded(p):
            return bought_per_p(p) * np.exp(xlogy(a - 1.0 - wa, p) + xlog1py(b - 1.0 - wb, -p) - log_norm)

        value, _ = integrate.quad(bounded, 0.0, 1.0, weight="alg", wvar=(wa, wb),
                                  limit=200, epsabs=0.0, epsrel=1e-11)
        return float(value)

    def integrand(p):  # a, b >= 1: a bounded density (xlogy: 0 log 0 = 0 at the ends)
        return bought_per_p(p) * np.exp(xlogy(a - 1.0, p) + xlog1py(b - 1.0, -p) - log_norm)

    mode = min(max((a - 1.0) / (a + b - 2.0) if a + b > 2.0 else 0.5, 1e-9), 1.0 - 1e-9)
    value, _ = integrate.quad(integrand, 0.0, 1.0, points=[mode], limit=200, epsabs=0.0, epsrel=1e-11)
    return float(value)


def expected_purchases(params, frequency, recency, T, *, t):
    """E[Y(t) | x, t_x, T]: expected repeat purchases in (T, T+t] (FHL 2005 eq. 10), P(alive) times
    :func:`future_purchases_alive` (:func:`~.purchase.alive_times_future`)."""
    return alive_times_future(probability_alive, future_purchases_alive, params, frequency, recency, T, t=t)


def future_purchases_alive(params, frequency, T, *, t):
    """E[Y(t)] of a customer alive at ``T``: :func:`expected_new` at ``(r+x, α+T, a, b+x)``."""
    x = np.asarray(frequency, dtype=float)
    return expected_new(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x, t)


def lifetime_survival(r, alpha, a, b, t):
    """``E[e^{−λ p t}]`` for ``λ ~ Gamma(r, rate α)``, ``p ~ Beta(a, b)``: the probability that a
    customer who drops out with probability ``p`` after each purchase of a Poisson process of rate
    ``λ`` (so at rate ``λ p``) is still alive ``t`` later. ``E_λ = (1 + p z)^−r`` with ``z = t/α``,
    and Euler's integral over ``p`` gives ``2F1(r, a; a+b; −z)``, evaluated after Pfaff's
    transformation as ``(1+z)^−a 2F1(a+b−r, a; a+b; z/(1+z))`` (argument in ``[0, 1)``)."""
    z = np.asarray(t, dtype=float) / alpha
    return np.exp(-a * np.log1p(z)) * hyp2f1(a + b - r, a, a + b, z / (1.0 + z))


def survival(params, frequency, T, *, t):
    """P(alive at ``T+t`` | alive at ``T``, ``x`` repeat purchases): :func:`lifetime_survival` at the
    posterior of an alive customer, ``λ ~ Gamma(r+x, α+T)``, ``p ~ Beta(a, b+x)`` (she survived the
    drop-out chances after her ``x`` repeat purchases)."""
    x = np.asarray(frequency, dtype=float)
    return lifetime_survival(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x, t)


def mean_waiting_time(events, shape, rate):
    """``E[W]`` for a wait ``W ~ Gamma(events, λ)`` (the time to the ``events``-th event of a Poisson
    process of rate ``λ``) with ``λ ~ Gamma(shape, rate)``: ``events E[1/λ] = events · rate/(shape − 1)``,
    ``inf`` where ``shape <= 1`` (``E[1/λ]`` diverges)."""
    shape = np.asarray(shape, dtype=float)
    finite = shape > 1.0
    return np.where(finite, events * rate / np.where(finite, shape - 1.0, 1.0), np.inf)


def next_purchase_time(params, frequency, recency, T):
    """``E[τ | τ < ∞, x, t_x, T]``, the expected time from ``T`` to the next purchase given that she
    makes one: ``(α+T)/(r+x−1)`` (``inf`` for ``r+x <= 1``). She buys again only if alive at ``T``,
    and an alive customer always does (drop-out comes only right after a purchase), after an
    exponential wait of rate ``λ ~ Gamma(r+x, α+T)`` (FHL 2005, sec. 5: the posterior of an alive
    customer), so ``τ`` given ``τ < ∞`` is Lomax with mean ``E[1/λ]``. The same for MBG/NBD."""
    return mean_waiting_time(1.0, params["r"] + np.asarray(frequency, dtype=float), params["alpha"] + T)


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] for a customer just acquired (FHL 2005 eq. 9)."""
    return expected_new(params["r"], params["alpha"], params["a"], params["b"], t)


def probability_new(r, alpha, a, b, t, n):
    """P(X(t) = n) for a new customer (FHL 2005 eq. 8), in log space.

    ``B(a, b+n)/B(a, b) NB(n; r, q) + 1{n>0} B(a+1, b+n−1)/B(a, b) P(NB(r, q) ≥ n)`` with
    ``q = t/(α+t)`` and ``NB(j; r, q) = Γ(r+j)/(Γ(r) j!) (1−q)^r q^j``. The tail
    ``P(NB ≥ n) = 1 − Σ_{j<n} NB(j)`` of the paper is the regularised incomplete beta function
    ``I_q(n, r)``: no sum over ``j``, no cancellation, constant memory for any ``n``.
    """
    n = np.asarray(n, dtype=float)
    log_q = np.log(t) - np.log(alpha + t)          # ln(t/(α+t))
    log_1mq = -np.log1p(t / alpha)                 # ln(α/(α+t))
    log_nb = gammaln(r + n) - gammaln(r) - gammaln(n + 1.0) + r * log_1mq + n * log_q
    first = np.exp(betaln(a, b + n) - betaln(a, b) + log_nb)
    n1 = np.maximum(n, 1.0)  # the second term only exists for n > 0
    tail = betainc(n1, r, np.exp(log_q))
    second = np.exp(betaln(a + 1.0, b + n1 - 1.0) - betaln(a, b)) * tail
    return first + np.where(n > 0, second, 0.0)


def probability_of_n_purchases(params, frequency, recency, T, *, t, n):
    """P(Y(t) = n | x, t_x, T): alive customers follow the new-customer law at updated parameters."""
    x = frequency
    alive = probability_alive(params, frequency, recency, T)
    p_alive = probability_new(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x, t, n)
    return alive * p_alive + (1.0 - alive) * (np.asarray(n) == 0)


def purchase_pmf(params, frequency, recency, T, *, t, n_max):
    """Predictive pmf of future purchases: ``P(Y(t) = k | x, t_x, T)`` for ``k = 0 .. n_max−1`` and the
    tail ``P(Y(t) ≥ n_max)``, stacked on a new last axis of length ``n_max + 1``.

    Column ``k`` is :func:`probability_of_n_purchases`: P(alive) times FHL 2005 eq. (8) at the
    updated parameters ``(r+x, α+T, a, b+x)``, plus the dead customers' mass at 0,

    ``P(X = k) = B(a, b+k)/B(a, b) NB(k) + 1{k>0} B(a, b+k)/B(a, b) · a/(b+k−1) · P(N ≥ k)``,

    evaluated for all ``k`` at once without special functions per ``k``: ``ln NB(k)`` and
    ``ln B(a, b+k)/B(a, b)`` are cumulative sums of ``ln((r+j) q/(j+1))`` and ``ln((b+j)/(a+b+j))``,
    and ``P(N ≥ k)`` is summed backwards, ``P(N ≥ k) = P(N ≥ k+1) + NB(k)``, from the one
    incomplete beta ``P(N ≥ n_max) = I_q(n_max, r)`` (positive terms only: no cancellation). The
    tail is closed form: an alive customer makes at least ``n`` purchases when ``N(t) ≥ n`` and she
    survives the first ``n−1``, so ``P(X(t) ≥ n) = B(a, b+n−1)/B(a, b) · I_q(n, r)``,
    ``q = t/(α+t)``.
    """
    def future(x, age):
        return future_pmf(params, x, age, t=t, n_max=n_max)

    # the alive customers' law depends on (x, T) only: evaluated once per distinct pair
    return mixture_pmf(probability_alive(params, frequency, recency, T), per_distinct_pair(future, frequency, T, params=params))


def future_pmf(params, frequency, T, *, t, n_max):
    """:func:`purchase_pmf` of a customer alive at ``T``: :func:`alive_pmf` at ``(r+x, α+T, a, b+x)``."""
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    x = np.asarray(frequency, dtype=float)
    return alive_pmf(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x, float(t), int(n_max))


def alive_pmf(r, alpha, a, b, t: float, n_max: int):
    """FHL 2005 eq. (8) for ``k = 0 .. n_max−1`` and its tail ``P(X(t) ≥ n_max)`` at parameters
    ``(r, α, a, b)`` (for :func:`purchase_pmf` the updated ones of a customer alive at ``T``; see
    there for the recursions), shape ``broadcast(r, α, a, b) + (n_max + 1,)``."""
    r, alpha, a, b = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(r, alpha, a, b))
    # the count runs along the first axis (cumulative sums over a short last axis are slow in numpy)
    j = np.arange(n_max, dtype=float).reshape((-1,) + (1,) * r.ndim)
    log_q = np.log(t) - np.log(alpha + t)
    log_1mq = np.log(alpha) - np.log(alpha + t)
    # ln NB(k) = r ln(1−q) + Σ_{j<k} ln((r+j) q/(j+1)); ln B(a,b+k)/B(a,b) = Σ_{j<k} ln((b+j)/(a+b+j))
    log_nb = np.empty((n_max,) + r.shape)
    log_nb[0] = r * log_1mq
    log_nb[1:] = np.log(r + j[:-1]) - np.log1p(j[:-1]) + log_q
    np.cumsum(log_nb, axis=0, out=log_nb)
    log_b_j = np.log(b + j)                                   # ln(b+j), j = 0 .. n_max−1
    log_br = np.empty((n_max + 1,) + r.shape)                 # k = 0 .. n_max
    log_br[0] = 0.0
    log_br[1:] = log_b_j - np.log(a + b + j)
    np.cumsum(log_br, axis=0, out=log_br)
    nb = np.exp(log_nb)
    # P(N ≥ k) for k = 1 .. n_max, summed backwards from I_q(n_max, r)
    p_ge = np.empty((n_max,) + r.shape)
    p_ge[-1] = betainc(float(n_max), r, np.exp(log_q))
    p_ge[:-1] = nb[1:]
    p_ge = np.flip(np.cumsum(np.flip(p_ge, 0), axis=0), 0)
    out = np.empty((n_max + 1,) + r.shape)
    out[:n_max] = np.exp(log_br[:n_max] + log_nb)
    # k ≥ 1: + B(a, b+k)/B(a, b) · a/(b+k−1) · P(N ≥ k)
    out[1:n_max] += np.exp(log_br[1:n_max] + np.log(a) - log_b_j[:-1]) * p_ge[:-1]
    out[n_max] = np.exp(log_br[n_max - 1]) * p_ge[-1]
    return np.moveaxis(out, 0, -1)


def simulate_purchases(params, frequency, recency, T, *, t, rng):
    """One draw of each customer's number of repeat purchases in ``(T, T+t]``, exactly, from her
    individual-level posterior (FHL 2005 sec. 5; the reference's simulation recipe).

    With probability P(alive) she is alive at ``T``; then ``λ ~ Gamma(r+x, rate α+T)`` and
    ``p ~ Beta(a, b+x)``, she buys at the events of a Poisson process of rate ``λ`` and drops out
    after each purchase with probability ``p``: the count is ``min(N, G)`` with
    ``N ~ Poisson(λ t)`` and ``G ~ Geometric(p)`` (purchases up to and including the last one).
    Parameters of shape ``(n_samples, 1)`` broadcast against customers ``(n,)``; returns
    ``(n_samples, n)`` integers, or with period boundaries ``t = [t_1, ..., t_H]`` the counts per
    period ``(n_samples, n, H)`` (see :func:`simulate_until_dropout`).
    """
    x = np.asarray(frequency, dtype=float)
    return simulate_until_dropout(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x,
                                  per_distinct_draw(probability_alive, params, frequency, recency, T), t=t, rng=rng)


def purchases_before_dropout(n: np.ndarray, a: np.ndarray, b: np.ndarray, rng) -> np.ndarray:
    """``min(N, G)`` for counts ``N >= 1``, with ``G ~ Geometric(p)`` (the purchase after which she
    drops out) and ``p ~ Beta(a, b)``, drawn by inversion of the beta-geometric survival
    ``P(G > j) = E[(1−p)^j] = Π_{i<j} (b+i)/(a+b+i)`` with one uniform per count: exact (``p`` enters
    nothing else) and cheaper than drawing ``p`` and ``G``. The loop runs over ``j`` on the counts
    still able to grow, a shrinking set."""
    u = rng.random(n.size)
    k = np.ones(n.size, dtype=np.int64)
    survival = np.ones(n.size)
    active = np.flatnonzero(n > 1)
    j = 1
    while active.size:
        survival[active] *= (b[active] + (j - 1)) / (a[active] + b[active] + (j - 1))   # P(G > j)
        beyond = u[active] < survival[active]
        k[active[beyond]] += 1
        active = active[beyond & (n[active] > j + 1)]
        j += 1
    return k


def simulate_until_dropout(r, alpha, a, b, alive, *, t, rng):
    """Purchases of customers alive with probability ``alive``, with ``λ ~ Gamma(r, rate α)``, who
    drop out after each purchase with probability ``p ~ Beta(a, b)`` (BG/NBD, MBG/NBD): ``min(N, G)``
    with ``N ~ Poisson(λ t)``, ``G ~ Geometric(p)``.

    Per period (boundaries ``t = [t_1, ..., t_H]``): the ``N`` events of the Poisson process by
    ``t_H`` fall in the periods multinomially with probabilities ``(t_i − t_{i−1}) / t_H``, and she
    makes the first ``min(N, G)`` of them, in time order (drop-out after a purchase is memoryless,
    so this is exact); a number ``t`` draws the same total as the last boundary would. Draws are
    made only where they matter: ``λ`` for the customers alive, ``G`` for those with events, by
    inversion of its beta-geometric law (:func:`purchases_before_dropout`).

    ``t`` of shape ``(n, H)`` gives each customer her own boundaries (time-varying covariates: the
    periods' ends in her operational time, :mod:`.timevarying`); the events then fall in her periods
    with probabilities proportional to her own period lengths."""
    own = np.ndim(t) == 2
    bounds, scalar = (np.asarray(t, dtype=float), False) if own else period_boundaries(t)
    r, alpha, a, b, alive = np.broadcast_arrays(r, alpha, a, b, alive)
    buys = rng.random(alive.shape) < alive
    lengths = np.diff(bounds, axis=-1, prepend=0.0)
    if own:
        lengths = np.broadcast_to(lengths, alive.shape + lengths.shape[-1:])[buys]
    n = rng.poisson(rng.gamma(r[buys], 1.0 / alpha[buys]) * lengths.sum(axis=-1))
    some = n > 0
    a, b, n = a[buys][some], b[buys][some], n[some]
    lengths = lengths[some] if own else lengths
    buys[buys] = some
    k = purchases_before_dropout(n, a, b, rng)
    if scalar:
        return scatter(buys, k)
    events = split_over_periods(n, lengths, rng)
    cut = k < n                                            # dropped out before her last event
    made = np.minimum(np.cumsum(events[cut], axis=-1), k[cut, None])
    events[cut] = np.diff(made, axis=-1, prepend=0)
    return scatter(buys, events, bounds.shape[-1])


# ---------------------------------------------------------------------------- estimator
class BetaGeoModel(ContinuousPurchaseModel):
    """BG/NBD purchase and drop-out model (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    method
        Default fit method: ``"mle"``, ``"map"``, ``"nuts"`` or ``"advi"``.
    penalizer
        L2 penalty on the parameters (lifetimes' ``penalizer_coef``) for the MLE; 0 by default.
    priors
        Bayesian fits: priors replacing :attr:`default_priors`.
    draws, tune, chains, seed, progressbar
        Bayesian fits: sampler settings (``random_seed``: the deprecated name of ``seed``).

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``r``, ``alpha``, ``a``, ``b``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_

    Examples
    --------
    >>> model = BetaGeoModel().fit(rfm)               # doctest: +SKIP
    >>> model.expected_purchases(t=39)                 # doctest: +SKIP
    """

    display_name = "BG/NBD"
    short_names = ("bgnbd",)
    param_names = ("r", "alpha", "a", "b")
    #: Weakly informative priors (see :mod:`clvmodels.models.bayes`): half-normals wide enough to be
    #: nearly flat over plausible values; alpha has the unit of time, so its scale is 5 x the mean
    #: customer age T (whatever the time unit). By default (a, b) get the joint
    #: :attr:`joint_priors` instead; a's and b's entries here serve when ``priors=`` replaces one.
    joint_priors = (("a", "b"),)
    default_priors = {
        "r": ("HalfNormal", {"sigma": 5.0}),
        "alpha": ("HalfNormal", {"sigma": 5.0}, {"sigma": "T"}),
        "a": ("HalfNormal", {"sigma": 5.0}),
        "b": ("HalfNormal", {"sigma": 20.0}),
    }
    #: Covariates (PyMC-Marketing's parametrisation): ``α_i = α exp(−γ_α·z_i)`` (a positive coefficient raises
    #: the purchase rate), ``a_i = a exp(γ_a·z_i)``, ``b_i = b exp(γ_b·z_i)`` (CLVTools ties γ_a = γ_b: a constraint).
    covariate_links = {"purchase": (("alpha", -1.0),), "dropout": (("a", 1.0), ("b", 1.0))}
    covariate_effects = {"alpha": "the mean purchase rate (r/α)",
                         "a": "a of the drop-out probability's beta law (higher: more drop-out)",
                         "b": "b of the drop-out probability's beta law (higher: less drop-out)"}
    log_likelihood = staticmethod(log_likelihood)
    #: Time-varying purchase covariates: a time change of the model (:mod:`.timevarying`).
    time_varying_model = TimeChange(log_likelihood, probability_alive, future_purchases_alive,
                                    expected_purchases_new_customer, survival, simulate_purchases)
    #: ``log_likelihood`` as a sum of parts, each with the columns it reads (see :mod:`.mle`).
    log_likelihood_parts = ((("frequency",), frequency_terms),
                            (("frequency", "recency", "T"), history_terms))
    #: The formulas of the purchase-model protocol (see :mod:`.purchase`).
    expected_purchases_formula = staticmethod(expected_purchases)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    probability_of_n_purchases_formula = staticmethod(probability_of_n_purchases)
    new_customer_formula = staticmethod(expected_purchases_new_customer)
    survival_formula = staticmethod(survival)
    next_purchase_time_formula = staticmethod(next_purchase_time)
    compress_alive_rows = False  # a few operations per row: cheaper than deduplicating
    purchase_pmf_formula = staticmethod(purchase_pmf)
    future_pmf_formula = staticmethod(future_pmf)
    simulate_purchases_formula = staticmethod(simulate_purchases)

    def initial_params(self, data, weights):
        # r/alpha: a method-of-moments guess of the purchase rate
        rate = self.purchase_rate(data, weights)
        return np.array([1.0, 1.0 / rate, 1.0, 1.0])
