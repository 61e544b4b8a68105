"""Discounted CLV (lifetimes' discrete discounting, FHL 2005): agreement with lifetimes'
``customer_lifetime_value``, the formula's invariants (discounting, horizon additivity, telescoping),
time units and intervals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import BetaGeoModel, ClvDataError, GammaGammaModel
from clvmodels.datasets import cdnow_summary, load_cdnow

LIFETIMES_MONTH = 4.345  # weeks per month in lifetimes' customer_lifetime_value(freq="W")


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="module")
def models(rfm):
    purchases = BetaGeoModel().fit(rfm)
    spend = GammaGammaModel(exclude_invalid=True).fit(rfm)
    return purchases, spend


@pytest.fixture(scope="module")
def weekly():
    """Models fitted on our own RFM summary, which records its time unit (weeks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CDNOW has 21 duplicate records
        log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
    rfm = clv.rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
    return rfm, BetaGeoModel().fit(rfm), GammaGammaModel(exclude_invalid=True).fit(rfm)


def manual_clv(purchases, spend, rfm, horizon, period, rate):
    """The reference formula spelled out with the models' public predictions."""
    ez = spend.expected_spend(rfm).to_numpy()
    total = np.zeros(len(rfm))
    previous = np.zeros(len(rfm))
    for i in range(1, horizon + 1):
        current = purchases.expected_purchases(i * period, rfm).to_numpy()
        total += (current - previous) / (1 + rate) ** i
        previous = current
    return ez * total


def test_equals_lifetimes_customer_lifetime_value_on_all_customers(rfm, models):
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    purchases, spend = models
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(purchases.params_.to_dict())
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
    ggf = GammaGammaFitter()
    ggf.params_ = pd.Series({"p": spend.params_["p"], "q": spend.params_["q"], "v": spend.params_["gamma"]})
    theirs = ggf.customer_lifetime_value(bgf, rfm["frequency"], rfm["recency"], rfm["T"], rfm["monetary_value"],
                                         time=12, discount_rate=0.01, freq="W")
    ours = clv.clv(purchases, spend, rfm, horizon=12, period="M", discount_rate=0.01,
                   period_length=LIFETIMES_MONTH)
    assert len(ours) == 2357 and ours.name == "clv"
    assert list(ours.index) == list(rfm.index)
    np.testing.assert_allclose(ours.to_numpy(), np.asarray(theirs), rtol=1e-9)
    assert (ours > 0).all()


def test_equals_the_formula_and_is_additive_over_the_horizon(rfm, models):
    purchases, spend = models
    sample = rfm.iloc[::23]
    for horizon in (1, 12, 24):
        ours = clv.clv(purchases, spend, sample, horizon=horizon, discount_rate=0.02, period_length=4.0)
        np.testing.assert_allclose(ours.to_numpy(), manual_clv(purchases, spend, sample, horizon, 4.0, 0.02),
                                   rtol=1e-12)
    # the value of months 13..24 is what 24 months add to 12
    first = clv.clv(purchases, spend, sample, horizon=12, discount_rate=0.02, period_length=4.0)
    both = clv.clv(purchases, spend, sample, horizon=24, discount_rate=0.02, period_length=4.0)
    ez = spend.expected_spend(sample).to_numpy()
    tail = sum((purchases.expected_purchases(4.0 * i, sample).to_numpy()
                - purchases.expected_purchases(4.0 * (i - 1), sample).to_numpy()) / 1.02 ** i for i in range(13, 25))
    np.testing.assert_allclose(both.to_numpy(), first.to_numpy() + ez * tail, rtol=1e-12)


def test_undiscounted_value_telescopes_to_spend_times_purchases(rfm, models):
    purchases, spend = models
    ours = clv.clv(purchases, spend, rfm, horizon=12, discount_rate=0.0, period_length=4.0)
    expected = spend.expected_spend(rfm) * purchases.expected_purchases(48.0, rfm)
    np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-12)


def test_discounting_is_monotone_in_the_rate(rfm, models):
    purchases, spend = models
    values = [clv.clv(purchases, spend, rfm, horizon=24, discount_rate=d, period_length=4.345).to_numpy()
              for d in (-0.01, 0.0, 0.005, 0.01, 0.05, 0.3)]
    for higher_rate, lower_rate in zip(values[1:], values[:-1]):
        assert np.all(higher_rate < lower_rate)


def test_time_unit_is_the_deprecated_name_of_period(weekly):
    rfm, purchases, spend = weekly
    with pytest.warns(DeprecationWarning, match="period="):
        old = clv.clv(purchases, spend, rfm, horizon=12, time_unit="M", discount_rate=0.01)
    np.testing.assert_array_equal(old, clv.clv(purchases, spend, rfm, horizon=12, period="M", discount_rate=0.01))


def test_time_unit_and_period_length(weekly):
    rfm, purchases, spend = weekly
    assert purchases.time_unit_ == "W"
    monthly = clv.clv(purchases, spend, rfm, horizon=12, period="M", discount_rate=0.01)
    explicit = clv.clv(purchases, spend, rfm, horizon=12, discount_rate=0.01, period_length=365.25 / 12 / 7)
    np.testing.assert_allclose(monthly.to_numpy(), explicit.to_numpy(), rtol=1e-14)
    by_week = clv.clv(purchases, spend, rfm, horizon=52, period="W", discount_rate=0.0)
    by_year = clv.clv(purchases, spend, rfm, horizon=1, period="Y", discount_rate=0.0)
    by_weeks_param = clv.clv(purchases, spend, rfm, horizon=52, discount_rate=0.0, period_length=1.0)
    np.testing.assert_allclose(by_week.to_numpy(), by_weeks_param.to_numpy(), rtol=1e-14)
    # undiscounted: only the total length matters (a year is 52.18 weeks)
    long_weeks = spend.expected_spend(rfm) * purchases.expected_purchases(365.25 / 7, rfm)
    np.testing.assert_allclose(by_year.to_numpy(), long_weeks.to_numpy(), rtol=1e-12)
    assert np.all(by_week.to_numpy() < by_year.to_numpy())


def test_model_without_time_unit_needs_a_period_length(rfm, models):
    purchases, spend = models  # fitted on the published summary: no time unit recorded
    assert purchases.time_unit_ is None
    with pytest.raises(ClvDataError, match="period_length"):
        clv.clv(purchases, spend, rfm, horizon=12, period="M")


@pytest.mark.parametrize("kwargs, message", [
    ({"horizon": 0}, "horizon"), ({"horizon": 2.5}, "horizon"), ({"discount_rate": -1.0}, "discount_rate"),
    ({"discount_rate": float("nan")}, "discount_rate"), ({"period": "fortnight"}, "Unknown time unit"),
])
def test_bad_arguments(weekly, kwargs, message):
    rfm, purchases, spend = weekly
    with pytest.raises(ClvDataError, match=message):
        clv.clv(purchases, spend, rfm, **kwargs)


def test_rfm_without_spend_column_is_refused(rfm, models):
    purchases, spend = models
    with pytest.raises(ClvDataError, match="monetary_value"):
        clv.clv(purchases, spend, rfm.drop(columns="monetary_value"), period_length=4.0)


def test_intervals_contain_the_point_value(rfm, models):
    purchases, spend = models
    sample = rfm.iloc[::7]
    point = clv.clv(purchases, spend, sample, horizon=12, discount_rate=0.01, period_length=4.345)
    band = clv.clv(purchases, spend, sample, horizon=12, discount_rate=0.01, period_length=4.345,
                   interval=0.9, kind="expected", n_draws=500, seed=0)
    assert list(band.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert list(band.index) == list(sample.index)
    assert np.all((band["mean_lower"] <= point) & (point <= band["mean_upper"]))
    assert np.all(band["mean_lower"] < band["mean_upper"])
    # the same seed gives the same draws
    again = clv.clv(purchases, spend, sample, horizon=12, discount_rate=0.01, period_length=4.345,
                    interval=0.9, kind="expected", n_draws=500, seed=0)
    pd.testing.assert_frame_equal(band, again)
    # and the mean over parameter draws is close to the value at the estimate
    np.testing.assert_allclose(band["mean"].to_numpy(), point.to_numpy(), rtol=0.1)


def test_scores_new_customers_with_their_own_index(models):
    purchases, spend = models
    new = pd.DataFrame({"frequency": [0, 3, 12], "recency": [0.0, 20.0, 38.0], "T": [5.0, 39.0, 39.0],
                        "monetary_value": [0.0, 25.0, 60.0]}, index=pd.Index(["x", "y", "z"], name="customer_id"))
    value = clv.clv(purchases, spend, new, horizon=12, discount_rate=0.01, period_length=4.345)
    assert list(value.index) == ["x", "y", "z"]
    np.testing.assert_allclose(value.to_numpy(), manual_clv(purchases, spend, new, 12, 4.345, 0.01), rtol=1e-12)
    assert value["z"] > value["y"] > 0 and value["x"] > 0
