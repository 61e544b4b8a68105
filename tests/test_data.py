"""load_transactions: validation messages, refunds, duplicates, id dtypes, files, messy data."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clvmodels as clv
from clvmodels.data import count_duplicate_rows, factorize_ids, group_order
from clvmodels.errors import ClvDataError


def frame(ids=("a", "a", "b", "c"), dates=("2024-01-01", "2024-01-05", "2024-01-02", "2024-01-03"),
          amounts=(10.0, 20.0, 5.0, 7.5)) -> pd.DataFrame:
    return pd.DataFrame({"cust": list(ids), "when": list(dates), "value": list(amounts)})


def load(df, **kw):
    kw = {"customer_id": "cust", "timestamp": "when", "amount": "value", **kw}
    return clv.load_transactions(df, **kw)


def quiet_load(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load(df, **kw)


# ---------------------------------------------------------------------------- bad input
BAD_INPUTS = {
    # name: (frame edit, load kwargs, problem, column, n_rows, a value shown among the examples)
    "unparseable timestamps": (
        lambda df: df.assign(when=["2024-01-01", "yesterday", "2024-13-45", "2024-01-03"]),
        {}, "Unparseable timestamps", "when", 2, "yesterday"),
    "unparseable with date_format": (
        lambda df: df.assign(when=["01/02/2024", "2024-01-05", "03/01/2024", "04/01/2024"]),
        {"date_format": "%d/%m/%Y"}, "Unparseable timestamps with format '%d/%m/%Y'", "when", 1, "2024-01-05"),
    "missing timestamps": (
        lambda df: df.assign(when=["2024-01-01", None, np.nan, "2024-01-03"]),
        {}, "Missing timestamps", "when", 2, None),
    "missing datetime64 timestamps": (
        lambda df: df.assign(when=pd.to_datetime(["2024-01-01", None, "2024-01-02", None])),
        {}, "Missing timestamps", "when", 2, "NaT"),
    "missing customer ids": (
        lambda df: df.assign(cust=["a", None, np.nan, "c"]),
        {}, "Missing customer ids", "cust", 2, None),
    "blank customer ids": (
        lambda df: df.assign(cust=pd.Series(["a", "", "   ", "c"], dtype=object)),
        {}, "Missing customer ids", "cust", 2, None),
    "blank str-dtype customer ids": (
        lambda df: df.assign(cust=pd.Series(["a", "", "\t", "c"], dtype="str")),
        {}, "Missing customer ids", "cust", 2, None),
    "missing integer customer ids": (
        lambda df: df.assign(cust=pd.array([1, None, 2, 3], dtype="Int64")),
        {}, "Missing customer ids", "cust", 1, "<NA>"),
    "non-numeric amounts": (
        lambda df: df.assign(value=["10", "$20", "5", "7,5"]),
        {}, "Non-numeric amounts", "value", 2, "$20"),
    "NaN amounts": (
        lambda df: df.assign(value=[10.0, np.nan, None, 1.0]),
        {}, "Missing (NaN) amounts", "value", 2, "NaN"),
    "infinite amounts": (
        lambda df: df.assign(value=[10.0, np.inf, -np.inf, 1.0]),
        {"refunds": "drop"}, "Infinite amounts", "value", 2, "inf"),
    "negative amounts": (
        lambda df: df.assign(value=[10.0, -20.0, 5.0, -1.0]),
        {}, "Negative amounts (refunds)", "value", 2, "-20.0"),
    "timestamps after the observation end": (
        lambda df: df,
        {"observation_end": "2024-01-02"}, "Timestamps after the observation end", "when", 2, "2024-01-05"),
    "out-of-range timestamps": (
        lambda df: df.assign(when=["2024-01-01", "9999-12-31", "2024-01-02", "2024-01-03"]),
        {}, "Timestamps out of the supported range", "when", 1, "9999-12-31"),
    "non-integer numeric timestamps": (
        lambda df: df.assign(when=[20240101.0, 20240101.5, 20240102.0, 20240103.0]),
        {}, "Non-integer numeric timestamps", "when", 1, "20240101.5"),
    "epoch integers": (
        lambda df: df.assign(when=[1_704_067_200, 1_704_153_600, 1_704_240_000, 1_704_326_400]),
        {}, "Unparseable timestamps with format '%Y%m%d'", "when", 4, "1704067200"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_a_clear_error(case):
    edit, kwargs, problem, column, n_rows, shown = BAD_INPUTS[case]
    df = edit(frame())
    with pytest.raises(ClvDataError) as info:
        load(df, **kwargs)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith(problem), msg
    assert f"in column {column!r}" in msg, msg
    assert f"({n_rows} row{'s' if n_rows != 1 else ''})" in msg, msg
    assert "Examples:" in msg, msg
    if shown is not None:
        assert shown in msg.split("Examples:")[1], msg


def test_epoch_integer_error_says_how_to_convert():
    df = frame().assign(when=[1_704_067_200] * 4)
    with pytest.raises(ClvDataError, match=re.escape("pd.to_datetime(col, unit='s')")):
        load(df)


def test_row_count_uses_thousands_separators_and_few_examples():
    df = pd.DataFrame({"cust": range(2000), "when": ["not a date"] * 2000, "value": 1.0})
    with pytest.raises(ClvDataError) as info:
        load(df)
    msg = str(info.value)
    assert "(2,000 rows)" in msg
    assert len(msg.split("Examples:")[1].strip().splitlines()) == 1 + 5  # header + 5 rows


def test_missing_columns_name_them_and_the_available_ones():
    with pytest.raises(ClvDataError) as info:
        load(frame(), timestamp="date", amount="price")
    msg = str(info.value)
    assert "Missing column(s) ['date', 'price']" in msg
    assert "['cust', 'when', 'value']" in msg


def test_empty_log():
    with pytest.raises(ClvDataError, match=r"empty \(0 rows\)"):
        load(frame().iloc[:0])


def test_same_column_twice_and_bad_refund_policy():
    with pytest.raises(ClvDataError, match="must differ"):
        load(frame(), amount="when")
    with pytest.raises(ClvDataError, match="refunds must be one of"):
        load(frame(), refunds="ignore")


def test_only_refunds_left():
    with pytest.raises(ClvDataError, match="No purchases left"):
        load(frame(amounts=(-1.0, -2.0, -3.0, -4.0)), refunds="drop")


def test_observation_end_date_covers_the_whole_day_and_can_be_aware():
    df = frame(dates=("2024-01-01 08:00", "2024-01-02 23:59:59", "2024-01-02", "2024-01-01"))
    assert len(load(df, observation_end="2024-01-02")) == 4
    with pytest.raises(ClvDataError, match=r"\(1 row\)"):
        load(df, observation_end="2024-01-02 12:00")
    # an aware end is compared in the log's wall-clock time
    assert len(load(df, observation_end=pd.Timestamp("2024-01-02", tz="Asia/Tokyo"))) == 4
    with pytest.raises(ClvDataError, match="observation_end 'soon' is not a valid date"):
        load(df, observation_end="soon")


# ---------------------------------------------------------------------------- refunds
def refund_log() -> pd.DataFrame:
    return pd.DataFrame({
        "cust": ["A", "A", "A", "B", "B", "C", "C", "A", "D", "D"],
        "when": ["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-02", "2024-01-05",
                 "2024-01-01 10:00", "2024-01-01 10:00", "2024-01-06", "2024-01-01", "2024-01-08"],
        "value": [10.0, 20.0, -5.0, -3.0, 8.0, 7.0, -7.0, -30.0, 4.25, -1.5],
    })


def test_refunds_net_against_the_latest_earlier_purchase():
    log = load(refund_log(), refunds="net")
    # A: 20 (Jan 3) -5 (Jan 4) -30 (Jan 6) -> -15: removed, 15 of excess ignored; A's Jan 1 stays.
    # B: the Jan 2 refund precedes every purchase: dropped. C: refunded in full at the same time.
    # D: 4.25 - 1.5 = 2.75.
    expected = pd.DataFrame({
        "customer_id": ["A", "B", "D"],
        "timestamp": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-01"]),
        "amount": [10.0, 8.0, 2.75],
    })
    pd.testing.assert_frame_equal(log, expected, check_dtype=False)
    assert log.attrs["n_refunds"] == 5
    assert log.attrs["n_refunds_netted"] == 4
    assert log.attrs["n_refunds_dropped"] == 1
    assert log.attrs["n_purchases_fully_refunded"] == 2
    assert log.attrs["refund_amount_dropped"] == pytest.approx(3.0 + 15.0)
    assert log.attrs["n_rows"] == 3 and log.attrs["n_customers"] == 3


def test_refund_ties_net_against_the_last_purchase_in_log_order():
    df = pd.DataFrame({"cust": ["A", "A", "A"], "when": ["2024-01-01"] * 3, "value": [5.0, 6.0, -6.0]})
    log = load(df, refunds="net")
    assert log["amount"].tolist() == [5.0]


def test_refunds_drop_removes_them_and_keeps_purchases():
    log = load(refund_log(), refunds="drop")
    assert log["amount"].tolist() == [10.0, 20.0, 8.0, 7.0, 4.25]
    assert log.attrs["n_refunds"] == 5 and log.attrs["n_refunds_dropped"] == 5
    assert log.attrs["refund_amount_dropped"] == pytest.approx(5 + 3 + 7 + 30 + 1.5)


def test_netted_log_summarises_to_the_netted_values():
    rfm = clv.rfm_summary(load(refund_log(), refunds="net"), observation_end="2024-01-10", time_unit="D")
    assert rfm.loc["D", "frequency"] == 0 and rfm.loc["A", "frequency"] == 0
    assert rfm.index.tolist() == ["A", "B", "D"]


# ---------------------------------------------------------------------------- duplicates
def test_duplicates_are_counted_noticed_once_in_one_line_and_kept(caplog):
    df = pd.DataFrame({
        "cust": [1, 1, 1, 1, 2, 2],
        "when": ["2024-01-01 10:00"] * 3 + ["2024-01-01 10:00", "2024-01-02", "2024-01-02"],
        "value": [5.0, 5.0, 5.0, 6.0, 1.0, 1.0],
    })
    with warnings.catch_warnings(), caplog.at_level("WARNING", logger="clvmodels"):
        warnings.simplefilter("error")  # a notice (one log line), not a warning with a source line
        log = load(df)
    notices = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith("clvmodels: 3 duplicate transaction row(s)")
    assert log.attrs["n_duplicate_rows"] == 3
    assert len(log) == 6 and log.attrs["n_rows"] == 6
    rfm = clv.rfm_summary(log, observation_end="2024-01-03", time_unit="D")
    # same-day purchases count once; their amounts add up (customer 2: 1 + 1 on its first day)
    assert rfm["frequency"].tolist() == [0, 0]


def test_no_warning_without_duplicates():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log = load(frame())
    assert log.attrs["n_duplicate_rows"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([0.0, -0.0, 1.5, 2.0])),
                min_size=1, max_size=60))
def test_duplicate_count_matches_pandas(rows):
    codes = np.array([r[0] for r in rows], dtype=np.intp)
    ts = (np.datetime64("2024-01-01", "ns") + np.array([r[1] for r in rows]) * np.timedelta64(1, "h"))
    amount = np.array([r[2] for r in rows]) + 0.0
    expected = int(pd.DataFrame({"c": codes, "t": ts, "a": amount}).duplicated().sum())
    assert count_duplicate_rows(codes, ts, amount) == expected
    assert count_duplicate_rows(codes, ts, None) == int(pd.DataFrame({"c": codes, "t": ts}).duplicated().sum())
    order = np.argsort(ts, kind="stable")  # a log in time order takes a shortcut
    assert count_duplicate_rows(codes[order], ts[order], amount[order]) == expected


def test_duplicate_count_is_exact_at_scale():
    rng = np.random.default_rng(1)
    n = 300_000
    codes = rng.integers(0, 50_000, n)
    ts = np.datetime64("2024-01-01", "ns") + rng.integers(0, 10**6, n) * np.timedelta64(1, "s")
    amount = rng.integers(1, 100, n) / 4
    dup = rng.integers(0, n, 5_000)  # plant 5,000 copies of random rows
    codes, ts, amount = (np.concatenate([a, a[dup]]) for a in (codes, ts, amount))
    expected = int(pd.DataFrame({"c": codes, "t": ts, "a": amount}).duplicated().sum())
    assert expected >= 5_000
    assert count_duplicate_rows(codes, ts, amount) == expected
    order = np.argsort(ts, kind="stable")
    assert count_duplicate_rows(codes[order], ts[order], amount[order]) == expected


# ---------------------------------------------------------------------------- ids
ID_CASES = {
    "int64": pd.Series([30, 10, 30, 20, 10], dtype="int64"),
    "large int64": pd.Series([2**62, -(2**62), 2**62, 5, -(2**62)], dtype="int64"),
    "uint64 above int64": pd.Series([2**64 - 1, 3, 2**64 - 1, 2**63, 3], dtype="uint64"),
    "int32": pd.Series([3, 1, 3, 2, 1], dtype="int32"),
    "int8 across its range": pd.Series([100, -100, 100, 0, -100], dtype="int8"),
    "dense uint64 above int64": pd.Series([2**63 + 9, 2**63 + 1, 2**63 + 9, 2**63 + 5, 2**63 + 1], dtype="uint64"),
    "nullable Int64": pd.Series([3, 1, 3, 2, 1], dtype="Int64"),
    "object strings": pd.Series(["b", "a", "b", "c", "a"], dtype=object),
    "str dtype": pd.Series(["b", "a", "b", "c", "a"], dtype="str"),
    "spaces and unicode": pd.Series(["  x y ", "Zoë Ω", "  x y ", "客户 7", "Zoë Ω"], dtype=object),
    "mixed int and str": pd.Series([7, "7", 7, "a", "7"], dtype=object),
    "categorical": pd.Series(pd.Categorical(["z", "y", "z", "x", "y"], categories=["z", "unused", "y", "x"])),
    "ordered categorical of ints": pd.Series(pd.Categorical([3, 1, 3, 2, 1], categories=[3, 2, 1], ordered=True)),
}


@pytest.mark.parametrize("case", list(ID_CASES), ids=list(ID_CASES))
def test_ids_come_back_unchanged(case):
    ids = ID_CASES[case]
    df = pd.DataFrame({"cust": ids, "when": ["2024-01-01", "2024-01-02", "2024-01-09", "2024-01-03", "2024-01-04"],
                       "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    log = quiet_load(df)
    assert log["customer_id"].dtype == ids.dtype
    assert log["customer_id"].tolist() == ids.tolist()
    rfm = clv.rfm_summary(log, observation_end="2024-01-10")
    ch = clv.calibration_holdout(log, "2024-01-05", "2024-01-10")
    for out in (rfm, ch):
        assert out.index.dtype == ids.dtype
        assert out.index.name == "customer_id"
        assert out.index.is_unique
        assert set(out.index.tolist()) == set(ids.tolist())
    # each customer's numbers belong to its own rows
    first_id = ids.iloc[0]
    assert rfm.loc[first_id, "frequency"] == 1  # two purchases, Jan 1 and Jan 9
    assert rfm.loc[first_id, "recency"] == pytest.approx(8 / 7)
    assert ch.loc[first_id, "frequency_holdout"] == 1


def test_ids_are_sorted_when_orderable():
    for case in ("int64", "large int64", "uint64 above int64", "int8 across its range", "dense uint64 above int64",
                 "object strings", "str dtype"):
        ids = ID_CASES[case]
        codes, uniques = factorize_ids(ids)
        assert uniques.tolist() == sorted(set(ids.tolist()))
        assert (uniques[codes] == ids.to_numpy()).all()
    codes, uniques = factorize_ids(ID_CASES["categorical"])
    assert uniques.tolist() == ["z", "y", "x"]  # the categories' order


def test_factorize_matches_pandas_on_sparse_and_dense_ints():
    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 1000, 5000), rng.integers(-(10**15), 10**15, 5000)):
        codes, uniques = factorize_ids(pd.Series(values))
        ref_codes, ref_uniques = pd.factorize(values, sort=True)
        assert np.array_equal(codes, ref_codes)
        assert np.array_equal(uniques.to_numpy(), ref_uniques)


def test_group_order_is_a_stable_counting_sort():
    codes = np.array([2, 0, 2, 1, 0, 2])
    order, counts = group_order(codes, 4)
    assert order.tolist() == [1, 4, 3, 0, 2, 5]
    assert counts.tolist() == [2, 1, 3, 0]


# ---------------------------------------------------------------------------- files and formats
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_csv_and_parquet_paths(tmp_path, suffix):
    df = pd.DataFrame({"client": ["x", "y", "x"], "day": ["31/01/2024", "01/02/2024", "15/02/2024"],
                       "eur": [1.5, 2.0, 3.25], "other": [0, 0, 0]})
    path = tmp_path / f"log{suffix}"
    if suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    for source in (path, str(path)):
        log = clv.load_transactions(source, customer_id="client", timestamp="day", amount="eur",
                                    date_format="%d/%m/%Y")
        assert list(log.columns) == ["customer_id", "timestamp", "amount"]
        assert log["timestamp"].tolist() == list(pd.to_datetime(["2024-01-31", "2024-02-01", "2024-02-15"]))
        assert log["amount"].tolist() == [1.5, 2.0, 3.25]
    rfm = clv.rfm_summary(path, customer_id="client", timestamp="day", amount="eur", date_format="%d/%m/%Y",
                          time_unit="D")
    assert rfm.loc["x", "recency"] == 15.0 and rfm.loc["x", "monetary_value"] == 3.25


def test_parquet_keeps_datetime_and_integer_ids(tmp_path):
    df = pd.DataFrame({"id": [5, 6, 5], "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00", "2024-01-03 00:00"]),
                       "amt": [1.0, 2.0, 3.0]})
    df.to_parquet(tmp_path / "log.parquet")
    log = clv.load_transactions(tmp_path / "log.parquet", customer_id="id", timestamp="ts", amount="amt")
    assert log["customer_id"].dtype == np.int64
    assert log["timestamp"].tolist() == df["ts"].tolist()


def test_file_errors(tmp_path):
    with pytest.raises(ClvDataError, match="File not found"):
        clv.load_transactions(tmp_path / "nope.csv")
    (tmp_path / "log.xlsx").write_text("x")
    with pytest.raises(ClvDataError, match="Unsupported file type"):
        clv.load_transactions(tmp_path / "log.xlsx")


def test_log_without_amounts():
    log = clv.load_transactions(frame(), customer_id="cust", timestamp="when", amount=None)
    assert list(log.columns) == ["customer_id", "timestamp"]
    rfm = clv.rfm_summary(log)
    assert "monetary_value" not in rfm.columns


def test_integer_and_integral_float_dates_are_yyyymmdd():
    for when in ([20240101, 20240105, 20240102, 20240103], [20240101.0, 20240105.0, 20240102.0, 20240103.0]):
        log = load(frame(dates=when))
        assert log["timestamp"].tolist() == list(pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02",
                                                                   "2024-01-03"]))


def test_input_frame_is_not_modified():
    df = refund_log()
    df["cust"] = df["cust"].astype("category")
    df.attrs["note"] = "mine"
    before = df.copy(deep=True)
    for refunds in ("net", "drop"):
        log = load(df, refunds=refunds)
        log.loc[0, "amount"] = -999.0  # the result does not share memory with the input
    pd.testing.assert_frame_equal(df, before)
    assert df.attrs == {"note": "mine"}
    df2 = frame(dates=pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02", "2024-01-03"]))
    before2 = df2.copy(deep=True)
    log = load(df2)
    log["timestamp"] = log["timestamp"] + pd.Timedelta(days=1)
    log.loc[0, "customer_id"] = "zzz"
    pd.testing.assert_frame_equal(df2, before2)


def test_non_default_index_is_replaced_and_examples_use_the_input_index():
    df = frame().set_axis([10, 10, 20, 30])  # duplicated labels
    log = load(df)
    assert log.index.equals(pd.RangeIndex(4))
    bad = df.assign(value=[1.0, np.nan, 1.0, 1.0])
    with pytest.raises(ClvDataError, match=r"\n10 +a"):
        load(bad)


# ---------------------------------------------------------------------------- messy data
def test_timezone_aware_timestamps_keep_local_wall_clock():
    ts = pd.to_datetime(["2024-03-30 23:30", "2024-03-31 23:30", "2024-04-01 00:30"]).tz_localize("Europe/Paris")
    df = pd.DataFrame({"cust": ["a", "a", "a"], "when": ts, "value": [1.0, 2.0, 3.0]})
    log = load(df)
    assert log["timestamp"].dt.tz is None
    assert log["timestamp"].tolist() == list(pd.to_datetime(["2024-03-30 23:30", "2024-03-31 23:30",
                                                             "2024-04-01 00:30"]))
    assert log.attrs["timezone"] == "Europe/Paris"
    rfm = clv.rfm_summary(log, time_unit="D")
    assert rfm.loc["a", "frequency"] == 2 and rfm.loc["a", "recency"] == 2.0
    # an aware observation end is converted to the log's zone: 2024-04-02 01:00 Paris = 23:00 UTC on the 1st
    end = pd.Timestamp("2024-04-01 23:00", tz="UTC")
    assert clv.rfm_summary(log, observation_end=end, time_unit="D").loc["a", "T"] == 3.0


def test_mixed_utc_offsets_keep_each_wall_clock_time():
    df = pd.DataFrame({"cust": ["a", "a", "b"],
                       "when": ["2024-01-15T23:00:00+01:00", "2024-07-15T23:00:00+02:00", "2024-07-15T01:00:00-05:00"],
                       "value": [1.0, 2.0, 3.0]})
    log = load(df)
    assert log["timestamp"].tolist() == list(pd.to_datetime(["2024-01-15 23:00", "2024-07-15 23:00",
                                                             "2024-07-15 01:00"]))


def test_single_customer_single_purchase():
    log = load(frame(ids=["only"], dates=["2024-01-01"], amounts=[3.0]))
    rfm = clv.rfm_summary(log, observation_end="2024-01-15", time_unit="D")
    assert rfm.to_dict("index") == {"only": {"frequency": 0, "recency": 0.0, "T": 14.0, "monetary_value": 0.0}}


def test_all_customers_with_one_purchase_and_one_cohort():
    df = pd.DataFrame({"cust": range(100), "when": "2024-01-01", "value": 1.0})
    rfm = clv.rfm_summary(load(df), observation_end="2024-03-01")
    assert (rfm["frequency"] == 0).all() and (rfm["recency"] == 0).all()
    assert (rfm["T"] == 60 / 7).all() and (rfm["monetary_value"] == 0).all()


def test_attrs_survive_parquet(tmp_path):
    ts = pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00"]).tz_localize("America/New_York")
    log = load(pd.DataFrame({"cust": [1, 1], "when": ts, "value": [1.0, -0.5]}), refunds="net")
    log.to_parquet(tmp_path / "log.parquet")
    back = pd.read_parquet(tmp_path / "log.parquet")
    assert back.attrs == log.attrs and back.attrs["timezone"] == "America/New_York"
    rfm = clv.rfm_summary(back, observation_end=pd.Timestamp("2024-01-03 04:00", tz="UTC"), time_unit="D")
    assert rfm.loc[1, "T"] == 1.0  # 23:00 on Jan 2 in New York


# ---------------------------------------------------------------------------- #12 item 10
@pytest.mark.parametrize("stamps", [
    ["2024-01-01 10:00+01:00", "2024-01-02 10:00", "2024-01-03", "2024-01-04T10:00Z"],
    [pd.Timestamp("2024-01-01 10:00", tz="UTC"), pd.Timestamp("2024-01-02 10:00"), pd.Timestamp("2024-01-03"),
     pd.Timestamp("2024-01-04 10:00", tz="Europe/Paris")],
])
def test_mixed_aware_and_naive_timestamps_get_their_own_message(stamps):
    df = frame(ids="abcd", dates=stamps, amounts=(1.0, 2.0, 3.0, 4.0))
    with pytest.raises(ClvDataError) as info:
        load(df)
    message = str(info.value)
    assert message.startswith("Mixed time-zone-aware and naive timestamps (2 with a time zone or UTC offset, "
                              "2 without) in column 'when' (4 rows).")
    assert "Unparseable" not in message and "give every timestamp a UTC offset, or none" in message
    assert [line.split()[0] for line in message.splitlines()[-4:]] == ["0", "1", "2", "3"]  # real rows


def test_an_unparseable_value_beside_aware_ones_is_unparseable_not_mixed():
    df = frame(ids="ab", dates=["2024-01-01 10:00+01:00", "garbage"], amounts=(1.0, 2.0))
    with pytest.raises(ClvDataError, match=r"Unparseable timestamps .* \(1 row\)"):
        load(df)


def test_duckdb_reports_mixed_aware_and_naive_text_timestamps(tmp_path):
    scale = pytest.importorskip("clvmodels.scale")
    path = tmp_path / "log.csv"
    frame(ids="abcd", dates=["2024-01-01 10:00+01:00", "2024-01-02 10:00", "2024-01-03", "2024-01-04T10:00Z"],
          amounts=(1.0, 2.0, 3.0, 4.0)).to_csv(path, index=False)
    with pytest.raises(ClvDataError, match=r"^Mixed time-zone-aware and naive timestamps \(2 with a time zone or "
                                           r"UTC offset, 2 without\) in column 'when' \(4 rows\)"):
        scale.rfm_summary_duckdb(path, customer_id="cust", timestamp="when", amount="value")
    # aware values alone (even with different offsets) are fine on both engines, each at its wall-clock time
    frame(ids="ab", dates=["2024-03-30 10:00+01:00", "2024-04-02 10:00+02:00"], amounts=(1.0, 2.0)).to_csv(path, index=False)
    kw = dict(customer_id="cust", timestamp="when", amount="value", time_unit="D")
    assert scale.rfm_summary_duckdb(path, **kw)["T"].tolist() == clv.rfm_summary(path, **kw)["T"].tolist() == [3.0, 0.0]
    # ... also where the instant in UTC falls on another day (DuckDB's CSV sniffer read offsets as UTC)
    frame(ids="aa", dates=["2024-01-01 00:30+01:00", "2024-01-03 10:00+01:00"], amounts=(1.0, 2.0)).to_csv(path, index=False)
    assert scale.rfm_summary_duckdb(path, **kw)["recency"].tolist() == clv.rfm_summary(path, **kw)["recency"].tolist() == [2.0]


def test_a_repeated_column_name_in_a_csv_is_refused(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("cust,when,value,cust\na,2024-01-01,1,x\nb,2024-01-02,2,y\n")
    with pytest.raises(ClvDataError, match=r"Column name\(s\) 'cust' \(2 times\) occur more than once in the header"):
        load(path)


@pytest.mark.parametrize("name,content,match", [
    ("empty.csv", b"", "it is not UTF-8 CSV text with a header row"),
    ("binary.csv", b"\xff\xfe\x9e garbage \x00\n" * 20, "it is not UTF-8 CSV text with a header row"),
    ("latin.csv", "customer_id,timestamp,amount\nJosé,2024-01-01,1\n".encode("latin-1"), "UTF-8"),
    ("log.parquet", b"not parquet at all", "it is not a Parquet file or dataset"),
])
def test_unreadable_files_are_data_errors_naming_the_file_on_both_engines(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    engines = [clv.load_transactions]
    try:
        from clvmodels.scale import rfm_summary_duckdb
        engines.append(rfm_summary_duckdb)
    except ImportError:  # pragma: no cover - duckdb is the 'scale' extra
        pass
    for read in engines:
        with pytest.raises(ClvDataError, match=rf"[Cc]ould not read '.*{name}'.*{match}"):
            read(path)
