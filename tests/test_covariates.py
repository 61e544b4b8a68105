"""Static customer covariates (issue 14): the link layer, validation, MLE with constraints and
penalty, the likelihood-ratio test, predictions, persistence and simulation."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets.simulate import simulate, simulate_bgbb, simulate_sbg
from clvmodels.errors import ClvDataError
from clvmodels.models import (BetaGeoBetaBinomModel, BetaGeoModel, GammaGammaModel, ModifiedBetaGeoModel,
                              ParetoNBDModel, ShiftedBetaGeoModel)
from clvmodels.models.bgnbd import expected_purchases as bgnbd_expected, probability_alive as bgnbd_alive
from clvmodels.models.covariates import CovariateDesign, CovariateLink, key
from clvmodels.models.namespaces import pytensor_namespace
from clvmodels.models.gamma_gamma import expected_spend
from clvmodels.models.pareto_nbd import expected_purchases as pnbd_expected

# ---------------------------------------------------------------------------- data
#: BG/NBD + Gamma-Gamma truth of the simulated log (coefficients per unit of the user's columns).
TRUE_COEFS = {"alpha:x1": 0.4, "alpha:x2": -0.3, "a:x1": 0.3, "b:x1": -0.2, "a:x2": 0.0, "b:x2": 0.4,
              "gamma:x1": 0.2, "gamma:x2": -0.25}


def covariate_table(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(2.0, 1.0, n), "x2": (rng.random(n) < 0.4).astype(float)})


@pytest.fixture(scope="module")
def simulated():
    """20,000 customers from BG/NBD + Gamma-Gamma with two covariates on every process."""
    n = 20_000
    cov = covariate_table(n)
    log, truth = simulate(n, covariates=cov, coefficients=TRUE_COEFS, return_truth=True, seed=3)
    rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W",
                          covariates=truth[["x1", "x2"]])
    return rfm


@pytest.fixture(scope="module")
def bgnbd_fit(simulated):
    return BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]).fit(simulated)


def simulate_pareto_rfm(n, r, alpha, s, beta, coefs, seed=0, T_max=52.0):
    """Pareto/NBD histories with covariates linked as CLVTools links them (α_i = α e^{−γ_t x}, β_i = β e^{−γ_l x})."""
    rng = np.random.default_rng(seed)
    cov = covariate_table(n, seed + 1)
    alpha_i = alpha * np.exp(-sum(coefs.get(f"alpha:{c}", 0.0) * cov[c] for c in cov))
    beta_i = beta * np.exp(-sum(coefs.get(f"beta:{c}", 0.0) * cov[c] for c in cov))
    lam = rng.gamma(r, 1.0 / alpha_i.to_numpy())
    mu = rng.gamma(s, 1.0 / beta_i.to_numpy())
    T = rng.uniform(T_max / 2, T_max, n)
    alive_for = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * alive_for)
    # the last of x uniform purchase times in (0, alive_for]
    recency = np.where(x > 0, alive_for * rng.random(n) ** (1.0 / np.maximum(x, 1)), 0.0)
    rfm = pd.DataFrame({"frequency": x, "recency": recency, "T": T}).join(cov)
    rfm.index = pd.Index([f"c{i}" for i in range(n)], name="customer_id")
    return rfm


# ---------------------------------------------------------------------------- the link
CASES = [
    (BetaGeoModel, {"r": 0.3, "alpha": 4.0, "a": 0.8, "b": 2.4},
     {"frequency": [0, 1, 3, 10], "recency": [0, 5, 20, 30], "T": [40, 35, 30, 38]}),
    (ModifiedBetaGeoModel, {"r": 0.5, "alpha": 6.0, "a": 0.9, "b": 1.6},
     {"frequency": [0, 1, 3, 10], "recency": [0, 5, 20, 30], "T": [40, 35, 30, 38]}),
    (ParetoNBDModel, {"r": 0.55, "alpha": 10.6, "s": 0.6, "beta": 11.7},
     {"frequency": [0, 1, 3, 10], "recency": [0, 5, 20, 30], "T": [40, 35, 30, 38]}),
    (GammaGammaModel, {"p": 6.2, "q": 3.7, "gamma": 15.4},
     {"frequency": [1, 2, 5, 9], "monetary_value": [10.0, 35.5, 20.0, 60.0]}),
    (BetaGeoBetaBinomModel, {"alpha": 1.2, "beta": 0.75, "gamma": 0.66, "delta": 2.8},
     {"frequency": [0, 1, 3, 5], "recency": [0, 2, 4, 6], "n_periods": [6, 6, 6, 6]}),
    (ShiftedBetaGeoModel, {"alpha": 0.7, "beta": 1.2}, {"period": [1, 2, 5, 7], "churned": [1, 1, 0, 1]}),
]


def design_for(cls, n: int, zero: bool = False) -> tuple[CovariateDesign, dict]:
    """A design with two covariates on every process of ``cls`` and its (standardised) columns."""
    frame = covariate_table(n, seed=5)
    design = CovariateDesign.learn(frame, {p: ["x1", "x2"] for p in cls.covariate_links})
    z = design.transform(frame)
    return design, ({k: np.zeros(n) for k in z} if zero else z)


@pytest.mark.parametrize("cls, params, data", CASES, ids=[c[0].__name__ for c in CASES])
def test_zero_coefficients_or_zero_covariates_give_the_model_without_covariates(cls, params, data):
    data = {k: np.asarray(v, dtype=float) for k, v in data.items()}
    plain = cls.log_likelihood(params, data, np)
    rng = np.random.default_rng(0)
    for zero_covariates in (False, True):
        design, z = design_for(cls, len(plain), zero=zero_covariates)
        link = CovariateLink.build(cls.covariate_links, design)
        coefs = {n: (rng.normal() if zero_covariates else 0.0) for n in link.coefficient_names}
        linked = cls.log_likelihood(link.individual({**params, **coefs}, z, np), data, np)
        np.testing.assert_allclose(linked, plain, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls, params, data", CASES, ids=[c[0].__name__ for c in CASES])
def test_link_scales_the_documented_parameters_with_the_documented_sign(cls, params, data):
    design, z = design_for(cls, 4)
    link = CovariateLink.build(cls.covariate_links, design)
    coefs = {n: 0.0 for n in link.coefficient_names}
    for process, targets in cls.covariate_links.items():
        for param, sign in targets:
            out = link.individual({**params, **coefs, f"{param}:x1": 0.5}, z, np)
            np.testing.assert_allclose(out[param], params[param] * np.exp(sign * 0.5 * z[key("x1")]), rtol=1e-14)
            for other in params:
                if other != param:
                    np.testing.assert_array_equal(out[other], params[other])


# ---------------------------------------------------------------------------- validation
def small_rfm(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(1.0, n)
    T = rng.uniform(20, 40, n)
    rfm = pd.DataFrame({"frequency": x, "recency": np.where(x > 0, T * rng.random(n), 0.0), "T": T,
                        "x1": rng.normal(size=n), "channel": rng.choice(["web", "store", "app"], n, p=[.5, .3, .2])},
                       index=pd.Index([f"c{i}" for i in range(n)], name="customer_id"))
    return rfm


def test_validation_names_the_column_and_counts_the_rows():
    rfm = small_rfm()
    with pytest.raises(ClvDataError, match=r"\['x9'\] not found.*200 rows"):
        BetaGeoModel(purchase_covariates=["x9"]).fit(rfm)
    bad = rfm.copy()
    bad.iloc[[3, 7, 9], bad.columns.get_loc("x1")] = [np.nan, np.inf, np.nan]
    with pytest.raises(ClvDataError, match=r"missing or infinite values in column 'x1' \(3 rows\)"):
        BetaGeoModel(purchase_covariates=["x1"]).fit(bad)
    with pytest.raises(ClvDataError, match=r"'channel' is not numeric.*one_hot=True"):
        BetaGeoModel(dropout_covariates=["channel"]).fit(rfm)
    constant = rfm.assign(x1=2.5)
    with pytest.raises(ClvDataError, match=r"constant.*column 'x1' \(200 rows\)"):
        BetaGeoModel(purchase_covariates=["x1"]).fit(constant)
    with pytest.raises(ClvDataError, match="list of column names"):
        BetaGeoModel(purchase_covariates="x1").fit(rfm)


def test_one_hot_drops_the_most_frequent_level_and_names_it():
    rfm = small_rfm()
    m = BetaGeoModel(purchase_covariates=["channel"], one_hot=True).fit(rfm)
    assert m.covariates_["dropped"] == {"channel": "web"}
    assert list(m.coefficients_.index) == ["alpha:channel[app]", "alpha:channel[store]"]
    # a level unseen at fit is refused at prediction
    with pytest.raises(ClvDataError, match=r"levels not seen at fit \(\['phone'\]\)"):
        m.expected_purchases(5, rfm=rfm.assign(channel="phone"))


def test_prediction_needs_the_covariate_columns(bgnbd_fit, simulated):
    with pytest.raises(ClvDataError, match=r"\['x2'\] not found.*never taken as 0"):
        bgnbd_fit.probability_alive(rfm=simulated.drop(columns="x2"))


def test_covariates_need_a_process_of_the_model():
    # the constructor offers exactly the processes of the model's kind
    assert "spend_covariates" in GammaGammaModel().get_params()
    assert {"purchase_covariates", "dropout_covariates"} <= set(BetaGeoModel().get_params())
    assert "dropout_covariates" in ShiftedBetaGeoModel().get_params()
    with pytest.raises(TypeError, match="purchase_covariates"):
        GammaGammaModel(purchase_covariates=["x1"])

    class NoLinks(BetaGeoModel):      # a model that declares no link must not ignore covariates silently
        covariate_links = {}

    with pytest.raises(ClvDataError, match=r"does not link covariates to its \['dropout'\] process"):
        NoLinks(dropout_covariates=["x1"]).fit(small_rfm())
    with pytest.raises(ClvDataError, match="covariate_penalty must be"):
        BetaGeoModel(purchase_covariates=["x1"], covariate_penalty=-1.0).fit(small_rfm())


def test_join_covariates_counts_customers_missing_on_either_side():
    log = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                        "date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-03", "2024-01-05"])})
    table = pd.DataFrame({"id": ["a", "b", "z"], "age": [30.0, 40.0, 50.0]})
    kw = dict(customer_id="customer_id", timestamp="date", amount=None)
    with pytest.raises(ClvDataError, match=r"no row in the covariate table \(1 row\)"):
        clv.rfm_summary(log, covariates=table, covariate_id="id", **kw)
    with pytest.warns(UserWarning, match="1 customers have no covariates"):
        rfm = clv.rfm_summary(log, covariates=table, covariate_id="id", missing_covariates="drop", **kw)
    assert list(rfm.index) == ["a", "b"] and list(rfm["age"]) == [30.0, 40.0]
    assert rfm.attrs["n_without_covariates"] == 1 and rfm.attrs["n_covariates_unmatched"] == 1
    assert rfm.attrs["time_unit"] == "W"
    with pytest.raises(ClvDataError, match="more than one row per customer"):
        clv.rfm_summary(log, covariates=pd.concat([table, table]), covariate_id="id", **kw)
    with pytest.warns(UserWarning, match="no covariates"):
        cal = clv.calibration_holdout(log, "2024-01-10", covariates=table.set_index("id"), missing_covariates="drop",
                                      **kw)
    assert list(cal["age"]) == [30.0, 40.0] and cal.attrs["n_without_covariates"] == 1


def test_a_table_with_an_id_column_joins_by_it_not_by_row_numbers():
    """A table read from a file has its ids in a column and row numbers as index: joining on the
    row numbers would give customers the covariates of others (a bug once, found in a backtest)."""
    log = pd.DataFrame({"customer_id": [7, 7, 3, 5], "date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-03",
                                                                             "2024-01-05"])})
    table = pd.DataFrame({"customer_id": [5, 3, 7], "age": [50.0, 30.0, 70.0]})    # index 0, 1, 2
    kw = dict(customer_id="customer_id", timestamp="date", amount=None)
    rfm = clv.rfm_summary(log, covariates=table, **kw)
    assert rfm["age"].to_dict() == {3: 30.0, 5: 50.0, 7: 70.0} and "customer_id" not in rfm.columns
    cal = clv.calibration_holdout(log, "2024-01-10", covariates=table, **kw)
    assert cal["age"].to_dict() == {3: 30.0, 5: 50.0, 7: 70.0}
    with pytest.raises(ClvDataError, match="say which holds the customer ids"):
        clv.rfm_summary(log, covariates=table.set_index(pd.Index([5, 3, 7], name="cid")), **kw)


# ---------------------------------------------------------------------------- MLE
def user_scale_baseline(model, param: str) -> float:
    """The population parameter at the user's covariates all 0 (the fit's is at their means)."""
    design = CovariateDesign.from_dict(model.covariates_)
    sign = dict(next(t for t in model.covariate_links.values() if param in dict(t)))[param]
    eta = sum(-model.coefficients_[f"{param}:{c.name}"] * c.mean / c.scale for c in design.columns
              if f"{param}:{c.name}" in model.coefficients_)
    return model.params_[param] * np.exp(sign * eta)


def test_bgnbd_recovers_the_coefficients_within_3_se(bgnbd_fit):
    table = bgnbd_fit.summary()
    assert bgnbd_fit.converged_
    for name, truth in TRUE_COEFS.items():
        if name.split(":")[0] in ("alpha", "a", "b"):
            row = table.loc[name]
            assert abs(row["user_estimate"] - truth) < 3 * row["user_se"], (name, row["user_estimate"], truth)
    assert abs(table.loc["r", "estimate"] - 0.243) < 3 * table.loc["r", "se"]
    assert abs(np.log(user_scale_baseline(bgnbd_fit, "alpha") / 4.414)) < 0.15


def test_gamma_gamma_recovers_the_spend_coefficients(simulated):
    gg = GammaGammaModel(spend_covariates=["x1", "x2"], exclude_invalid=True).fit(simulated)
    table = gg.summary()
    for name in ("gamma:x1", "gamma:x2"):
        assert abs(table.loc[name, "user_estimate"] - TRUE_COEFS[name]) < 3 * table.loc[name, "user_se"]
    assert abs(table.loc["p", "estimate"] - 6.25) < 3 * table.loc["p", "se"]


@pytest.mark.parametrize("n", [6000])      # 50,000: test_every_model_recovers_every_parameter_and_coefficient_...
def test_pareto_nbd_recovers_the_coefficients_within_3_se(n):
    truth = {"alpha:x1": 0.5, "alpha:x2": -0.4, "beta:x1": -0.3, "beta:x2": 0.6}
    rfm = simulate_pareto_rfm(n, 0.6, 8.0, 0.8, 12.0, truth, seed=2)
    m = ParetoNBDModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]).fit(rfm)
    table = m.summary()
    for name, value in truth.items():
        assert abs(table.loc[name, "user_estimate"] - value) < 3 * table.loc[name, "user_se"], name
    for param, value in (("alpha", 8.0), ("beta", 12.0)):
        assert abs(np.log(user_scale_baseline(m, param) / value)) < 0.3


def test_constraint_shares_one_coefficient_and_lowers_the_likelihood(simulated, bgnbd_fit):
    tied = BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"],
                        covariate_constraints=[["a:x1", "b:x1"]]).fit(simulated)
    assert tied.coefficients_["a:x1"] == tied.coefficients_["b:x1"]
    assert tied.n_free_parameters_ == bgnbd_fit.n_free_parameters_ - 1
    assert tied.log_likelihood_ <= bgnbd_fit.log_likelihood_ + 1e-6
    test = clv.lr_test(tied, bgnbd_fit)
    assert test["df"] == 1 and test["statistic"] >= 0 and 0 <= test["p_value"] <= 1
    # a covariate name ties every coefficient of that covariate
    all_x2 = BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"],
                          covariate_constraints=["x2"]).fit(simulated)
    assert len({all_x2.coefficients_[n] for n in ("alpha:x2", "a:x2", "b:x2")}) == 1
    with pytest.raises(ClvDataError, match="unknown: \\['a:x9'\\]"):
        BetaGeoModel(purchase_covariates=["x1"], dropout_covariates=["x1"],
                     covariate_constraints=[["a:x1", "a:x9"]]).fit(simulated)


def test_penalty_zero_is_the_mle_and_a_huge_penalty_shrinks_the_coefficients(simulated):
    rfm = simulated.iloc[:5000]
    kw = dict(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"])
    mle = BetaGeoModel(**kw).fit(rfm)
    zero = BetaGeoModel(covariate_penalty=0.0, **kw).fit(rfm)
    pd.testing.assert_series_equal(zero.coefficients_, mle.coefficients_)
    mild = BetaGeoModel(covariate_penalty=0.01, **kw).fit(rfm)
    huge = BetaGeoModel(covariate_penalty=1e4, **kw).fit(rfm)
    assert np.abs(mild.coefficients_).sum() < np.abs(mle.coefficients_).sum()
    assert np.abs(huge.coefficients_).max() < 1e-4
    assert huge.log_likelihood_ < mild.log_likelihood_ <= mle.log_likelihood_ + 1e-6
    plain = BetaGeoModel().fit(rfm)
    assert huge.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-6)
    with pytest.raises(ClvDataError, match="unpenalised"):
        clv.lr_test(plain, mild)


def test_lr_test_refuses_non_nested_or_swapped_fits(simulated, bgnbd_fit):
    plain = BetaGeoModel().fit(simulated)
    out = clv.lr_test(plain, bgnbd_fit)
    assert out["df"] == 6 and out["statistic"] > 100 and out["p_value"] < 1e-10
    with pytest.raises(ClvDataError, match="swap"):
        clv.lr_test(bgnbd_fit, plain)


# ---------------------------------------------------------------------------- predictions
def per_customer(model, rfm):
    """Each customer's parameters computed directly from the user's columns (not through the link)."""
    design = CovariateDesign.from_dict(model.covariates_)
    out = {k: np.full(len(rfm), v) for k, v in model.params_.items()}
    for process, targets in model.covariate_links.items():
        for param, sign in targets:
            eta = sum(model.coefficients_[f"{param}:{c.name}"] * (rfm[c.source].to_numpy() - c.mean) / c.scale
                      for c in design.columns if f"{param}:{c.name}" in model.coefficients_)
            out[param] = out[param] * np.exp(sign * eta)
    return out


def test_predictions_equal_a_direct_evaluation_with_per_customer_parameters(bgnbd_fit, simulated):
    rfm = simulated.iloc[:3000]
    params = per_customer(bgnbd_fit, rfm)
    hist = {k: rfm[k].to_numpy(dtype=float) for k in ("frequency", "recency", "T")}
    np.testing.assert_allclose(bgnbd_fit.probability_alive(rfm=rfm), bgnbd_alive(params, **hist), rtol=1e-12)
    np.testing.assert_allclose(bgnbd_fit.expected_purchases(12, rfm=rfm), bgnbd_expected(params, **hist, t=12.0),
                               rtol=1e-10)
    # one customer at a time: no broadcasting, no distinct-row shortcut
    i = 17
    one = {k: v[i] for k, v in params.items()}
    assert bgnbd_fit.expected_purchases(12, rfm=rfm).iloc[i] == pytest.approx(
        float(bgnbd_expected(one, **{k: v[i:i + 1] for k, v in hist.items()}, t=12.0)[0]), rel=1e-10)


def test_pareto_and_gamma_gamma_predictions_equal_direct_evaluation():
    rfm = simulate_pareto_rfm(3000, 0.6, 8.0, 0.8, 12.0, {"alpha:x1": 0.5, "beta:x2": 0.6}, seed=4)
    m = ParetoNBDModel(purchase_covariates=["x1"], dropout_covariates=["x2"]).fit(rfm)
    hist = {k: rfm[k].to_numpy(dtype=float) for k in ("frequency", "recency", "T")}
    np.testing.assert_allclose(m.expected_purchases(10, rfm=rfm), pnbd_expected(per_customer(m, rfm), **hist, t=10.0),
                               rtol=1e-10)
    # simulated futures: customers of one history but their own parameters are not merged
    # (per_distinct_draw shares a history's P(alive) only where the parameters are shared)
    from clvmodels.models.purchase import per_distinct_draw
    from clvmodels.models.pareto_nbd import probability_alive as pnbd_alive

    own = {k: np.asarray(v)[None, :] * np.ones((3, 1)) for k, v in per_customer(m, rfm).items()}
    weekly = [np.round(v) for v in hist.values()]                  # histories to the week: shared by many
    assert len(np.unique(np.column_stack(weekly), axis=0)) < len(rfm) / 2
    np.testing.assert_array_equal(per_distinct_draw(pnbd_alive, own, *weekly), pnbd_alive(own, *weekly))
    spend = rfm[rfm.frequency > 0].assign(monetary_value=lambda d: 20 + 5 * d.x1 + d.x2)
    gg = GammaGammaModel(spend_covariates=["x1"]).fit(spend)
    np.testing.assert_allclose(gg.expected_spend(spend), expected_spend(per_customer(gg, spend), spend.frequency.to_numpy(
        dtype=float), spend.monetary_value.to_numpy()), rtol=1e-12)


def test_zero_coefficients_give_the_predictions_without_covariates(bgnbd_fit, simulated):
    rfm = simulated.iloc[:2000]
    zeroed = BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]).fit(rfm)
    zeroed.coefficients_[:] = 0.0
    plain = BetaGeoModel().fit(rfm)
    plain.params_ = zeroed.params_.copy()
    for method, kw in (("probability_alive", {}), ("expected_purchases", {"t": 10}),
                       ("probability_of_n_purchases", {"t": 10, "n": 2})):
        np.testing.assert_allclose(getattr(zeroed, method)(rfm=rfm, **kw), getattr(plain, method)(rfm=rfm, **kw),
                                   rtol=1e-10, atol=1e-14)


def test_intervals_draw_parameters_and_coefficients_jointly(bgnbd_fit, simulated):
    rfm = simulated.iloc[:500]
    draws = bgnbd_fit.parameter_draws(400, seed=1)
    assert set(draws) == set(bgnbd_fit.param_names) | set(bgnbd_fit.coefficients_.index)
    assert abs(np.std(draws["alpha:x1"]) - bgnbd_fit.summary().loc["alpha:x1", "se"]) < 0.15 * bgnbd_fit.summary().loc[
        "alpha:x1", "se"]
    out = bgnbd_fit.expected_purchases(10, rfm=rfm, interval=0.9, seed=0)
    point = bgnbd_fit.expected_purchases(10, rfm=rfm)
    assert np.all(out["mean_lower"] <= point) and np.all(point <= out["mean_upper"])


def test_saved_model_keeps_names_encoding_and_scaling(tmp_path, simulated):
    rfm = simulated.iloc[:3000].assign(channel=lambda d: np.where(d.x2 > 0, "store", "web"))
    m = BetaGeoModel(purchase_covariates=["x1", "channel"], dropout_covariates=["channel"], one_hot=["channel"]).fit(rfm)
    m.save(tmp_path / "m")
    loaded = clv.load_model(tmp_path / "m")
    assert loaded.covariates_ == m.covariates_
    pd.testing.assert_series_equal(loaded.expected_purchases(8, rfm=rfm), m.expected_purchases(8, rfm=rfm),
                                   check_exact=True)
    pd.testing.assert_frame_equal(loaded.summary(), m.summary())
    assert loaded.covariates_["dropped"] == {"channel": "web"}
    with pytest.raises(ClvDataError, match="not found"):
        loaded.expected_purchases(8, rfm=rfm.drop(columns="channel"))


def test_simulate_refuses_coefficients_of_unknown_parameters():
    cov = covariate_table(10)
    with pytest.raises(ClvDataError, match="Coefficient 'r:x1'"):
        simulate(10, covariates=cov, coefficients={"r:x1": 0.1})
    with pytest.raises(ClvDataError, match="one row per customer"):
        simulate(11, covariates=cov, coefficients={"alpha:x1": 0.1})


def test_clv_and_predictive_distributions_use_each_customers_parameters(simulated):
    rfm = simulated.iloc[:400]
    m = BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1"]).fit(simulated.iloc[:4000])
    gg = GammaGammaModel(spend_covariates=["x1"], exclude_invalid=True).fit(simulated.iloc[:4000])
    # expected CLV: Σ_i (E[Y(iΔ)] − E[Y((i−1)Δ)]) (1+d)^−i · E[spend], with per-customer parameters
    params, spend_params = per_customer(m, rfm), per_customer(gg, rfm)
    hist = {k: rfm[k].to_numpy(dtype=float) for k in ("frequency", "recency", "T")}
    from clvmodels.units import period_length

    delta = period_length("M", "W", None)
    cum = [np.zeros(len(rfm))] + [bgnbd_expected(params, **hist, t=i * delta) for i in range(1, 4)]
    purchases = sum((cum[i] - cum[i - 1]) / 1.01 ** i for i in range(1, 4))
    spend = expected_spend(spend_params, hist["frequency"], rfm.monetary_value.to_numpy())
    np.testing.assert_allclose(clv.clv(m, gg, rfm, horizon=3, period="M", discount_rate=0.01), purchases * spend,
                               rtol=1e-9)
    # the predictive pmf's mean is the expected count; its P(0) that of the per-customer model
    from clvmodels import predictive
    from clvmodels.models.bgnbd import purchase_pmf as bgnbd_pmf

    out = predictive.predictive_purchases(m, 10, rfm, interval=0.9)
    np.testing.assert_allclose(out["mean"], m.expected_purchases(10, rfm=rfm), rtol=1e-9)
    np.testing.assert_allclose(out["p_zero"], bgnbd_pmf(params, **hist, t=10.0, n_max=4)[:, 0], rtol=1e-9)
    # simulated futures average to the expected value
    sims = clv.simulate_clv(m, gg, rfm.iloc[:50], horizon=3, period="M", discount_rate=0.01, n_samples=4000, seed=1).to_numpy()
    assert sims.shape == (4000, 50)
    assert abs(sims.mean() - (purchases * spend)[:50].mean()) < 4 * sims.mean(axis=1).std() / np.sqrt(4000) + 0.05 * sims.mean()
    with pytest.raises(ClvDataError, match="not found"):
        clv.clv(m, gg, rfm.drop(columns="x2"), horizon=3)


# ---------------------------------------------------------------------------- Bayesian fits
@pytest.fixture(scope="module")
def small_simulated(simulated):
    return simulated.iloc[:3000]


def test_map_with_covariates_is_near_the_mle_and_priors_are_overridable(small_simulated):
    kw = dict(purchase_covariates=["x1", "x2"], dropout_covariates=["x1"])
    mle = BetaGeoModel(**kw).fit(small_simulated)
    m = BetaGeoModel(**kw).fit(small_simulated, method="map")
    assert m.converged_
    table, ref = m.summary(), mle.summary()
    for name in mle.coefficients_.index:     # weak N(0, 1) priors on standardised coefficients
        assert abs(table.loc[name, "estimate"] - ref.loc[name, "estimate"]) < 0.2 * ref.loc[name, "se"]
    # a tight prior at 0 holds a coefficient near 0: posterior precision 1e4 against the data's ~1/SE²
    tight = BetaGeoModel(**kw, priors={"alpha:x1": ("Normal", {"mu": 0.0, "sigma": 0.01})}).fit(
        small_simulated, method="map")
    assert abs(tight.coefficients_["alpha:x1"]) < 0.1 * abs(mle.coefficients_["alpha:x1"])
    assert tight.coefficients_["alpha:x2"] == pytest.approx(mle.coefficients_["alpha:x2"], abs=0.5 * ref.loc["alpha:x2", "se"])
    with pytest.warns(clv.PriorSensitivityWarning):   # the drop-out shapes absorb what the coefficients cannot
        everything = BetaGeoModel(**kw, priors={"coefficients": ("Normal", {"mu": 0.0, "sigma": 0.01})}).fit(
            small_simulated, method="map")
    assert np.abs(everything.coefficients_).max() < 0.1 * np.abs(mle.coefficients_).max()
    with pytest.raises(ValueError, match=r"unknown coefficient\(s\) \['beta:x1'\]"):
        BetaGeoModel(**kw, priors={"beta:x1": ("Normal", {"mu": 0.0, "sigma": 1.0})}).fit(small_simulated, method="map")


def test_nuts_with_covariates_agrees_with_the_mle_and_survives_saving(small_simulated, tmp_path):
    kw = dict(purchase_covariates=["x1"], dropout_covariates=["x2"])
    mle = BetaGeoModel(**kw).fit(small_simulated)
    m = BetaGeoModel(**kw, progressbar=False, seed=1).fit(small_simulated, method="nuts", draws=300, tune=300,
                                                          chains=2)
    table, ref = m.summary(), mle.summary()
    for name in ["r", "alpha", *mle.coefficients_.index]:
        assert abs(table.loc[name, "mean"] - ref.loc[name, "estimate"]) < 0.5 * ref.loc[name, "se"], name
    assert set(m.posterior_draws_) == {"r", "alpha", "a", "b", "alpha:x1", "a:x2", "b:x2"}
    assert table.loc["alpha:x1", "user_mean"] == pytest.approx(ref.loc["alpha:x1", "user_estimate"], rel=0.1)
    rfm = small_simulated.iloc[:50]
    m.save(tmp_path / "nuts")
    loaded = clv.load_model(tmp_path / "nuts")
    pd.testing.assert_series_equal(loaded.expected_purchases(10, rfm=rfm), m.expected_purchases(10, rfm=rfm),
                                   check_exact=True)


def test_new_customer_expectations_take_the_new_customers_covariates(bgnbd_fit, simulated):
    from clvmodels.models.bgnbd import expected_purchases_new_customer as new_customer

    profiles = pd.DataFrame({"x1": [1.0, 3.0], "x2": [0.0, 1.0]}, index=["low", "high"])
    out = bgnbd_fit.expected_purchases_new_customer(26, covariates=profiles)
    direct = new_customer(per_customer(bgnbd_fit, profiles), t=26.0)
    np.testing.assert_allclose(out.loc[["low", "high"]], direct, rtol=1e-12)
    with pytest.raises(ClvDataError, match="pass the covariates of the customers"):
        bgnbd_fit.expected_purchases_new_customer(26)
    one = bgnbd_fit.expected_purchases_new_customer([13, 26], covariates={"x1": 3.0, "x2": 1.0})
    assert one.loc[26.0] == pytest.approx(out.loc["high"], rel=1e-12)
    with pytest.raises(ClvDataError, match="has no covariates"):
        BetaGeoModel().fit(simulated.iloc[:2000]).expected_purchases_new_customer(26, covariates=profiles)


# ---------------------------------------------------------------------------- recovery, every model
#: 50,000 simulated customers with two covariates (x1 ~ N(2, 1), x2 ~ Bernoulli(0.4)) on each process
#: of each model, every coefficient non-zero (per unit of the user's columns).
RECOVERY_N = 50_000
PURCHASE_TRUTH = {"alpha:x1": 0.4, "alpha:x2": -0.3, "a:x1": 0.3, "a:x2": -0.3, "b:x1": -0.2, "b:x2": 0.4,
                  "gamma:x1": 0.2, "gamma:x2": -0.25}
PARETO_TRUTH = {"alpha:x1": 0.4, "alpha:x2": -0.3, "beta:x1": -0.3, "beta:x2": 0.5}
BGBB_TRUTH = {"alpha:x1": 0.3, "alpha:x2": -0.2, "beta:x1": -0.2, "beta:x2": -0.4, "gamma:x1": -0.3,
              "gamma:x2": 0.3, "delta:x1": 0.2, "delta:x2": 0.4}
SBG_TRUTH = {"alpha:x1": 0.5, "alpha:x2": 0.3, "beta:x1": -0.2, "beta:x2": -0.6}


@functools.cache
def simulated_rfm(seed: int, coefficients: tuple, **params) -> pd.DataFrame:
    """RFM table of a simulated log with covariates (purchases in one hour count once: the fast buyers'
    same-day repeats, merged at the default daily resolution, would bias the purchase rate's coefficients)."""
    cov = covariate_table(RECOVERY_N, seed)
    log, truth = simulate(RECOVERY_N, covariates=cov, coefficients=dict(coefficients), return_truth=True, seed=seed,
                          **params)
    return clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W", resolution="h",
                           covariates=truth[["x1", "x2"]])


RECOVERY = {  # model: (the model, its data, population truth, coefficient truth)
    "BG/NBD": (lambda: BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]),
               lambda: simulated_rfm(21, tuple(PURCHASE_TRUTH.items())),
               {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, PURCHASE_TRUTH),
    "MBG/NBD": (lambda: ModifiedBetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]),
                lambda: simulated_rfm(22, tuple(PURCHASE_TRUTH.items()), drop_at_first=True),
                {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, PURCHASE_TRUTH),
    "Pareto/NBD": (lambda: ParetoNBDModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]),
                   lambda: simulated_rfm(23, tuple(PARETO_TRUTH.items()), s=0.6, beta=10.0),
                   {"r": 0.243, "alpha": 4.414, "s": 0.6, "beta": 10.0}, PARETO_TRUTH),
    "Gamma-Gamma": (lambda: GammaGammaModel(spend_covariates=["x1", "x2"], exclude_invalid=True),
                    lambda: simulated_rfm(21, tuple(PURCHASE_TRUTH.items())),     # BG/NBD's log
                    {"p": 6.25, "q": 3.74, "gamma": 15.44}, PURCHASE_TRUTH),
    "BG/BB": (lambda: BetaGeoBetaBinomModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"]),
              lambda: simulate_bgbb(RECOVERY_N, n_periods=8, covariates=covariate_table(RECOVERY_N, 25),
                                    coefficients=BGBB_TRUTH, seed=25),
              {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}, BGBB_TRUTH),
    "sBG": (lambda: ShiftedBetaGeoModel(dropout_covariates=["x1", "x2"]),
            lambda: simulate_sbg(RECOVERY_N, horizon=8, covariates=covariate_table(RECOVERY_N, 26),
                                 coefficients=SBG_TRUTH, seed=26),
            {"alpha": 0.704, "beta": 1.182}, SBG_TRUTH),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("Pareto/NBD", "BG/BB") else n
                                  for n in RECOVERY])   # BG/BB: ~30 s, Pareto/NBD: ~8 s, the others 0.5-5 s
def test_every_model_recovers_every_parameter_and_coefficient_within_3_se(name):
    make, data, population, coefficients = RECOVERY[name]
    m = make().fit(data())
    assert m.converged_
    table = m.summary()
    design = CovariateDesign.from_dict(m.covariates_)
    links = {param: sign for targets in m.covariate_links.values() for param, sign in targets}
    # the fit's population parameters are those of a customer at the covariates' means (standardised scale)
    for param, value in population.items():
        at_means = value * np.exp(links.get(param, 0.0) * sum(coefficients.get(f"{param}:{c.name}", 0.0) * c.mean
                                                               for c in design.columns))
        row = table.loc[param]
        assert abs(row["estimate"] - at_means) < 3 * row["se"], (name, param, row["estimate"], at_means, row["se"])
    names = [n for n in table.index if ":" in n]
    assert len(names) == 2 * len(links)                          # two covariates on each linked parameter
    for coefficient in names:
        row = table.loc[coefficient]
        assert coefficients[coefficient] != 0.0
        assert abs(row["user_estimate"] - coefficients[coefficient]) < 3 * row["user_se"], (name, coefficient, row)


def test_simulated_bgbb_log_summarises_to_the_simulated_histories():
    cov = covariate_table(500, seed=3)
    histories = simulate_bgbb(500, n_periods=7, covariates=cov, coefficients={"delta:x1": 0.5}, seed=4)
    log = simulate_bgbb(500, n_periods=7, covariates=cov, coefficients={"delta:x1": 0.5}, seed=4,
                        log_start="2020-03-05", period="M")
    summary = clv.bgbb_summary(clv.load_transactions(log, amount=None), period="M", observation_end="2020-10-31")
    pd.testing.assert_frame_equal(summary[["frequency", "recency", "n_periods"]].astype(int),
                                  histories[["frequency", "recency", "n_periods"]].astype(int), check_names=False,
                                  check_index_type=False)


def test_simulators_link_covariates_as_the_models_do():
    from clvmodels.datasets.simulate import BGBB_LINKS, COVARIATE_LINKS, SBG_LINKS

    for links, classes in ((COVARIATE_LINKS, (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel, GammaGammaModel)),
                           (BGBB_LINKS, (BetaGeoBetaBinomModel,)), (SBG_LINKS, (ShiftedBetaGeoModel,))):
        for cls in classes:
            for targets in cls.covariate_links.values():
                for param, sign in targets:
                    assert links[param] == sign, (cls.__name__, param)
    with pytest.raises(ClvDataError, match="both s and beta"):
        simulate(10, s=0.5)
    with pytest.raises(ClvDataError, match="Coefficient 'a:x1'"):
        simulate_sbg(10, covariates=covariate_table(10), coefficients={"a:x1": 0.1})


# ---------------------------------------------------------------------------- the other models
def test_shifted_beta_geometric_recovers_its_coefficients():
    rng = np.random.default_rng(7)
    n, horizon = 20_000, 8
    cov = covariate_table(n, seed=8)
    truth = {"alpha:x1": 0.5, "beta:x2": -0.6}      # α_i = α e^{−γ_α x}, β_i = β e^{−γ_β x}
    alpha_i = 0.7 * np.exp(-truth["alpha:x1"] * cov.x1.to_numpy())
    beta_i = 1.2 * np.exp(-truth["beta:x2"] * cov.x2.to_numpy())
    churn = rng.geometric(rng.beta(alpha_i, beta_i))
    data = pd.DataFrame({"period": np.minimum(churn, horizon), "churned": (churn <= horizon).astype(int)}).join(cov)
    m = ShiftedBetaGeoModel(dropout_covariates=["x1", "x2"]).fit(data)
    table = m.summary()
    for name in ("alpha:x1", "alpha:x2", "beta:x1", "beta:x2"):
        assert abs(table.loc[name, "user_estimate"] - truth.get(name, 0.0)) < 3 * table.loc[name, "user_se"], name
    # a cohort's survival given its covariates: the formula at that profile's parameters
    from clvmodels.models.sbg import survival

    profile = pd.DataFrame({"x1": [2.0], "x2": [1.0]})
    expected = survival({k: v[0] for k, v in per_customer(m, profile).items()}, np.array([1.0, 4.0]))
    np.testing.assert_allclose(m.survival([1, 4], covariates=profile.iloc[0]), expected, rtol=1e-12)
    with pytest.raises(ClvDataError, match="pass the covariates"):
        m.survival([1, 4])


def test_mbgnbd_and_bgbb_find_no_effect_of_a_covariate_that_has_none(simulated):
    rng = np.random.default_rng(11)
    rfm = simulated.iloc[:10_000].assign(noise=lambda d: rng.normal(size=len(d)))
    m = ModifiedBetaGeoModel(purchase_covariates=["noise"], dropout_covariates=["noise"]).fit(rfm)
    assert m.converged_
    table = m.summary()
    for name in ("alpha:noise", "a:noise", "b:noise"):
        assert abs(table.loc[name, "estimate"]) < 3 * table.loc[name, "se"], name
    # BG/BB on opportunities of 8 weeks: the purchase shapes react to a covariate that drives purchasing
    from clvmodels.datasets.simulate import simulate as sim
    log, truth = sim(5000, covariates=covariate_table(5000, 3), coefficients={"alpha:x1": 0.6}, return_truth=True,
                     seed=5, observation_length=104)
    discrete = clv.bgbb_summary(log, period="M").join(truth[["x1"]]).assign(noise=lambda d: rng.normal(size=len(d)))
    bb = BetaGeoBetaBinomModel(purchase_covariates=["x1", "noise"]).fit(discrete)
    bb_table = bb.summary()
    for name in ("alpha:noise", "beta:noise"):
        assert abs(bb_table.loc[name, "estimate"]) < 3 * bb_table.loc[name, "se"], name
    # a higher purchase rate: a larger purchase probability α/(α+β) as x1 rises
    assert bb_table.loc["alpha:x1", "estimate"] - bb_table.loc["beta:x1", "estimate"] > 0.2


def test_loading_refuses_a_tampered_covariate_design(tmp_path, simulated):
    import copy
    import json
    from pathlib import Path

    from clvmodels.errors import ModelFileError
    from clvmodels.models import persistence

    m = BetaGeoModel(purchase_covariates=["x1"]).fit(simulated.iloc[:2000])
    m.save(tmp_path / "m")
    fitted = json.loads((tmp_path / "m" / "model.json").read_text())["fitted"]
    persistence._load_fitted(BetaGeoModel, copy.deepcopy(fitted), Path("m"))      # as saved: accepted
    bad_scale = copy.deepcopy(fitted)
    bad_scale["covariates_"]["columns"][0]["scale"] = -1.0
    bad_process = copy.deepcopy(fitted)
    bad_process["covariates_"]["processes"] = {"spend": ["x1"]}
    no_coefficients = copy.deepcopy(fitted)
    del no_coefficients["coefficients_"]
    small_covariance = copy.deepcopy(fitted)
    small_covariance["covariance_"] = persistence._encode(np.eye(4), "covariance_")
    for doc, problem in ((bad_scale, "invalid covariates_"), (bad_process, "invalid covariates_"),
                         (no_coefficients, "coefficients_"), (small_covariance, "5 x 5")):
        with pytest.raises(ModelFileError, match=problem):
            persistence._load_fitted(BetaGeoModel, doc, Path("m"))


def test_covariates_are_part_of_the_distinct_row_key(simulated):
    rfm = simulated.iloc[:3000][["frequency", "recency", "T", "x2"]]
    rfm = rfm.assign(T=rfm["T"].round(), recency=np.minimum(rfm.recency.round(), rfm["T"].round()))
    m = BetaGeoModel(purchase_covariates=["x2"]).fit(rfm)
    distinct = len(rfm.drop_duplicates())
    assert m.n_unique_ == distinct < len(rfm)
    counts = rfm.value_counts().rename("w").reset_index()
    weighted = BetaGeoModel(purchase_covariates=["x2"]).fit(counts, weights=counts["w"].to_numpy())
    np.testing.assert_allclose(weighted.coefficients_, m.coefficients_, rtol=1e-6)
    np.testing.assert_allclose(weighted.params_, m.params_, rtol=1e-6)


@pytest.mark.parametrize("cls, params, data", CASES, ids=[c[0].__name__ for c in CASES])
def test_objective_with_covariates_has_the_exact_gradient_and_pytensor_agrees(cls, params, data):
    """The dual-number gradient of the linked objective (log-parameters, then coefficients, penalised)
    against central differences, and its value against PyTensor's evaluation of the same expression."""
    import pytensor
    import pytensor.tensor as pt

    from clvmodels.models.mle import mle_objective, objective_inputs

    data = {k: np.asarray(v, dtype=float) for k, v in data.items()}
    design, z = design_for(cls, len(data[next(iter(data))]))
    link = CovariateLink.build(cls.covariate_links, design)
    full = {**data, **z}
    w = np.arange(1.0, len(full["z:x1"]) + 1)
    f = mle_objective(cls, tuple(full), link, covariate_penalty=0.01)
    inputs = objective_inputs(cls, full, w, link) + [w.sum(), 0.0]
    rng = np.random.default_rng(2)
    theta = np.r_[np.log(list(params.values())), rng.normal(0, 0.3, link.n_free)]
    value, grad = f(theta, *inputs)
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        numeric = (f(theta + e, *inputs)[0] - f(theta - e, *inputs)[0]) / 2e-6
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    symbolic = {k: pt.dvector(k) for k in full}
    coefs = dict(zip(link.free_names, theta[len(params):]))
    individual = link.individual({**params, **link.coefficients([coefs[n] for n in link.free_names])}, symbolic,
                                 pytensor_namespace())
    ll = pytensor.function(list(symbolic.values()), cls.log_likelihood(individual, symbolic))(*full.values())
    expected = -(w @ ll) / w.sum() + 0.01 * np.sum(theta[len(params):] ** 2)
    assert value == pytest.approx(expected, rel=1e-8)   # PyTensor's special functions round differently


# ---------------------------------------------------------------------------- backtests and the report
#: Truth of the backtest's log: the segment "b" buys 1/e^1.2 as often and (lower b) drops out sooner.
SEGMENT_COEFS = {"alpha:x1": 0.7, "alpha:x2": -1.2, "b:x2": -1.2}


def segment_log(n: int = 2000, seed: int = 3):
    """A log of BG/NBD customers whose purchase rate depends on a numeric attribute ``x1`` and whose
    purchase and drop-out depend on a text attribute ``segment`` ("a"/"b"), and their attributes."""
    rng = np.random.default_rng(seed)
    customers = pd.DataFrame({"x1": rng.normal(2.0, 1.0, n), "segment": np.where(rng.random(n) < 0.4, "b", "a")})
    numeric = pd.DataFrame({"x1": customers["x1"], "x2": (customers["segment"] == "b").astype(float)})
    log, truth = simulate(n, r=2.0, alpha=20.0, covariates=numeric, coefficients=SEGMENT_COEFS, return_truth=True,
                          seed=seed, observation_length=52, cohort_length=8)
    return log, customers.set_index(truth.index)


def segment_models():
    return {"BG/NBD": BetaGeoModel(),
            "BG/NBD + covariates": BetaGeoModel(purchase_covariates=["x1", "segment"], dropout_covariates=["segment"],
                                                one_hot=["segment"])}


@pytest.fixture(scope="module")
def covariate_backtest():
    log, customers = segment_log()
    res = clv.backtest(log, segment_models(), calibration_end="2024-06-30", t=26, covariates=customers,
                       baselines={"no change": clv.baselines.NoChangeBaseline()}, n_draws=50, n_samples=100,
                       spend_model=GammaGammaModel(exclude_invalid=True, spend_covariates=["x1"]), progressbar=False)
    return res, log, customers


def test_backtest_with_covariates_beats_the_model_without(covariate_backtest):
    res, _, customers = covariate_backtest
    table = res.table("purchases")
    plain, cov = table.loc["BG/NBD"], table.loc["BG/NBD + covariates"]
    assert cov["log_score"] < plain["log_score"] - 0.01
    assert cov["crps"] < plain["crps"] and cov["mae"] < plain["mae"]
    assert {"BG/NBD", "BG/NBD + covariates", "no change"} <= set(res.model_names)
    # the coefficients per unit of the user's columns recover the truth
    summary = res.models[("2024-06-30", "BG/NBD + covariates")].summary()
    for name, truth in {"alpha:segment[b]": -1.2, "b:segment[b]": -1.2}.items():
        est, se = summary.loc[name, ["user_estimate", "user_se"]]
        assert abs(est - truth) < 3 * se, (name, est, se)
    assert res.data.loc[0, "customers_without_covariates"] == 0
    assert res.data.loc[0, "covariate_rows_unmatched"] == len(customers) - res.data.loc[0, "customers"]
    assert res.settings["covariates"] == ["x1", "segment"]
    # the covariate model's tracking sums each customer at her own parameters
    tracking = res.tracking[res.tracking["model"] == "BG/NBD + covariates"]
    holdout = tracking[tracking["phase"] == "holdout"]
    assert holdout["predicted"].sum() == pytest.approx(holdout["actual"].sum(), rel=0.1)


def test_discrete_backtest_compares_bgbb_with_and_without_covariates():
    n = 3000
    numeric = covariate_table(n, seed=9)                # x1 ~ N(2, 1), x2: the segment "b"
    customers = numeric.assign(segment=np.where(numeric["x2"] > 0, "b", "a")).drop(columns="x2")
    truth = {"alpha:x1": 0.8, "beta:x1": -0.5, "alpha:x2": -1.0, "delta:x2": -1.5}
    log = clv.load_transactions(simulate_bgbb(n, n_periods=10, covariates=numeric, coefficients=truth, seed=9,
                                              log_start="2020-01-01", period="Y"), amount=None)
    models = {"BG/BB": BetaGeoBetaBinomModel(),
              "BG/BB + covariates": BetaGeoBetaBinomModel(purchase_covariates=["x1", "segment"],
                                                          dropout_covariates=["segment"], one_hot=["segment"])}
    kw = dict(calibration_end="2026-12-31", t=4, period="Y", n_draws=50)
    res = clv.discrete_backtest(log, models, covariates=customers, **kw)
    assert res.warnings.empty
    plain, big = res.models[("2026-12-31", "BG/BB")], res.models[("2026-12-31", "BG/BB + covariates")]
    # the model with covariates is fitted on the calibration summary with each customer's covariates joined
    calibration = clv.bgbb_summary(log[log["timestamp"] < "2027-01-01"], period="Y",
                                   observation_end="2026-12-31").join(customers)
    direct = BetaGeoBetaBinomModel(**big.get_params()).fit(calibration)
    np.testing.assert_allclose(big.coefficients_, direct.coefficients_, rtol=1e-8)
    np.testing.assert_allclose(big.params_, direct.params_, rtol=1e-8)
    # the likelihood-ratio test of the nested pair: α, β on x1 and segment[b], γ, δ on segment[b]
    tests = res.covariate_tests()
    assert len(tests) == 1 and tests.loc[0, "model"] == "BG/BB + covariates" and tests.loc[0, "without"] == "BG/BB"
    assert tests.loc[0, "df"] == 6
    assert tests.loc[0, "statistic"] == pytest.approx(2 * (big.log_likelihood_ - plain.log_likelihood_), rel=1e-12)
    assert tests.loc[0, "p_value"] < 1e-6
    # the customers' attributes forecast each one's holdout better
    table = res.table("purchases")
    assert table.loc["BG/BB + covariates", "mae"] < table.loc["BG/BB", "mae"]
    assert table.loc["BG/BB + covariates", "log_score"] < table.loc["BG/BB", "log_score"] - 0.005   # 0.457 -> 0.446
    assert res.settings["covariates"] == ["x1", "segment"]
    # the tracking sums each cohort customer at her own parameters: it follows the holdout's transactions
    tracking = res.tracking[(res.tracking["model"] == "BG/BB + covariates") & (res.tracking["phase"] == "holdout")]
    assert tracking["predicted"].sum() == pytest.approx(tracking["actual"].sum(), rel=0.1)
    # customers without covariates: an error, or left out and counted
    with pytest.raises(ClvDataError, match="no row in the covariate table"):
        clv.discrete_backtest(log, models, covariates=customers.iloc[25:], **kw)
    with pytest.warns(UserWarning, match="25 customers have no covariates"):
        dropped = clv.discrete_backtest(log, {"BG/BB + covariates": models["BG/BB + covariates"]},
                                        covariates=customers.iloc[25:], missing_covariates="drop", **kw)
    assert dropped.data.loc[0, "customers_without_covariates"] == 25
    assert dropped.data.loc[0, "customers"] == res.data.loc[0, "customers"] - 25


def test_backtest_counts_customers_without_covariates(covariate_backtest):
    _, log, customers = covariate_backtest
    lacking = customers.iloc[:25]
    with pytest.raises(ClvDataError, match="no row in the covariate table"):
        clv.backtest(log, segment_models(), calibration_end="2024-06-30", t=26, covariates=customers.iloc[25:],
                     baselines={}, spend_model=False, progressbar=False)
    with pytest.warns(UserWarning, match="have no covariates"):
        res = clv.backtest(log, segment_models(), calibration_end="2024-06-30", t=26, covariates=customers.iloc[25:],
                           missing_covariates="drop", baselines={}, spend_model=False, n_draws=20, progressbar=False)
    assert res.data.loc[0, "customers_without_covariates"] == len(lacking)
    assert not set(lacking.index.astype(str)) & set(res.predictions["customer_id"].astype(str))
    assert res.predictions.groupby("model").size().eq(res.data.loc[0, "customers"]).all()


def test_new_customer_expectation_pairs_one_profile_per_t(bgnbd_fit):
    profiles = pd.DataFrame({"x1": [1.0, 2.5, 3.0], "x2": [0.0, 1.0, 1.0]})
    ts = np.array([5.0, 10.0, 30.0])
    paired = bgnbd_fit.expected_purchases_new_customer(ts, covariates=profiles).to_numpy()
    one_by_one = [bgnbd_fit.expected_purchases_new_customer(t, covariates=profiles.iloc[[i]]) for i, t in enumerate(ts)]
    np.testing.assert_allclose(paired, np.ravel(one_by_one), rtol=1e-12)


def test_report_shows_coefficients_and_the_lr_test(covariate_backtest):
    from clvmodels.report import GLOSSARY, _fmt, report_html

    res, _, _ = covariate_backtest
    cut = "2024-06-30"
    expected = clv.lr_test(res.models[(cut, "BG/NBD")], res.models[(cut, "BG/NBD + covariates")])
    tests = res.covariate_tests()
    assert len(tests) == 1 and tests.loc[0, "without"] == "BG/NBD"
    assert tests.loc[0, "statistic"] == expected["statistic"] and tests.loc[0, "p_value"] == expected["p_value"]
    assert tests.loc[0, "df"] == expected["df"] == 4
    html = report_html(res)
    start = html.index('<section id="covariates">')
    section = html[start:html.index("</section>", start)]
    assert f"<td>{_fmt(expected['statistic'])}</td>" in section and f"<td>{_fmt(expected['p_value'])}</td>" in section
    summary = res.models[(cut, "BG/NBD + covariates")].summary()
    for name in ("alpha:x1", "alpha:segment[b]", "a:segment[b]", "b:segment[b]"):
        assert f'<td class="name">{name}</td>' in section
        row = summary.loc[name]
        for value in (row["estimate"], row["user_estimate"], np.exp(row["user_estimate"]), np.exp(row["user_lower_95%"])):
            assert f"<td>{_fmt(value)}</td>" in section, (name, value)
    assert '<td class="name">gamma:x1</td>' in section and "the mean spend per transaction" in section
    assert "the mean purchase rate" in section and "segment: a" in section   # the baseline level
    for term in ("Covariate coefficient", "Likelihood-ratio test"):
        assert term in GLOSSARY and f"<dt>{term}</dt>" in html
    # a backtest without covariates says so
    assert "No model with covariates" in report_html(clv.backtest(
        segment_log(300)[0], BetaGeoModel(), calibration_end="2024-06-30", t=26, baselines={}, spend_model=False,
        progressbar=False, n_draws=20))


def test_clv_report_refits_a_covariate_model_with_the_covariates(covariate_backtest):
    from clvmodels.clv_report import clv_report

    res, log, customers = covariate_backtest
    with pytest.raises(ClvDataError, match=r"Covariate column\(s\) \['x1', 'segment'\] not found"):
        clv_report(res, log, model="BG/NBD + covariates", n_samples=50)
    report = clv_report(res, log, model="BG/NBD + covariates", covariates=customers, segments="segment",
                        n_samples=100)
    assert set(report.segments.index) == {"a", "b"}
    # segment "b" buys less and leaves sooner: its customers are worth less on average
    per_customer = report.customers.groupby("segment")["clv_mean"].mean()
    assert per_customer["b"] < per_customer["a"]
    assert '<section id="covariates">' in report.html and "alpha:segment[b]" in report.html
