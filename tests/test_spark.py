"""Spark local mode gives the one-machine results: identical summaries, fits and scores."""

from __future__ import annotations

import os
import shutil
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import load_cdnow, simulate
from clvmodels.errors import ClvDataError
from clvmodels.rfm import join_covariates
from clvmodels.scoring import ScoreSettings, score_frame

pytestmark = [pytest.mark.spark, pytest.mark.slow,  # a Spark session and its jobs: minutes on 2 cores
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

# CI sets CLV_REQUIRE_SPARK=1 (after installing Java and pyspark): there a missing piece is a failure
_REQUIRED = os.environ.get("CLV_REQUIRE_SPARK") == "1"
try:
    import pyspark  # noqa: F401
except ImportError:
    if _REQUIRED:
        raise
    pytest.skip("pyspark is not installed (pip install 'clvmodels[spark]')", allow_module_level=True)
if shutil.which("java") is None:
    if _REQUIRED:
        raise RuntimeError("CLV_REQUIRE_SPARK=1 but there is no java on PATH")
    pytest.skip("Spark needs Java 17+ (apt-get install openjdk-17-jre-headless)", allow_module_level=True)

from clvmodels.spark import fit_spark, rfm_summary_spark, score_spark  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run this interpreter (same minor version)
    session = (SparkSession.builder.master("local[2]").appName("clvmodels-tests")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    yield session
    session.stop()


def _pandas_summary(log, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = clv.load_transactions(log, **{k: kw.pop(k) for k in list(kw)
                                               if k in ("customer_id", "timestamp", "amount", "refunds")})
        if "calibration_end" in kw:
            return clv.calibration_holdout(loaded, **kw)
        return clv.rfm_summary(loaded, **kw)


def assert_same(expected: pd.DataFrame, spark_frame) -> pd.DataFrame:
    got = spark_frame.toPandas().set_index("customer_id").sort_index()
    assert got.index.equals(expected.index)
    assert list(got.columns) == list(expected.columns)
    for c in expected.columns:
        if c in ("monetary_value", "value_holdout", "litt"):
            np.testing.assert_allclose(got[c], expected[c], rtol=1e-12, atol=1e-9, err_msg=c)
        else:
            assert np.array_equal(got[c].to_numpy(), expected[c].to_numpy()), c
    return got


def test_cdnow_summary_and_holdout_identical(spark):
    log = load_cdnow(sample=True)
    sdf = spark.createDataFrame(log)
    kw = dict(observation_end="1997-09-30", truncate=True, timestamp="date")
    assert_same(_pandas_summary(log, **kw), rfm_summary_spark(sdf, **kw))
    kw = dict(calibration_end="1997-09-30", timestamp="date", time_unit="D", litt=True)
    got = assert_same(_pandas_summary(log, **kw), rfm_summary_spark(sdf, **kw))
    assert len(got) == 2357


@pytest.mark.parametrize("resolution,time_unit", [("D", "W"), ("h", "D"), ("W", "M")])
def test_messy_log_identical(spark, resolution, time_unit):
    """String ids, same-day repeats, exact duplicates, refunds dropped, staggered cohorts."""
    rng = np.random.default_rng(1)
    log = simulate(400, seed=2, customer_prefix="c/é ", observation_length=30, cohort_length=10)
    extra = log.sample(frac=0.3, random_state=1).assign(
        timestamp=lambda d: d["timestamp"] + pd.to_timedelta(rng.integers(0, 7200, len(d)), unit="s"))
    refunds = log.sample(frac=0.05, random_state=2).assign(amount=lambda d: -d["amount"])
    messy = pd.concat([log, extra, log.head(20), refunds], ignore_index=True).sample(frac=1.0, random_state=3)
    sdf = spark.createDataFrame(messy)
    kw = dict(resolution=resolution, time_unit=time_unit, refunds="drop", litt=True)
    assert_same(_pandas_summary(messy, **kw), rfm_summary_spark(sdf, **kw))
    cal = dict(kw, calibration_end=messy["timestamp"].min() + pd.Timedelta(days=12))
    expected = _pandas_summary(messy, **cal)
    assert_same(expected, rfm_summary_spark(sdf, **cal))


def test_fit_on_distinct_histories_and_score_with_a_saved_model(spark, tmp_path):
    log = simulate(3000, seed=7)
    rfm = _pandas_summary(log)
    sdf_rfm = rfm_summary_spark(spark.createDataFrame(log)).cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local_p = clv.BetaGeoModel().fit(rfm)
        local_s = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
        p, s = fit_spark(sdf_rfm, clv.BetaGeoModel(), clv.GammaGammaModel(), time_unit="W")
    np.testing.assert_allclose(p.params_.to_numpy(), local_p.params_.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.params_.to_numpy(), local_s.params_.to_numpy(), rtol=1e-6)
    assert p.n_customers_ == 3000 and p.time_unit_ == "W" and s.n_excluded_ == local_s.n_excluded_
    clv.save_models({"purchase": p, "spend": s}, tmp_path / "model")
    # intervals over parameter draws only: the same draws in every partition, so equal to the library
    settings = ScoreSettings(interval=0.9, n_draws=50, seed=5, clv_interval="expected")
    got = score_spark(sdf_rfm, tmp_path / "model", settings, time_unit="W").toPandas().set_index("customer_id").sort_index()
    with pytest.raises(clv.ClvDataError, match="Time unit mismatch"):
        score_spark(sdf_rfm, tmp_path / "model", settings, time_unit="D")
    expected = score_frame(p, s, rfm, settings)
    assert got["reject_reason"].isna().all()
    np.testing.assert_allclose(got[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-12)
    # by default the CLV interval is predictive (simulated per batch): far wider than the expected value's
    default = score_spark(sdf_rfm, tmp_path / "model", ScoreSettings(interval=0.9, n_draws=50, seed=5, n_samples=300),
                          time_unit="W").toPandas().set_index("customer_id").sort_index()
    assert {"clv_lower", "clv_upper"} <= set(default.columns) and "clv_mean_lower" not in default.columns
    assert (default["clv_upper"] > got["clv_mean_upper"]).mean() > 0.9
    assert (default["clv_lower"] <= default["clv"]).all()


def test_bad_rows_are_kept_with_a_reason(spark):
    rfm = clv.datasets.cdnow_summary(with_spend=True).head(50).reset_index()
    rfm.loc[0, "recency"] = -1.0
    rfm.attrs = {}
    p = clv.BetaGeoModel().fit(rfm.assign(recency=rfm["recency"].clip(lower=0)))
    got = score_spark(spark.createDataFrame(rfm[["customer_id", "frequency", "recency", "T"]]),
                      {"purchase": p}, ScoreSettings(period_length=4.0)).toPandas()
    assert len(got) == 50
    assert got["reject_reason"].notna().sum() == 1 and got.loc[got["reject_reason"].notna(), "customer_id"].item() == 1
    assert got.loc[got["reject_reason"].notna(), "expected_purchases"].isna().all()


def test_an_overflowing_customer_is_rejected_alone(spark):
    """One extreme but finite mean spend (1e308) overflows in expected spend: that customer gets a
    reason, the others of its partition are scored (it used to fail the whole partition)."""
    rfm = clv.datasets.cdnow_summary(with_spend=True).head(50).reset_index()
    rfm.attrs = {}
    p = clv.BetaGeoModel().fit(rfm)
    s = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
    extreme = rfm.index[rfm["frequency"] >= 2][0]
    rfm.loc[extreme, "monetary_value"] = 1e308
    cols = ["customer_id", "frequency", "recency", "T", "monetary_value"]
    got = score_spark(spark.createDataFrame(rfm[cols]).coalesce(1), {"purchase": p, "spend": s},
                      ScoreSettings(period_length=4.0)).toPandas().set_index("customer_id")
    rejected = got["reject_reason"].notna()
    assert rejected.sum() == 1 and got.index[rejected].item() == rfm.loc[extreme, "customer_id"]
    assert got.loc[rejected, "clv"].isna().all() and np.isfinite(got.loc[~rejected, "clv"]).all()


def test_errors(spark):
    log = simulate(20, seed=1)
    log.loc[3, "amount"] = -2.0
    with pytest.raises(ClvDataError, match="Negative amounts"):
        rfm_summary_spark(spark.createDataFrame(log))
    with pytest.raises(ClvDataError, match="not available on Spark"):
        rfm_summary_spark(spark.createDataFrame(log), refunds="net")
    with pytest.raises(ClvDataError, match="Missing column"):
        rfm_summary_spark(spark.createDataFrame(log), customer_id="id")


def test_days_are_counted_in_the_session_time_zone(spark):
    """Spark timestamps are instants: their calendar days are those of spark.sql.session.timeZone."""
    log = simulate(300, seed=3)
    instants = log.assign(timestamp=log["timestamp"].dt.tz_localize("UTC"))
    sdf = spark.createDataFrame(instants)
    try:
        spark.conf.set("spark.sql.session.timeZone", "America/New_York")
        got = rfm_summary_spark(sdf)
        local = instants.assign(timestamp=instants["timestamp"].dt.tz_convert("America/New_York"))
        expected = _pandas_summary(local)
        assert not np.array_equal(expected["recency"], _pandas_summary(log)["recency"])  # the zone matters
        assert_same(expected, got)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_ids_of_a_csv_read_by_spark_are_labels(spark, tmp_path):
    """#12 item 1 on Spark: a CSV read by Spark holds strings, kept exactly (007, 07 and 7 are three)."""
    ids = ["007", "07", "7", "1.0", "1", " 7", "7 ", "a b", "NA", "null", "ünï", "客户", "\u3000", "x,y", 'q"uote']
    path = tmp_path / "log.csv"
    pd.DataFrame({"customer_id": ids, "timestamp": pd.date_range("2024-01-01", periods=len(ids)).strftime("%Y-%m-%d"),
                  "amount": np.arange(1.0, len(ids) + 1)}).to_csv(path, index=False)
    sdf = spark.read.option("header", True).option("escape", '"').csv(str(path))
    got = assert_same(clv.rfm_summary(path, time_unit="D"), rfm_summary_spark(sdf, time_unit="D"))
    assert sorted(got.index) == sorted(ids)
    blank = spark.createDataFrame(pd.DataFrame({"customer_id": ["a", " \t"], "timestamp": ["2024-01-01"] * 2,
                                                "amount": [1.0, 2.0]}))
    with pytest.raises(ClvDataError, match=r"Missing customer ids in column 'customer_id' \(1 rows\)"):
        rfm_summary_spark(blank)


def test_spark_agrees_with_pandas_on_the_messiest_log(spark):
    """#11: refunds dropped the same way, duplicates, same-day repeats, days of a time zone with DST."""
    from messy_logs import messiest_log

    log = messiest_log(seed=4)
    kw = dict(customer_id="cust", timestamp="when", amount="value", refunds="drop")
    sdf = spark.createDataFrame(log)
    try:
        spark.conf.set("spark.sql.session.timeZone", "America/New_York")
        for extra in (dict(time_unit="D"), dict(resolution="h", time_unit="D"),
                      dict(calibration_end=log["when"].min() + pd.Timedelta(days=12))):
            assert_same(_pandas_summary(log, **kw, **extra), rfm_summary_spark(sdf, **kw, **extra))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_cnbd_fit_reads_litt_from_spark(spark):
    """A model whose fit reads more than its predictions (MBG/CNBD-k's litt) is fitted from the
    Spark summary as from the pandas one."""
    log = simulate(1500, r=3.0, alpha=6.0, a=1.0, b=3.0, k=2, drop_at_first=True, seed=8)
    rfm = _pandas_summary(log, litt=True)
    sdf_rfm = rfm_summary_spark(spark.createDataFrame(log), litt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = clv.ModifiedBetaGeoCNBDModel(k=2).fit(rfm)
        p, _ = fit_spark(sdf_rfm, clv.ModifiedBetaGeoCNBDModel(k=2), time_unit="W")
    np.testing.assert_allclose(p.params_.to_numpy(), local.params_.to_numpy(), rtol=1e-6)
    assert p.k_ == 2 and p.log_likelihood_ == pytest.approx(local.log_likelihood_, abs=1e-6)


def test_scoring_passes_covariate_columns_through(spark, tmp_path):
    """A model with covariates reads them from the DataFrame's columns: the scores are the library's, a
    customer with a missing covariate is rejected alone, and a DataFrame without them is refused."""
    rng = np.random.default_rng(2)
    n = 1500
    cov = pd.DataFrame({"x1": rng.normal(2.0, 1.0, n), "x2": (rng.random(n) < 0.4).astype(float)})
    log, truth = simulate(n, covariates=cov, coefficients={"alpha:x1": 0.4, "b:x2": 0.3, "gamma:x1": 0.2},
                          return_truth=True, seed=4)
    rfm = _pandas_summary(log, observation_end=log.attrs["observation_end"])
    rfm = join_covariates(rfm, truth[["x1", "x2"]])
    p = clv.BetaGeoModel(purchase_covariates=["x1"], dropout_covariates=["x2"]).fit(rfm)
    s = clv.GammaGammaModel(spend_covariates=["x1"], exclude_invalid=True).fit(rfm)
    clv.save_models({"purchase": p, "spend": s}, tmp_path / "model")
    frame = rfm.reset_index()
    frame.loc[3, "x1"] = np.nan
    frame.attrs = {}
    settings = ScoreSettings(interval=0.9, n_draws=30, seed=1, clv_interval="expected")
    got = score_spark(spark.createDataFrame(frame), tmp_path / "model", settings,
                      time_unit="W").toPandas().set_index("customer_id").sort_index()
    bad = frame.loc[3, "customer_id"]
    assert got.loc[bad, "reject_reason"] == "missing, non-numeric or infinite covariate x1"
    assert got["reject_reason"].notna().sum() == 1 and {"x1", "x2"} <= set(got.columns)
    good = rfm.drop(index=bad)
    expected = score_frame(p, s, good, settings)
    np.testing.assert_allclose(got.loc[expected.index, expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-12)
    with pytest.raises(ClvDataError, match=r"no column\(s\) \['x2'\]"):
        score_spark(spark.createDataFrame(frame.drop(columns="x2")), tmp_path / "model", settings)


def test_fit_with_covariates_on_distinct_rows_equals_the_local_fit(spark):
    """Covariates are part of each distinct row that fit_spark collects: the fit is the one-machine fit."""
    rng = np.random.default_rng(5)
    n = 3000
    cov = pd.DataFrame({"x1": rng.normal(2.0, 1.0, n).round(1), "x2": (rng.random(n) < 0.4).astype(float)})
    log, truth = simulate(n, covariates=cov, coefficients={"alpha:x1": 0.4, "b:x2": 0.3, "gamma:x1": 0.2},
                          return_truth=True, seed=6)
    rfm = _pandas_summary(log, observation_end=log.attrs["observation_end"])
    rfm = join_covariates(rfm, truth[["x1"]].assign(channel=np.where(truth["x2"] > 0, "store", "web")))
    frame = rfm.reset_index()
    frame.attrs = {}
    sdf = spark.createDataFrame(frame)

    def models():
        return (clv.BetaGeoModel(purchase_covariates=["x1", "channel"], dropout_covariates=["channel"],
                                 one_hot=["channel"]),
                clv.GammaGammaModel(spend_covariates=["x1"], exclude_invalid=True))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local_p, local_s = models()
        local_p.fit(rfm)
        local_s.fit(rfm)
        p, s = fit_spark(sdf, *models(), time_unit="W")
    for got, expected in ((p, local_p), (s, local_s)):
        assert list(got.coefficients_.index) == list(expected.coefficients_.index)
        np.testing.assert_allclose(got.coefficients_.to_numpy(), expected.coefficients_.to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(got.params_.to_numpy(), expected.params_.to_numpy(), rtol=1e-6)
        for mine, theirs in zip(got.covariates_["columns"], expected.covariates_["columns"]):
            assert mine["name"] == theirs["name"] and mine["mean"] == pytest.approx(theirs["mean"], rel=1e-12)
            assert mine["scale"] == pytest.approx(theirs["scale"], rel=1e-12)
    assert p.n_customers_ == n and p.covariates_["dropped"] == {"channel": "web"}
    assert s.n_excluded_ == n - local_s.n_customers_
    with pytest.raises(ClvDataError, match=r"covariate column\(s\) \['channel'\].*join the customer-level"):
        fit_spark(sdf.drop("channel"), models()[0], time_unit="W")
