"""Pareto/NBD with time-varying purchase and drop-out covariates (Bachmann, Meierer & Näf 2021, "The
role of time-varying contextual factors in latent attrition models for customer base analysis",
Marketing Science 40(4), sec. 3; CLVTools' "pnbd dyncov").

While alive, a customer buys at rate ``λ a(t)`` and drops out at rate ``μ c(t)``, with
``a(t) = exp(γ_p·z(t))``, ``c(t) = exp(γ_d·z(t))`` piecewise constant, ``A(t) = ∫_0^t a``,
``C(t) = ∫_0^t c`` (:mod:`.timevarying`). Given ``λ, μ``, a customer alive throughout ``[0, T]``
has the density ``λ^x Π_j a(t_j) e^{−λ A(T)} e^{−μ C(T)}``, one who died at ``τ ∈ (t_x, T)``
``λ^x Π_j a(t_j) e^{−λ A(τ)} μ c(τ) e^{−μ C(τ)}``; integrating ``λ ~ Gamma(r, α)`` and
``μ ~ Gamma(s, β)`` out,

    L = exp(γ_p·purchase_z) Γ(r+x) α^r β^s / Γ(r) · [ (α+A_T)^−(r+x) (β+C_T)^−s + s D ],
    D = ∫_{t_x}^{T} c(τ) (α+A_τ)^−(r+x) (β+C_τ)^−(s+1) dτ,

which is Fader & Hardie's (2005 note, eq. 19) with ``A = C = t`` (checked in the tests: constant
covariates give the static covariates' fit). On a piece ``[u_0, u_0+ℓ]`` after ``t_x`` with
multipliers ``a, c``, ``A = A_0 + a u`` and ``C = C_0 + c u``, so its share of ``D`` is

    J = c a^−p c^−q ∫_0^ℓ (α̃+u)^−p (β̃+u)^−q du,   p = r+x, q = s+1, α̃ = (α+A_0)/a, β̃ = (β+C_0)/c:

the static Pareto/NBD integral over ``(0, ℓ)`` at ``(α̃, β̃)``. A piece is short against ``α̃`` and ``β̃``
(a week after months of history): there the integrand varies little and a Gauss-Legendre rule of a
few nodes (:func:`_short_piece`, 4 to 6 typically, chosen by an error bound below 1e-14 of the piece)
gives it with its gradient; a steeper piece takes the static kernel's doubling rule
(:mod:`.pnbd_integral`: Gauss-Legendre nodes on doubling panels in log space, so it is subdivided). ``ln D`` is the log-sum-exp of the pieces' ``ln J``, its gradient the
``J``-weighted mean of theirs (chain rule through ``α̃``, ``β̃`` and ``A_0``, ``C_0``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .namespaces import NUMPY
from .pnbd_integral import _POS, _WEIGHT, row_kernel
from .quadrature import gauss_legendre
from .timevarying import Exposure, TimeVaryingDesign


def exclusive_cumsum(values: np.ndarray, exposure: Exposure) -> np.ndarray:
    """Per piece, the sum of ``values`` over the customer's earlier pieces (rows: pieces)."""
    total = np.cumsum(values, axis=0)
    first = exposure.first_piece()
    return total - values - (total[first] - values[first])


@dataclass(frozen=True)
class AfterPieces:
    """The pieces after each customer's recency, contiguous per customer (``seg``: offsets, ``n+1``),
    with their lengths and the purchase and drop-out covariates."""

    seg: np.ndarray
    length: np.ndarray
    zp: np.ndarray
    zd: np.ndarray


def _after_pieces(exposure: Exposure, purchase: tuple, dropout: tuple) -> AfterPieces:
    """:class:`AfterPieces` of ``exposure`` (kept with it: built once per fit)."""
    cache = exposure.__dict__.setdefault("_after", {})
    key = (purchase, dropout)
    if key not in cache:
        after = np.flatnonzero(~exposure.before)
        seg = np.searchsorted(exposure.customer[after], np.arange(exposure.n + 1)).astype(np.int64)
        cache[key] = AfterPieces(seg, np.ascontiguousarray(exposure.length[after]),
                                 np.ascontiguousarray(exposure.z[np.ix_(after, list(purchase))]),
                                 np.ascontiguousarray(exposure.z[np.ix_(after, list(dropout))]))
    return cache[key]


#: Node counts of the short Gauss-Legendre rules :func:`_short_piece` tries, fewest first.
SHORT_RULES = (2, 3, 4, 5, 6, 8, 12)
#: The relative error :func:`_short_piece` guarantees (as its log).
_LOG_SHORT_TOL = math.log(1e-14)
_LOG_32_15 = math.log(32.0 / 15.0)
#: ``R (p e_a + q e_b)``, the log-integrand's reach on the ellipse where :func:`_short_piece` bounds it.
_SHORT_REACH = 8.0


def _short_rules() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rules of :data:`SHORT_RULES` on ``[-1, 1]``, padded into tables (positions, weights, sizes)."""
    width = max(SHORT_RULES)
    pos, weight = np.zeros((len(SHORT_RULES), width)), np.zeros((len(SHORT_RULES), width))
    for k, n in enumerate(SHORT_RULES):
        x, w = gauss_legendre(n)       # on [0, 1]: the kernel's pieces take the rule on [-1, 1]
        pos[k, :n], weight[k, :n] = 2.0 * x - 1.0, 2.0 * w
    return pos, weight, np.array(SHORT_RULES, dtype=np.int64)


_SHORT = _short_rules()


def _short_piece(p, at, q, bt, ell, rule_pos, rule_weight, rule_sizes, jac, want):
    """``ln ∫_0^ℓ (α̃+u)^−p (β̃+u)^−q du`` and, when ``want``, its gradient with respect to ``(p, α̃, q, β̃)``
    in :func:`~.pnbd_integral._row`'s layout (into ``jac[0]``), by the fewest-node rule of
    :data:`SHORT_RULES` whose error bound is below 1e-14 of the integral; NaN when none is.

    With ``u = h(1+t)``, ``h = ℓ/2``, the integrand is ``f(t) = f(0) (1+e_a t)^−p (1+e_b t)^−q``,
    ``e_a = h/(α̃+h)``, ``e_b = h/(β̃+h)``: analytic for ``|t| < 1/max(e_a, e_b)``. On the Bernstein ellipse
    ``E_ρ`` of semi-major axis ``R < 1/max(e)``, ``|f| ≤ f(0) M``, ``ln M = −p ln(1−e_a R) − q ln(1−e_b R)``
    (``|ln(1+w)| ≤ −ln(1−|w|)``), and ``f ≥ f(0) m`` on ``[−1, 1]``, ``ln m = −p ln(1+e_a) − q ln(1+e_b)``;
    the ``n``-node rule's error is at most ``64 M f(0) / (15 (ρ²−1) ρ^{2n−2})`` (Trefethen 2013,
    "Approximation Theory and Approximation Practice", Theorem 19.3, whose rule has ``n+1`` nodes), so its
    relative error at most ``32 M / (15 m (ρ²−1) ρ^{2n−2})``, taken at ``R = min(8/(p e_a + q e_b),
    1/(2 max(e)))`` (near the bound's minimum for the usual 4 to 6 nodes), which gives the ``n`` needed.
    The nodes do not depend on the parameters, so the gradient (the expectations of
    :func:`~.pnbd_integral._row` at the same nodes) is the exact gradient of the value returned."""
    h = 0.5 * ell
    am, bm = at + h, bt + h
    ea, eb = h / am, h / bm
    slope = p * ea + q * eb
    cap = 0.5 / max(ea, eb)
    R = min(_SHORT_REACH / slope, cap) if slope > 0.0 else cap
    if R <= 1.0 + 1e-6:
        return np.nan
    rho = R + math.sqrt(R * R - 1.0)
    log_bound = (_LOG_32_15 - p * (math.log1p(-ea * R) - math.log1p(ea)) - q * (math.log1p(-eb * R) - math.log1p(eb))
                 - math.log(rho * rho - 1.0))                  # the bound's log but for −(2n−2) ln ρ
    need = 1.0 + 0.5 * (log_bound - _LOG_SHORT_TOL) / math.log(rho)
    k = -1
    for rule in range(rule_sizes.shape[0]):
        if rule_sizes[rule] >= need:
            k = rule
            break
    if k < 0:
        return np.nan
    log_am, log_bm = math.log(am), math.log(bm)
    total = d_la = d_ia = d_lb = d_ib = 0.0
    for node in range(rule_sizes[k]):
        t = rule_pos[k, node]
        la, lb = math.log1p(ea * t), math.log1p(eb * t)
        v = rule_weight[k, node] * math.exp(-p * la - q * lb)   # f / f(0), at most M: no overflow
        total += v
        if want:
            d_la += v * la
            d_lb += v * lb
            d_ia += v / (1.0 + ea * t)
            d_ib += v / (1.0 + eb * t)
    if want:
        jac[0, 0] = -(log_am + d_la / total)
        jac[0, 1] = -p * d_ia / (total * am)
        jac[0, 2] = -(log_bm + d_lb / total)
        jac[0, 3] = -q * d_ib / (total * bm)
    return math.log(h * total) - p * log_am - q * log_bm


def _dead(seg, p, alpha, s, beta, A_tx, C_tx, dA_tx, dC_tx, length, log_a, log_c, zp, zd, pos, weight, rule_pos,
          rule_weight, rule_sizes, want, value, d_params, d_p, d_d, first, last):
    """Per customer ``i`` in ``first:last`` (pieces ``seg[i]:seg[i+1]`` after ``t_x``, in time order): ``ln D`` into
    ``value`` and, when ``want``, its gradient with respect to ``(r, α_i, s, β_i)``, ``γ_p`` and ``γ_d``
    (module docstring), in one pass: the clocks ``A``, ``C`` and their gradients run forward from
    ``A(t_x)``, ``C(t_x)``, and the pieces' ``ln J`` (each by :func:`_short_piece`, or where no short
    rule is accurate enough the static kernel's row, :func:`~.pnbd_integral._row`, at ``(p, α̃, s, β̃)``
    over ``(0, ℓ)``) enter a running log-sum-exp."""
    kp, kd = zp.shape[1], zd.shape[1]
    jac = np.empty((1, 4))
    dA0 = np.empty(kp)
    dC0 = np.empty(kd)
    acc = np.empty(4 + kp + kd)
    for i in range(first, last):
        pi, si, qi = p[i], s[i], s[i] + 1.0
        A0, C0 = A_tx[i], C_tx[i]
        for k in range(kp):
            dA0[k] = dA_tx[i, k]
        for k in range(kd):
            dC0[k] = dC_tx[i, k]
        acc[:] = 0.0
        top, total = -np.inf, 0.0
        for j in range(seg[i], seg[i + 1]):
            a, c = math.exp(log_a[j]), math.exp(log_c[j])
            at, bt = (alpha[i] + A0) / a, (beta[i] + C0) / c
            log_i = _short_kernel(pi, at, qi, bt, length[j], rule_pos, rule_weight, rule_sizes, jac, want)
            if log_i != log_i:                    # no short rule is accurate enough: the doubling rule
                log_i = _row_kernel(pi, at, si, bt, 0.0, 0.0, length[j], pos, weight, jac, 0, want)
            log_j = log_i + (1.0 - qi) * log_c[j] - pi * log_a[j]
            if log_j > top:                       # rescale the sums to the new maximum
                scale = math.exp(top - log_j)
                total *= scale
                for k in range(acc.shape[0]):
                    acc[k] *= scale
                top = log_j
            v = math.exp(log_j - top)
            total += v
            if want:
                acc[0] += v * (jac[0, 0] - log_a[j])
                acc[1] += v * jac[0, 1] / a
                acc[2] += v * (jac[0, 2] - log_c[j])
                acc[3] += v * jac[0, 3] / c
                for k in range(kp):
                    acc[4 + k] += v * (-pi * zp[j, k] + jac[0, 1] * (dA0[k] - (alpha[i] + A0) * zp[j, k]) / a)
                for k in range(kd):
                    acc[4 + kp + k] += v * ((1.0 - qi) * zd[j, k] + jac[0, 3] * (dC0[k] - (beta[i] + C0) * zd[j, k]) / c)
            la, lc = length[j] * a, length[j] * c
            A0 += la
            C0 += lc
            for k in range(kp):
                dA0[k] += la * zp[j, k]
            for k in range(kd):
                dC0[k] += lc * zd[j, k]
        value[i] = top + math.log(total) if total > 0.0 else -np.inf
        if want:
            for k in range(acc.shape[0]):
                g = acc[k] / total if total > 0.0 else 0.0
                if k < 4:
                    d_params[i, k] = g
                elif k < 4 + kp:
                    d_p[i, k - 4] = g
                else:
                    d_d[i, k - 4 - kp] = g


#: The compiled :func:`~.pnbd_integral._row` and :func:`_short_piece` (set by :func:`_dead_kernel` before it
#: compiles :func:`_dead`).
_row_kernel = _short_kernel = None


@functools.cache
def _dead_kernel():
    """:func:`_dead` compiled with numba (from its disk cache after the first time)."""
    import numba

    global _row_kernel, _short_kernel
    _row_kernel = row_kernel()
    _short_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")(_short_piece)
    return numba.njit(cache=True, nogil=True, error_model="numpy")(_dead)


#: Below this many pieces :func:`_run_dead` runs in one thread.
THREADED_PIECES = 200_000


def _run_dead(args: tuple) -> None:
    """:func:`_dead` over all customers, split into chunks of about equal numbers of pieces run in
    threads (the kernel releases the GIL), one per available core (:func:`~clvmodels.workers.run_in_threads`)."""
    from ..workers import run_in_threads

    kernel, seg = _dead_kernel(), args[0]
    run_in_threads(lambda first, last: kernel(*args, first, last), len(seg) - 1, work=seg, min_work=THREADED_PIECES)


class ParetoTimeVarying:
    """Pareto/NBD's ``time_varying_model`` (:mod:`.timevarying`): the extras ``A_T``, ``C_T`` and
    ``log_D`` and the likelihood over them, written with Pareto/NBD's own terms (passed in by
    :mod:`.pareto_nbd`, which owns them)."""

    processes = ("purchase", "dropout")

    def __init__(self, log_alive_term, log_likelihood_of_terms, lifetime_factor, survival):
        self._alive, self._of_terms, self._lifetime_factor = log_alive_term, log_likelihood_of_terms, lifetime_factor
        self._survival = survival

    def alive(self, params, data, extras):
        """P(alive at ``T``) = ``(α+A_T)^−(r+x) (β+C_T)^−s / [that + s D]`` (the likelihood's bracket)."""
        log_alive = self._alive(NUMPY, params, data["frequency"], extras["A_T"][0], extras["C_T"][0])
        log_dead = np.log(params["s"]) + extras["log_D"][0]
        return np.exp(log_alive - np.logaddexp(log_alive, log_dead))

    def future(self, params, data, extras, window: Exposure, design: TimeVaryingDesign, gammas):
        """E[Y] over ``window`` of a customer alive at ``T`` (module docstring):
        ``(r+x)/(α+A_T) ∫ a(τ) ((β+C_T)/(β+C_τ))^s dτ``, closed form per piece."""
        return self._alive_future(params, data["frequency"], extras["A_T"][0], extras["C_T"][0], window, design, gammas)

    def survival(self, params, data, extras, window: Exposure, design: TimeVaryingDesign, gammas):
        """P(alive at the end of ``window`` | alive at ``T``) = ``((β+C_T)/(β+C_T+ΔC))^s``: Pareto/NBD's
        survival on the drop-out clock (``μ ~ Gamma(s, β+C_T)`` given alive at ``T``)."""
        return self._survival(params, data["frequency"], extras["C_T"][0],
                              t=window.clock(design, "dropout", gammas["dropout"]))

    def simulate(self, params, data, extras, periods, design: TimeVaryingDesign, gammas, rng):
        """Purchases per period ``(samples, n, H)`` of ``periods`` (:class:`~.timevarying.HorizonPeriods`;
        ``params`` of shape ``(samples, 1)`` or ``(samples, n)``), exactly: alive at ``T`` with P(alive),
        then ``λ ~ Gamma(r+x, α+A_T)``, ``μ ~ Gamma(s, β+C_T)`` (the posterior given alive), death when
        the drop-out clock ``C`` has run ``E/μ`` past ``T`` (``E ~ Exp(1)``; ``C`` piecewise linear, so each
        piece's time alive is ``clip((E/μ − C_0)/c, 0, ℓ)``), and ``Poisson(λ e_h)`` purchases in period
        ``h``, ``e_h`` the purchase clock ``A`` run while alive in it."""
        e = periods.exposure
        n, H = e.n, periods.n_periods
        alive = self.alive(params, data, extras)
        x = np.asarray(data["frequency"], dtype=float)
        r, alpha, s, beta, alive = np.broadcast_arrays(params["r"] + x, params["alpha"] + extras["A_T"][0],
                                                       params["s"], params["beta"] + extras["C_T"][0], alive)
        buys = rng.random(alive.shape) < alive
        at = np.nonzero(buys)
        lam = rng.gamma(r[at], 1.0 / alpha[at])
        budget = rng.exponential(size=lam.size) / np.maximum(rng.gamma(s[at], 1.0 / beta[at]), 1e-300)
        a = e.multiplier(design, "purchase", gammas["purchase"])
        c = e.multiplier(design, "dropout", gammas["dropout"])
        c_start = exclusive_cumsum(e.length * c, e)
        count = np.bincount(e.customer, minlength=n)
        first = np.cumsum(count) - count
        who = at[1]                                           # each alive future's customer
        k = count[who]
        pair = np.repeat(np.arange(who.size), k)
        piece = np.repeat(first[who] - np.cumsum(k) + k, k) + np.arange(int(k.sum()))
        alive_len = np.clip((budget[pair] - c_start[piece]) / c[piece], 0.0, e.length[piece])
        clock = np.bincount(pair * H + periods.period[piece], weights=a[piece] * alive_len,
                            minlength=who.size * H).reshape(who.size, H)
        out = np.zeros(alive.shape + (H,), dtype=np.int32)
        out[at] = rng.poisson(lam[:, None] * clock)
        return out

    def new_customer(self, params, window: Exposure, design: TimeVaryingDesign, gammas):
        """E[X] of a customer just acquired over ``window`` (alive at 0, clocks at 0)."""
        return self._alive_future(params, 0.0, 0.0, 0.0, window, design, gammas)

    def _alive_future(self, params, frequency, A_T, C_T, window: Exposure, design, gammas):
        """``(r+x)/(α+A_T) Σ_j (a_j/c_j) β'_j ((β+C_T)/β'_j)^s F(s, c_j ℓ_j/β'_j)``, ``β'_j = β + C`` at the
        piece's start, ``F(s, u) = [1 − (1+u)^−(s−1)]/(s−1)`` (``∫_0^ℓ (β'+cu)^−s du = β'^{1−s} F/c``)."""
        n = window.n
        r, alpha, s, beta = (np.broadcast_to(np.asarray(params[k], dtype=float), (n,)) for k in ("r", "alpha", "s", "beta"))
        x, A_T, C_T = (np.broadcast_to(np.asarray(v, dtype=float), (n,)) for v in (frequency, A_T, C_T))
        cust = window.customer
        a = window.multiplier(design, "purchase", gammas["purchase"])
        c = window.multiplier(design, "dropout", gammas["dropout"])
        base = beta[cust] + C_T[cust]
        start = base + exclusive_cumsum(window.length * c, window)
        u = c * window.length / start
        piece = a / c * start * np.exp(-s[cust] * np.log(start / base)) * self._lifetime_factor(s[cust], u)
        return (r + x) / (alpha + A_T) * np.bincount(cust, weights=piece, minlength=n)

    def log_likelihood(self, params, data, xp):
        """The bracket's terms at the clocks ``A_T``, ``C_T`` and ``ln D`` (module docstring)."""
        x = data["frequency"]
        log_alive = self._alive(xp, params, x, data["A_T"], data["C_T"])
        return self._of_terms(params, x, log_alive, xp.log(params["s"]) + data["log_D"], xp)

    def extras(self, params, data, gammas, exposure: Exposure, design: TimeVaryingDesign, want_grad: bool):
        """``A_T``, ``C_T`` (sparse products over the distinct covariate rows, :attr:`Exposure.lengths`)
        and ``log_D`` (:func:`_dead` over the pieces after ``t_x``), with their derivatives."""
        n = exposure.n
        rows = exposure.distinct[1]
        clocks = {}
        for process, name in (("purchase", "A"), ("dropout", "C")):
            z = rows[:, design.index(process)]
            e = np.exp(z @ gammas[process])
            for which in ("all", "before"):
                w = exposure.lengths[which]
                clocks[name, which] = (w @ e, np.ascontiguousarray(w @ (e[:, None] * z)).reshape(n, z.shape[1]))
        out = {"A_T": (clocks["A", "all"][0], None, {"purchase": clocks["A", "all"][1] if want_grad else None}),
               "C_T": (clocks["C", "all"][0], None, {"dropout": clocks["C", "all"][1] if want_grad else None})}
        after = _after_pieces(exposure, tuple(design.index("purchase")), tuple(design.index("dropout")))
        r, alpha, s, beta = (np.ascontiguousarray(np.broadcast_to(np.asarray(params[k], dtype=float), (n,)))
                             for k in ("r", "alpha", "s", "beta"))
        size = n if want_grad else 0
        value, d_params = np.empty(n), np.empty((size, 4))
        d_p, d_d = np.empty((size, after.zp.shape[1])), np.empty((size, after.zd.shape[1]))
        _run_dead((after.seg, r + np.asarray(data["frequency"], dtype=float), alpha, s, beta,
                   clocks["A", "before"][0], clocks["C", "before"][0], clocks["A", "before"][1],
                   clocks["C", "before"][1], after.length, after.zp @ gammas["purchase"],
                   after.zd @ gammas["dropout"], after.zp, after.zd, _POS, _WEIGHT, *_SHORT, want_grad, value, d_params,
                   d_p, d_d))
        out["log_D"] = (value, d_params.T, {"purchase": d_p, "dropout": d_d}) if want_grad else (value, None, None)
        return out

    def symbolic_extras(self, params, data, gammas, exposure: Exposure, design: TimeVaryingDesign):
        """:meth:`extras` as PyTensor expressions, PyTensor differentiating them (the kernel's ``Op``
        gives the integral's partials). ``ln D`` is shifted per customer by
        ``ref_i = −p ln(α+A(t_x)) − q ln(β+C(t_x))``, the log-integrand at ``t_x`` without ``c``: every
        piece's ``J ≤ c ℓ e^{ref}`` (the integrand falls), so no sum overflows."""
        import pytensor.tensor as pt

        from .namespaces import pytensor_namespace
        from .pnbd_integral import log_integral
        from .timevarying import scatter_sum

        n, cust_all = exposure.n, exposure.customer
        log_a = pt.dot(exposure.z[:, design.index("purchase")], gammas["purchase"])
        log_c = pt.dot(exposure.z[:, design.index("dropout")], gammas["dropout"])
        la, lc = exposure.length * pt.exp(log_a), exposure.length * pt.exp(log_c)
        before, after = np.flatnonzero(exposure.before), np.flatnonzero(~exposure.before)
        cust = cust_all[after]
        first = exposure.first_piece()

        def exclusive(v):
            total = pt.cumsum(v)
            return total - v - (total[first] - v[first])

        def at_pieces(v):
            return v[cust] if getattr(v, "ndim", 0) else v

        r, alpha, s, beta = (params[k] for k in ("r", "alpha", "s", "beta"))
        x = np.asarray(data["frequency"], dtype=float)
        p, q = r + x[cust], s + 1.0
        A0, C0 = exclusive(la)[after], exclusive(lc)[after]
        a, c = pt.exp(log_a[after]), pt.exp(log_c[after])
        log_i = log_integral(pytensor_namespace(), p, (at_pieces(alpha) + A0) / a, s, (at_pieces(beta) + C0) / c,
                             np.zeros(1), np.zeros(1), exposure.length[after])
        log_j = log_i + (1.0 - q) * log_c[after] - p * log_a[after]
        ref = -(r + x) * pt.log(alpha + scatter_sum(la[before], cust_all[before], n)) - q * pt.log(
            beta + scatter_sum(lc[before], cust_all[before], n))
        total = scatter_sum(pt.exp(log_j - ref[cust]), cust, n)
        has = np.bincount(cust, minlength=n) > 0
        log_d = pt.switch(has, ref + pt.log(pt.switch(has, total, 1.0)), -np.inf)
        return {"A_T": scatter_sum(la, cust_all, n), "C_T": scatter_sum(lc, cust_all, n), "log_D": log_d}
