"""Pareto/NBD's "died before ``T``" integral and its gradient: one compiled kernel, every evaluation.

``I = ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ`` (Fader & Hardie 2005, "A note on deriving the
Pareto/NBD model and related expressions", eq. 19-22: the second term of the likelihood integrates
out ``λ`` and ``μ`` for a customer who died at ``τ`` between her last purchase and ``T``). The usual
closed form writes ``I`` as a difference of two Gauss hypergeometric functions, one branch for
``α ≥ β`` and one for ``α < β``: the difference cancels catastrophically when ``t_x`` is near ``T``,
and ``2F1`` overflows or loses precision at large ``x``, long ``T`` or ``α`` close to ``β``
(lifetimes returns NaN there). Here ``ln I`` is computed directly, in log space, by composite
Gauss-Legendre quadrature (the doubling rule of :mod:`.quadrature`, run row by row):

* the variable is ``y = ln((c+τ)/(c+t_x))`` with ``c = min(α, β)``, in which the log-integrand
  ``ψ(y) = (1 − p_c) ln(c+τ) − p_C ln(C+τ)`` (``p_c``, ``p_C``: the exponents of ``c+τ`` and of
  ``C+τ``, ``C = max(α, β)``) is concave and analytic in a strip of half-width π around the real
  axis, and the power-law tails of long histories become exponentials;
* the range is cut into at most :data:`N_PANELS` panels at ``τ − t_x = h (2^j − 1)``, with ``h``
  the scale on which the integrand first falls by ``e`` (``1/h`` is its log-slope at ``t_x``). By
  concavity the fall over panel ``j`` is at most about ``2^j``: the panels holding the mass are
  resolved by :data:`N_NODES` nodes each to ~1e-11 relative, whatever ``x``, ``T`` or ``α/β``
  (checked against 40-digit mpmath evaluations of the closed form in ``tests/test_pareto_nbd.py``).
  A row stops at its last panel, or earlier once the rest is below 1e-17 of the sum (by concavity,
  ``∫_y^∞ e^ψ ≤ e^{ψ(y)} / |ψ'(y)|``): on CDNOW a row needs 19 nodes on average, not 128.

The gradient with respect to ``(r, α, s, β)`` is that of the integrand under the integral sign
(the limits do not depend on the parameters): ``∂ ln I/∂r = −E[ln(α+τ)]``, ``∂ ln I/∂α =
−(r+x) E[1/(α+τ)]``, ``∂ ln I/∂s = −E[ln(β+τ)]``, ``∂ ln I/∂β = −(s+1) E[1/(β+τ)]``, the
expectations under the density ``∝`` the integrand on ``(t_x, T)``, computed at the same nodes in
the same pass.

The kernel is written once, in plain Python over rows, and compiled with numba (a dependency of
PyTensor, so always installed with PyMC; imported and compiled, or loaded from numba's disk cache,
on first use, so ``import clvmodels`` never loads it). :func:`log_integral` evaluates it in each
namespace of :mod:`.namespaces`: values (numpy), values with exact gradients (dual numbers, for the
MLE), and a PyTensor ``Op`` whose numba implementation is the same kernel (NUTS with nutpie runs it
without Python in the loop; its gradient is the kernel's second output, computed in the same pass).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math

import numpy as np

from ..workers import run_in_threads
from . import dual
from .quadrature import N_NODES, N_PANELS, gauss_legendre

_POS, _WEIGHT = gauss_legendre(N_NODES)   # node positions and weights in a panel
#: From this many rows :func:`evaluate` splits them over threads, one per core.
THREADED_ROWS = 100_000
#: A row's remaining integral below this share (here as its log, 1e-17) of its sum is left out.
_LOG_TAIL = math.log(1e-17)


def _row(ri, ai, si, bi, xi, txi, Ti, pos, weight, jac, i, want_jac):
    """``ln I`` of one row and, when ``want_jac``, its gradient with respect to ``(r, α, s, β)``
    (into ``jac[i]``). ``−inf`` (and a zero gradient) where ``T − t_x ≤ 1e-12 (T+1)``: an interval
    that short adds less than double precision resolves."""
    if want_jac:
        for k in range(4):
            jac[i, k] = 0.0
    if Ti - txi <= 1e-12 * (Ti + 1.0):
        return -np.inf
    p, q = ri + xi, si + 1.0
    big_alpha = ai >= bi        # one branch also at α = β, where both are analytic
    c = bi if big_alpha else ai
    gap = (ai - bi) if big_alpha else (bi - ai)
    p_small = q if big_alpha else p      # exponent of (c+τ)
    p_big = p if big_alpha else q        # exponent of (C+τ)
    ctx = c + txi
    log_ctx = math.log(ctx)
    Y = math.log1p((Ti - txi) / ctx)
    h_rel = 1.0 / (p / (ai + txi) + q / (bi + txi)) / ctx
    top = -np.inf
    total = d_lsmall = d_lbig = d_ismall = d_ibig = 0.0
    lo = 0.0
    for j in range(N_PANELS):
        if lo >= Y:
            break
        hi = Y if j == N_PANELS - 1 else min(math.log1p(h_rel * (2.0 ** (j + 1) - 1.0)), Y)
        width = hi - lo
        for k in range(pos.shape[0]):
            y = lo + pos[k] * width
            small = ctx * math.exp(y)          # c + τ
            big = small + gap                  # C + τ
            l_small = log_ctx + y
            l_big = math.log(big)
            psi = (1.0 - p_small) * l_small - p_big * l_big
            if psi > top:                      # rescale the sums to the new maximum
                scale = math.exp(top - psi)
                total *= scale
                d_lsmall *= scale
                d_lbig *= scale
                d_ismall *= scale
                d_ibig *= scale
                top = psi
            v = weight[k] * width * math.exp(psi - top)
            total += v
            if want_jac:
                d_lsmall += v * l_small
                d_lbig += v * l_big
                d_ismall += v / small
                d_ibig += v / big
        lo = hi
        if lo < Y:   # concavity bounds what is left by e^ψ(lo) / |ψ'(lo)|
            small = ctx * math.exp(lo)
            big = small + gap
            psi = (1.0 - p_small) * (log_ctx + lo) - p_big * math.log(big)
            slope = (1.0 - p_small) - p_big * small / big
            if slope < 0.0 and psi - math.log(-slope) < top + math.log(total) + _LOG_TAIL:
                break
    if want_jac:
        # E[ln(α+τ)], E[1/(α+τ)], E[ln(β+τ)], E[1/(β+τ)] from those of (c+τ) and (C+τ)
        la, ia = (d_lbig, d_ibig) if big_alpha else (d_lsmall, d_ismall)
        lb, ib = (d_lsmall, d_ismall) if big_alpha else (d_lbig, d_ibig)
        jac[i, 0] = -la / total
        jac[i, 1] = -p * ia / total
        jac[i, 2] = -lb / total
        jac[i, 3] = -q * ib / total
    return top + math.log(total)


def _rows(r, alpha, s, beta, x, tx, T, strides, inner, pos, weight, value, jac, start, stop):
    """``ln I`` (into ``value``) and, when ``jac`` has rows, its gradient with respect to
    ``(r, α, s, β)`` (into ``jac``) for the flat rows ``start:stop`` of a ``(outer, inner)`` grid
    (:func:`_row`). Row ``k`` is ``(k // inner, k % inner)``, at which input ``m`` is read at
    ``(k // inner) * strides[m, 0] + (k % inner) * strides[m, 1]`` (stride 0: broadcast along that
    axis, e.g. a draw's parameters along the customers)."""
    want_jac = jac.shape[0] > 0
    for k in range(start, stop):
        i, j = k // inner, k % inner
        value[k] = _row_kernel(r[i * strides[0, 0] + j * strides[0, 1]], alpha[i * strides[1, 0] + j * strides[1, 1]],
                               s[i * strides[2, 0] + j * strides[2, 1]], beta[i * strides[3, 0] + j * strides[3, 1]],
                               x[i * strides[4, 0] + j * strides[4, 1]], tx[i * strides[5, 0] + j * strides[5, 1]],
                               T[i * strides[6, 0] + j * strides[6, 1]], pos, weight, jac, k, want_jac)


#: :func:`_row` compiled (set by :func:`_kernel` before anything that calls it is compiled).
_row_kernel = _row


#: Salt of the compiled kernels' cache keys: the kernels' source, so that an edit recompiles.
KERNEL_KEY = int(hashlib.sha256((inspect.getsource(_row) + inspect.getsource(_rows)).encode())
                 .hexdigest()[:12], 16)


@functools.cache
def _kernel():
    """:func:`_rows` compiled with numba (loaded from its disk cache after the first time)."""
    row_kernel()
    import numba

    return numba.njit(cache=True, nogil=True, error_model="numpy")(_rows)


@functools.cache
def row_kernel():
    """:func:`_row` compiled with numba: one row's ``ln I`` and gradient, for other compiled kernels
    (:mod:`.pnbd_timevarying`)."""
    import numba

    global _row_kernel
    _row_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")(_row)
    return _row_kernel


def _grid(a: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int]]:
    """``a`` (broadcasting to ``shape``) as a flat array and its element strides over the grid
    ``(outer, inner) = (prod(shape[:-1]), shape[-1])``: an axis ``a`` is broadcast along reads with
    stride 0, so a ``(draws, 1)`` parameter against ``(customers,)`` data is never copied out to
    ``(draws, customers)``. Broadcast along some leading axes only, those are filled in."""
    a = a.reshape((1,) * (len(shape) - a.ndim) + a.shape)
    inner = int(a.shape[-1] > 1 or shape[-1] == 1)
    lead = a.shape[:-1]
    if all(n == 1 for n in lead):
        return np.ascontiguousarray(a, dtype=float).reshape(-1), (0, inner)
    if lead != shape[:-1]:
        a = np.broadcast_to(a, shape[:-1] + a.shape[-1:])
    return np.ascontiguousarray(a, dtype=float).reshape(-1), (a.shape[-1], inner)


def evaluate(r, alpha, s, beta, x, tx, T, *, with_jac: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(ln I, ∂ ln I/∂(r, α, s, β))`` for numpy inputs that broadcast together: arrays of their
    broadcast shape (the gradient with a trailing axis of 4), or ``None`` for the gradient when
    ``with_jac`` is false."""
    args = [np.asarray(a, dtype=float) for a in (r, alpha, s, beta, x, tx, T)]
    shape = np.broadcast_shapes(*(a.shape for a in args))
    grid = shape or (1,)                     # scalars: one row
    n = math.prod(grid)
    grids = [_grid(a, grid) for a in args]
    strides = np.array([st for _, st in grids], dtype=np.int64)
    value = np.empty(n)
    jac = np.empty((n if with_jac else 0, 4))
    kernel, inputs = _kernel(), [a for a, _ in grids]
    run_in_threads(lambda first, last: kernel(*inputs, strides, grid[-1], _POS, _WEIGHT, value, jac, first, last),
                   n, min_work=THREADED_ROWS)
    return value.reshape(shape), (jac.reshape(shape + (4,)) if with_jac else None)


def log_integral(xp, r, alpha, s, beta, x, tx, T):
    """``ln I`` in the namespace ``xp`` (:mod:`.namespaces`): numpy values, dual numbers with their
    gradient by the chain rule through the kernel's ``∂ ln I/∂(r, α, s, β)``, or a PyTensor
    expression (:func:`pytensor_op`)."""
    if xp.name == "pytensor":
        import pytensor.tensor as pt

        args = [pt.as_tensor_variable(a, dtype="float64") for a in (r, alpha, s, beta, x, tx, T)]
        if max(a.type.ndim for a in args) > 1:
            raise ValueError("The symbolic Pareto/NBD integral takes scalars and vectors of rows.")
        return pytensor_op()(*(pt.atleast_1d(a) for a in args))[0]
    values = [dual.value(a) for a in (r, alpha, s, beta, x, tx, T)]
    params = (r, alpha, s, beta)
    if xp.name == "numpy" or not any(isinstance(a, dual.Dual) for a in params):
        return evaluate(*values, with_jac=False)[0]
    out, jac = evaluate(*values, with_jac=True)
    return dual.chain(out, params, [jac[..., k] for k in range(4)])


@functools.cache
def pytensor_op():
    """The PyTensor ``Op`` ``(r, α, s, β, x, t_x, T) -> (ln I, jac)`` on vectors of rows (length 1
    broadcasts): ``perform`` and the numba implementation both run the kernel; the gradient of
    ``ln I`` reads ``jac``, the same node's second output (computed once)."""
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType, grad_not_implemented
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch import basic as numba_basic

    class ParetoLogIntegral(Op):
        __props__ = ()

        def make_node(self, *inputs):
            inputs = [pt.as_tensor_variable(a) for a in inputs]
            n = next((a.type.shape[0] for a in inputs if a.type.shape[0] != 1), None)
            return Apply(self, inputs, [pt.tensor(dtype="float64", shape=(n,)),
                                        pt.tensor(dtype="float64", shape=(n, 4))])

        def perform(self, node, inputs, outputs):
            n = max(a.shape[0] for a in inputs)
            value, jac = evaluate(*(np.broadcast_to(a, (n,)) for a in inputs), with_jac=True)
            outputs[0][0], outputs[1][0] = value, jac

        def connection_pattern(self, node):
            return [[True, True]] * 4 + [[False, False]] * 3

        def pullback(self, inputs, outputs, cotangents):
            g_value, g_jac = cotangents
            if not isinstance(g_jac.type, DisconnectedType):
                # a second derivative (the jacobian output differentiated): the kernel has none, and
                # PyTensor's own marker says so wherever it would be used (the fits' Hessians are
                # finite differences of the exact gradient, models/optimize.py)
                return ([grad_not_implemented(self, k, a, "the Pareto/NBD integral's kernel gives first "
                                                            "derivatives only") for k, a in enumerate(inputs[:4])]
                        + [DisconnectedType()() for _ in inputs[4:]])
            grads = []
            for k, a in enumerate(inputs[:4]):
                g = g_value * outputs[1][:, k]
                grads.append(g.sum(keepdims=True) if a.type.shape[0] == 1 else g)
            return grads + [DisconnectedType()() for _ in inputs[4:]]

        if not hasattr(Op, "pullback"):  # PyTensor before 3.3 names it L_op
            L_op = pullback

    @numba_basic.register_funcify_default_op_cache_key(ParetoLogIntegral)
    def _funcify(op, node=None, **kwargs):
        rows = _kernel()
        pos, weight = _POS, _WEIGHT

        @numba_basic.numba_njit
        def pareto_log_integral(r, alpha, s, beta, x, tx, T):
            sizes = (r.shape[0], alpha.shape[0], s.shape[0], beta.shape[0], x.shape[0], tx.shape[0], T.shape[0])
            n = max(sizes)
            strides = np.zeros((7, 2), dtype=np.int64)
            for k in range(7):
                strides[k, 1] = 1 if sizes[k] > 1 else 0
            value = np.empty(n)
            jac = np.empty((n, 4))
            rows(r, alpha, s, beta, x, tx, T, strides, n, pos, weight, value, jac, 0, n)
            return value, jac

        return pareto_log_integral, KERNEL_KEY % (2 ** 31)

    return ParetoLogIntegral()


__all__ = ["evaluate", "log_integral", "pytensor_op"]
