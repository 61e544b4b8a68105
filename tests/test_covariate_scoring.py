"""Scoring with covariates (issue 14): predictions with intervals are evaluated once per covariate
profile (``covariates.per_profile``), so that customers of equal histories and profiles share their
work as customers without covariates do. The sharing must not change a number: every prediction
equals, draw by draw, the formula evaluated directly at each customer's own parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import predictive
from clvmodels.datasets.simulate import simulate
from clvmodels.models import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from clvmodels.models import covariates as C
from clvmodels.models.bgnbd import expected_purchases as bgnbd_expected, probability_alive as bgnbd_alive
from clvmodels.models.draws import model_draws
from clvmodels.models.gamma_gamma import expected_spend
from clvmodels.models.pareto_nbd import (expected_purchases as pnbd_expected, probability_alive as pnbd_alive,
                                        purchase_pmf as pnbd_pmf)

HISTORY = ("frequency", "recency", "T")
LEVEL = 0.9
QS = [0.5, (1 - LEVEL) / 2, (1 + LEVEL) / 2]
COEFS = {"alpha:x1": 0.4, "alpha:x2": -0.3, "a:x1": 0.3, "b:x2": 0.4, "gamma:x1": 0.2, "gamma:x2": -0.25}


@pytest.fixture(scope="module")
def customers():
    """3,000 BG/NBD + Gamma-Gamma customers with a categorical (``x1``: 3 levels, ``x2``: 2 levels: 6
    profiles) and a continuous covariate (``x3``: every customer her own profile)."""
    n = 3000
    rng = np.random.default_rng(7)
    cov = pd.DataFrame({"x1": rng.integers(0, 3, n).astype(float), "x2": (rng.random(n) < 0.4).astype(float)})
    log, truth = simulate(n, covariates=cov, coefficients=COEFS, return_truth=True, seed=11)
    rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W",
                          covariates=truth[["x1", "x2"]])
    return rfm.assign(x3=np.random.default_rng(8).normal(size=len(rfm)))


@pytest.fixture(scope="module")
def fits(customers):
    """BG/NBD and Gamma-Gamma with the categorical covariates, and with the continuous one."""
    out = {}
    for kind, columns in (("categorical", ["x1", "x2"]), ("continuous", ["x3", "x2"])):
        out[kind] = (BetaGeoModel(purchase_covariates=columns, dropout_covariates=columns).fit(customers),
                     GammaGammaModel(spend_covariates=columns, exclude_invalid=True).fit(customers))
    return out


def individual(model, draws: dict, rfm: pd.DataFrame) -> dict:
    """Per draw (rows) and customer (columns) parameters, by the link at every customer's own covariates."""
    params = {k: np.asarray(v, dtype=float)[:, None] for k, v in draws.items()}
    return model._covariate_link().individual(params, model.covariate_data(rfm))


def summary(values: np.ndarray) -> dict:
    """Mean and the quantiles of an interval over draws (axis 0), as predictions report them."""
    median, lower, upper = np.quantile(values, QS, axis=0)
    return {"mean": values.mean(axis=0), "mean_median": median, "mean_lower": lower, "mean_upper": upper}


def assert_frame_matches(frame: pd.DataFrame, expected: dict, rtol: float = 1e-12) -> None:
    for column, values in expected.items():
        np.testing.assert_allclose(frame[column].to_numpy(), values, rtol=rtol, atol=1e-300, err_msg=column)


def history(rfm):
    return {k: rfm[k].to_numpy(dtype=float) for k in HISTORY}


def test_categorical_covariates_are_evaluated_profile_by_profile(fits, customers):
    model = fits["categorical"][0]
    groups = C.profile_groups(model.covariate_data(customers))
    z = model.covariate_data(customers)
    assert len(groups) == 6
    positions = [np.arange(len(customers))[rows] for _, rows in groups]
    np.testing.assert_array_equal(np.sort(np.concatenate(positions)), np.arange(len(customers)))
    for (profile, _), rows in zip(groups, positions):   # each group: the customers of its profile
        assert all(np.all(z[k][rows] == v) for k, v in profile.items())
    assert C.profile_groups(fits["continuous"][0].covariate_data(customers)) is None   # ~3,000 profiles


@pytest.mark.parametrize("kind", ["categorical", "continuous"])
def test_bgnbd_intervals_equal_direct_evaluation_at_each_customers_parameters(fits, customers, kind):
    model = fits[kind][0]
    params = individual(model, model.parameter_draws(200, seed=1), customers)
    hist = history(customers)
    out = model.expected_purchases(10, customers, interval=LEVEL, n_draws=200, seed=1)
    assert_frame_matches(out, summary(bgnbd_expected(params, **hist, t=10.0)))
    out = model.probability_alive(customers, interval=LEVEL, n_draws=200, seed=1)
    assert_frame_matches(out, summary(bgnbd_alive(params, **hist)))


def test_pareto_nbd_intervals_equal_direct_evaluation(customers):
    model = ParetoNBDModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1"]).fit(customers)
    assert len(C.profile_groups(model.covariate_data(customers))) == 6
    params = individual(model, model.parameter_draws(100, seed=2), customers)
    hist = history(customers)
    out = model.expected_purchases(8, customers, interval=LEVEL, n_draws=100, seed=2)
    assert_frame_matches(out, summary(pnbd_expected(params, **hist, t=8.0)), rtol=1e-10)
    out = model.probability_alive(customers, interval=LEVEL, n_draws=100, seed=2)
    assert_frame_matches(out, summary(pnbd_alive(params, **hist)), rtol=1e-10)
    # the predictive pmf, per profile and (x, T) pair, against the pmf table at each customer's parameters
    table = predictive.purchase_pmf(model, 8, 5, customers, n_draws=100, seed=2)
    np.testing.assert_allclose(table, pnbd_pmf(params, **hist, t=8.0, n_max=5).mean(axis=0), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["categorical", "continuous"])
def test_gamma_gamma_and_expected_clv_intervals_equal_direct_evaluation(fits, customers, kind):
    bgnbd, gg = fits[kind]
    rfm = customers
    spend = rfm[rfm.frequency > 0]
    draws = gg.parameter_draws(200, seed=3)
    direct = expected_spend(individual(gg, draws, spend), spend.frequency.to_numpy(float),
                            spend.monetary_value.to_numpy(float))
    assert_frame_matches(gg.expected_spend(spend, interval=LEVEL, n_draws=200, seed=3), summary(direct))
    # expected CLV over 4 months: Σ_i (E[Y(iΔ)] − E[Y((i−1)Δ)]) (1+d)^−i · E[spend], per draw and customer
    delta, horizon = 4.345, 4
    purchase_draws, spend_draws = model_draws(bgnbd, gg, interval=LEVEL, n_draws=200, seed=4)
    params, hist = individual(bgnbd, purchase_draws, rfm), history(rfm)
    cum = [0.0] + [bgnbd_expected(params, **hist, t=i * delta) for i in range(1, horizon + 1)]
    purchases = sum((cum[i] - cum[i - 1]) / 1.01 ** i for i in range(1, horizon + 1))
    values = purchases * expected_spend(individual(gg, spend_draws, rfm), hist["frequency"],
                                        rfm.monetary_value.to_numpy(float))
    out = clv.clv(bgnbd, gg, rfm, horizon=horizon, period_length=delta, discount_rate=0.01, interval=LEVEL,
                  kind="expected", n_draws=200, seed=4)
    assert_frame_matches(out, summary(values), rtol=1e-10)


def test_sharing_changes_no_number(fits, customers, monkeypatch):
    """Predictions with profile-by-profile evaluation equal those at per-customer parameters in one
    pass (sharing off: no profile is ever large enough), to 1e-12, with the same seed."""
    bgnbd, gg = fits["categorical"]
    rfm = customers.sample(frac=1.0, random_state=0)               # profiles interleaved: gathers, not slices

    def predictions():
        return {"pmf": predictive.purchase_pmf(bgnbd, 10, 6, rfm, n_draws=100, seed=5),
                "predictive": predictive.predictive_purchases(bgnbd, 10, rfm, interval=LEVEL, n_draws=100, seed=5),
                "clv": clv.clv(bgnbd, gg, rfm, horizon=3, period_length=4.345, interval=LEVEL, kind="expected",
                               n_draws=100, seed=6),
                "dert": bgnbd.dert(0.002, rfm.iloc[:400], interval=LEVEL, n_draws=20, seed=8),
                "alive_later": bgnbd.probability_alive(rfm.iloc[:400], at=13.0, interval=LEVEL, n_draws=20, seed=8),
                "table": bgnbd.formula("purchase_pmf_formula")(
                    {k: v[:, None] for k, v in bgnbd.parameter_draws(20, seed=7).items()},
                    **history(rfm), **bgnbd.covariate_data(rfm), t=10.0, n_max=5)}

    shared = predictions()
    monkeypatch.setattr(C, "MIN_PROFILE_ROWS", 10**9)
    assert C.profile_groups(bgnbd.covariate_data(rfm)) is None
    alone = predictions()
    np.testing.assert_allclose(shared["pmf"], alone["pmf"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(shared["table"], alone["table"], rtol=0, atol=1e-12)
    assert shared["table"].shape == (20, len(rfm), 6)
    pd.testing.assert_frame_equal(shared["predictive"], alone["predictive"], check_exact=False, rtol=1e-12)
    for name in ("clv", "dert", "alive_later"):
        pd.testing.assert_frame_equal(shared[name], alone[name], check_exact=False, rtol=1e-12)


def test_active_customers_sums_each_customers_p_alive(fits, customers):
    """The predictive count of active customers: its mean is Σ_i P(alive) at each customer's own
    parameters (the same draws), within the binomial Monte Carlo error."""
    from clvmodels.models.draws import parameter_draws

    model = fits["categorical"][0]
    rfm = customers[(customers.frequency > 0) & (customers.x1 == 2)]      # repeat buyers who drop out more
    out = predictive.active_customers(model, rfm, interval=LEVEL, n_samples=2000, n_draws=200, seed=9)
    draws = parameter_draws(model, 200, np.random.default_rng(9))
    alive = bgnbd_alive(individual(model, draws, rfm), **history(rfm))
    mc_se = np.sqrt((alive * (1 - alive)).sum(axis=1).mean() / 2000)
    assert abs(out["mean"].iloc[0] - alive.sum(axis=1).mean()) < 4 * mc_se
    # at the population parameters alone (covariates ignored) the count is off by far more
    plain = bgnbd_alive({k: v[:, None] for k, v in draws.items() if ":" not in k}, **history(rfm))
    assert abs(plain.sum(axis=1).mean() - alive.sum(axis=1).mean()) > 10 * mc_se
