"""Predictive distributions of purchases and spend (clvmodels.predictive).

Exactness: the pmf equals eq. (8) of FHL 2005 column by column, and its tail has the closed form;
the exact simulation reproduces the closed forms within Monte Carlo error; the randomised PIT is
uniform on data simulated from the model. Calibration on the CDNOW holdout is measured in
test_cdnow_holdout_calibration (NUTS posterior, slow).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import predictive as P
from clvmodels.datasets import load_cdnow, simulate
from clvmodels.datasets.simulate import DEFAULT_PURCHASE
from clvmodels.models import base, bgnbd
from clvmodels.errors import ClvDataError


@pytest.fixture(scope="module")
def rfm(cdnow_rfm):
    return cdnow_rfm


@pytest.fixture(scope="module")
def fitted(cdnow_fits):
    return cdnow_fits


# ---------------------------------------------------------------------------- pmf
def test_pmf_columns_are_eq8_and_tail_is_closed_form(fitted):
    model, _ = fitted
    pmf = P.purchase_pmf(model, 39, 6)
    assert pmf.shape == (2357, 7)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-12)
    for k in range(6):
        np.testing.assert_allclose(pmf[:, k], model.probability_of_n_purchases(39, k).to_numpy(), rtol=1e-10)
    # tail P(Y >= 6) = 1 - sum_{k<6} P(Y = k), computed independently of the closed form
    ref_tail = 1.0 - sum(model.probability_of_n_purchases(39, k).to_numpy() for k in range(6))
    np.testing.assert_allclose(pmf[:, 6], ref_tail, atol=1e-12)


def test_pmf_averages_over_draws(fitted):
    model, _ = fitted
    pmf = P.purchase_pmf(model, 20, 3, n_draws=50, seed=7)
    # one convention for choosing draws (clvmodels.models.draws): the same seed, the same draws
    draws = model.parameter_draws(50, seed=7)
    params = {k: v[:, None] for k, v in draws.items()}
    data = base.validate_columns(model.rfm_, model.data_columns)
    for k in range(3):
        per_draw = bgnbd.probability_of_n_purchases(params, **data, t=20.0, n=k)
        np.testing.assert_allclose(pmf[:, k], per_draw.mean(axis=0), rtol=1e-10)
    assert np.abs(pmf - P.purchase_pmf(model, 20, 3)).max() > 1e-4  # parameter uncertainty matters


def test_pmf_chunking_does_not_change_results(fitted, monkeypatch):
    model, _ = fitted
    full = P.purchase_pmf(model, 39, 4, n_draws=20, seed=1)
    monkeypatch.setattr(P, "CHUNK_ELEMENTS", 50)
    # the averages over draws are matrix products, whose rounding depends on the blocks' shapes
    np.testing.assert_allclose(P.purchase_pmf(model, 39, 4, n_draws=20, seed=1), full, rtol=1e-13, atol=1e-16)


def test_heavy_buyers_get_finite_wide_support(fitted):
    model, _ = fitted
    heavy = pd.DataFrame({"frequency": [0, 50, 300], "recency": [0.0, 38.0, 38.9], "T": [39.0, 39.0, 39.0]})
    out = P.predictive_purchases(model, 52, heavy)
    assert np.isfinite(out.to_numpy()).all()
    np.testing.assert_allclose(out["mean"], model.expected_purchases(52, heavy), rtol=1e-12)
    # a buyer of 300 repeat purchases in 39 weeks buys ~ 300/39*52 = 400 in 52 weeks if alive
    assert 300 < out.loc[2, "q50"] < 500
    assert out.loc[2, "q5"] < out.loc[2, "q50"] < out.loc[2, "q95"]


def test_predictive_purchases_quantiles_match_cdf(fitted):
    model, _ = fitted
    out = P.predictive_purchases(model, 39, quantiles=(0.05, 0.5, 0.95))
    assert list(out.columns) == ["mean", "p_zero", "q5", "q50", "q95"]
    np.testing.assert_allclose(out["mean"], model.expected_purchases(39), rtol=1e-12)
    pmf = P.purchase_pmf(model, 39, 64)
    cdf = np.cumsum(pmf, axis=1)
    rows = np.arange(len(out))
    for col, q in (("q5", 0.05), ("q50", 0.5), ("q95", 0.95)):
        k = out[col].to_numpy().astype(int)
        assert np.all(cdf[rows, k] >= q - 1e-12)
        assert np.all(np.where(k > 0, cdf[rows, np.maximum(k - 1, 0)] < q, True))
    np.testing.assert_allclose(out["p_zero"], pmf[:, 0])


def test_early_stopped_support_gives_the_exhaustive_quantiles(fitted):
    """The support is widened only for the histories that need it; the quantiles equal those of one
    exhaustive pmf on a support wide enough for everyone, with the same draws."""
    model, _ = fitted
    rfm = pd.concat([model.rfm_.iloc[::40],
                     pd.DataFrame({"frequency": [60, 250], "recency": [38.0, 38.9], "T": [39.0, 39.0]})],
                    ignore_index=True)
    qs = (0.05, 0.5, 0.9, 0.99)
    out = P.predictive_purchases(model, 52, rfm, quantiles=qs, n_draws=30, seed=3)
    pmf = P.purchase_pmf(model, 52, 1200, rfm, n_draws=30, seed=3)
    assert pmf[:, -1].max() < 1e-6
    cdf = np.cumsum(pmf[:, :-1], axis=1)
    for q in qs:
        exhaustive = (cdf < q - 1e-12).sum(axis=1)
        np.testing.assert_array_equal(out[P.quantile_name(q)].to_numpy(), exhaustive)
    np.testing.assert_allclose(out["p_zero"], pmf[:, 0], rtol=1e-12)


def test_per_pair_products_equal_the_per_history_tables(fitted, monkeypatch):
    """The matrix products per (frequency, T) pair give what averaging each history's own pmf table
    (``purchase_pmf_formula``) over the draws gives: pmf, quantiles, mean and the MC errors."""
    model, _ = fitted
    rfm = model.rfm_.iloc[::7]
    fast = P.predictive_purchases(model, 39, rfm, quantiles=(0.1, 0.5, 0.97), n_draws=40, seed=4)
    fast_pmf = P.purchase_pmf(model, 39, 30, rfm, n_draws=40, seed=4)
    monkeypatch.setattr(type(model), "future_pmf_formula", None)
    slow = P.predictive_purchases(model, 39, rfm, quantiles=(0.1, 0.5, 0.97), n_draws=40, seed=4)
    np.testing.assert_allclose(fast_pmf, P.purchase_pmf(model, 39, 30, rfm, n_draws=40, seed=4), rtol=1e-12,
                               atol=1e-15)
    pd.testing.assert_frame_equal(fast, slow, rtol=1e-12)
    for key in ("mc_se_mean", "mc_se_cdf"):
        assert fast.attrs["draws"][key] == pytest.approx(slow.attrs["draws"][key], rel=1e-6)


@pytest.fixture(scope="module")
def posterior_model(fitted):
    """The CDNOW BG/NBD MLE with 4,000 asymptotic-normal draws standing in for a 4 x 1,000 posterior."""
    import copy

    model = copy.deepcopy(fitted[0])
    model.posterior_draws_ = model.parameter_draws(4000, seed=11)
    return model


@pytest.mark.slow
def test_large_posterior_is_subsampled_reproducibly_with_its_mc_error(posterior_model):
    from clvmodels.models.draws import PREDICTIVE_DRAWS

    rfm = posterior_model.rfm_.iloc[::25]
    a = P.predictive_purchases(posterior_model, 39, rfm, interval=0.9, seed=5)
    info = a.attrs["draws"]
    assert info["n_draws"] == PREDICTIVE_DRAWS == 500
    assert info["posterior_draws"] == 4000 and info["subsampled"]
    pd.testing.assert_frame_equal(a, P.predictive_purchases(posterior_model, 39, rfm, interval=0.9, seed=5))
    b = P.predictive_purchases(posterior_model, 39, rfm, interval=0.9, seed=6)
    assert not np.array_equal(a["mean"], b["mean"])
    # the reported MC error of the mean is honest: the full posterior's mean lies within a few of it
    full = P.predictive_purchases(posterior_model, 39, rfm, interval=0.9, n_draws=4000)
    assert full.attrs["draws"]["n_draws"] == 4000 and not full.attrs["draws"]["subsampled"]
    se = info["mc_se_mean"]
    assert 0 < se < 0.05
    assert np.abs(a["mean"] - full["mean"]).max() < 4 * se
    assert np.abs(a["mean"] - full["mean"]).max() > se / 20   # and not absurdly large
    # the MC error of the cdf at the quantiles, checked against the spread over 8 subsamples
    assert 0 < info["mc_se_cdf"] < 0.05
    pmf = np.stack([P.purchase_pmf(posterior_model, 39, 40, rfm, seed=s) for s in range(8)])
    spread = np.cumsum(pmf[..., :-1], axis=-1).std(axis=0, ddof=1).max()
    assert spread / 3 < info["mc_se_cdf"] < 3 * spread


def test_point_estimate_reports_no_mc_error(fitted):
    out = P.predictive_purchases(fitted[0], 39, fitted[0].rfm_.iloc[:50], interval=0.9)
    assert out.attrs["draws"] == {"n_draws": 1, "posterior_draws": None, "subsampled": False, "mc_se_mean": 0.0,
                                  "mc_se_cdf": 0.0}


def test_bad_inputs_are_refused(fitted):
    model, spend = fitted
    with pytest.raises(ClvDataError, match="positive"):
        P.purchase_pmf(model, 0, 5)
    with pytest.raises(ClvDataError, match="n_max"):
        P.purchase_pmf(model, 10, 0)
    with pytest.raises(ValueError, match="quantiles"):
        P.predictive_purchases(model, 10, quantiles=(0.5, 1.0))
    with pytest.raises(TypeError, match="is not a purchase model"):
        P.purchase_pmf(spend, 10, 5)
    with pytest.raises(ClvDataError, match="non-negative integers"):
        P.randomized_pit(model, 10, np.full(2357, 0.5))
    with pytest.raises(ClvDataError, match="one count per customer"):
        P.randomized_pit(model, 10, np.zeros(3))
    with pytest.raises(ClvDataError, match="lacks"):
        P.randomized_pit(model, 10, pd.Series([1, 2], index=[1, 2]))


# ---------------------------------------------------------------------------- randomised PIT
def test_randomized_pit_is_uniform_on_data_from_the_model():
    """On a log simulated from BG/NBD with known parameters, the PIT of the holdout counts under the
    true parameters is U(0, 1): shares in [0.05, 0.95] and [0.25, 0.75] are 0.90 and 0.50."""
    log = simulate(20_000, seed=11)
    ch = clv.calibration_holdout(log, "2024-09-29", "2025-06-29", time_unit="W")
    model = clv.BetaGeoModel().fit(ch)  # MLE, then evaluated at the true parameters below
    model.params_ = pd.Series(DEFAULT_PURCHASE)[list(model.param_names)]  # the simulation's truth
    t = float(ch["duration_holdout"].iloc[0])
    u = P.randomized_pit(model, t, ch["frequency_holdout"], seed=0)
    assert len(u) == len(ch) and np.all((u >= 0) & (u <= 1))
    n = len(u)
    se90, se50 = np.sqrt(0.9 * 0.1 / n), np.sqrt(0.25 / n)
    assert abs(np.mean((u >= 0.05) & (u <= 0.95)) - 0.90) < 4 * se90
    assert abs(np.mean((u >= 0.25) & (u <= 0.75)) - 0.50) < 4 * se50
    # reproducible
    np.testing.assert_array_equal(u, P.randomized_pit(model, t, ch["frequency_holdout"], seed=0))


# ---------------------------------------------------------------------------- simulation of value
def test_simulation_reproduces_closed_forms(fitted, rfm):
    model, spend = fitted
    sub = rfm.iloc[:400]
    counts = np.concatenate([c for _, c, _ in P._simulate_chunks(model, spend, 39.0, sub, 4000, 5)], axis=1)
    pmf = P.purchase_pmf(model, 39, 3, sub, n_draws=4000, seed=1)
    # pooled over customers: mean count and P(0), P(1) within Monte Carlo error
    expected_mean = model.expected_purchases(39, sub, interval=0.9, n_draws=2000, seed=2)["mean"].mean()
    assert counts.mean() == pytest.approx(expected_mean, rel=0.03)
    for k in range(3):
        assert (counts == k).mean() == pytest.approx(pmf[:, k].mean(), abs=0.005)


def test_simulated_spend_matches_gamma_gamma(fitted):
    _, spend = fitted
    one = pd.DataFrame({"frequency": [5], "monetary_value": [40.0]})
    rng = np.random.default_rng(0)
    params = {k: np.full((200_000, 1), v) for k, v in spend.params_.items()}
    total = spend.simulate_spend_formula(params, one["frequency"].to_numpy(float),
                                         one["monetary_value"].to_numpy(float),
                                         n_transactions=np.full((200_000, 1), 3.0), rng=rng)
    # three transactions: mean 3 E[Z | data]
    ez = float(spend.expected_spend(one).iloc[0])
    assert total.mean() == pytest.approx(3 * ez, rel=0.01)
    zero = spend.simulate_spend_formula(params, np.array([5.0]), np.array([40.0]),
                                        n_transactions=np.zeros((200_000, 1)), rng=rng)
    assert np.all(zero == 0)


def test_simulate_value_seeded_and_bounded(fitted, rfm, monkeypatch):
    model, spend = fitted
    sub = rfm.iloc[:300]
    frame = P.simulate_value(model, spend, 26, sub, n_samples=200, seed=4)
    # labelled: one row per simulated future, one column per customer id (issue 15)
    assert frame.index.name == "sample" and frame.columns.equals(sub.index)
    assert frame.attrs["uncertainty"].startswith("predictive") and "spend" in frame.attrs["quantity"]
    a = frame.to_numpy()
    assert a.shape == (200, 300) and np.all(a >= 0) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, P.simulate_value(model, spend, 26, sub, n_samples=200, seed=4))
    assert not np.array_equal(a, P.simulate_value(model, spend, 26, sub, n_samples=200, seed=5))
    summary = P.predictive_value(model, spend, 26, sub, n_samples=200, seed=4)
    np.testing.assert_allclose(summary["mean"], a.mean(axis=0))
    np.testing.assert_allclose(summary["p_zero"], (a == 0).mean(axis=0))
    np.testing.assert_allclose(summary["q95"], np.quantile(a, 0.95, axis=0))
    # many small chunks: bounded memory, same shapes and statistically the same answer
    monkeypatch.setattr(P, "CHUNK_ELEMENTS", 1000)
    small = P.predictive_value(model, spend, 26, sub, n_samples=200, seed=4)
    assert small.shape == summary.shape
    assert small["mean"].mean() == pytest.approx(summary["mean"].mean(), rel=0.15)


def test_predictive_value_mean_matches_expected_value(fitted, rfm):
    model, spend = fitted
    out = P.predictive_value(model, spend, 39, n_samples=1000, seed=0)
    expected = model.expected_purchases(39) * spend.expected_spend()
    # pooled over 2,357 customers the Monte Carlo error is small
    assert out["mean"].sum() == pytest.approx(expected.sum(), rel=0.03)
    pmf0 = P.purchase_pmf(model, 39, 1)[:, 0]
    assert out["p_zero"].mean() == pytest.approx(pmf0.mean(), abs=0.01)


def test_value_pit_is_uniform_on_data_from_the_model():
    log = simulate(5_000, seed=21)
    ch = clv.calibration_holdout(log, "2024-09-29", "2025-06-29", time_unit="W")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = clv.BetaGeoModel().fit(ch)
        spend = clv.GammaGammaModel(exclude_invalid=True).fit(ch)
    t = float(ch["duration_holdout"].iloc[0])
    u = P.randomized_pit_value(model, spend, t, ch["value_holdout"], n_samples=500, seed=0)
    assert np.all((u >= 0) & (u <= 1))
    n = len(u)
    assert abs(np.mean((u >= 0.05) & (u <= 0.95)) - 0.90) < 4 * np.sqrt(0.09 / n) + 0.01
    assert abs(np.mean((u >= 0.25) & (u <= 0.75)) - 0.50) < 4 * np.sqrt(0.25 / n) + 0.01


# ---------------------------------------------------------------------------- CDNOW holdout calibration
@pytest.fixture(scope="module")
def cdnow_holdout():
    log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
    return clv.calibration_holdout(log, "1997-09-30", "1998-06-30", time_unit="W")


def _shares(u):
    return np.mean((u >= 0.05) & (u <= 0.95)), np.mean((u >= 0.25) & (u <= 0.75))


def test_cdnow_holdout_calibration_mle(cdnow_holdout):
    """MLE with parameter draws from its asymptotic normal. Measured (seed 0): purchases 0.896 in
    [0.05, 0.95] and 0.505 in [0.25, 0.75]; spend 0.891 and 0.507; plain 90% intervals cover 0.947
    (counts) and 0.931 (spend) of customers (discrete predictive distributions: [q5, q95] holds
    more than 90% of the mass)."""
    ch = cdnow_holdout
    assert len(ch) == 2357 and (ch["duration_holdout"] == 39).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = clv.BetaGeoModel().fit(ch)
        spend = clv.GammaGammaModel(exclude_invalid=True).fit(ch)
    u = P.randomized_pit(model, 39, ch["frequency_holdout"], n_draws=300, seed=0)
    in90, in50 = _shares(u)
    assert 0.85 <= in90 <= 0.95 and 0.45 <= in50 <= 0.55
    pp = P.predictive_purchases(model, 39, quantiles=(0.05, 0.95), n_draws=300, seed=0)
    y = ch["frequency_holdout"]
    assert 0.90 <= np.mean((y >= pp["q5"]) & (y <= pp["q95"])) <= 0.97
    uv = P.randomized_pit_value(model, spend, 39, ch["value_holdout"], n_samples=500, seed=0)
    in90, in50 = _shares(uv)
    assert 0.85 <= in90 <= 0.95 and 0.45 <= in50 <= 0.55


@pytest.mark.slow
def test_cdnow_holdout_calibration_nuts(cdnow_holdout):
    """The acceptance measurement: NUTS posteriors (4 x 1,000) of BG/NBD and Gamma-Gamma on the
    sample's 39-week calibration period; randomised PIT of the 39-week holdout (500 posterior
    draws for the purchase pmf, 1,000 simulations for spend). Measured with all 4,000 draws (seed 0):
    purchases 0.896 in [0.05, 0.95] and 0.504 in [0.25, 0.75]; spend 0.892 and 0.507; plain 90%
    intervals cover 0.947 (counts) and 0.931 (spend). The 90% interval of the *expected* count
    (parameter uncertainty only) covers 0.9% of actual counts: it is not a predictive interval."""
    ch = cdnow_holdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", clv.AssumptionWarning)
        model = clv.BetaGeoModel(seed=1, progressbar=False).fit(ch, method="nuts")
        spend = clv.GammaGammaModel(exclude_invalid=True, seed=1, progressbar=False).fit(ch, method="nuts")
    assert model.converged_ and spend.converged_
    u = P.randomized_pit(model, 39, ch["frequency_holdout"], n_draws=500, seed=0)
    in90, in50 = _shares(u)
    assert 0.85 <= in90 <= 0.95 and 0.45 <= in50 <= 0.55
    uv = P.randomized_pit_value(model, spend, 39, ch["value_holdout"], n_samples=1000, seed=0)
    in90, in50 = _shares(uv)
    assert 0.85 <= in90 <= 0.95 and 0.45 <= in50 <= 0.55
    pv = P.predictive_value(model, spend, 39, quantiles=(0.05, 0.95), n_samples=1000, seed=0)
    v = ch["value_holdout"]
    assert 0.88 <= np.mean((v >= pv["q5"]) & (v <= pv["q95"])) <= 0.97


def test_one_interval_schema_says_what_it_describes(fitted):
    """Expected-value and predictive intervals share one schema function and say in their column
    names and ``attrs`` which uncertainty they carry (``mean_*`` for an expected value); the
    predictive one is the wider."""
    model, _ = fitted
    expected = model.expected_purchases(39, interval=0.9, n_draws=200, seed=0)
    predictive = P.predictive_purchases(model, 39, interval=0.9)
    assert list(expected.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert list(predictive.columns[:4]) == ["mean", "median", "lower", "upper"] and "p_zero" in predictive
    assert expected.attrs == {"interval": 0.9, "uncertainty": "expected value: parameter uncertainty only"}
    assert predictive.attrs["interval"] == 0.9 and predictive.attrs["uncertainty"].startswith("predictive")
    assert (predictive["upper"] - predictive["lower"]).mean() > 5 * (expected["mean_upper"] - expected["mean_lower"]).mean()
    same = P.predictive_purchases(model, 39, quantiles=(0.5, 0.05, 0.95))
    np.testing.assert_array_equal(predictive[["median", "lower", "upper"]], same[["q50", "q5", "q95"]])
    with pytest.raises(ValueError, match="either interval"):
        P.predictive_purchases(model, 39, interval=0.9, quantiles=(0.5,))
