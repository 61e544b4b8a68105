"""The DuckDB summaries equal the pandas summaries: CDNOW and messy synthetic logs, Parquet and CSV."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import load_cdnow, simulate
from clvmodels.errors import ClvDataError

pytest.importorskip("duckdb")
from clvmodels.scale import calibration_holdout_duckdb, rfm_summary_duckdb  # noqa: E402

ATTRS = ("time_unit", "resolution", "observation_end", "calibration_end", "n_excluded_new_customers")


def assert_same(pandas_frame: pd.DataFrame, duck_frame: pd.DataFrame) -> None:
    """Ids, counts and durations identical; money equal to the rounding of the sums."""
    assert list(duck_frame.columns) == list(pandas_frame.columns)
    assert duck_frame.index.equals(pandas_frame.index)
    assert duck_frame.index.name == pandas_frame.index.name
    for c in pandas_frame.columns:
        a, b = pandas_frame[c].to_numpy(), duck_frame[c].to_numpy()
        if c in ("frequency", "frequency_holdout"):
            assert b.dtype == np.int64 and np.array_equal(a, b), c
        elif c in ("monetary_value", "value_holdout"):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-9, err_msg=c)
        else:
            assert np.array_equal(a, b), c  # recency, T, duration: the same arithmetic, bit for bit
    for k in ATTRS:
        assert pandas_frame.attrs.get(k) == duck_frame.attrs.get(k), k


def _pandas(log, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate-row warnings of the messy logs
        loaded = clv.load_transactions(log, **{k: kw.pop(k) for k in list(kw) if k in
                                               ("customer_id", "timestamp", "amount", "date_format", "refunds")})
        if "calibration_end" in kw:
            return clv.calibration_holdout(loaded, **kw)
        return clv.rfm_summary(loaded, **kw)


def _duck(source, **kw):
    if "calibration_end" in kw:
        return calibration_holdout_duckdb(source, **kw)
    return rfm_summary_duckdb(source, **kw)


@pytest.fixture(scope="module")
def cdnow():
    return load_cdnow(sample=False)


def test_cdnow_rfm_summary_identical(cdnow, tmp_path):
    path = tmp_path / "cdnow.parquet"
    cdnow.to_parquet(path)
    kw = dict(observation_end="1997-09-30", truncate=True, timestamp="date", amount="amount")
    expected = _pandas(cdnow, **kw)
    assert len(expected) == 23_570
    assert_same(expected, _duck(path, **kw))


def test_cdnow_calibration_holdout_identical(cdnow, tmp_path):
    path = tmp_path / "cdnow.csv"
    cdnow.assign(date=cdnow["date"].dt.strftime("%Y%m%d").astype(int)).to_csv(path, index=False)
    kw = dict(calibration_end="1997-09-30", timestamp="date", time_unit="D")
    expected = _pandas(path, **kw)  # ids of a CSV are text on both engines
    got = _duck(path, **kw)
    assert_same(expected, got)
    assert got.index.dtype == "str" and got.index[:3].tolist() == ["1", "10", "100"]
    # the numbers are those of the in-memory log with integer ids
    by_int = _pandas(cdnow, **kw)
    assert_same(by_int, got.set_axis(got.index.astype(np.int64)).sort_index())
    # published CDNOW facts: 23,570 customers, 78-week observation
    assert len(got) == 23_570 and got["duration_holdout"].iloc[0] == 273.0


def messy_log(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """String ids with odd characters, same-day and same-timestamp repeats, refunds, hours."""
    rng = np.random.default_rng(seed)
    base = simulate(n, seed=seed, customer_prefix="c-", observation_length=30, cohort_length=10)
    ids = base["customer_id"].to_numpy(dtype=object)
    odd = rng.random(len(ids)) < 0.2
    ids[odd] = np.char.add(" Ü/é'\"", ids[odd].astype(str)).astype(object)  # quotes, unicode, spaces
    log = pd.DataFrame({"cust": ids, "when": base["timestamp"].to_numpy(), "value": base["amount"].to_numpy()})
    # same-day repeats and exact duplicates
    extra = log.sample(frac=0.3, random_state=seed).copy()
    extra["when"] = extra["when"] + pd.to_timedelta(rng.integers(0, 3 * 3600, len(extra)), unit="s")
    dups = log.sample(frac=0.05, random_state=seed + 1)
    # refunds: partial, full, larger than the purchase, and without any earlier purchase
    ref = log.sample(frac=0.1, random_state=seed + 2).copy()
    ref["value"] = -ref["value"] * rng.choice([0.5, 1.0, 1.5], len(ref))
    ref["when"] = ref["when"] + pd.to_timedelta(rng.choice([0, 3600 * 30]), unit="s")
    orphan = log.sample(5, random_state=seed + 3).copy()
    orphan["when"] = orphan["when"] - pd.Timedelta(days=400)
    orphan["value"] = -1.0
    out = pd.concat([log, extra, dups, ref], ignore_index=True)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


COLS = dict(customer_id="cust", timestamp="when", amount="value")


@pytest.mark.parametrize("resolution,time_unit", [("D", "W"), ("h", "D"), ("W", "M")])
@pytest.mark.parametrize("refunds", ["drop", "net"])
def test_messy_logs_identical(tmp_path, resolution, time_unit, refunds):
    log = messy_log(seed=len(resolution) + len(refunds))
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    kw = dict(COLS, refunds=refunds, resolution=resolution, time_unit=time_unit)
    expected = _pandas(log, **kw)
    got = _duck(path, **kw)
    assert_same(expected, got)
    assert (expected["frequency"] > 0).any() and (expected["frequency"] == 0).any()
    end = log["when"].min() + pd.Timedelta(days=12)
    kw_cal = dict(kw, calibration_end=end)
    expected = _pandas(log, **kw_cal)
    assert expected.attrs["n_excluded_new_customers"] > 0  # customers acquired in the holdout
    assert_same(expected, _duck(log, **kw_cal))


def test_refund_netting_ties_follow_log_order():
    """Two purchases at the same time: a refund nets against the later row of the log (as pandas)."""
    log = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b"],
        "timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 10:00", "2024-01-02 00:00", "2024-01-05 00:00",
                                     "2024-01-03 00:00"]),
        "amount": [10.0, 5.0, -7.0, 3.0, 4.0],
    })
    expected = _pandas(log, refunds="net", time_unit="D")
    got = _duck(log, refunds="net", time_unit="D")
    assert_same(expected, got)
    # the 5.0 purchase is netted to zero and removed: a's first day keeps 10, repeat on day 5 of 3
    assert got.loc["a", "frequency"] == 1 and got.loc["a", "monetary_value"] == 3.0
    assert got.attrs["n_purchases_fully_refunded"] == 1


def test_csv_with_date_format_and_timezone(tmp_path):
    log = simulate(300, seed=5, customer_prefix="x")
    csv = tmp_path / "log.csv"
    log.assign(timestamp=log["timestamp"].dt.strftime("%d/%m/%Y %H:%M")).to_csv(csv, index=False)
    kw = dict(date_format="%d/%m/%Y %H:%M", time_unit="D", resolution="h")
    assert_same(_pandas(pd.read_csv(csv), **kw), _duck(csv, **kw))
    # tz-aware timestamps keep their local wall-clock days (a UTC+13 zone moves many days)
    aware = log.assign(timestamp=log["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Pacific/Auckland"))
    pq = tmp_path / "aware.parquet"
    aware.to_parquet(pq)
    assert_same(_pandas(aware), _duck(pq))


def test_observation_end_truncation_and_no_amounts(tmp_path):
    log = simulate(500, seed=2)
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    end = log["timestamp"].quantile(0.7).normalize()
    with pytest.raises(ClvDataError, match="after the observation end"):
        rfm_summary_duckdb(path, observation_end=end)
    kw = dict(observation_end=end, truncate=True, amount=None)
    expected = _pandas(log, **kw)
    got = _duck(path, **kw)
    assert "monetary_value" not in got.columns
    assert_same(expected, got)


@pytest.mark.parametrize("change,match", [
    (lambda d: d.assign(amount=d["amount"].where(d.index != 3, -1.0)), "Negative amounts"),
    (lambda d: d.assign(amount=d["amount"].where(d.index != 3, np.nan)), "NaN"),
    (lambda d: d.assign(customer_id=d["customer_id"].astype(str).where(d.index != 3, " ")), "customer ids"),
    (lambda d: d.assign(timestamp=d["timestamp"].astype(str).where(d.index != 3, "not a date")), "Unparseable"),
    (lambda d: d.drop(columns="amount"), "Missing column"),
])
def test_bad_input_errors(change, match):
    log = change(simulate(50, seed=1))
    with pytest.raises(ClvDataError, match=match) as info:
        rfm_summary_duckdb(log)
    assert "1 row" in str(info.value) or match == "Missing column"


def test_only_refunds_and_missing_file(tmp_path):
    with pytest.raises(ClvDataError, match="only refunds"):
        rfm_summary_duckdb(pd.DataFrame({"customer_id": [1], "timestamp": pd.to_datetime(["2024-01-01"]),
                                         "amount": [-3.0]}), refunds="drop")
    with pytest.raises(ClvDataError, match="File not found"):
        rfm_summary_duckdb(tmp_path / "nope.parquet")


def test_spills_under_a_small_memory_limit(tmp_path):
    """A memory cap far below the data's size still gives the same result (DuckDB spills to disk)."""
    log = simulate(30_000, seed=3)
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    got = rfm_summary_duckdb(path, memory_limit="60MB", threads=1, temp_directory=str(tmp_path))
    assert_same(_pandas(log), got)


def test_directory_of_parquet_files(tmp_path):
    """A log split over several Parquet files (as a Spark or Hive job writes it) is one log."""
    log = simulate(2000, seed=9)
    d = tmp_path / "log"
    (d / "part=a").mkdir(parents=True)
    log.iloc[: len(log) // 2].to_parquet(d / "part=a" / "0.parquet")
    log.iloc[len(log) // 2:].to_parquet(d / "1.parquet")
    assert_same(_pandas(log), rfm_summary_duckdb(d))


def test_calibration_errors():
    log = simulate(200, seed=3)
    with pytest.raises(ClvDataError, match="before calibration_end"):
        calibration_holdout_duckdb(log, "2024-03-01", observation_end="2024-02-01")
    with pytest.raises(ClvDataError, match="No transactions on or before the calibration end"):
        calibration_holdout_duckdb(log, "2023-01-01")
