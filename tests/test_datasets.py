"""Data sets: the CDNOW files shipped with lifetimes, and the BG/NBD + Gamma-Gamma simulator."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import cdnow_summary, data_path, load_cdnow, load_donations, simulate
from clvmodels.datasets.simulate import DEFAULT_PURCHASE, DEFAULT_SPEND
from clvmodels.errors import ClvDataError
from clvmodels.models.bgnbd import expected_purchases_new_customer


# ---------------------------------------------------------------------------- CDNOW
def test_cdnow_sample(cdnow_sample_raw):
    df = cdnow_sample_raw
    assert list(df.columns) == ["customer_id", "date", "quantity", "amount"]
    assert len(df) == 6919 and df["customer_id"].nunique() == 2357
    assert df["customer_id"].min() == 1 and df["customer_id"].max() == 2357
    assert df["date"].dtype == "datetime64[ns]" or str(df["date"].dtype).startswith("datetime64")
    assert df["date"].min() == pd.Timestamp("1997-01-01") and df["date"].max() == pd.Timestamp("1998-06-30")
    # every customer's first purchase is in the first quarter of 1997
    assert df.groupby("customer_id")["date"].min().max() < pd.Timestamp("1997-04-01")


def test_cdnow_master(cdnow_master_raw):
    df = cdnow_master_raw
    assert list(df.columns) == ["customer_id", "date", "quantity", "amount"]
    assert len(df) == 69_659 and df["customer_id"].nunique() == 23_570
    assert (df["amount"] >= 0).all()


def test_cdnow_docstring_says_which_log_and_which_columns_to_pass(cdnow_sample_raw):
    """Issue 15: load_cdnow says which log it returns and which name to give load_transactions, and
    that call works; the simulator's log needs none (load_transactions' defaults)."""
    doc = " ".join(load_cdnow.__doc__.split())
    assert "2,357 customers" in doc and "23,570 customers" in doc and "(default)" in doc
    assert 'load_transactions(load_cdnow(), timestamp="date")' in doc
    log = clv.load_transactions(cdnow_sample_raw, timestamp="date")
    assert log.attrs["n_customers"] == 2357 and log.attrs["n_duplicate_rows"] == 21
    assert clv.load_transactions(simulate(50, seed=1)).attrs["n_customers"] == 50


def test_published_summaries():
    s = cdnow_summary()
    assert list(s.columns) == ["frequency", "recency", "T"] and len(s) == 2357
    assert s.index.name == "customer_id"
    m = cdnow_summary(with_spend=True)
    assert {"frequency", "recency", "T", "monetary_value"} <= set(m.columns) and len(m) == 2357


def test_donations_and_data_path():
    d = load_donations()
    assert {"frequency", "recency", "periods", "weights"} <= set(d.columns)
    assert data_path("CDNOW_master.txt").exists()
    with pytest.raises(ClvDataError, match="not found"):
        data_path("no_such_file.csv")


# ---------------------------------------------------------------------------- simulator
def test_simulate_is_reproducible_with_a_seed():
    a = simulate(500, seed=7)
    b = simulate(500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not simulate(500, seed=8).equals(a)
    log, truth = simulate(500, seed=7, return_truth=True)
    pd.testing.assert_frame_equal(log, a)
    assert len(simulate(50, seed=None)) >= 50


def test_simulated_log_looks_like_a_real_one():
    log, truth = simulate(3000, seed=1, return_truth=True, start="2023-01-02", cohort_length=8,
                          observation_length=52)
    assert list(log.columns) == ["customer_id", "timestamp", "amount"]
    assert log["customer_id"].dtype == np.int64
    assert str(log["timestamp"].dtype) == "datetime64[ns]"
    assert log["timestamp"].is_monotonic_increasing  # a real log is in time order
    end = pd.Timestamp(log.attrs["observation_end"])
    assert end == pd.Timestamp("2023-01-02") + pd.Timedelta(weeks=52)
    assert log["timestamp"].min() >= pd.Timestamp("2023-01-02") and log["timestamp"].max() < end
    assert (log["amount"] >= 0.01).all() and np.allclose(log["amount"], log["amount"].round(2))
    assert log["customer_id"].nunique() == 3000  # everyone has a first purchase
    assert len(log) > 3000
    # it goes through the same gate and summary as a real log
    loaded = clv.load_transactions(log, observation_end=end)
    rfm = clv.rfm_summary(loaded, observation_end=end)
    assert len(rfm) == 3000 and (rfm["frequency"] > 0).mean() > 0.2
    # truth: first purchases match the log; customers drop out only after a repeat purchase
    first = log.groupby("customer_id")["timestamp"].min()
    expected_first = pd.Timestamp("2023-01-02") + pd.to_timedelta(truth["first_purchase"] * 7, unit="D")
    assert (np.abs(first - expected_first.to_numpy()) < pd.Timedelta(microseconds=1)).all()
    dead = ~truth["alive"].to_numpy()
    assert dead.any() and (log.groupby("customer_id").size().to_numpy()[dead] >= 2).all()


def test_first_purchases_are_staggered_uniformly():
    log, truth = simulate(12_000, seed=2, return_truth=True, cohort_length=12, observation_length=40)
    first = truth["first_purchase"].to_numpy()
    assert first.min() >= 0 and first.max() < 12
    per_week = np.bincount(first.astype(int), minlength=12)
    expected = 12_000 / 12
    assert ((per_week - expected) ** 2 / expected).sum() < 40  # chi-square, 11 d.o.f.; P(> 40) < 1e-4
    first_days = log.groupby("customer_id")["timestamp"].min().dt.normalize().nunique()
    assert first_days == 84  # every day of the 12-week cohort sees new customers


def test_string_ids():
    log = simulate(20, seed=0, customer_prefix="cust-")
    assert log["customer_id"].map(type).eq(str).all() and log["customer_id"].str.startswith("cust-").all()
    rfm = clv.rfm_summary(log)
    assert rfm.index.dtype == log["customer_id"].dtype


def test_simulated_purchases_agree_with_bgnbd_theory():
    """Mean repeat purchases equal E[X(T)] of BG/NBD at each customer's age (FHL 2005 eq. 9)."""
    n = 40_000
    log, truth = simulate(n, seed=11, return_truth=True, cohort_length=12, observation_length=52)
    end = pd.Timestamp(log.attrs["observation_end"])
    # hourly resolution: almost no merging of purchases into one period
    rfm = clv.rfm_summary(log, observation_end=end, resolution="h").reindex(truth.index)
    age = 52 - truth["first_purchase"].to_numpy()
    np.testing.assert_allclose(rfm["T"], age, atol=1 / (24 * 7))  # ages to the hour
    expected = expected_purchases_new_customer(DEFAULT_PURCHASE, t=age)
    diff = rfm["frequency"].to_numpy() - expected
    z = diff.mean() / (diff.std(ddof=1) / np.sqrt(n))
    assert abs(z) < 4, z
    # the same by cohort: customers of the same age (first purchase in the same week)
    week = truth["first_purchase"].to_numpy().astype(int)
    for w in (0, 11):
        d = diff[week == w]
        assert abs(d.mean() / (d.std(ddof=1) / np.sqrt(d.size))) < 4, w


def test_simulated_spend_agrees_with_gamma_gamma():
    """Each value is Gamma(p, rate nu): value * nu / p has mean 1 (before rounding to cents)."""
    log, truth = simulate(20_000, seed=5, return_truth=True)
    nu = truth["nu"].to_numpy()[log["customer_id"].to_numpy()]
    ratio = log["amount"].to_numpy() * nu / DEFAULT_SPEND["p"]
    z = (ratio.mean() - 1) / (ratio.std(ddof=1) / np.sqrt(ratio.size))
    assert abs(z) < 4, z


def test_simulate_other_units_and_parameters():
    log = simulate(2000, r=2.0, alpha=20.0, a=1.0, b=5.0, time_unit="D", cohort_length=30,
                   observation_length=90, start="2022-06-01", seed=4)
    end = pd.Timestamp(log.attrs["observation_end"])
    assert end == pd.Timestamp("2022-06-01") + pd.Timedelta(days=90)
    assert log["timestamp"].max() < end
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rfm = clv.rfm_summary(log, observation_end=end, time_unit="D")
    assert rfm["T"].max() <= 90 and rfm["T"].min() >= 60 - 1


@pytest.mark.parametrize("kwargs,match", [
    ({"n_customers": 0}, "at least 1"),
    ({"r": -1.0}, "positive"),
    ({"gamma": 0.0}, "positive"),
    ({"cohort_length": 100, "observation_length": 50}, "cohort_length"),
])
def test_simulate_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ClvDataError, match=match):
        simulate(**kwargs)
