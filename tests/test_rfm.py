"""RFM summaries and calibration/holdout splits: CDNOW against lifetimes, properties, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clvmodels as clv
from clvmodels.datasets import cdnow_summary
from clvmodels.errors import ClvDataError
from clvmodels.units import unit_days

lifetimes_utils = pytest.importorskip("lifetimes.utils")


def dt(values):
    return pd.to_datetime(values, format="ISO8601")


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------- CDNOW: the published numbers
def test_cdnow_sample_equals_the_published_summary(cdnow_sample_log):
    rfm = clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="W", truncate=True)
    published = cdnow_summary()
    assert len(rfm) == len(published) == 2357
    assert rfm.index.equals(published.index)
    assert (rfm["frequency"] == published["frequency"]).all()
    for column in ("recency", "T"):
        assert (rfm[column].round(2) == published[column]).all(), column
    # mean repeat spend: the published zbar is rounded to cents (22.345 is printed 22.35)
    with_spend = cdnow_summary(with_spend=True)
    assert np.abs(rfm["monetary_value"] - with_spend["monetary_value"]).max() <= 0.005 + 1e-9


def test_cdnow_sample_litt_total(cdnow_sample_log):
    """Σ litt over the CDNOW sample (weeks, 39-week calibration) as in models.md: 2,909.5047."""
    rfm = clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="W", truncate=True, litt=True)
    assert rfm["litt"].sum() == pytest.approx(2909.5047, abs=5e-5)
    assert (rfm.loc[rfm["frequency"] == 0, "litt"] == 0).all()
    ch = quiet(clv.calibration_holdout, cdnow_sample_log, "1997-09-30", "1998-06-30", "W", litt=True)
    np.testing.assert_allclose(ch["litt"], rfm["litt"], rtol=1e-13, atol=1e-12)
    assert "litt" not in clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", truncate=True)


def test_cdnow_sample_equals_lifetimes_summary_with_money(cdnow_sample_log, cdnow_sample_raw):
    ours = clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="D", truncate=True)
    theirs = lifetimes_utils.summary_data_from_transaction_data(
        cdnow_sample_raw, "customer_id", "date", monetary_value_col="amount",
        observation_period_end="1997-09-30", freq="D")
    theirs = theirs.reindex(ours.index)
    for column in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-12, atol=1e-9, err_msg=column)


def test_cdnow_master_calibration_holdout_equals_lifetimes(cdnow_master_raw):
    ch = quiet(clv.calibration_holdout, cdnow_master_raw, "1997-09-30", "1998-06-30", "W",
               timestamp="date")
    ref = lifetimes_utils.calibration_and_holdout_data(
        cdnow_master_raw, "customer_id", "date", calibration_period_end="1997-09-30",
        observation_period_end="1998-06-30", freq="D", monetary_value_col="amount")
    assert list(ch.columns) == ["frequency", "recency", "T", "monetary_value", "frequency_holdout",
                                "value_holdout", "duration_holdout"]
    assert len(ch) == len(ref) == 23_570
    ref = ref.reindex(ch.index)
    assert not ref.isna().any().any()
    pairs = {"frequency": ("frequency_cal", 1), "recency": ("recency_cal", 7), "T": ("T_cal", 7),
             "monetary_value": ("monetary_value_cal", 1), "frequency_holdout": ("frequency_holdout", 1),
             "duration_holdout": ("duration_holdout", 7)}
    for ours, (theirs, divide) in pairs.items():
        np.testing.assert_allclose(ch[ours], ref[theirs] / divide, rtol=0, atol=1e-9, err_msg=ours)
    # lifetimes reports the holdout's mean transaction value over raw rows; ours is the total
    holdout_rows = cdnow_master_raw[(cdnow_master_raw["date"] > "1997-09-30")
                                    & (cdnow_master_raw["date"] <= "1998-06-30")]
    n_rows = holdout_rows.groupby("customer_id").size().reindex(ch.index, fill_value=0)
    np.testing.assert_allclose(ch["value_holdout"], ref["monetary_value_holdout"] * n_rows, rtol=1e-12, atol=1e-9)
    assert ch["frequency_holdout"].sum() == 19_684
    assert ch["duration_holdout"].iloc[0] == 39.0
    assert ch.attrs["n_excluded_new_customers"] == 0
    assert ch.attrs["calibration_end"] == "1997-09-30" and ch.attrs["observation_end"] == "1998-06-30"


def test_cdnow_master_full_summary_equals_lifetimes(cdnow_master_raw):
    ours = quiet(clv.rfm_summary, cdnow_master_raw, time_unit="D", timestamp="date")
    theirs = lifetimes_utils.summary_data_from_transaction_data(
        cdnow_master_raw, "customer_id", "date", monetary_value_col="amount", freq="D").reindex(ours.index)
    for column in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-12, atol=1e-9, err_msg=column)


# ---------------------------------------------------------------------------- an independent oracle
BASE = pd.Timestamp("2024-02-26")  # a Monday


def period_start(ts: pd.Timestamp, resolution: str) -> pd.Timestamp:
    if resolution == "h":
        return ts.floor("h")
    day = ts.normalize()
    return day - pd.Timedelta(days=day.weekday()) if resolution == "W" else day


def oracle(df: pd.DataFrame, end: pd.Timestamp, unit: str, resolution: str) -> pd.DataFrame:
    """The definitions, customer by customer, in plain Python."""
    length = pd.Timedelta(days=unit_days(unit))
    rows = {}
    for cid, g in df.groupby("customer_id", sort=True):
        spend: dict[pd.Timestamp, float] = {}
        for ts, amount in zip(g["timestamp"], g["amount"]):
            p = period_start(ts, resolution)
            spend[p] = spend.get(p, 0.0) + amount
        first, last = min(spend), max(spend)
        x = len(spend) - 1
        periods = sorted(spend)
        rows[cid] = {"frequency": x, "recency": (last - first) / length,
                     "T": (period_start(end, resolution) - first) / length,
                     "litt": sum(np.log((b - a) / length) for a, b in zip(periods, periods[1:])),
                     "monetary_value": sum(v for p, v in spend.items() if p != first) / x if x else 0.0}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "customer_id"
    return out


@st.composite
def logs(draw, min_size=1, max_size=40, n_customers=6):
    n = draw(st.integers(min_size, max_size))
    cust = draw(st.lists(st.integers(0, n_customers - 1), min_size=n, max_size=n))
    minutes = draw(st.lists(st.integers(0, 60 * 24 * 30), min_size=n, max_size=n))
    cents = draw(st.lists(st.integers(1, 100_000), min_size=n, max_size=n))
    return pd.DataFrame({
        "customer_id": cust,
        "timestamp": BASE + pd.to_timedelta(minutes, unit="min"),
        "amount": np.array(cents) / 100,
    })


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
END = BASE + pd.Timedelta(days=31)


def assert_frames_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # durations are differences of period starts counted from 1970: at hour resolution they carry
    # an absolute rounding error of about 1e-11 days
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-9, check_dtype=False,
                                  check_index_type=False)


@PROPS
@given(logs(), st.sampled_from(["h", "D", "W"]), st.sampled_from(["h", "D", "W", "M"]))
def test_summary_matches_the_oracle(df, resolution, unit):
    rfm = quiet(clv.rfm_summary, df, observation_end=END, time_unit=unit, resolution=resolution, litt=True)
    assert_frames_close(rfm, oracle(df, END, unit, resolution))
    assert rfm["frequency"].dtype == np.int64


@PROPS
@given(logs(), st.sampled_from(["h", "D", "W"]))
def test_basic_properties(df, resolution):
    rfm = quiet(clv.rfm_summary, df, observation_end=END, resolution=resolution)
    assert (rfm["frequency"] >= 0).all()
    assert (rfm["recency"] >= 0).all() and (rfm["recency"] <= rfm["T"]).all()
    assert (rfm["monetary_value"] >= 0).all()
    assert (rfm.loc[rfm["frequency"] == 0, ["recency", "monetary_value"]] == 0).all().all()
    n_rows = df.groupby("customer_id").size()
    assert (rfm["frequency"] <= n_rows - 1).all()


@PROPS
@given(logs(min_size=2), st.randoms(use_true_random=False))
def test_invariant_to_row_order(df, rnd):
    perm = list(range(len(df)))
    rnd.shuffle(perm)
    a = quiet(clv.rfm_summary, df, observation_end=END)
    b = quiet(clv.rfm_summary, df.iloc[perm], observation_end=END)
    assert_frames_close(a, b)


@PROPS
@given(logs(min_size=2), st.randoms(use_true_random=False), st.integers(2, 5))
def test_chunks_loaded_separately_and_concatenated_give_the_whole(df, rnd, k):
    """Any split of the rows: load each chunk, concatenate the loaded chunks, summarise once."""
    labels = [rnd.randrange(k) for _ in range(len(df))]
    chunks = [df[[lab == j for lab in labels]] for j in range(k)]
    loaded = [quiet(clv.load_transactions, c) for c in chunks if len(c)]
    combined = pd.concat(loaded, ignore_index=True)
    assert_frames_close(quiet(clv.rfm_summary, combined, observation_end=END),
                        quiet(clv.rfm_summary, df, observation_end=END))


@PROPS
@given(logs(min_size=2), st.randoms(use_true_random=False), st.integers(2, 4))
@pytest.mark.slow
def test_customer_chunks_summaries_concatenate(df, rnd, k):
    """A split by customer: the chunks' summaries (same observation end) concatenate to the whole."""
    group = {c: rnd.randrange(k) for c in df["customer_id"].unique()}
    parts = [quiet(clv.rfm_summary, df[df["customer_id"].map(group) == j], observation_end=END)
             for j in range(k) if (df["customer_id"].map(group) == j).any()]
    assert_frames_close(pd.concat(parts).sort_index(), quiet(clv.rfm_summary, df, observation_end=END))


@PROPS
@given(logs(), st.integers(0, 23))
def test_same_day_repeats_count_once(df, hour):
    """Adding a purchase on a day a customer already bought changes neither frequency nor the times."""
    extra = df.iloc[[0]].copy()
    extra["timestamp"] = extra["timestamp"].dt.normalize() + pd.Timedelta(hours=hour)
    more = pd.concat([df, extra], ignore_index=True)
    a = quiet(clv.rfm_summary, df, observation_end=END, resolution="D")
    b = quiet(clv.rfm_summary, more, observation_end=END, resolution="D")
    pd.testing.assert_frame_equal(a[["frequency", "recency", "T"]], b[["frequency", "recency", "T"]])


@PROPS
@given(logs())
@pytest.mark.slow
def test_time_units_and_resolutions_are_consistent(df):
    weeks = quiet(clv.rfm_summary, df, observation_end=END, time_unit="W")
    days = quiet(clv.rfm_summary, df, observation_end=END, time_unit="D")
    hours = quiet(clv.rfm_summary, df, observation_end=END, time_unit="h")
    for column in ("recency", "T"):
        np.testing.assert_allclose(days[column], 7 * weeks[column], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hours[column], 24 * days[column], rtol=1e-12, atol=1e-12)
    freq = {res: quiet(clv.rfm_summary, df, observation_end=END, resolution=res)["frequency"]
            for res in ("h", "D", "W")}
    assert (freq["W"] <= freq["D"]).all() and (freq["D"] <= freq["h"]).all()
    # with timestamps at midnight, hourly and daily resolution agree
    midnight = df.assign(timestamp=df["timestamp"].dt.normalize())
    h = quiet(clv.rfm_summary, midnight, observation_end=END, resolution="h")
    d = quiet(clv.rfm_summary, midnight, observation_end=END, resolution="D")
    pd.testing.assert_series_equal(h["frequency"], d["frequency"])
    np.testing.assert_allclose(h["recency"], d["recency"], rtol=1e-12, atol=1e-12)


@PROPS
@given(logs(min_size=2), st.integers(1, 29), st.sampled_from(["h", "D", "W"]))
def test_calibration_holdout_matches_the_oracle(df, cal_day, resolution):
    cal_end = BASE + pd.Timedelta(days=cal_day)
    # the calibration period ends with the period containing cal_end
    cal_stop = period_start(cal_end, resolution) + pd.Timedelta(days={"h": 1 / 24, "D": 1, "W": 7}[resolution])
    in_cal = df["timestamp"] < cal_stop
    if not in_cal.any():
        with pytest.raises(ClvDataError, match="No transactions on or before the calibration end"):
            quiet(clv.calibration_holdout, df, cal_end, END, resolution=resolution)
        return
    ch = quiet(clv.calibration_holdout, df, cal_end, END, "D", resolution=resolution, litt=True)
    cal = df[in_cal]
    assert_frames_close(ch[["frequency", "recency", "T", "litt", "monetary_value"]],
                        oracle(cal, cal_end, "D", resolution))
    hold = df[~in_cal & df["customer_id"].isin(cal["customer_id"])]
    periods = hold.assign(p=[period_start(t, resolution) for t in hold["timestamp"]])
    freq_h = periods.groupby("customer_id")["p"].nunique().reindex(ch.index, fill_value=0)
    value_h = hold.groupby("customer_id")["amount"].sum().reindex(ch.index, fill_value=0.0)
    assert ch["frequency_holdout"].tolist() == freq_h.tolist()
    np.testing.assert_allclose(ch["value_holdout"], value_h, rtol=1e-12, atol=1e-12)
    new = set(df.loc[~in_cal, "customer_id"]) - set(cal["customer_id"])
    assert ch.attrs["n_excluded_new_customers"] == len(new)
    assert not new & set(ch.index)
    expected_duration = (period_start(END, resolution) - period_start(cal_end, resolution)) / pd.Timedelta(days=1)
    assert (ch["duration_holdout"] == expected_duration).all()


# ---------------------------------------------------------------------------- edge cases
def small_log() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "a", "b", "c", "c"],
                         "timestamp": dt(["2024-01-01", "2024-01-08 15:00", "2024-01-03",
                                                      "2024-01-02", "2024-01-20"]),
                         "amount": [1.0, 2.0, 3.0, 4.0, 5.0]})


def test_transactions_after_the_observation_end():
    with pytest.raises(ClvDataError, match=r"after the observation end 2024-01-10 00:00:00 in column 'timestamp' \(1 row\)"):
        clv.rfm_summary(small_log(), observation_end="2024-01-10")
    rfm = clv.rfm_summary(small_log(), observation_end="2024-01-10", truncate=True, time_unit="D")
    assert rfm.loc["c", "frequency"] == 0 and rfm.loc["a", "T"] == 9.0
    # the whole day of the observation end is observed
    assert clv.rfm_summary(small_log(), observation_end="2024-01-08", truncate=True).loc["a", "frequency"] == 1
    with pytest.raises(ClvDataError, match="No transactions on or before"):
        clv.rfm_summary(small_log(), observation_end="2023-12-01", truncate=True)


def test_default_observation_end_is_the_last_timestamp():
    rfm = clv.rfm_summary(small_log(), time_unit="D")
    assert rfm.attrs["observation_end"] == "2024-01-20"
    assert rfm.loc["c", "T"] == 18.0 and rfm.loc["c", "recency"] == 18.0


def test_weeks_start_on_monday():
    df = pd.DataFrame({"customer_id": [1, 1, 2, 2],
                       "timestamp": dt(["2024-03-03", "2024-03-04", "2024-03-04", "2024-03-10"]),
                       "amount": 1.0})  # Sun, Mon | Mon, Sun
    rfm = clv.rfm_summary(df, resolution="W", time_unit="W")
    assert rfm["frequency"].tolist() == [1, 0]
    assert rfm.loc[1, "recency"] == 1.0


def test_hour_resolution_and_attrs():
    df = pd.DataFrame({"customer_id": [1, 1, 1], "amount": [1.0, 2.0, 4.0],
                       "timestamp": dt(["2024-01-01 10:05", "2024-01-01 10:55", "2024-01-01 12:00"])})
    rfm = clv.rfm_summary(df, observation_end="2024-01-01 13:30", resolution="h", time_unit="h")
    assert rfm.loc[1].tolist() == [1, 2.0, 3.0, 4.0]
    assert rfm.attrs == {"time_unit": "h", "resolution": "h", "observation_end": "2024-01-01 13:30:00"}


def test_bad_parameters():
    with pytest.raises(ClvDataError, match="resolution must be"):
        clv.rfm_summary(small_log(), resolution="M")
    with pytest.raises(ClvDataError, match="Unknown time unit"):
        clv.rfm_summary(small_log(), time_unit="fortnight")
    with pytest.raises(ClvDataError, match="is before calibration_end"):
        clv.calibration_holdout(small_log(), "2024-01-10", "2024-01-05")
    with pytest.raises(ClvDataError, match="No transactions on or before the calibration end"):
        clv.calibration_holdout(small_log(), "2023-06-01")


def test_raw_frames_and_column_names_pass_through():
    raw = small_log().rename(columns={"customer_id": "id", "timestamp": "t", "amount": "v"})
    a = clv.rfm_summary(raw, customer_id="id", timestamp="t", amount="v")
    b = clv.rfm_summary(small_log())
    pd.testing.assert_frame_equal(a, b)
    c = clv.calibration_holdout(raw, "2024-01-05", customer_id="id", timestamp="t", amount="v")
    assert c.loc["c", "frequency_holdout"] == 1 and c.loc["c", "value_holdout"] == 5.0


def test_calibration_holdout_excludes_and_counts_new_customers():
    df = pd.concat([small_log(), pd.DataFrame({"customer_id": ["d", "e", "e"], "amount": 1.0,
                                               "timestamp": dt(["2024-01-15", "2024-01-16", "2024-01-18"])})])
    ch = clv.calibration_holdout(df, "2024-01-05", time_unit="D")
    assert ch.index.tolist() == ["a", "b", "c"]
    assert ch.attrs["n_excluded_new_customers"] == 2
    assert ch["frequency_holdout"].tolist() == [1, 0, 1]
    assert ch["value_holdout"].tolist() == [2.0, 0.0, 5.0]
    assert (ch["duration_holdout"] == 15.0).all()


def test_calibration_holdout_without_holdout_rows():
    ch = clv.calibration_holdout(small_log(), "2024-01-20", time_unit="D")
    assert (ch["frequency_holdout"] == 0).all() and (ch["value_holdout"] == 0).all()
    assert (ch["duration_holdout"] == 0).all()


def test_monetary_value_is_exact_with_a_huge_first_purchase():
    df = pd.DataFrame({"customer_id": [1, 1], "amount": [1e12, 0.01],
                       "timestamp": dt(["2024-01-01", "2024-01-02"])})
    assert clv.rfm_summary(df).loc[1, "monetary_value"] == 0.01


def test_negative_epoch_dates_and_long_spans():
    df = pd.DataFrame({"customer_id": [1, 1, 2], "amount": 1.0,
                       "timestamp": dt(["1901-03-04 05:00", "2201-01-01", "1969-12-31 23:59"])})
    rfm = clv.rfm_summary(df, time_unit="D", resolution="h")
    expected = (pd.Timestamp("2201-01-01") - pd.Timestamp("1901-03-04 05:00")) / pd.Timedelta(days=1)
    assert rfm.loc[1, "recency"] == pytest.approx(expected, rel=1e-15)
    assert rfm.loc[2, "T"] == pytest.approx((pd.Timestamp("2201-01-01") - pd.Timestamp("1969-12-31 23:00"))
                                            / pd.Timedelta(days=1), rel=1e-15)


# ---------------------------------------------------------------------------- amounts near the float limit (#12 item 4)
def _engines():
    """Summaries of a log path on every engine available here."""
    engines = {"pandas": lambda path, **kw: quiet(clv.rfm_summary, path, **kw)}
    try:
        from clvmodels.scale import calibration_holdout_duckdb, rfm_summary_duckdb
    except ImportError:  # pragma: no cover - duckdb is the 'scale' extra
        return engines
    engines["duckdb"] = rfm_summary_duckdb
    engines["duckdb-holdout"] = lambda path, **kw: calibration_holdout_duckdb(path, "2024-01-01", **kw)
    engines["pandas-holdout"] = lambda path, **kw: quiet(clv.calibration_holdout, path, "2024-01-01", **kw)
    return engines


def _log_file(tmp_path, ids, dates, amounts):
    path = tmp_path / "log.csv"
    pd.DataFrame({"customer_id": ids, "timestamp": dates, "amount": amounts}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_mean_spend_does_not_overflow_when_the_sum_would(tmp_path, engine):
    if engine not in _engines():
        pytest.skip("duckdb is not installed")
    path = _log_file(tmp_path, ["a", "a", "a", "b", "b"],
                     ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-01", "2024-01-02"],
                     [1e308, 1e308, 1.5e308, 1e20, 0.01])
    rfm = _engines()[engine](path)
    assert rfm.loc["a", "monetary_value"] == 1.25e308  # the sum 2.5e308 overflows; the mean does not
    assert rfm.loc["b", "monetary_value"] == 0.01  # exact beside a huge first purchase, on every engine
    assert np.isfinite(rfm.to_numpy(dtype=float)).all()


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_a_mean_beyond_the_float_range_names_the_customers(tmp_path, engine):
    if engine not in _engines():
        pytest.skip("duckdb is not installed")
    # two purchases of 1e308 on one day are one transaction worth 2e308: not representable
    path = _log_file(tmp_path, ["007", "007", "007", "8"], ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-01"],
                     [1.0, 1e308, 1e308, 1.0])
    with pytest.raises(ClvDataError, match=r"1 customer\(s\) have a mean repeat-transaction value beyond the "
                                           r"largest representable number .* customer\(s\) '007'\. .*rescale"):
        _engines()[engine](path)


@pytest.mark.parametrize("engine", ["pandas-holdout", "duckdb-holdout"])
def test_a_holdout_spend_beyond_the_float_range_names_the_customers(tmp_path, engine):
    if engine not in _engines():
        pytest.skip("duckdb is not installed")
    path = _log_file(tmp_path, ["x", "x", "x"], ["2024-01-01", "2024-01-02", "2024-01-03"], [1.0, 1e308, 1e308])
    with pytest.raises(ClvDataError, match=r"1 customer\(s\) have a holdout spend beyond .*'x'"):
        _engines()[engine](path)


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
@pytest.mark.parametrize("value", ["inf", "-inf", "1e309"])
def test_infinite_amounts_are_refused_with_column_and_row_count(tmp_path, engine, value):
    if engine not in _engines():
        pytest.skip("duckdb is not installed")
    path = tmp_path / "log.csv"
    path.write_text(f"customer_id,timestamp,amount\na,2024-01-01,1\na,2024-01-02,{value}\nb,2024-01-02,{value}\n")
    with pytest.raises(ClvDataError, match=r"[Ii]nfinite amounts in column 'amount' \(2 rows\)"):
        _engines()[engine](path, refunds="net")
