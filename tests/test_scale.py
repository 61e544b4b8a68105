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
from messy_logs import messiest_log, messy_log  # noqa: E402
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
        elif c in ("monetary_value", "value_holdout", "litt"):
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
    kw = dict(calibration_end="1997-09-30", timestamp="date", time_unit="D", litt=True)
    expected = _pandas(path, **kw)  # ids of a CSV are text on both engines
    got = _duck(path, **kw)
    assert_same(expected, got)
    assert got.index.dtype == "str" and got.index[:3].tolist() == ["1", "10", "100"]
    # the numbers are those of the in-memory log with integer ids
    by_int = _pandas(cdnow, **kw)
    assert_same(by_int, got.set_axis(got.index.astype(np.int64)).sort_index())
    # published CDNOW facts: 23,570 customers, 78-week observation
    assert len(got) == 23_570 and got["duration_holdout"].iloc[0] == 273.0


COLS = dict(customer_id="cust", timestamp="when", amount="value")


@pytest.mark.parametrize("resolution,time_unit", [("D", "W"), ("h", "D"), ("W", "M")])
@pytest.mark.parametrize("refunds", ["drop", "net"])
def test_messy_logs_identical(tmp_path, resolution, time_unit, refunds):
    log = messy_log(seed=len(resolution) + len(refunds))
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    kw = dict(COLS, refunds=refunds, resolution=resolution, time_unit=time_unit, litt=True)
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


# ---------------------------------------------------------------------------- settings and paths (#12 item 8)
def _small_log() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "a", "b"], "timestamp": ["2024-01-01", "2024-01-08", "2024-01-03"],
                         "amount": [1.0, 2.0, 3.0]})


@pytest.mark.parametrize("kw,match", [
    (dict(memory_limit="lots"), r"Invalid memory limit 'lots' for DuckDB: expected e.g. '4GB'"),
    (dict(memory_limit="1GB'; COPY (SELECT 1) TO 'pwned.csv'; --"), "Invalid memory limit"),
    (dict(memory_limit=4), "Invalid memory limit 4"),
    (dict(threads=0), "threads must be a whole number of at least 1, got 0"),
    (dict(threads="2; SELECT 1"), "threads must be a whole number"),
])
def test_invalid_settings_are_refused_never_run(tmp_path, monkeypatch, kw, match):
    monkeypatch.chdir(tmp_path)
    _small_log().to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(ClvDataError, match=match):
        rfm_summary_duckdb(tmp_path / "log.csv", **kw)
    assert not (tmp_path / "pwned.csv").exists()


def test_settings_with_quotes_are_values_not_sql(tmp_path):
    spill = tmp_path / "it's here"
    spill.mkdir()
    _small_log().to_csv(tmp_path / "log.csv", index=False)
    got = rfm_summary_duckdb(tmp_path / "log.csv", memory_limit="100MB", threads=1, temp_directory=str(spill))
    assert got["frequency"].tolist() == [1, 0]


def test_cli_memory_limit_error_exits_2(tmp_path):
    import subprocess
    import sys

    _small_log().to_csv(tmp_path / "log.csv", index=False)
    res = subprocess.run([sys.executable, "-m", "clvmodels.cli", "summarize", str(tmp_path / "log.csv"), "--out",
                          str(tmp_path / "rfm.csv"), "--engine", "duckdb", "--memory-limit", "lots"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Invalid memory limit 'lots'" in res.stderr
    assert not (tmp_path / "rfm.csv").exists()


@pytest.mark.parametrize("name", ["sales*.parquet", "sales?.parquet", "sales[12].parquet", "sales{1,2}.csv"])
def test_paths_are_read_literally(tmp_path, name):
    log = _small_log()
    write = (lambda df, p: df.to_csv(p, index=False)) if name.endswith(".csv") else (lambda df, p: df.to_parquet(p))
    write(log, tmp_path / name)
    # files a glob would also match: never read
    for other in ("sales1", "sales2", "salesX", "sales1,2"):
        write(log.assign(customer_id="intruder"), tmp_path / (other + name[-8:] if name.endswith(".parquet")
                                                               else other + ".csv"))
    got = rfm_summary_duckdb(tmp_path / name, time_unit="D")
    assert got.index.tolist() == ["a", "b"] and got["recency"].tolist() == [7.0, 0.0]


def test_a_directory_with_glob_characters_is_read_literally(tmp_path):
    (tmp_path / "part[1]").mkdir()
    (tmp_path / "part1").mkdir()
    _small_log().to_parquet(tmp_path / "part[1]" / "a.parquet")
    _small_log().assign(customer_id="intruder").to_parquet(tmp_path / "part1" / "a.parquet")
    assert rfm_summary_duckdb(tmp_path / "part[1]").index.tolist() == ["a", "b"]


def test_glob_is_an_explicit_opt_in(tmp_path):
    log = _small_log()
    log.iloc[:2].to_parquet(tmp_path / "sales-1.parquet")
    log.iloc[2:].to_parquet(tmp_path / "sales-2.parquet")
    pattern = str(tmp_path / "sales-*.parquet")
    with pytest.raises(ClvDataError, match="File not found"):
        rfm_summary_duckdb(pattern)
    got = rfm_summary_duckdb(pattern, glob=True, time_unit="D")
    assert_same(_pandas(log, time_unit="D"), got)
    with pytest.raises(ClvDataError, match="No file matches the pattern"):
        rfm_summary_duckdb(str(tmp_path / "nothing-*.parquet"), glob=True)


def test_repeated_column_names_are_refused_on_both_engines(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("customer_id,timestamp,amount,amount\na,2024-01-01,1,100\nb,2024-01-02,2,200\n")
    for summarise in (clv.rfm_summary, rfm_summary_duckdb):
        with pytest.raises(ClvDataError, match=r"'amount' \(2 times\) occur more than once in the header"):
            summarise(path)
    # a repeated column that is not used is harmless
    assert clv.rfm_summary(path, amount=None).index.tolist() == ["a", "b"]
    assert rfm_summary_duckdb(path, amount=None).index.tolist() == ["a", "b"]


# ---------------------------------------------------------------------------- one definition of refunds and time (#11)
REFUND_COUNTS = ("n_refunds", "n_refunds_netted", "n_refunds_dropped", "n_purchases_fully_refunded")


@pytest.mark.parametrize("refunds", ["net", "drop"])
def test_engines_agree_on_the_messiest_logs(tmp_path, refunds):
    """Refunds beyond their purchase and before any purchase, same-day repeats, duplicates, a time zone."""
    log = messiest_log(seed=len(refunds))
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = clv.load_transactions(log, refunds=refunds, **COLS)
    assert loaded.attrs["n_refunds_dropped"] >= 7 and loaded.attrs["n_duplicate_rows"] > 0
    if refunds == "net":
        assert loaded.attrs["n_purchases_fully_refunded"] > 0
    for source in (log, path):
        for kw in (dict(time_unit="D"), dict(resolution="h", time_unit="D"),
                   dict(calibration_end=log["when"].min() + pd.Timedelta(days=12))):
            got = _duck(source, refunds=refunds, **COLS, **kw)
            assert_same(clv.calibration_holdout(loaded, **kw) if "calibration_end" in kw
                        else clv.rfm_summary(loaded, **kw), got)
            assert {k: got.attrs[k] for k in REFUND_COUNTS} == {k: loaded.attrs[k] for k in REFUND_COUNTS}
