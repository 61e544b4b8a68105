"""The clvmodels command: end to end, exit codes, nothing lost, atomic outputs under SIGKILL."""

from __future__ import annotations

import os
import signal
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
from clvmodels.datasets import load_cdnow, simulate
from clvmodels.scoring import ScoreSettings, score_frame

SUBCOMMANDS = ["summarize", "fit", "score", "backtest", "report", "demo"]


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """CDNOW log as CSV (text dates), its summary, fitted models: the commands' normal path."""
    d = tmp_path_factory.mktemp("cli")
    log = load_cdnow(sample=True)
    log.assign(date=log["date"].dt.strftime("%Y-%m-%d")).to_csv(d / "log.csv", index=False)
    assert run("summarize", d / "log.csv", "--out", d / "rfm.parquet", "--timestamp", "date",
               "--observation-end", "1997-09-30", "--truncate", "--date-format", "%Y-%m-%d") == 0
    assert run("fit", d / "rfm.parquet", "--model", "bgnbd+gg", "--method", "mle", "--out", d / "model", "-q") == 0
    return d


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: clvmodels {command}" in capsys.readouterr().out


def test_top_level_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "Exit codes" in out and "3 customers" in out and "internal failure" in out
    assert "--version" in out
    for command in SUBCOMMANDS:
        assert command in out


def test_summarize_matches_the_library_and_engines_agree(workdir, tmp_path):
    rfm = pd.read_parquet(workdir / "rfm.parquet")
    assert rfm.index.dtype == "str"  # ids of a CSV are text (#12): compared below as the log's integers
    rfm = rfm.set_axis(rfm.index.astype("int64")).sort_index()
    log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
    expected = clv.rfm_summary(log, observation_end="1997-09-30", truncate=True)
    pd.testing.assert_frame_equal(rfm[expected.columns], expected, check_exact=False, rtol=1e-12)
    assert rfm.attrs["time_unit"] == "W" and len(rfm) == 2357
    for engine in ("pandas", "duckdb"):
        out = tmp_path / f"{engine}.csv"
        assert run("summarize", workdir / "log.csv", "--out", out, "--engine", engine, "--timestamp", "date",
                   "--calibration-end", "1997-09-30", "--time-unit", "D", "--date-format", "%Y-%m-%d", "-q") == 0
    a, b = pd.read_csv(tmp_path / "pandas.csv"), pd.read_csv(tmp_path / "duckdb.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert {"frequency_holdout", "value_holdout", "duration_holdout"} <= set(a.columns)


def test_fit_writes_both_models(workdir):
    models, meta = clv.load_models(workdir / "model")
    assert set(models) == {"purchase", "spend"} and meta["model"] == "bgnbd+gg"
    # the published CDNOW BG/NBD estimates (Fader, Hardie & Lee 2005)
    assert models["purchase"].params_["r"] == pytest.approx(0.243, abs=1e-3)
    assert models["purchase"].params_["alpha"] == pytest.approx(4.414, abs=1e-2)
    assert models["purchase"].time_unit_ == "W"


@pytest.mark.slow
def test_score_equals_the_library(workdir, capsys):
    out = workdir / "scores.parquet"
    code = run("score", workdir / "model", workdir / "rfm.parquet", "--out", out, "--horizon", 12,
               "--period", "M", "--discount-rate", 0.01, "--interval", 0.9, "--draws", 100, "--seed", 3)
    assert code == 0
    assert "read: 2,357; scored: 2,357; rejected: 0" in capsys.readouterr().out
    got = pd.read_parquet(out).set_index("customer_id")
    models, _ = clv.load_models(workdir / "model")
    rfm = pd.read_parquet(workdir / "rfm.parquet")
    expected = score_frame(models["purchase"], models["spend"], rfm,
                           ScoreSettings(interval=0.9, n_draws=100, seed=3))
    assert np.array_equal(got[expected.columns].to_numpy(), expected.to_numpy())
    assert len(pd.read_parquet(workdir / "scores.rejects.parquet")) == 0


def test_score_names_its_clv_interval(workdir):
    """--interval gives the predictive CLV interval (clv_lower/clv_upper) by default;
    --clv-interval expected the expected value's (clv_mean_lower/clv_mean_upper)."""
    out = workdir / "scores_kind.parquet"
    args = ("score", workdir / "model", workdir / "rfm.parquet", "--interval", 0.9, "--draws", 50,
            "--samples", 200)
    assert run(*args, "--out", out) == 0
    predictive = pd.read_parquet(out)
    assert {"clv_lower", "clv_upper", "expected_purchases_mean_lower"} <= set(predictive.columns)
    assert "clv_mean_lower" not in predictive.columns
    assert run(*args, "--clv-interval", "expected", "--out", out) == 0
    expected = pd.read_parquet(out)
    assert {"clv_mean_lower", "clv_mean_upper"} <= set(expected.columns) and "clv_lower" not in expected.columns
    assert (predictive["clv_upper"] - predictive["clv_lower"]).mean() > \
        3 * (expected["clv_mean_upper"] - expected["clv_mean_lower"]).mean()


def test_score_a_log_directly_as_csv(workdir):
    out = workdir / "from_log.csv"
    assert run("score", workdir / "model", workdir / "log.csv", "--out", out, "--timestamp", "date",
               "--observation-end", "1997-09-30", "--truncate", "--date-format", "%Y-%m-%d", "-q") == 0
    got = pd.read_csv(out).set_index("customer_id")
    ref = pd.read_parquet(workdir / "scores.parquet").set_index("customer_id") if (
        workdir / "scores.parquet").exists() else None
    models, _ = clv.load_models(workdir / "model")
    rfm = pd.read_parquet(workdir / "rfm.parquet")
    expected = score_frame(models["purchase"], models["spend"], rfm, ScoreSettings())
    np.testing.assert_allclose(got[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert ref is None or len(ref) == len(got)


def test_rejects_exit_3_unless_allowed(workdir, tmp_path, capsys):
    rfm = pd.read_parquet(workdir / "rfm.parquet")
    rfm.loc[rfm.index[:3], "recency"] = -1.0
    bad = tmp_path / "bad.parquet"
    rfm.to_parquet(bad)
    out = tmp_path / "s.parquet"
    assert run("score", workdir / "model", bad, "--out", out, "-q") == cli.EXIT_REJECTS
    captured = capsys.readouterr()
    assert "rejected: 3" in captured.out and "--allow-rejects" in captured.err
    assert len(pd.read_parquet(out)) == 2354
    rejects = pd.read_parquet(tmp_path / "s.rejects.parquet")
    assert rejects["reason"].eq("recency is not in [0, T]").sum() == 3
    assert run("score", workdir / "model", bad, "--out", out, "--allow-rejects", "-q") == 0


@pytest.mark.parametrize("argv,match", [
    (["score", "{d}/model", "{d}/missing.parquet", "--out", "{t}/s.parquet"], "File not found"),
    (["score", "{t}/nomodel", "{d}/rfm.parquet", "--out", "{t}/s.parquet"], "No saved model"),
    (["fit", "{d}/rfm.parquet", "--model", "nosuchmodel", "--out", "{t}/m"], "Unknown model"),
    (["fit", "{t}/plain.csv", "--out", "{t}/m"], "time unit"),
    # a missing table is named as missing, not as one without a recorded time unit
    (["fit", "{t}/missing.parquet", "--out", "{t}/m"], "File not found"),
    (["summarize", "{d}/log.csv", "--out", "{t}/r.parquet"], "Missing column"),
    (["score", "{d}/model", "{d}/rfm.parquet", "--out", "{t}/s.parquet", "--interval", "2"], "interval"),
])
def test_bad_input_exits_2(workdir, tmp_path, capsys, argv, match):
    pd.DataFrame({"frequency": [1], "recency": [1.0], "T": [2.0]}).to_csv(tmp_path / "plain.csv", index=False)
    code = cli.main([a.format(d=workdir, t=tmp_path) for a in argv])
    assert code == cli.EXIT_BAD_INPUT
    assert match in capsys.readouterr().err
    assert not (tmp_path / "s.parquet").exists() and not (tmp_path / "m").exists()


def test_corrupted_model_exits_2(workdir, tmp_path, capsys):
    import shutil

    shutil.copytree(workdir / "model", tmp_path / "model")
    f = tmp_path / "model" / "purchase" / "model.json"
    f.write_text(f.read_text().replace('"W"', '"D"'))
    assert run("score", tmp_path / "model", workdir / "rfm.parquet", "--out", tmp_path / "s.parquet") == 2
    assert "checksum" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["score", "--no-such-option"])
    assert info.value.code == 2


def test_internal_failure_exits_1_and_keeps_previous_output(workdir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.parquet"
    assert run("score", workdir / "model", workdir / "rfm.parquet", "--out", out, "-q") == 0
    before = out.read_bytes()
    import clvmodels.scoring as scoring

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(scoring, "score_frame", broken)
    assert run("score", workdir / "model", workdir / "rfm.parquet", "--out", out, "-q") == cli.EXIT_INTERNAL
    assert "simulated bug" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_progress_goes_to_log_lines_off_a_terminal(workdir, tmp_path, capsys):
    args = ["score", workdir / "model", workdir / "rfm.parquet", "--out", tmp_path / "s.parquet", "--chunk-rows", 1000]
    assert run(*args) == 0
    err = capsys.readouterr().err
    assert "scoring: 1,000 of 2,357 customers" in err and "scoring: 2,357 of 2,357 customers" in err
    assert run(*args, "--quiet") == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- real processes
def _command() -> list[str]:
    exe = Path(sys.executable).parent / "clvmodels"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "clvmodels.cli"]


@pytest.mark.slow
def test_installed_command_runs(workdir):
    res = subprocess.run(_command() + ["score", str(workdir / "model"), str(workdir / "rfm.parquet"),
                                       "--out", str(workdir / "proc.csv"), "--csv"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "scored: 2,357" in res.stdout
    assert len(pd.read_csv(workdir / "proc.csv")) == 2357


@pytest.mark.slow
def test_killed_scoring_run_leaves_the_previous_file(tmp_path):
    """SIGKILL midway through a chunked scoring run: the old scores stay, complete and readable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = simulate(30_000, seed=4)
        rfm = clv.rfm_summary(clv.load_transactions(log))
        clv.save_models({"purchase": clv.BetaGeoModel().fit(rfm)}, tmp_path / "model")
    rfm.to_parquet(tmp_path / "rfm.parquet")
    out = tmp_path / "scores.parquet"
    pd.DataFrame({"customer_id": [1, 2], "clv": [1.0, 2.0]}).to_parquet(out)  # the previous version
    before = out.read_bytes()
    proc = subprocess.Popen(_command() + ["score", str(tmp_path / "model"), str(tmp_path / "rfm.parquet"),
                                          "--out", str(out), "--interval", "0.9", "--draws", "100",
                                          "--chunk-rows", "300", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    partial = []
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in tmp_path.glob(".scores.parquet.tmp-*") if p.stat().st_size > 0]
        if partial:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()
    time.sleep(0.5)  # a few more chunks written
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == before
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.DataFrame({"customer_id": [1, 2], "clv": [1.0, 2.0]}))
    # a complete run replaces it with all the customers
    assert run("score", tmp_path / "model", tmp_path / "rfm.parquet", "--out", out, "-q", "--chunk-rows", 5000) == 0
    assert len(pd.read_parquet(out)) == len(rfm)


@pytest.mark.slow
def test_backtest_and_report(workdir, tmp_path):
    common = ["--timestamp", "date", "--calibration-end", "1997-09-30", "--date-format", "%Y-%m-%d", "-q"]
    assert run("backtest", workdir / "log.csv", "--out", tmp_path / "bt", "--report", tmp_path / "a.html", *common) == 0
    metrics = pd.read_parquet(tmp_path / "bt" / "metrics.parquet")
    assert "BG/NBD" in set(metrics["model"]) or "bgnbd" in set(metrics["model"])
    assert (tmp_path / "a.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert run("report", workdir / "log.csv", "--out", tmp_path / "b.html", "--segments-out",
               tmp_path / "segments.csv", "--horizon", "6", "--currency", "EUR ", *common) == 0
    html = (tmp_path / "b.html").read_text()
    assert '<section id="headline">' in html and "next 6 months" in html and "EUR " in html
    segments = pd.read_csv(tmp_path / "segments.csv")
    assert {"segment", "customers", "expected_clv", "clv_lower", "clv_upper"} <= set(segments.columns)
    assert run("report", workdir / "log.csv", "--out", tmp_path / "c.html", "--segments-out", workdir / "log.csv",
               *common) == 2


def test_outputs_get_normal_permissions(workdir, tmp_path):
    out = tmp_path / "s.parquet"
    assert run("score", workdir / "model", workdir / "rfm.parquet", "--out", out, "-q") == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
    assert (workdir / "model").stat().st_mode & 0o777 == 0o777 & ~mask


@pytest.mark.slow
def test_demo(capsys):
    assert run("demo", "--sample", "--top", 3) == 0
    out = capsys.readouterr().out
    assert "Top 3 customers by predicted 12-month CLV" in out and "2,357 customers" in out


# ---------------------------------------------------------------------------- issue 15: consistent commands
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"clvmodels {clv.__version__}"


def test_models_table_matches_the_classes():
    """The help's model table (kept in cli.py so that --help imports no model) is the classes' names."""
    from clvmodels.models.registry import model_classes

    classes = model_classes()
    for display, (aliases, class_name, _) in cli.MODELS.items():
        assert classes[class_name].display_name == display and classes[class_name].short_names == aliases


def test_help_lists_models_and_every_option_has_help(capsys):
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"clvmodels {name} {action.option_strings or action.dest} has no help"
    for command in ("fit", "backtest"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "bgbb (BG/BB)" in out and "pnbd or paretonbd (Pareto/NBD)" in out and "bgnbd (BG/NBD)" in out


def test_allow_rejects_is_mentioned_only_where_it_exists(capsys):
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        assert ("--allow-rejects" in out) == (command == "score"), command


def test_unknown_model_lists_names_not_abstract_classes(workdir, tmp_path, capsys):
    assert run("fit", workdir / "rfm.parquet", "--model", "nosuch", "--out", tmp_path / "m") == 2
    err = capsys.readouterr().err
    assert "bgbb (BG/BB)" in err and "PurchaseModel" not in err and "purchasemodel" not in err


def test_model_bgbb_is_bg_bb(workdir, tmp_path):
    assert cli._resolve_model("bgbb") is clv.BetaGeoBetaBinomModel
    assert cli._resolve_model("BG/BB") is clv.BetaGeoBetaBinomModel
    log = clv.load_transactions(load_cdnow(), timestamp="date")
    rfm = clv.bgbb_summary(log[log["timestamp"] < "1998-01-01"], period="Q", observation_end="1997-12-31")
    rfm.to_parquet(tmp_path / "bgbb.parquet")
    assert run("fit", tmp_path / "bgbb.parquet", "--model", "bgbb", "--time-unit", "Q", "--out", tmp_path / "m",
               "-q") == 0
    assert type(clv.load_model(tmp_path / "m" / "purchase")) is clv.BetaGeoBetaBinomModel


def test_missing_column_hint_names_the_options(workdir, tmp_path, capsys):
    assert run("summarize", workdir / "log.csv", "--out", tmp_path / "r.parquet") == 2  # the log's column is 'date'
    err = capsys.readouterr().err
    assert "--timestamp COL" in err and "timestamp=..." not in err and "--no-amount" in err


def test_score_segment_col_writes_segment_totals(workdir, tmp_path, capsys):
    rfm = pd.read_parquet(workdir / "rfm.parquet")
    rfm["tier"] = np.where(rfm["frequency"] > 2, "loyal", "other")
    rfm.to_parquet(tmp_path / "rfm.parquet")
    out = tmp_path / "s.parquet"
    assert run("score", workdir / "model", tmp_path / "rfm.parquet", "--out", out, "--segment-col", "tier", "-q") == 0
    scores, segments = pd.read_parquet(out), pd.read_parquet(tmp_path / "s.segments.parquet")
    assert segments["customers"].to_dict() == rfm["tier"].value_counts().to_dict()
    loyal = scores.set_index("customer_id").loc[rfm.index[rfm["tier"] == "loyal"].astype(str)]
    assert segments.loc["loyal", "clv_sum"] == pytest.approx(loyal["clv"].sum())
    assert segments.loc["loyal", "mean_probability_alive"] == pytest.approx(loyal["probability_alive"].mean())
    # an unknown column is refused before anything is written
    assert run("score", workdir / "model", tmp_path / "rfm.parquet", "--out", tmp_path / "t.parquet",
               "--segment-col", "nosuch", "-q") == 2
    assert not (tmp_path / "t.parquet").exists() and "--segment-col nosuch" in capsys.readouterr().err


@pytest.mark.slow
def test_backtest_options_observation_end_interval_baselines(workdir, tmp_path):
    assert run("backtest", workdir / "log.csv", "--timestamp", "date", "--date-format", "%Y-%m-%d",
               "--calibration-end", "1997-09-30", "--observation-end", "1998-03-31", "--interval", "0.8",
               "--baselines", "nochange", "--out", tmp_path / "bt", "-q") == 0
    settings = __import__("json").loads((tmp_path / "bt" / "settings.json").read_text())
    assert settings["interval"] == 0.8 and settings["baselines"] == {"no change": "NoChangeBaseline"}
    data = pd.read_parquet(tmp_path / "bt" / "data.parquet")
    assert data["holdout_end"].tolist() == ["1998-03-31"] and data["holdout_length"].tolist() == [26.0]
    assert run("backtest", workdir / "log.csv", "--calibration-end", "1997-09-30", "--baselines", "nope",
               "--out", tmp_path / "b2", "-q") == 2


def test_backtest_models_bgbb_is_a_discrete_backtest(workdir, tmp_path, capsys):
    common = ["--timestamp", "date", "--date-format", "%Y-%m-%d", "--calibration-end", "1997-09-30", "-q"]
    assert run("backtest", workdir / "log.csv", "--models", "bgbb", "--period", "Q", "--out", tmp_path / "bt",
               *common) == 0
    metrics = pd.read_parquet(tmp_path / "bt" / "metrics.parquet")
    assert "bgbb" in set(metrics["model"])
    assert run("backtest", workdir / "log.csv", "--models", "bgbb,bgnbd", "--out", tmp_path / "b2", *common) == 2
    assert "mixes discrete-opportunity (bgbb) and continuous-time" in capsys.readouterr().err


# ---------------------------------------------------------------------------- covariates (issue 14)
COV_COEFS = {"alpha:x1": 0.4, "a:x2": 0.3, "gamma:x1": 0.2}
COVARIATE_FIT = ("--purchase-covariates", "x1,x2", "--dropout-covariates", "x2", "--spend-covariates", "x1")


@pytest.fixture(scope="module")
def covdir(tmp_path_factory):
    """2,000 simulated customers with two covariates: the log (CSV), the covariate table (Parquet, integer
    ids: matched as text), the RFM table with the covariates joined, and a BG/NBD + Gamma-Gamma fitted on it."""
    d = tmp_path_factory.mktemp("cov")
    rng = np.random.default_rng(1)
    n = 2000
    cov = pd.DataFrame({"x1": rng.normal(2.0, 1.0, n), "x2": (rng.random(n) < 0.4).astype(float)})
    log, truth = simulate(n, covariates=cov, coefficients=COV_COEFS, return_truth=True, seed=3)
    log.to_csv(d / "log.csv", index=False)
    truth[["x1", "x2"]].rename_axis("cid").reset_index().to_parquet(d / "cov.parquet")
    end = log.attrs["observation_end"]
    assert run("summarize", d / "log.csv", "--out", d / "rfm.parquet", "--observation-end", end,
               "--covariates", d / "cov.parquet", "--covariate-id", "cid", "-q") == 0
    assert run("summarize", d / "log.csv", "--out", d / "plain.parquet", "--observation-end", end, "-q") == 0
    assert run("fit", d / "rfm.parquet", "--out", d / "model", *COVARIATE_FIT, "-q") == 0
    return d


def test_summarize_joins_covariates_and_counts_missing_customers(covdir, tmp_path, capsys):
    rfm = pd.read_parquet(covdir / "rfm.parquet")
    plain = pd.read_parquet(covdir / "plain.parquet")
    cov = pd.read_parquet(covdir / "cov.parquet")
    assert len(rfm) == 2000 and rfm.index.dtype == "str"
    np.testing.assert_array_equal(rfm["x1"].to_numpy(), cov.set_index(cov["cid"].astype(str)).loc[rfm.index, "x1"])
    pd.testing.assert_frame_equal(rfm[plain.columns], plain)
    cov.iloc[2:].to_csv(tmp_path / "cov.csv", index=False)  # two customers without covariates
    args = ("summarize", covdir / "log.csv", "--out", tmp_path / "r.parquet", "--covariates", tmp_path / "cov.csv",
            "--covariate-id", "cid", "--observation-end", "2025-06-30")
    assert run(*args) == cli.EXIT_BAD_INPUT
    assert "have no row in the covariate table (2 rows)" in capsys.readouterr().err
    assert not (tmp_path / "r.parquet").exists()
    assert run(*args, "--missing-covariates", "drop") == 0
    assert "customers: 1,998" in capsys.readouterr().out
    assert run(*args[:-4], "--observation-end", "2025-06-30") == cli.EXIT_BAD_INPUT  # the id is not customer_id
    assert "--covariate-id" in capsys.readouterr().err


def test_fit_with_covariates_equals_the_python_fit(covdir, tmp_path):
    from clvmodels.models import BetaGeoModel, GammaGammaModel

    models, _ = clv.load_models(covdir / "model")
    rfm = pd.read_parquet(covdir / "rfm.parquet")
    purchase = BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x2"]).fit(rfm)
    spend = GammaGammaModel(spend_covariates=["x1"], exclude_invalid=True).fit(rfm)
    for cli_model, model in ((models["purchase"], purchase), (models["spend"], spend)):
        assert list(cli_model.coefficients_.index) == list(model.coefficients_.index)
        np.testing.assert_allclose(cli_model.coefficients_.to_numpy(), model.coefficients_.to_numpy(), atol=1e-8)
        np.testing.assert_allclose(cli_model.params_.to_numpy(), model.params_.to_numpy(), rtol=1e-8)
    assert list(purchase.coefficients_.index) == ["alpha:x1", "alpha:x2", "a:x2", "b:x2"]
    # --covariates joins the table by id first: the same fit from the RFM table without covariates
    assert run("fit", covdir / "plain.parquet", "--out", tmp_path / "m", *COVARIATE_FIT[:4], "--model", "bgnbd",
               "--covariates", covdir / "cov.parquet", "--covariate-id", "cid", "-q") == 0
    joined, _ = clv.load_models(tmp_path / "m")
    np.testing.assert_allclose(joined["purchase"].coefficients_.to_numpy(), purchase.coefficients_.to_numpy(),
                               atol=1e-8)


def test_fit_with_constraints_and_a_penalty_equals_the_python_fit(covdir, tmp_path, capsys):
    from clvmodels.models import BetaGeoModel, GammaGammaModel

    rfm = pd.read_parquet(covdir / "rfm.parquet")
    both = ("--purchase-covariates", "x1,x2", "--dropout-covariates", "x1,x2", "--spend-covariates", "x1,x2")
    # a:x1 = b:x1 and x2 shared by the purchase processes (the purchase model's); gamma:x1 = gamma:x2 (the spend's)
    ties = ("--covariate-constraint", "a:x1=b:x1", "--covariate-constraint", "x2",
            "--covariate-constraint", "gamma:x1 = gamma:x2", "--covariate-penalty", "0.05")
    assert run("fit", covdir / "rfm.parquet", "--out", tmp_path / "m", *both, *ties, "-q") == 0
    models, _ = clv.load_models(tmp_path / "m")
    purchase = BetaGeoModel(purchase_covariates=["x1", "x2"], dropout_covariates=["x1", "x2"],
                            covariate_constraints=[["a:x1", "b:x1"], "x2"], covariate_penalty=0.05).fit(rfm)
    spend = GammaGammaModel(spend_covariates=["x1", "x2"], covariate_constraints=[["gamma:x1", "gamma:x2"]],
                            covariate_penalty=0.05, exclude_invalid=True).fit(rfm)
    for cli_model, model in ((models["purchase"], purchase), (models["spend"], spend)):
        assert cli_model.get_params()["covariate_penalty"] == 0.05
        assert list(cli_model.coefficients_.index) == list(model.coefficients_.index)
        np.testing.assert_allclose(cli_model.coefficients_.to_numpy(), model.coefficients_.to_numpy(), atol=1e-8)
        np.testing.assert_allclose(cli_model.params_.to_numpy(), model.params_.to_numpy(), rtol=1e-8)
    coef = models["purchase"].coefficients_
    assert coef["a:x1"] == coef["b:x1"] != coef["alpha:x1"]
    assert coef["alpha:x2"] == coef["a:x2"] == coef["b:x2"]
    assert models["spend"].coefficients_["gamma:x1"] == models["spend"].coefficients_["gamma:x2"]
    assert models["purchase"].n_free_parameters_ == 4 + 3
    # the penalty shrinks: the unpenalised fit's coefficients are larger
    free = BetaGeoModel(**{**purchase.get_params(), "covariate_penalty": 0.0}).fit(rfm)
    assert np.abs(coef).sum() < np.abs(free.coefficients_).sum()
    # bad syntax, unknown coefficients, a negative penalty: exit 2 with the reason, nothing written
    base = ("fit", covdir / "rfm.parquet", "--out", tmp_path / "bad", *both)
    for argv, match in [(("--covariate-constraint", "a:x1="), "argument --covariate-constraint: expected two or more"),
                        (("--covariate-constraint", "a:x1"), "joined by '='"),
                        (("--covariate-constraint", "a:x1=:x2"), "got 'a:x1=:x2'"),
                        (("--covariate-constraint", "a:x9=b:x9"), "unknown: ['a:x9', 'b:x9']"),
                        (("--covariate-constraint", "r:x1=s:x1"), "does not name coefficients of one model"),
                        (("--covariate-constraint", "x7"), "does not name coefficients of one model"),
                        (("--covariate-penalty", "-1"), "--covariate-penalty must be >= 0"),
                        (("--covariate-penalty", "lots"), "argument --covariate-penalty: expected a number")]:
        try:
            code = run(*base, *argv)
        except SystemExit as exc:          # argparse refuses the syntax (before anything is read)
            code = exc.code
        assert code == cli.EXIT_BAD_INPUT, argv
        assert match in capsys.readouterr().err, argv
        assert not (tmp_path / "bad").exists()


def test_fit_covariate_options_must_match_the_models(covdir, tmp_path, capsys):
    base = ("fit", covdir / "rfm.parquet", "--out", tmp_path / "m")
    for argv, match in [(("--model", "bgnbd", "--spend-covariates", "x1"), "the spend model"),
                        (("--one-hot", "x1"), "--one-hot"),
                        (("--covariates", covdir / "cov.parquet"), "--covariates joins"),
                        (("--covariate-constraint", "x1"), "--covariate-constraint ties"),
                        (("--covariate-penalty", "1"), "--covariate-penalty shrinks"),
                        (("--purchase-covariates", "nosuch"), "nosuch")]:
        assert run(*base, *argv) == cli.EXIT_BAD_INPUT
        assert match in capsys.readouterr().err
        assert not (tmp_path / "m").exists()


def test_score_with_covariates_equals_the_models(covdir, tmp_path, capsys):
    from clvmodels.scoring import period_length

    out = tmp_path / "s.parquet"
    assert run("score", covdir / "model", covdir / "rfm.parquet", "--out", out, "-q") == 0
    got = pd.read_parquet(out).set_index("customer_id")
    models, _ = clv.load_models(covdir / "model")
    purchase, spend = models["purchase"], models["spend"]
    rfm = pd.read_parquet(covdir / "rfm.parquet")
    t = 12 * period_length(purchase, ScoreSettings())
    np.testing.assert_allclose(got["expected_purchases"], purchase.expected_purchases(t, rfm).loc[got.index],
                               rtol=1e-10)
    np.testing.assert_allclose(got["clv"], clv.clv(purchase, spend, rfm).loc[got.index], rtol=1e-10)
    # the covariates change the scores: the model without them scores otherwise
    plain = clv.BetaGeoModel().fit(rfm)
    assert np.abs(got["expected_purchases"] / plain.expected_purchases(t, rfm).loc[got.index] - 1).max() > 0.05
    # --covariates joins them by id to a table without them: the same scores
    assert run("score", covdir / "model", covdir / "plain.parquet", "--out", tmp_path / "j.parquet",
               "--covariates", covdir / "cov.parquet", "--covariate-id", "cid", "-q") == 0
    joined = pd.read_parquet(tmp_path / "j.parquet").set_index("customer_id")
    # the same numbers (to rounding: the customers' chunks and so the sums' order may differ)
    np.testing.assert_allclose(joined.loc[got.index, ["expected_purchases", "clv"]].to_numpy(),
                               got[["expected_purchases", "clv"]].to_numpy(), rtol=1e-13, atol=0)
    # a model without covariates does not use the table, and says so
    assert run("fit", covdir / "plain.parquet", "--model", "bgnbd", "--out", tmp_path / "plain", "-q") == 0
    capsys.readouterr()
    assert run("score", tmp_path / "plain", covdir / "plain.parquet", "--out", tmp_path / "p.parquet",
               "--covariates", covdir / "cov.parquet", "--covariate-id", "cid", "-q") == 0
    assert "no covariates: the covariate table is not used" in capsys.readouterr().err


def test_score_without_the_covariate_columns_exits_2(covdir, tmp_path, capsys):
    code = run("score", covdir / "model", covdir / "plain.parquet", "--out", tmp_path / "s.parquet")
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no column(s) ['x1', 'x2']" in err and "--covariates FILE" in err
    assert not (tmp_path / "s.parquet").exists()


def test_score_rejects_customers_with_bad_or_no_covariates(covdir, tmp_path, capsys):
    rfm = pd.read_parquet(covdir / "rfm.parquet")
    rfm.loc[rfm.index[:2], "x1"] = np.nan
    rfm.loc[rfm.index[2], "x2"] = np.inf
    rfm.to_parquet(tmp_path / "bad.parquet")
    out = tmp_path / "s.parquet"
    assert run("score", covdir / "model", tmp_path / "bad.parquet", "--out", out, "-q") == cli.EXIT_REJECTS
    assert "read: 2,000; scored: 1,997; rejected: 3" in capsys.readouterr().out
    rejects = pd.read_parquet(tmp_path / "s.rejects.parquet").set_index("customer_id")
    assert rejects.loc[list(rfm.index[:2]), "reason"].eq("missing, non-numeric or infinite covariate x1").all()
    assert rejects.loc[rfm.index[2], "reason"] == "missing, non-numeric or infinite covariate x2"
    assert rejects.loc[rfm.index[2], "x2"] == "inf"
    scored = pd.read_parquet(out).set_index("customer_id")
    good = rfm.iloc[3:]
    expected = score_frame(*clv.load_models(covdir / "model")[0].values(), good, ScoreSettings())
    np.testing.assert_allclose(scored.loc[good.index, expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-12)
    # a customer without a row in --covariates is rejected likewise, the others scored
    cov = pd.read_parquet(covdir / "cov.parquet")
    cov[cov["cid"].astype(str) != rfm.index[5]].to_csv(tmp_path / "cov.csv", index=False)
    assert run("score", covdir / "model", covdir / "plain.parquet", "--out", out, "--covariates",
               tmp_path / "cov.csv", "--covariate-id", "cid", "--allow-rejects", "-q") == 0
    rejects = pd.read_parquet(tmp_path / "s.rejects.parquet")
    assert rejects[["customer_id", "reason"]].values.tolist() == [[rfm.index[5], "no row in the covariate table"]]


def test_one_hot_covariate_from_the_cli_and_unseen_levels_rejected(covdir, tmp_path, capsys):
    from clvmodels.models import BetaGeoModel

    rfm = pd.read_parquet(covdir / "rfm.parquet")
    rfm["channel"] = np.array(["web", "web", "shop", "app"])[np.arange(len(rfm)) % 4]  # web: the baseline
    rfm.to_csv(tmp_path / "rfm.csv")  # CSV: ids and the text column read back as text
    assert run("fit", tmp_path / "rfm.csv", "--model", "bgnbd", "--time-unit", "W", "--out", tmp_path / "m",
               "--purchase-covariates", "channel,x1", "--one-hot", "channel", "-q") == 0
    model = clv.load_models(tmp_path / "m")[0]["purchase"]
    python = BetaGeoModel(purchase_covariates=["channel", "x1"], one_hot=["channel"]).fit(rfm)
    assert list(model.coefficients_.index) == ["alpha:channel[app]", "alpha:channel[shop]", "alpha:x1"]
    np.testing.assert_allclose(model.coefficients_.to_numpy(), python.coefficients_.to_numpy(), atol=1e-8)
    rfm.loc[rfm.index[0], "channel"] = "phone"
    rfm.loc[rfm.index[1], "channel"] = None
    rfm.to_parquet(tmp_path / "new.parquet")
    assert run("score", tmp_path / "m", tmp_path / "new.parquet", "--out", tmp_path / "s.parquet",
               "-q") == cli.EXIT_REJECTS
    rejects = pd.read_parquet(tmp_path / "s.rejects.parquet").set_index("customer_id")["reason"]
    assert rejects.to_dict() == {rfm.index[0]: "covariate channel has a level not seen at fit",
                                 rfm.index[1]: "missing, non-numeric or infinite covariate channel"}
