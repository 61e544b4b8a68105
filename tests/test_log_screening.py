"""Issue #12 item 5: a raw log as `score` input gets per-customer rejects, every kind counted,
and no customer is lost (customers read = scored + rejected)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import cli
from clvmodels.log_screening import screen_log, transaction_problems

ENGINES = ["pandas", "duckdb"]


def command() -> list[str]:
    exe = Path(sys.executable).parent / "clvmodels"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "clvmodels.cli"]


def synthetic_log(n_customers: int, per_customer: int, seed: int) -> pd.DataFrame:
    """``n_customers`` text ids (some with leading zeros) with ``per_customer`` purchases each in
    2023, as text (the way a CSV holds them), sorted by time."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:07d}" if i % 3 else f"c{i}" for i in range(n_customers)], dtype=object)
    n = n_customers * per_customer
    days = rng.integers(0, 365, size=n)
    log = pd.DataFrame({"customer_id": np.repeat(ids, per_customer),
                        "timestamp": (np.datetime64("2023-01-01") + days.astype("timedelta64[D]")).astype(str),
                        "amount": np.round(rng.gamma(2.0, 20.0, size=n) + 1, 2).astype(str)})
    return log.iloc[np.argsort(days, kind="stable")].reset_index(drop=True)


BAD_KINDS = {  # column, bad text, the kind reported
    "missing id": ("customer_id", "", "missing customer_id"),
    "garbage time": ("timestamp", "not a date", "unparseable or out-of-range timestamp"),
    "year 2300": ("timestamp", "2300-01-01", "unparseable or out-of-range timestamp"),
    "missing time": ("timestamp", "", "missing timestamp"),
    "refund": ("amount", "-12.5", "negative amount (refund)"),
    "text amount": ("amount", "$12", "non-numeric amount"),
    "missing amount": ("amount", "", "missing amount"),
    "infinite amount": ("amount", "inf", "infinite amount"),
}


def spoil(log: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, dict]:
    """``fraction`` of the rows made bad, the kinds in turn; returns the log and row -> kind."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(log), size=int(len(log) * fraction), replace=False))
    kinds = list(BAD_KINDS.values())
    bad = log.copy()
    truth = {}
    for j, i in enumerate(rows):
        column, text, kind = kinds[j % len(kinds)]
        bad.iat[i, bad.columns.get_loc(column)] = text
        truth[int(i) + 1] = kind  # 1-based data rows
    return bad, truth


def test_every_kind_of_bad_row_is_named():
    frame = pd.DataFrame({"customer_id": ["a", "", "b", "c", "d", "e", "f", "g", "h"],
                          "timestamp": ["2024-01-02", "2024-01-02", "x", "", "2300-01-01", "2024-01-02",
                                        "2024-01-02", "2024-01-02", "2024-12-31"],
                          "amount": ["1", "1", "1", "1", "1", "-1", "abc", "inf", "1"]})
    got = transaction_problems(frame, observation_end="2024-06-30").tolist()
    assert got == ["", "missing customer_id", "unparseable or out-of-range timestamp", "missing timestamp",
                   "unparseable or out-of-range timestamp", "negative amount (refund)", "non-numeric amount",
                   "infinite amount", "timestamp after the observation end"]
    assert transaction_problems(frame.iloc[[5]], refunds="net").tolist() == [""]


def test_screen_log_keeps_the_other_customers_rows_unchanged(tmp_path):
    log = synthetic_log(50, 4, seed=1)
    bad, truth = spoil(log, 0.05, seed=2)
    bad.to_csv(tmp_path / "log.csv", index=False)
    screen = screen_log(tmp_path / "log.csv", tmp_path, chunk_rows=37)
    assert screen.n_rows == 200 and sum(k["rows"] for k in screen.kinds.values()) == len(truth)
    for kind, info in screen.kinds.items():
        assert info["rows"] == sum(v == kind for v in truth.values())
        assert all(truth[row] == kind for row, _ in info["examples"])
    rejected = set(screen.rejects["customer_id"].dropna())
    clean = pd.read_csv(screen.path, dtype=str, keep_default_na=False)
    expected = bad[~bad["customer_id"].isin(rejected) & bad["customer_id"].ne("")]
    pd.testing.assert_frame_equal(clean, expected.reset_index(drop=True))
    assert set(expected["customer_id"]).isdisjoint(rejected)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("screen")
    log = synthetic_log(2_000, 5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rfm = clv.rfm_summary(clv.load_transactions(log, date_format="%Y-%m-%d"))
        clv.save_models({"purchase": clv.BetaGeoModel().fit(rfm),
                         "spend": clv.GammaGammaModel(exclude_invalid=True).fit(rfm)}, d / "model")
    return d / "model"


def _accounting(out: Path, rejects: Path, log: pd.DataFrame, truth: dict, printed: str) -> None:
    bad_rows = np.array(sorted(truth)) - 1
    bad_ids = set(log["customer_id"].iloc[bad_rows]) - {""}
    all_ids = set(log["customer_id"]) - {""}
    n_idless = int((log["customer_id"] == "").sum())
    scores = pd.read_parquet(out)
    rej = pd.read_parquet(rejects)
    read, scored, rejected = (int(x.replace(",", "")) for x in
                              re.search(r"read: ([\d,]+); scored: ([\d,]+); rejected: ([\d,]+)", printed).groups())
    assert read == scored + rejected == len(all_ids) + n_idless
    assert scored == len(scores) == len(all_ids - bad_ids)
    assert rejected == len(rej) == len(bad_ids) + n_idless
    assert set(scores["customer_id"].astype(str)) | set(rej["customer_id"].dropna()) == all_ids
    assert set(rej["customer_id"].dropna()) == bad_ids
    for kind in set(truth.values()):
        assert (rej["reason"] == f"log: {kind}").any() or kind == "missing customer_id"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.slow
def test_score_a_log_with_bad_rows_rejects_customers_one_by_one(model, tmp_path, engine):
    log = synthetic_log(300, 4, seed=4)
    bad, truth = spoil(log, 0.03, seed=5)
    bad.to_csv(tmp_path / "log.csv", index=False)
    res = subprocess.run(command() + ["score", str(model), str(tmp_path / "log.csv"), "--out",
                                      str(tmp_path / "s.parquet"), "--engine", engine, "--date-format", "%Y-%m-%d"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == cli.EXIT_REJECTS, res.stderr
    _accounting(tmp_path / "s.parquet", tmp_path / "s.rejects.parquet", bad, truth, res.stdout)
    for kind in set(truth.values()):  # every kind counted in the summary, with real rows as examples
        rows = [r for r, k in truth.items() if k == kind]
        line = next(x for x in res.stderr.splitlines() if f"log row(s) with {kind}," in x)
        assert f"{len(rows):,} log row(s)" in line and f"row {rows[0]:,} " in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "s.parquet", "s.rejects.parquet"]


@pytest.mark.slow
def test_a_million_row_log_with_one_percent_bad_rows_loses_nobody(model, tmp_path):
    log = synthetic_log(100_000, 10, seed=6)
    bad, truth = spoil(log, 0.01, seed=7)
    bad.to_csv(tmp_path / "log.csv", index=False)
    start = time.monotonic()
    res = subprocess.run(command() + ["score", str(model), str(tmp_path / "log.csv"), "--out",
                                      str(tmp_path / "s.parquet"), "--engine", "pandas", "--date-format", "%Y-%m-%d",
                                      "--allow-rejects", "-q"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert len(bad) == 1_000_000 and len(truth) == 10_000
    _accounting(tmp_path / "s.parquet", tmp_path / "s.rejects.parquet", bad, truth, res.stdout)
    assert time.monotonic() - start < 600


def test_timestamps_are_parsed_as_the_loader_parses_them():
    """Text read from a CSV: numbers are YYYYMMDD dates, mixed ISO forms and UTC offsets parse."""
    frame = pd.DataFrame({"customer_id": list("abcde"),
                          "timestamp": ["19970101", "1997-01-03 10:00", "2024-01-02T10:00:00+01:00",
                                        "2024-01-02 10:00", "not a date"],
                          "amount": ["1"] * 5})
    assert transaction_problems(frame).tolist() == ["", "", "", "", "unparseable or out-of-range timestamp"]
    numbers = pd.DataFrame({"customer_id": ["a", "b"], "timestamp": ["19970101", "19970132"], "amount": ["1", "2"]})
    assert transaction_problems(numbers).tolist() == ["", "unparseable or out-of-range timestamp"]
    day_first = pd.DataFrame({"customer_id": ["a"], "timestamp": ["31/01/2024"], "amount": ["1"]})
    assert transaction_problems(day_first, date_format="%d/%m/%Y").tolist() == [""]
