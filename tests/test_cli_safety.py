"""Issue #12, the command's part: outputs never over inputs, exit 2 with one line for bad input,
time units checked, formula-like CSV cells escaped, --period, bgnbd+bgnbd refused.

The many bad-input cases run in-process (``cli.main``, the console script's entry point: one
interpreter start costs seconds); representative ones also run as real processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import cli
from clvmodels.datasets import simulate

ENGINES = ["pandas", "duckdb"]


def command() -> list[str]:
    exe = Path(sys.executable).parent / "clvmodels"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "clvmodels.cli"]


def run_process(*argv, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(command() + [str(a) for a in argv], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A small simulated log (CSV, ISO dates), its weekly summary and a fitted bgnbd+gg model."""
    d = tmp_path_factory.mktemp("safety")
    log = simulate(400, seed=3)
    log.assign(timestamp=log["timestamp"].dt.strftime("%Y-%m-%d")).to_csv(d / "log.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["summarize", str(d / "log.csv"), "--out", str(d / "rfm.parquet"), "-q"]) == 0
        assert cli.main(["fit", str(d / "rfm.parquet"), "--out", str(d / "model"), "-q"]) == 0
    return d


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------- outputs never over inputs
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.slow
def test_summarize_refuses_to_write_over_its_log(d, tmp_path, engine):
    log = tmp_path / "log.csv"
    log.write_bytes((d / "log.csv").read_bytes())
    before = log.read_bytes()
    (tmp_path / "alias.csv").symlink_to(log)
    (tmp_path / "sub").mkdir()
    for out, cwd in [(log, None), ("alias.csv", tmp_path), ("sub/../log.csv", tmp_path)]:
        res = run_process("summarize", "log.csv" if cwd else log, "--out", out, "--csv", "--engine", engine, cwd=cwd)
        assert res.returncode == 2, res.stderr
        assert "same file as the log" in one_error_line(res.stderr)
    assert log.read_bytes() == before


def test_score_refuses_outputs_over_inputs_and_each_other(d, tmp_path, capsys):
    rfm = tmp_path / "rfm.parquet"
    rfm.write_bytes((d / "rfm.parquet").read_bytes())
    before = rfm.read_bytes()
    (tmp_path / "link.parquet").symlink_to(rfm)
    cases = [
        (["--out", rfm], "--out .* is the same file as the input"),
        (["--out", tmp_path / "s.parquet", "--rejects", tmp_path / "link.parquet"],
         "--rejects .* same file as the input"),
        (["--out", tmp_path / "s.parquet", "--rejects", tmp_path / "s.parquet"], "same path as --out"),
        (["--out", d / "model"], "same file as the model directory"),
        (["--out", tmp_path], "existing directory"),
        (["--out", rfm / "s.parquet"], "is a file, not a directory"),
    ]
    for extra, match in cases:
        code = cli.main(["score", str(d / "model"), str(rfm), "-q"] + [str(a) for a in extra])
        assert code == 2, extra
        assert re.search(match, one_error_line(capsys.readouterr().err)), extra
    res = run_process("score", d / "model", rfm, "--out", tmp_path / "s.parquet",
                      "--rejects", tmp_path / "link.parquet")
    assert res.returncode == 2 and "--rejects" in one_error_line(res.stderr)
    assert rfm.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.parquet", "rfm.parquet"]


def test_fit_and_backtest_refuse_directories_over_inputs(d, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "rfm.parquet").write_bytes((d / "rfm.parquet").read_bytes())
    assert cli.main(["fit", str(work / "rfm.parquet"), "--out", str(work), "-q"]) == 2
    assert "inside the output directory" in capsys.readouterr().err
    assert cli.main(["fit", str(work / "rfm.parquet"), "--out", str(work / "rfm.parquet"), "-q"]) == 2
    assert (work / "rfm.parquet").read_bytes() == (d / "rfm.parquet").read_bytes()
    assert cli.main(["backtest", str(d / "log.csv"), "--calibration-end", "2024-06-30", "--out", str(tmp_path / "bt"),
                     "--report", str(d / "log.csv"), "-q"]) == 2
    assert cli.main(["report", str(d / "log.csv"), "--calibration-end", "2024-06-30", "--out",
                     str(d / "log.csv"), "-q"]) == 2
    assert "same file as the log" in capsys.readouterr().err


# ---------------------------------------------------------------------------- exit 2, one line
def _files(d: Path, t: Path) -> None:
    (t / "empty.csv").write_bytes(b"")
    (t / "header.csv").write_text("customer_id,timestamp,amount\n")
    (t / "garbage.csv").write_bytes(os.urandom(4000))
    (t / "csv.parquet").write_bytes((d / "log.csv").read_bytes())
    pd.read_csv(d / "log.csv").to_parquet(t / "parquet.csv")
    (t / "latin1.csv").write_bytes("customer_id,timestamp,amount\nJos\xe9,2024-01-02,3.0\n".encode("latin-1"))
    (t / "dir.csv").mkdir()
    (t / "dir.csv" / "x.txt").write_text("x")
    (t / "y2300.csv").write_text("customer_id,timestamp,amount\na,2024-01-02,3.0\nb,2300-01-01,4.0\n")
    (t / "misnamed.csv").write_text("id,date,value\na,2024-01-02,3.0\n")
    (t / "book.xlsx").write_text("x")
    (t / "empty.parquet").write_bytes(b"")
    (t / "afile").write_text("x")
    days = pd.read_parquet(d / "rfm.parquet")
    days[["recency", "T"]] *= 7
    days.attrs = {"time_unit": "D", "resolution": "D"}
    days.to_parquet(t / "days.parquet")
    (t / "nan.txt").write_text("x")


LOG_CASES = {  # summarize LOG --out OUT ...: one case per kind of bad log
    "empty csv": ["{t}/empty.csv"],
    "header only": ["{t}/header.csv"],
    "garbage csv": ["{t}/garbage.csv"],
    "csv named parquet": ["{t}/csv.parquet"],
    "parquet named csv": ["{t}/parquet.csv"],
    "not utf-8": ["{t}/latin1.csv"],
    "a directory": ["{t}/dir.csv"],
    "dates in 2300": ["{t}/y2300.csv"],
    "mis-named columns": ["{t}/misnamed.csv"],
    "unsupported type": ["{t}/book.xlsx"],
    "missing file": ["{t}/nothere.csv"],
    "empty parquet": ["{t}/empty.parquet"],
}

SCORE = ["score", "{d}/model", "{d}/rfm.parquet", "--out", "{t}/s.parquet"]
SUMMARIZE = ["summarize", "{d}/log.csv", "--out", "{t}/r.parquet"]
FIT = ["fit", "{d}/rfm.parquet", "--out", "{t}/m"]
OTHER_CASES = {  # name: (what the error line says, argv)
    "chunk-rows 0": ("--chunk-rows: expected a positive integer", [*SCORE, "--chunk-rows", "0"]),
    "chunk-rows text": ("--chunk-rows: expected a positive integer", [*SCORE, "--chunk-rows", "many"]),
    "jobs 0": ("--jobs: expected a positive integer", [*SCORE, "--jobs", "0"]),
    "discount -1": ("discount_rate must be a number > -1", [*SCORE, "--discount-rate", "-1"]),
    "discount nan": ("--discount-rate: expected a finite number", [*SCORE, "--discount-rate", "nan"]),
    "interval 2": ("interval must be in", [*SCORE, "--interval", "2"]),
    "horizon 0": ("--horizon: expected a positive integer", [*SCORE, "--horizon", "0"]),
    "period fortnight": ("Unknown time unit 'fortnight'", [*SCORE, "--period", "fortnight"]),
    "unit mismatch": ("Time unit mismatch", ["score", "{d}/model", "{t}/days.parquet", "--out", "{t}/s.parquet"]),
    "no model": ("No saved model", ["score", "{t}/nomodel", "{d}/rfm.parquet", "--out", "{t}/s.parquet"]),
    "model is a file": ("No saved model", ["score", "{t}/afile", "{d}/rfm.parquet", "--out", "{t}/s.parquet"]),
    "no id column": ("no customer id column 'cid'", [*SCORE, "--id-column", "cid"]),
    "out parent is a file": ("is a file, not a directory",
                             ["summarize", "{d}/log.csv", "--out", "{t}/afile/r.parquet"]),
    "memory-limit lots": ("Invalid memory limit 'lots' for DuckDB", [*SUMMARIZE, "--memory-limit", "lots"]),
    "memory-limit injection": ("Invalid memory limit", [*SUMMARIZE, "--memory-limit", "1GB'; COPY x TO 'y"]),
    "bad calibration end": ("'soon' is not a valid date", [*SUMMARIZE, "--calibration-end", "soon"]),
    "bad time unit": ("Unknown time unit 'fortnight'", [*SUMMARIZE, "--time-unit", "fortnight"]),
    "bgnbd+bgnbd": ("is not a spend model", [*FIT, "--model", "bgnbd+bgnbd"]),
    "spend model first": ("is a spend model", [*FIT, "--model", "gg"]),
    "three models": ("--model takes a purchase model", [*FIT, "--model", "bgnbd+gg+gg"]),
    "fit out is a file": ("is an existing file", ["fit", "{d}/rfm.parquet", "--out", "{t}/afile"]),
    "penalizer nan": ("--penalizer: expected a finite number", [*FIT, "--penalizer", "nan"]),
    "holdout text": ("--holdout: expected a number",
                     ["backtest", "{d}/log.csv", "--calibration-end", "2024-06-30", "--holdout", "x",
                      "--out", "{t}/bt"]),
}


@pytest.fixture
def bad(d, tmp_path):
    _files(d, tmp_path)
    return tmp_path


def _argv(template, d, t):
    return [a.format(d=d, t=t) for a in template]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", sorted(LOG_CASES))
def test_bad_logs_exit_2_with_one_line(d, bad, capsys, case, engine):
    argv = ["summarize", *LOG_CASES[case], "--out", "{t}/r.parquet", "--engine", engine, "-q"]
    assert cli.main(_argv(argv, d, bad)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("clvmodels summarize: error: ")
    assert not (bad / "r.parquet").exists()


@pytest.mark.parametrize("case", sorted(OTHER_CASES))
def test_bad_options_and_files_exit_2_with_one_line(d, bad, capsys, case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = cli.main(_argv(OTHER_CASES[case][1], d, bad) + ["-q"])
        except SystemExit as exc:  # usage errors (argparse)
            code = exc.code
    assert code == 2
    assert OTHER_CASES[case][0] in one_error_line(capsys.readouterr().err)
    assert not (bad / "s.parquet").exists() and not (bad / "m").exists() and not (bad / "r.parquet").exists()


@pytest.mark.slow
def test_bad_input_as_real_processes_and_debug(d, bad):
    for argv in (LOG_CASES["not utf-8"], LOG_CASES["dates in 2300"], LOG_CASES["csv named parquet"]):
        res = run_process(*_argv(["summarize", *argv, "--out", "{t}/r.parquet", "--engine", "pandas"], d, bad))
        assert res.returncode == 2
        assert one_error_line(res.stderr).startswith("clvmodels summarize: error: ")
    res = run_process(*_argv(OTHER_CASES["discount nan"][1], d, bad))
    assert res.returncode == 2 and "finite number" in one_error_line(res.stderr)
    res = run_process(*_argv(["summarize", *LOG_CASES["dates in 2300"], "--out", "{t}/r.parquet", "--engine", "pandas",
                              "--debug"], d, bad))
    assert res.returncode == 2 and "Traceback" in res.stderr and "2300-01-01" in res.stderr


def test_internal_errors_still_exit_1(d, tmp_path, monkeypatch, capsys):
    import clvmodels.scoring as scoring

    monkeypatch.setattr(scoring, "score_frame", lambda *a, **k: (_ for _ in ()).throw(KeyError("bug")))
    argv = ["score", str(d / "model"), str(d / "rfm.parquet"), "--out", str(tmp_path / "s.parquet"), "-q"]
    assert cli.main(argv) == 1
    assert "Traceback" in capsys.readouterr().err


# ---------------------------------------------------------------------------- units, naming, escaping
@pytest.mark.slow
def test_score_checks_the_time_unit_and_says_when_it_cannot(d, bad):
    res = run_process("score", d / "model", bad / "days.parquet", "--out", bad / "s.parquet")
    assert res.returncode == 2
    assert "Time unit mismatch" in res.stderr and "--time-unit W" in res.stderr
    pd.read_parquet(d / "rfm.parquet").to_csv(bad / "rfm.csv")
    res = run_process("score", d / "model", bad / "rfm.csv", "--out", bad / "s.parquet")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("records no time unit") == 1


@pytest.mark.slow
def test_period_replaces_time_unit_on_score(d, tmp_path):
    new = run_process("score", d / "model", d / "rfm.parquet", "--out", tmp_path / "a.parquet", "--period", "W", "-q")
    old = run_process("score", d / "model", d / "rfm.parquet", "--out", tmp_path / "b.parquet",
                      "--time-unit", "W", "-q")
    assert new.returncode == old.returncode == 0 and new.stderr == ""
    assert one_error_line(old.stderr) == ("clvmodels score: --time-unit is deprecated here (it is the discounting "
                                          "period): use --period W.")
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a, b)
    models, _ = clv.load_models(d / "model")
    weekly = models["purchase"].expected_purchases(12.0, pd.read_parquet(d / "rfm.parquet"))
    assert a["expected_purchases"].to_numpy() == pytest.approx(weekly.to_numpy(), rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_csv_outputs_escape_formula_like_ids(tmp_path, engine):
    log = pd.DataFrame({"customer_id": ["=HYPERLINK(\"http://evil\")", "@cmd", "plain", "-1", "\tx"] * 2,
                        "timestamp": ["2024-01-02"] * 5 + ["2024-03-05"] * 5, "amount": [10.0] * 10})
    log.to_csv(tmp_path / "log.csv", index=False)
    res = run_process("summarize", tmp_path / "log.csv", "--out", tmp_path / "rfm.csv", "--engine", engine, "-q")
    assert res.returncode == 0, res.stderr
    ids = sorted(pd.read_csv(tmp_path / "rfm.csv", dtype={"customer_id": str})["customer_id"])
    assert ids == sorted(["'=HYPERLINK(\"http://evil\")", "'@cmd", "plain", "-1", "'\tx"])
    res = run_process("summarize", tmp_path / "log.csv", "--out", tmp_path / "raw.csv", "--engine", engine,
                      "--csv-raw", "-q")
    assert res.returncode == 0, res.stderr
    raw = pd.read_csv(tmp_path / "raw.csv", dtype={"customer_id": str}, keep_default_na=False)
    assert sorted(raw["customer_id"]) == sorted(set(log["customer_id"]))
