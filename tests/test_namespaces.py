"""One log-likelihood, three evaluations (``clvmodels.models.namespaces``): numpy values, dual-number
values with exact gradients (the MLE) and PyTensor expressions (the Bayesian fits) agree, for every
model, on CDNOW's rows and on extreme ones (large frequency, long ages, no repeat purchase); the dual
numbers' derivatives (``clvmodels.models.dual``) agree with PyTensor's symbolic gradient and with
central differences; and neither ``import clvmodels`` nor an MLE fit with its predictions loads
PyTensor or PyMC."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from clvmodels import (BetaGeoBetaBinomModel, BetaGeoCNBDModel, BetaGeoModel, GammaGammaModel, GGompertzNBDModel,
                       ModifiedBetaGeoCNBDModel, ModifiedBetaGeoModel, ParetoNBDModel, ShiftedBetaGeoModel)
from clvmodels.datasets import cdnow_summary, load_donations
from clvmodels.models import dual
from clvmodels.models.cnbd import likelihood_structure
from clvmodels.models.namespaces import DUAL, NUMPY, as_namespace, namespace_of


def _continuous_rows():
    rfm = cdnow_summary()
    x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    # extreme histories: many purchases, long ages, none at all, the last purchase at T
    ex = np.array([[0, 0, 1e-3], [0, 0, 5000.0], [500, 77.0, 78.0], [2000, 4999.0, 5000.0], [1, 1e-6, 5000.0],
                   [300, 10.0, 5000.0], [50, 39.0, 39.0], [1, 0.5, 0.5 + 1e-13]])
    return {"frequency": np.r_[x, ex[:, 0]], "recency": np.r_[tx, ex[:, 1]], "T": np.r_[T, ex[:, 2]]}


def _cnbd_rows():
    """The continuous rows with a ``litt`` (any finite value: its term has no parameter)."""
    rows = _continuous_rows()
    return {**rows, "litt": rows["frequency"] * np.log((rows["recency"] + 1.0) / (rows["frequency"] + 1.0))}


def _spend_rows():
    rfm = cdnow_summary(with_spend=True)
    rfm = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
    ex = np.array([[1, 1e-3], [500, 35.0], [2000, 1e5], [3, 1e-8]])
    return {"frequency": np.r_[rfm["frequency"].to_numpy(float), ex[:, 0]],
            "monetary_value": np.r_[rfm["monetary_value"].to_numpy(float), ex[:, 1]]}


def _bgbb_rows():
    d = load_donations()
    ex = np.array([[0, 0, 200], [200, 200, 200], [1, 1, 200], [100, 150, 200]])
    return {"frequency": np.r_[d["frequency"].to_numpy(float), ex[:, 0]],
            "recency": np.r_[d["recency"].to_numpy(float), ex[:, 1]],
            "n_periods": np.r_[d["periods"].to_numpy(float), ex[:, 2]]}


def _sbg_rows():
    period = np.r_[np.arange(1.0, 13.0), 500.0, 5000.0]
    return {"period": np.r_[period, period], "churned": np.r_[np.ones(len(period)), np.zeros(len(period))]}


#: (model, rows, parameter sets): published or fitted values and some far from them (for Pareto/NBD
#: α < β, α > β and α = β, which take different branches of the quadrature).
CASES = [
    (BetaGeoModel, _continuous_rows, [dict(r=0.243, alpha=4.414, a=0.793, b=2.426), dict(r=5.0, alpha=0.5, a=20.0, b=0.3)]),
    (ModifiedBetaGeoModel, _continuous_rows, [dict(r=0.525, alpha=6.183, a=0.891, b=1.614),
                                              dict(r=0.05, alpha=100.0, a=0.1, b=50.0)]),
    (likelihood_structure(ModifiedBetaGeoCNBDModel, 3), _cnbd_rows, [dict(r=0.533, alpha=1.258, a=1.289, b=1.845),
                                                                      dict(r=0.05, alpha=100.0, a=0.1, b=50.0)]),
    (likelihood_structure(BetaGeoCNBDModel, 2), _cnbd_rows, [dict(r=0.227, alpha=1.463, a=0.944, b=2.074),
                                                             dict(r=5.0, alpha=0.5, a=20.0, b=0.3)]),
    (ParetoNBDModel, _continuous_rows, [dict(r=0.553, alpha=10.58, s=0.606, beta=11.67),
                                        dict(r=2.0, alpha=50.0, s=3.0, beta=0.4), dict(r=0.3, alpha=7.0, s=0.9, beta=7.0)]),
    (GGompertzNBDModel, _continuous_rows, [dict(r=0.553, alpha=10.58, b=0.05, s=0.606, beta=2.0),
                                           dict(r=2.0, alpha=5.0, b=1e-6, s=3.0, beta=1e-5),
                                           dict(r=0.3, alpha=7.0, b=0.8, s=0.1, beta=30.0)]),
    (GammaGammaModel, _spend_rows, [dict(p=6.25, q=3.74, gamma=15.44), dict(p=0.2, q=40.0, gamma=0.01)]),
    (BetaGeoBetaBinomModel, _bgbb_rows, [dict(alpha=1.204, beta=0.750, gamma=0.657, delta=2.783),
                                         dict(alpha=0.05, beta=30.0, gamma=9.0, delta=0.2)]),
    (ShiftedBetaGeoModel, _sbg_rows, [dict(alpha=0.704, beta=1.182), dict(alpha=40.0, beta=0.02)]),
]
IDS = [c[0].__name__ for c in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request):
    """The model, its rows, parameter sets, and a compiled PyTensor ``f(params..., data...) -> (ll,
    d Σ ll/d params...)``."""
    import pytensor
    import pytensor.tensor as pt

    model_cls, rows, param_sets = request.param
    data = rows()
    p = {k: pt.dscalar(k) for k in model_cls.param_names}
    d = {k: pt.dvector(k) for k in data}
    ll = model_cls.log_likelihood(p, d)
    f = pytensor.function([*p.values(), *d.values()], [ll, *pytensor.grad(ll.sum(), list(p.values()))])
    return model_cls, data, param_sets, f


def _pytensor(f, params, data):
    """PyTensor's per-row values and their gradients (row by row: the gradient of a one-row sum)."""
    values = f(*params.values(), *data.values())[0]
    n = len(values)
    grads = [f(*params.values(), *(v[i:i + 1] for v in data.values()))[1:] for i in range(n)]
    return values, np.array(grads, dtype=float).reshape(n, len(params))


def _dual(model_cls, params, data):
    variables = dict(zip(params, dual.Dual.variables(list(params.values()))))
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = model_cls.log_likelihood(variables, data, DUAL)
    return ll.value, np.moveaxis(ll.full_tangent(), 0, -1)


def test_numpy_and_pytensor_values_agree(case):
    model_cls, data, param_sets, f = case
    for params in param_sets:
        symbolic, _ = _pytensor(f, params, data)
        values = model_cls.log_likelihood(params, data, NUMPY)
        assert np.all(np.isfinite(values[:-1])) and np.all(np.isfinite(symbolic[:-1])), params
        np.testing.assert_allclose(values, symbolic, rtol=1e-10, atol=1e-10, err_msg=str(params))
        # the namespace of plain numbers is numpy's
        np.testing.assert_array_equal(model_cls.log_likelihood(params, data), values)


def test_dual_values_and_gradients_agree_with_pytensor(case):
    model_cls, data, param_sets, f = case
    for params in param_sets:
        symbolic, symbolic_grad = _pytensor(f, params, data)
        value, grad = _dual(model_cls, params, data)
        np.testing.assert_allclose(value, symbolic, rtol=1e-10, atol=1e-10, err_msg=str(params))
        assert np.all(np.isfinite(grad)), params
        # relative to each row's largest derivative (terms that cancel leave rounding in small ones),
        # and absolute below 1e-6: where O(1) terms cancel to ~1e-10 (CNBD-3 at x = 0, T = 0.001) both
        # evaluations carry ~1e-17 of rounding (checked against 40-digit mpmath)
        error = np.abs(grad - symbolic_grad) / np.maximum(np.abs(symbolic_grad).max(axis=-1, keepdims=True), 1e-6)
        assert error.max() < 1e-9, (params, error.max(), np.unravel_index(error.argmax(), error.shape))


def test_dual_gradients_agree_with_central_differences(case):
    model_cls, data, param_sets, _ = case
    rows = {k: v[::max(1, len(v) // 60)] for k, v in data.items()}   # a spread of rows, extremes included
    rows = {k: np.r_[rows[k], v[-6:]] for k, v in data.items()}
    for params in param_sets:
        _, grad = _dual(model_cls, params, rows)
        for i, k in enumerate(params):
            h = 1e-6 * params[k]
            up = model_cls.log_likelihood({**params, k: params[k] + h}, rows, NUMPY)
            down = model_cls.log_likelihood({**params, k: params[k] - h}, rows, NUMPY)
            finite = np.isfinite(up) & np.isfinite(down)
            np.testing.assert_allclose(grad[finite, i], ((up - down) / (2 * h))[finite], rtol=2e-5,
                                       atol=2e-5 * np.abs(grad[finite, i]).max() + 1e-9, err_msg=f"{params} {k}")


# ---------------------------------------------------------------------------- the dual numbers
def _central(fn, x, h=1e-6):
    return (fn(x + h) - fn(x - h)) / (2 * h)


@pytest.mark.parametrize("name, fn", [
    ("log", lambda v, m: m.log(v)), ("log1p", lambda v, m: m.log1p(v)), ("exp", lambda v, m: m.exp(v)),
    ("expm1", lambda v, m: m.expm1(-v)), ("gammaln", lambda v, m: m.gammaln(v * 30)),
    ("betaln", lambda v, m: m.betaln(v, 2 * v + 1)), ("abs", lambda v, m: m.abs(v - 1.1)),
    ("logaddexp", lambda v, m: m.logaddexp(3 * v, 1 - v)), ("maximum", lambda v, m: m.maximum(v, 1.2 - v)),
    ("minimum", lambda v, m: m.minimum(2 * v, 1.0)), ("where", lambda v, m: m.where(v > 1, v * v, 3 - v)),
    ("arithmetic", lambda v, m: (1 - v) / (2 + v) * v - 3 / v + v ** 2.5 + 2.0 ** v + v ** v),
    ("sum", lambda v, m: m.sum(m.pad_right(v, 1) * np.arange(1.0, 4.0), axis=-1)),
    ("max", lambda v, m: m.max(m.pad_right(v, 2) * np.array([[1.0, -2.0], [0.5, 3.0]]), axis=(-2, -1))),
])
def test_dual_derivatives(name, fn):
    v = np.array([0.3, 0.9, 1.7, 4.0])
    x = dual.Dual(v, np.ones((1, 4)))
    out = fn(x, DUAL)
    assert isinstance(out, dual.Dual)
    np.testing.assert_allclose(out.value, fn(v, NUMPY), rtol=1e-15)
    np.testing.assert_allclose(out.full_tangent()[0], _central(lambda u: fn(u, NUMPY), v), rtol=1e-7, atol=1e-8)


def test_logaddexp_of_two_minus_infinities_has_a_zero_derivative():
    x = dual.Dual(np.array([-np.inf, 0.0]), np.ones((1, 2)))
    out = dual.logaddexp(x, -np.inf)
    np.testing.assert_array_equal(out.value, [-np.inf, 0.0])
    np.testing.assert_array_equal(out.full_tangent()[0], [0.0, 1.0])


def test_namespaces_are_found_from_the_inputs():
    assert namespace_of({"r": 1.0}, {"x": np.ones(3)}) is NUMPY
    assert namespace_of({"r": dual.Dual(1.0, np.ones(1))}, {"x": np.ones(3)}) is DUAL
    assert as_namespace(np) is NUMPY and as_namespace(DUAL) is DUAL
    import pytensor.tensor as pt

    assert namespace_of({"r": pt.dscalar("r")}).name == "pytensor"
    assert as_namespace(pt).symbolic


# ---------------------------------------------------------------------------- no PyTensor without Bayes
SCRIPT = """
import json, sys, warnings
HEAVY = ("pytensor", "pymc", "arviz", "nutpie", "matplotlib", "sklearn")
from clvmodels import cli
cli.build_parser().format_help()
loaded = {"help": sorted(m for m in HEAVY + ("pandas", "scipy") if m in sys.modules)}
import clvmodels as clv
loaded["import"] = sorted(m for m in HEAVY + ("pandas", "scipy") if m in sys.modules)
from clvmodels.datasets import cdnow_summary
rfm = cdnow_summary(with_spend=True).iloc[::4]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bg = clv.BetaGeoModel().fit(rfm)
    gg = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
    pn = clv.ParetoNBDModel().fit(rfm)
    bg.expected_purchases(39, interval=0.9, n_draws=50, seed=0)
    pn.probability_alive()
    bg.summary()
    clv.clv(bg, gg, rfm, horizon=12, discount_rate=0.01, period_length=4.35)
loaded["mle"] = sorted(m for m in HEAVY if m in sys.modules)
d = sys.argv[1]
rfm.rename_axis("customer_id").reset_index().to_parquet(d + "/rfm.parquet")
assert cli.main(["fit", d + "/rfm.parquet", "--model", "bgnbd+gg", "--time-unit", "W", "--out", d + "/model",
                 "-q"]) == 0
assert cli.main(["score", d + "/model", d + "/rfm.parquet", "--out", d + "/s.parquet", "--horizon", "12",
                 "-q"]) == 0
loaded["cli"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(loaded))
"""


def test_import_mle_and_commands_do_not_load_pytensor_or_pymc(tmp_path):
    """Nor matplotlib or scikit-learn; ``import clvmodels`` and ``clvmodels --help`` load not even
    pandas or scipy (a fast start: benchmarks/bench_import.py)."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"help": [], "import": [], "mle": [], "cli": []}
