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

the static Pareto/NBD integral over ``(0, ℓ)`` at ``(α̃, β̃)``, evaluated with its gradient by the one
compiled kernel (:mod:`.pnbd_integral`: Gauss-Legendre nodes on doubling panels in log space, so a
steep piece is subdivided). ``ln D`` is the log-sum-exp of the pieces' ``ln J``, its gradient the
``J``-weighted mean of theirs (chain rule through ``α̃``, ``β̃`` and ``A_0``, ``C_0``).
"""

from __future__ import annotations

import numpy as np

from .pnbd_integral import evaluate
from .namespaces import NUMPY
from .timevarying import Exposure, TimeVaryingDesign


def exclusive_cumsum(values: np.ndarray, exposure: Exposure) -> np.ndarray:
    """Per piece, the sum of ``values`` over the customer's earlier pieces (rows: pieces)."""
    total = np.cumsum(values, axis=0)
    first = exposure.first_piece()
    return total - values - (total[first] - values[first])


def segment_sum(values: np.ndarray, customer: np.ndarray, n: int) -> np.ndarray:
    """Sums of ``values`` (``(m,)`` or ``(m, K)``) per customer: ``(n,)`` or ``(n, K)``."""
    if values.ndim == 1:
        return np.bincount(customer, weights=values, minlength=n)
    if values.shape[1] == 0:
        return np.zeros((n, 0))
    return np.stack([np.bincount(customer, weights=values[:, k], minlength=n) for k in range(values.shape[1])],
                    axis=-1).reshape(n, values.shape[1])


class ParetoTimeVarying:
    """Pareto/NBD's ``time_varying_model`` (:mod:`.timevarying`): the extras ``A_T``, ``C_T`` and
    ``log_D`` and the likelihood over them, written with Pareto/NBD's own terms (passed in by
    :mod:`.pareto_nbd`, which owns them)."""

    processes = ("purchase", "dropout")

    def __init__(self, log_alive_term, log_likelihood_of_terms, lifetime_factor):
        self._alive, self._of_terms, self._lifetime_factor = log_alive_term, log_likelihood_of_terms, lifetime_factor

    def alive(self, params, data, extras):
        """P(alive at ``T``) = ``(α+A_T)^−(r+x) (β+C_T)^−s / [that + s D]`` (the likelihood's bracket)."""
        log_alive = self._alive(NUMPY, params, data["frequency"], extras["A_T"][0], extras["C_T"][0])
        log_dead = np.log(params["s"]) + extras["log_D"][0]
        return np.exp(log_alive - np.logaddexp(log_alive, log_dead))

    def future(self, params, data, extras, window: Exposure, design: TimeVaryingDesign, gammas):
        """E[Y] over ``window`` of a customer alive at ``T`` (module docstring):
        ``(r+x)/(α+A_T) ∫ a(τ) ((β+C_T)/(β+C_τ))^s dτ``, closed form per piece."""
        return self._alive_future(params, data["frequency"], extras["A_T"][0], extras["C_T"][0], window, design, gammas)

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
        n = exposure.n
        zp, zd = exposure.z[:, design.index("purchase")], exposure.z[:, design.index("dropout")]
        log_a, log_c = zp @ gammas["purchase"], zd @ gammas["dropout"]
        la, lc = exposure.length * np.exp(log_a), exposure.length * np.exp(log_c)
        out = {"A_T": (exposure.integrate(la), None, {"purchase": segment_sum(la[:, None] * zp, exposure.customer, n)
                                                     if want_grad else None}),
               "C_T": (exposure.integrate(lc), None, {"dropout": segment_sum(lc[:, None] * zd, exposure.customer, n)
                                                     if want_grad else None})}
        out["log_D"] = self._log_d(params, data["frequency"], exposure, zp, zd, log_a, log_c, la, lc, want_grad)
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

    def _log_d(self, params, frequency, exposure: Exposure, zp, zd, log_a, log_c, la, lc, want_grad):
        """``(ln D, ∂ ln D/∂(r, α_i, s, β_i) (4, n), {process: ∂ ln D/∂γ (n, K)})`` (module docstring)."""
        n = exposure.n
        after = np.flatnonzero(~exposure.before)
        cust = exposure.customer[after]
        x = np.asarray(frequency, dtype=float)[cust]
        r, alpha, s, beta = (np.broadcast_to(np.asarray(params[k], dtype=float), (n,))[cust]
                             for k in ("r", "alpha", "s", "beta"))
        p, q = r + x, s + 1.0
        A0, C0 = exclusive_cumsum(la, exposure)[after], exclusive_cumsum(lc, exposure)[after]
        a, c = np.exp(log_a[after]), np.exp(log_c[after])
        alpha_t, beta_t = (alpha + A0) / a, (beta + C0) / c
        log_i, jac = evaluate(p, alpha_t, s, beta_t, 0.0, 0.0, exposure.length[after], with_jac=want_grad)
        log_j = log_i + (1.0 - q) * log_c[after] - p * log_a[after]
        log_d = np.full(n, -np.inf)
        has = np.flatnonzero(np.bincount(cust, minlength=n))
        if after.size:
            starts = np.searchsorted(cust, has)
            top = np.maximum.reduceat(log_j, starts)
            top_of = np.full(n, 0.0)
            top_of[has] = top
            weights = np.exp(log_j - top_of[cust])
            total = np.bincount(cust, weights=weights, minlength=n)
            log_d[has] = top + np.log(total[has])
        if not want_grad:
            return log_d, None, None
        pi = np.exp(log_j - log_d[cust])                    # each piece's share of D
        d_params = np.stack([
            segment_sum(pi * (jac[:, 0] - log_a[after]), cust, n),
            segment_sum(pi * jac[:, 1] / a, cust, n),
            segment_sum(pi * (jac[:, 2] - log_c[after]), cust, n),
            segment_sum(pi * jac[:, 3] / c, cust, n)])
        dA0 = exclusive_cumsum(la[:, None] * zp, exposure)[after]
        dC0 = exclusive_cumsum(lc[:, None] * zd, exposure)[after]
        zpa, zda = zp[after], zd[after]
        g_p = -p[:, None] * zpa + (jac[:, 1] / a)[:, None] * (dA0 - (alpha + A0)[:, None] * zpa)
        g_d = (1.0 - q)[:, None] * zda + (jac[:, 3] / c)[:, None] * (dC0 - (beta + C0)[:, None] * zda)
        return log_d, d_params, {"purchase": segment_sum(pi[:, None] * g_p, cust, n),
                                 "dropout": segment_sum(pi[:, None] * g_d, cust, n)}
