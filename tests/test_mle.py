"""The maximum-likelihood machinery (``clvmodels.models.mle``): the compiled objective and its parts,
exact gradients, the Hessian, convergence reporting and parameter draws; and the optimiser it shares
with the MAP fit (``clvmodels.models.optimize``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from clvmodels import BetaGeoModel, ClvDataError, ConvergenceWarning, GammaGammaModel
from clvmodels.datasets import cdnow_summary
from clvmodels.models.base import validate_columns
from clvmodels.models.rows import compress
from clvmodels.models import optimize
from clvmodels.models.mle import mle_objective, likelihood_parts, objective_inputs
from clvmodels.models.optimize import numeric_hessian


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


def whole_log_likelihood(model_cls, params: dict, data: dict) -> np.ndarray:
    """The model's log_likelihood expression evaluated directly (no parts, no compression)."""
    import pytensor
    import pytensor.tensor as pt

    p = {k: pt.dscalar(k) for k in params}
    d = {k: pt.dvector(k) for k in data}
    f = pytensor.function([*p.values(), *d.values()], model_cls.log_likelihood(p, d))
    return f(*params.values(), *data.values())


@pytest.mark.parametrize("model_cls, columns, params", [
    (BetaGeoModel, ("frequency", "recency", "T"), {"r": 0.3, "alpha": 5.0, "a": 0.9, "b": 2.0}),
    (GammaGammaModel, ("frequency", "monetary_value"), {"p": 5.0, "q": 3.0, "gamma": 12.0}),
])
def test_objective_in_parts_equals_the_summed_log_likelihood(rfm, model_cls, columns, params):
    rows = rfm[rfm["frequency"] > 0] if model_cls is GammaGammaModel else rfm
    data = validate_columns(rows, columns)
    parts = likelihood_parts(model_cls, columns)
    assert len(parts) == 2 and parts[0][0] == ("frequency",)
    unique, w = compress(data)
    f = mle_objective(model_cls, tuple(unique))
    theta = np.log(list(params.values()))
    value, grad = f(theta, *objective_inputs(model_cls, unique, w), w.sum(), 0.0)
    direct = whole_log_likelihood(model_cls, params, data)
    assert value == pytest.approx(-direct.sum() / len(rows), rel=1e-13)
    # the gradient is exact: compare with central differences of the objective
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        up = f(theta + e, *objective_inputs(model_cls, unique, w), w.sum(), 0.0)[0]
        down = f(theta - e, *objective_inputs(model_cls, unique, w), w.sum(), 0.0)[0]
        assert grad[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_model_without_parts_fits_the_same(rfm):
    class WholeBetaGeo(BetaGeoModel):
        log_likelihood_parts = None

    assert len(likelihood_parts(WholeBetaGeo, ("frequency", "recency", "T"))) == 1
    whole = WholeBetaGeo().fit(rfm)
    split = BetaGeoModel().fit(rfm)
    for k in split.param_names:
        assert whole.params_[k] == pytest.approx(split.params_[k], rel=1e-8)
    assert whole.log_likelihood_ == pytest.approx(split.log_likelihood_, abs=1e-8)
    np.testing.assert_allclose(whole.covariance_, split.covariance_, rtol=1e-4)


def test_numeric_hessian_of_a_known_function():
    A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 2.0]])

    def grad(theta):  # gradient of 0.5 θ'Aθ + Σ θ_i^4 / 4
        return A @ theta + theta ** 3

    theta = np.array([0.3, -0.5, 1.2])
    H = numeric_hessian(grad, theta)
    np.testing.assert_allclose(H, A + np.diag(3 * theta ** 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(H, H.T)


def test_fit_reaches_a_vanishing_gradient_with_few_evaluations(rfm):
    model = BetaGeoModel().fit(rfm)
    assert model.optimizer_["max_abs_gradient"] < 1e-8
    assert model.optimizer_["at_boundary"] == []
    # each evaluation is a pass over the data: the fit is cheap in them
    assert model.optimizer_["n_evaluations"] < 60
    # the starting point does not matter
    other = BetaGeoModel().fit(rfm, x0=np.log([2.0, 20.0, 3.0, 0.5]))
    for k in model.param_names:
        assert other.params_[k] == pytest.approx(model.params_[k], rel=1e-7)


def test_covariance_is_the_inverse_hessian_of_the_total_log_likelihood(rfm):
    model = BetaGeoModel().fit(rfm)
    data = validate_columns(rfm, model.data_columns)
    unique, w = compress(data)
    f = mle_objective(BetaGeoModel, tuple(unique))
    inputs = objective_inputs(BetaGeoModel, unique, w) + [w.sum(), 0.0]
    theta = np.log(model.params_.to_numpy())
    H = numeric_hessian(lambda th: f(th, *inputs)[1], theta, step=1e-5)
    np.testing.assert_allclose(model.covariance_, np.linalg.inv(H * len(rfm)), rtol=1e-3)
    se = model.summary()["se"].to_numpy()
    np.testing.assert_allclose(se, model.params_.to_numpy() * np.sqrt(np.diag(model.covariance_)), rtol=1e-12)


def test_parameter_draws_follow_the_asymptotic_normal(rfm):
    model = BetaGeoModel().fit(rfm)
    point = model.parameter_draws()
    assert all(v.shape == (1,) for v in point.values())
    draws = model.parameter_draws(20_000, seed=1)
    logs = np.column_stack([np.log(draws[k]) for k in model.param_names])
    np.testing.assert_allclose(logs.mean(axis=0), np.log(model.params_.to_numpy()), atol=0.01)
    # sampling error of a covariance estimate from n draws: ~ sqrt(var_i var_j / n); allow 5 of them
    sd = np.sqrt(np.diag(model.covariance_))
    assert np.all(np.abs(np.cov(logs.T) - model.covariance_) < 5 * np.outer(sd, sd) / np.sqrt(20_000))
    again = model.parameter_draws(20_000, seed=1)
    np.testing.assert_array_equal(draws["r"], again["r"])


def test_boundary_fit_has_no_covariance_to_draw_from():
    rng = np.random.default_rng(0)
    rfm = pd.DataFrame({"frequency": np.zeros(300), "recency": np.zeros(300), "T": rng.uniform(5, 30, 300)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BetaGeoModel().fit(rfm)
    assert not model.converged_
    if not np.all(np.isfinite(model.covariance_)):
        with pytest.raises(ClvDataError, match="covariance"):
            model.parameter_draws(10)
    assert model.summary()["estimate"].notna().all()


def test_stopping_early_is_reported(rfm):
    """A fit cut short (one iteration, no room for the polish to finish) must say so."""
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = BetaGeoModel().fit(rfm, maxiter=1, tol=0.0, x0=np.log([5.0, 0.1, 20.0, 0.05]))
    assert not model.converged_ and np.all(np.isfinite(model.params_.to_numpy()))


def test_drift_towards_the_boundary_is_reported():
    """Regression: with no sign of drop-out a Pareto/NBD fit stopped at s ~ 1e-7, beta ~ 5e6 (short of
    the boundary) and reported itself converged, with log-scale standard errors of ~7e5 (on another
    numpy/Python, with a Hessian that is not positive definite: reported converged all the same)."""
    import warnings

    import clvmodels as C
    from clvmodels.errors import ConvergenceWarning

    rng = np.random.default_rng(1)
    T = rng.uniform(20, 40, 3000)
    x = rng.poisson(3, 3000).astype(float)
    rfm = pd.DataFrame({"frequency": x, "recency": np.where(x > 0, T, 0.0), "T": T})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = C.ParetoNBDModel().fit(rfm)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert not model.converged_
    assert len(messages) == 1 and "barely identify" in messages[0]
    # where the Hessian is positive definite the unidentified parameter is named with its SE
    assert "beta" in messages[0] or "not positive definite" in messages[0]


# ---------------------------------------------------------------------------- the shared optimiser
def test_minimize_log_params_finds_the_minimum_of_a_known_function_and_its_hessian():
    """A quadratic in the log-parameters with its minimum at ``m``: L-BFGS and the Newton polish
    reach it from the given starts, and the Hessian is the quadratic's matrix."""
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    m = np.array([0.7, -1.3])

    def f(theta):
        d = theta - m
        return 0.5 * d @ A @ d + 3.0, A @ d

    fun = optimize.Objective(f)
    opt = optimize.minimize_log_params(fun, [np.zeros(2), np.ones(2)], failure="no", maxiter=100, ftol=1e-14,
                                       gtol=1e-12, improvement=1e-12, good_enough=1e-6, newton_steps=5,
                                       newton_tol=1e-14)
    np.testing.assert_allclose(opt.theta, m, atol=1e-9)
    assert opt.value == pytest.approx(3.0, abs=1e-15)
    assert opt.max_abs_gradient < 1e-9
    np.testing.assert_allclose(opt.hessian, A, rtol=1e-6)
    assert fun.n_evals < 30


def test_objective_negates_to_maximise_and_is_infinite_where_the_function_is_not_finite():
    fun = optimize.Objective(lambda theta, c: (c - theta @ theta, -2 * theta), [6.0], negate=True)
    value, grad = fun(np.array([1.0, 2.0]))
    assert value == -1.0 and list(grad) == [2.0, 4.0]
    assert fun(np.array([1.0, 2.0]))[0] == -1.0 and fun.n_evals == 1  # the repeated point is remembered
    nan = optimize.Objective(lambda theta: (np.nan, theta))
    value, grad = nan(np.array([1.0, 2.0]))
    assert value == np.inf and list(grad) == [0.0, 0.0]


def test_minimize_log_params_says_when_no_start_is_finite():
    fun = optimize.Objective(lambda theta: (-np.inf, theta))
    with pytest.raises(ClvDataError, match="M: not finite anywhere"):
        optimize.minimize_log_params(fun, [np.zeros(2)], failure="M: not finite anywhere", maxiter=10,
                                     ftol=1e-12, gtol=1e-8, improvement=1e-12)


def test_covariance_information_criteria_boundary_and_identification():
    H = np.array([[4.0, 1.0], [1.0, 2.0]])
    cov, ok = optimize.covariance_from_hessian(H, 10.0)
    assert ok
    np.testing.assert_allclose(cov, np.linalg.inv(10.0 * H), rtol=1e-15)
    for bad in (np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[1.0, np.nan], [np.nan, 1.0]])):
        cov, ok = optimize.covariance_from_hessian(bad)
        assert not ok and np.isnan(cov).all() and cov.shape == (2, 2)
    aic, bic = optimize.information_criteria(-100.0, 3, 50.0)
    assert aic == 206.0 and bic == pytest.approx(3 * np.log(50.0) + 200.0, rel=1e-15)
    # the boundary: beyond e^±16 (either side), not short of it
    assert optimize.boundary_parameters(["r", "alpha", "a"], np.array([16.0, -15.9, -17.0])) == ["r", "a"]
    # a log-scale SE above 5 (a 95% interval wider than e^±10): unidentified, unless already at the boundary
    cov = np.diag([4.9 ** 2, 5.1 ** 2, 30.0 ** 2])
    assert optimize.unidentified_parameters(["r", "s", "beta"], cov, exclude=["beta"]) == {"s": pytest.approx(5.1)}


def test_preconditioned_start_reaches_the_same_optimum_in_fewer_evaluations():
    """``precondition`` (used by time-varying fits) whitens the first start by its Hessian: on a badly
    scaled, non-quadratic objective it finds the same minimum as plain L-BFGS + Newton, with fewer
    evaluations; a start where the Hessian is not positive definite is left as it is."""
    scales = np.array([1.0, 30.0, 0.05, 400.0])
    target = np.array([0.3, -0.2, 1.1, 0.05])

    def f(theta):
        d = (theta - target) * scales
        return float(np.sum(d**2) + 0.1 * np.sum(d**4)), 2 * d * scales + 0.4 * d**3 * scales

    runs = {}
    for flag in (False, True):
        fun = optimize.Objective(f)
        opt = optimize.minimize_log_params(fun, [np.zeros(4)], failure="", maxiter=1000, ftol=1e-12, gtol=1e-8,
                                           improvement=1e-12, newton_steps=20, newton_tol=1e-12, precondition=flag)
        runs[flag] = (opt.theta, fun.n_evals)
    np.testing.assert_allclose(runs[True][0], target, atol=1e-9)
    np.testing.assert_allclose(runs[False][0], target, atol=1e-9)
    assert runs[True][1] < runs[False][1]

    def saddle(theta):      # negative curvature at the start: no whitening
        return float(-theta[0] ** 2 + theta[0] ** 4 + theta[1] ** 2), np.array([-2 * theta[0] + 4 * theta[0] ** 3,
                                                                                2 * theta[1]])
    start = [np.array([0.0, 0.5])]
    assert optimize._preconditioned(optimize.Objective(saddle), start) is start
