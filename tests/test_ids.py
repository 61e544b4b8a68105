"""Customer ids are labels: read as text from CSV and kept exactly as given, on every engine.

Regression tests of issue #12 item 1: ``007``, ``07`` and ``7`` (and ``1.0`` and ``1``) were merged
into one customer by ``load_transactions(path)``, the pandas engine and, for ids after its
type-detection sample, the DuckDB engine.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clvmodels as clv
from clvmodels.errors import ClvDataError

duckdb = pytest.importorskip("duckdb")
from clvmodels.scale import rfm_summary_duckdb  # noqa: E402

TRICKY = ["007", "07", "7", "1.0", "1", " 7", "7 ", "a b", "NA", "null", "nan", "None", "ünï", "客户",
          "1e3", "1000", "+7", "-0", "0", "\u3000", "x,y", 'q"uote']


def _log(ids) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"customer_id": list(ids),
                         "timestamp": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                         "amount": np.arange(1, n + 1, dtype=float)})


def _summaries(path):
    return {"pandas": clv.rfm_summary(path), "duckdb": rfm_summary_duckdb(path)}


def test_tricky_ids_stay_apart_on_every_engine(tmp_path):
    path = tmp_path / "log.csv"
    _log(TRICKY).to_csv(path, index=False)
    log = clv.load_transactions(path)
    assert log["customer_id"].tolist() == TRICKY
    for engine, rfm in _summaries(path).items():
        assert sorted(rfm.index) == sorted(TRICKY), engine
        assert rfm.index.dtype == "str", engine
        assert rfm.loc["007", "T"] != rfm.loc["7", "T"], engine


def test_blank_and_empty_ids_are_missing_on_every_engine(tmp_path):
    for bad in ["", "   ", "\t"]:
        path = tmp_path / "log.csv"
        _log(["a", bad, "b"]).to_csv(path, index=False)
        with pytest.raises(ClvDataError, match=r"Missing customer ids.*'customer_id' \(1 row\)"):
            clv.load_transactions(path)
        with pytest.raises(ClvDataError, match=r"Missing customer ids in column 'customer_id' \(1 row\)"):
            rfm_summary_duckdb(path)


_ID = st.text(st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("0123456789 0"),
              min_size=1, max_size=6).filter(lambda s: not s.isascii() or s.strip(" ") != "")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(_ID | st.integers(0, 999).map(lambda i: "0" * (i % 3) + str(i)), min_size=1, max_size=25))
@pytest.mark.slow
def test_summaries_return_exactly_the_input_ids(tmp_path, ids):
    """The acceptance property: each input id comes back once, unchanged, on every engine."""
    ids = [i for i in ids if i.strip(" \t\n\r\f\v")] or ["x"]
    path = tmp_path / "log.csv"
    _log(ids).to_csv(path, index=False)
    want = sorted(set(ids))
    for engine, rfm in _summaries(path).items():
        assert rfm.index.tolist() == want, engine  # sorted by code point on both engines
        assert rfm.index.is_unique


def test_duckdb_reads_ids_after_its_sample_as_text(tmp_path):
    """60,000 integer-looking ids, then 007 / 07 style ids the type sniffer never sees."""
    ids = [str(i) for i in range(1, 60_001)] + ["007", "07"]
    path = tmp_path / "log.csv"
    pd.DataFrame({"customer_id": ids, "timestamp": "2024-01-01", "amount": 1.0}).to_csv(path, index=False)
    rfm = rfm_summary_duckdb(path)
    assert len(rfm) == 60_002
    assert {"007", "07", "7"} <= set(rfm.index)


def test_numeric_ids_from_parquet_and_frames_stay_numeric(tmp_path):
    df = pd.DataFrame({"customer_id": [7, 7, 70], "timestamp": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-02"]),
                       "amount": [1.0, 2.0, 3.0]})
    df.to_parquet(tmp_path / "log.parquet")
    for source in (df, tmp_path / "log.parquet"):
        for rfm in (clv.rfm_summary(source), rfm_summary_duckdb(source)):
            assert rfm.index.dtype == np.int64 and rfm.index.tolist() == [7, 70]


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_ids_round_trip_through_the_summarize_command(tmp_path, engine, suffix):
    ids = ["007", "07", "7", "1.0", "1", " 7 "]
    log = tmp_path / "log.csv"
    _log(ids).to_csv(log, index=False)
    out = tmp_path / f"rfm{suffix}"
    subprocess.run([sys.executable, "-m", "clvmodels.cli", "summarize", str(log), "--out", str(out),
                    "--engine", engine], check=True, capture_output=True)
    rfm = (pd.read_csv(out, dtype={"customer_id": str}, keep_default_na=False) if suffix == ".csv"
           else pd.read_parquet(out).reset_index())
    assert sorted(rfm["customer_id"]) == sorted(ids)
    assert rfm["customer_id"].dtype == "str"


def test_ids_that_are_equal_numbers_of_different_types_are_refused_not_merged():
    """A frame's object id column with 1, 1.0 and True: pandas would merge them (they are equal) while
    "1" stays apart as given; ids are labels, so the mix of number types is an error saying how to fix it."""
    df = _log(range(6))
    df["customer_id"] = pd.Series([1, "1", 1.0, "01", 2, True], dtype=object)
    with pytest.raises(ClvDataError, match=r"numbers of different types \(int: 2, float: 1, bool: 1\) in column "
                                           r"'customer_id' \(4 rows\).*astype\(str\)"):
        clv.load_transactions(df)
    one_type = clv.rfm_summary(df.assign(customer_id=df["customer_id"].astype(str)))
    assert sorted(one_type.index) == ["01", "1", "1.0", "2", "True"]
