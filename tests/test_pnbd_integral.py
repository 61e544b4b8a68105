"""Pareto/NBD's integral kernel (``clvmodels.models.pnbd_integral``): its compiled and pure-Python
runs agree, the early stop of a row leaves out nothing double precision resolves, per-row parameters
(covariates) equal row-by-row evaluations, and the PyTensor ``Op`` (numba and Python
implementations) gives the kernel's values and gradients. Its accuracy against mpmath and its
gradient against central differences are in ``test_pareto_nbd.py`` and ``test_namespaces.py``."""

from __future__ import annotations

import numpy as np
import pytest

from clvmodels.models import dual, pnbd_integral
from clvmodels.models.namespaces import DUAL, NUMPY

#: histories (x, t_x, T): no repeat purchase, long ages, many purchases long before T, the last
#: purchase at T, and CDNOW-like rows
ROWS = np.array([[0, 0, 39.0], [0, 0, 5000.0], [500, 10.0, 5000.0], [2000, 100.0, 5000.0], [3, 20.0, 39.0],
                 [50, 39.0, 39.0], [1, 1e-6, 2.0], [7, 30.5, 38.5]])
PARAMS = [(0.553, 10.58, 0.606, 11.67), (0.553, 11.67, 0.606, 11.67), (5.0, 0.5, 0.2, 40.0), (0.1, 80.0, 3.0, 0.05)]


def _python_rows(params, rows, log_tail):
    """The kernel run as plain Python (not compiled), with the log tail threshold ``log_tail``."""
    n = len(rows)
    value, jac = np.empty(n), np.empty((n, 4))
    cols = [np.array([p]) for p in params] + [np.ascontiguousarray(rows[:, k]) for k in range(3)]
    strides = np.array([[0, 0]] * 4 + [[0, 1]] * 3)
    saved, pnbd_integral._LOG_TAIL = pnbd_integral._LOG_TAIL, log_tail
    try:
        pnbd_integral._rows(*cols, strides, n, pnbd_integral._POS, pnbd_integral._WEIGHT, value, jac, 0, n)
    finally:
        pnbd_integral._LOG_TAIL = saved
    return value, jac


@pytest.mark.parametrize("params", PARAMS)
def test_compiled_kernel_equals_python_and_the_early_stop_loses_nothing(params):
    value, jac = pnbd_integral.evaluate(*params, *ROWS.T, with_jac=True)
    py_value, py_jac = _python_rows(params, ROWS, pnbd_integral._LOG_TAIL)
    np.testing.assert_allclose(value, py_value, rtol=1e-14)
    np.testing.assert_allclose(jac, py_jac, rtol=1e-12, atol=1e-300)
    # every panel up to T, no early stop
    full_value, full_jac = _python_rows(params, ROWS, -np.inf)
    finite = np.isfinite(full_value)
    np.testing.assert_allclose(value[finite], full_value[finite], rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(jac[finite], full_jac[finite], rtol=1e-13, atol=1e-14)
    assert np.array_equal(finite, ROWS[:, 2] > ROWS[:, 1])
    assert np.all(jac[~finite] == 0.0)


def test_per_row_parameters_equal_row_by_row_evaluations():
    rng = np.random.default_rng(3)
    n = len(ROWS)
    params = [rng.uniform(0.2, 2.0, n), rng.uniform(1.0, 30.0, n), rng.uniform(0.2, 2.0, n), rng.uniform(1.0, 30.0, n)]
    value, jac = pnbd_integral.evaluate(*params, *ROWS.T, with_jac=True)
    for i in range(n):
        v, j = pnbd_integral.evaluate(*(p[i] for p in params), *ROWS[i], with_jac=True)
        assert value[i] == v and np.array_equal(jac[i], j) or not np.isfinite(v)
    # draws x customers broadcast like the numpy predictions use it
    draws = np.array([[0.5, 10.0, 0.6, 12.0], [0.6, 11.0, 0.5, 10.0]])
    grid = pnbd_integral.evaluate(*(draws[:, [k]] for k in range(4)), *ROWS.T, with_jac=False)[0]
    assert grid.shape == (2, n)
    for d in range(2):
        np.testing.assert_array_equal(grid[d], pnbd_integral.evaluate(*draws[d], *ROWS.T, with_jac=False)[0])
    # three axes, inputs broadcast along some leading axes only (read in place or filled in)
    alpha = np.array([[10.0], [11.0], [12.0]])                          # (3, 1): along the draws' axis
    cube = pnbd_integral.evaluate(draws[:, 0, None, None], alpha, 0.6, draws[:, 3, None, None], *ROWS.T,
                                  with_jac=True)
    assert cube[0].shape == (2, 3, n) and cube[1].shape == (2, 3, n, 4)
    for d in range(2):
        for a in range(3):
            v, j = pnbd_integral.evaluate(draws[d, 0], alpha[a, 0], 0.6, draws[d, 3], *ROWS.T, with_jac=True)
            np.testing.assert_array_equal(cube[0][d, a], v)
            np.testing.assert_array_equal(cube[1][d, a], j)


def test_rows_split_over_threads_equal_one_thread(monkeypatch):
    """Many rows run in chunks on several threads: the same values and gradients, bit for bit."""
    rng = np.random.default_rng(4)
    rows = ROWS[rng.integers(0, len(ROWS), 500)]
    params = [rng.uniform(0.2, 2.0, 500), rng.uniform(1.0, 30.0, 500), 0.6, 12.0]
    one = pnbd_integral.evaluate(*params, *rows.T, with_jac=True)
    calls = []
    monkeypatch.setattr(pnbd_integral, "THREADED_ROWS", 10)
    monkeypatch.setattr("clvmodels.workers.available_cores", lambda: 3)
    kernel = pnbd_integral._kernel()
    monkeypatch.setattr(pnbd_integral, "_kernel", lambda: lambda *a: calls.append(a[-2:]) or kernel(*a))
    threaded = pnbd_integral.evaluate(*params, *rows.T, with_jac=True)
    assert sorted(calls) == [(0, 166), (166, 333), (333, 500)]
    np.testing.assert_array_equal(threaded[0], one[0])
    np.testing.assert_array_equal(threaded[1], one[1])


def test_dual_numbers_take_the_kernel_gradient_by_the_chain_rule():
    r, alpha, s, beta = dual.Dual.variables([0.553, 10.58, 0.606, 11.67])
    # a parameter that is a function of the variables (as a covariate link makes it) chains through
    out = pnbd_integral.log_integral(DUAL, r, alpha * 2.0, s, beta, *ROWS.T)
    value, jac = pnbd_integral.evaluate(0.553, 21.16, 0.606, 11.67, *ROWS.T, with_jac=True)
    np.testing.assert_array_equal(out.value, value)
    expected = np.stack([jac[:, 0], 2.0 * jac[:, 1], jac[:, 2], jac[:, 3]])
    np.testing.assert_allclose(out.full_tangent(), expected, rtol=1e-15)
    np.testing.assert_array_equal(pnbd_integral.log_integral(NUMPY, 0.553, 21.16, 0.606, 11.67, *ROWS.T), value)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE"])
def test_pytensor_op_gives_the_kernel_values_and_gradients(mode):
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt

    from clvmodels.models.namespaces import pytensor_namespace

    theta = [pt.dscalar(k) for k in ("r", "alpha", "s", "beta")]
    x, tx, T = pt.dvector("x"), pt.dvector("tx"), pt.dvector("T")
    rows = ROWS[ROWS[:, 2] > ROWS[:, 1]]
    for params in PARAMS:
        out = pnbd_integral.log_integral(pytensor_namespace(), *theta, x, tx, T)
        weights = np.arange(1.0, len(rows) + 1.0)
        f = pytensor.function([*theta, x, tx, T], [out, *pytensor.grad((out * weights).sum(), theta)], mode=mode)
        value, *grad = f(*params, *rows.T)
        ref, jac = pnbd_integral.evaluate(*params, *rows.T, with_jac=True)
        np.testing.assert_allclose(value, ref, rtol=1e-14)
        np.testing.assert_allclose(grad, weights @ jac, rtol=1e-12)


def test_pytensor_op_has_no_second_derivative_and_says_so():
    """The kernel gives first derivatives only: a Hessian through the Op is refused by PyTensor's
    not-implemented marker, never a silent zero (the fits' Hessians are finite differences)."""
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt
    from pytensor.gradient import NullTypeGradError

    from clvmodels.models.namespaces import pytensor_namespace

    r = pt.dscalar("r")
    out = pnbd_integral.log_integral(pytensor_namespace(), r, 10.0, 0.6, 11.0, *(pt.constant(c) for c in ROWS[:4].T))
    first = pytensor.grad(out.sum(), r)
    with pytest.raises(NullTypeGradError, match="first derivatives only"):
        pytensor.grad(first, r)
