"""Issue #16, the command's part: ``fit LOG --calendar`` / ``--covariate-panel`` with
``--purchase-time-varying`` / ``--dropout-time-varying``, and ``score --calendar`` (the future
calendar): scores equal the Python API's, customers the calendar does not cover are rejected one by
one, bad options and files exit 2 naming what is wrong, outputs never over inputs."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import cli
from clvmodels.datasets import simulate_seasonal
from clvmodels.models.persistence import load_models
from clvmodels.timevarying import covariate_calendar, forecast_summary, future_exposure, timevarying_summary

HORIZON = 20      # weeks (--period W)
COLUMNS = ["holiday", "fourier_sin1"]


def run(*argv) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cli.main([str(a) for a in argv])


def one_error_line(err: str) -> str:
    """The one error line (a CSV table's unchecked time unit may add a warning line)."""
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A seasonal log over 80 weeks (CSV), its calendar extended by 30 weeks (the future calendar), a
    weekly RFM summary (Parquet) and BG/NBD+GG and Pareto/NBD+GG models fitted from the log."""
    d = tmp_path_factory.mktemp("tvcli")
    log, calendar = simulate_seasonal(1200, seed=1, observation_length=80, model="pareto_nbd",
                                      purchase_coefficients={"holiday": 0.8, "fourier_sin1": 0.3},
                                      dropout_coefficients={"holiday": 0.5})
    log.to_csv(d / "log.csv", index=False)
    future = pd.date_range(calendar.index[-1] + pd.Timedelta("7D"), periods=30, freq="7D")
    ahead = clv.holiday_windows(future, ["2025-12-25"], before=21).assign(
        fourier_sin1=clv.fourier_terms(future)["fourier_sin1"], fourier_cos1=clv.fourier_terms(future)["fourier_cos1"])
    cal = pd.concat([calendar, ahead[calendar.columns]]).rename_axis("week").reset_index()
    cal.to_csv(d / "cal.csv", index=False)
    assert run("summarize", d / "log.csv", "--out", d / "rfm.parquet", "-q") == 0
    assert run("fit", d / "log.csv", "--model", "bgnbd+gg", "--calendar", d / "cal.csv", "--period-column", "week",
               "--purchase-time-varying", ",".join(COLUMNS), "--out", d / "bg", "-q") == 0
    assert run("fit", d / "log.csv", "--model", "pnbd+gg", "--calendar", d / "cal.csv", "--period-column", "week",
               "--purchase-time-varying", ",".join(COLUMNS), "--dropout-time-varying", "holiday",
               "--out", d / "pnbd", "-q") == 0
    return d


def api_scores(d, name, interval=None):
    """The Python API's forecasts of the customers of the log (ids as text)."""
    models, _ = load_models(d / name)
    purchase, spend = models["purchase"], models["spend"]
    path = covariate_calendar(pd.read_csv(d / "cal.csv"), period="week", columns=COLUMNS)
    rfm, tv = timevarying_summary(pd.read_csv(d / "log.csv"), path, time_unit="W")
    future = future_exposure(rfm, path, HORIZON)
    kw = dict(interval=interval, n_draws=50, seed=0) if interval else {}
    out = {"expected_purchases": purchase.expected_purchases(HORIZON, rfm, time_varying=tv, future=future, **kw),
           "probability_alive": purchase.probability_alive(rfm, time_varying=tv, **kw),
           "clv": clv.clv(purchase, spend, rfm, horizon=HORIZON, period="W", time_varying=tv, future=future,
                          kind="expected", discount_rate=0.01, **kw)}
    return {k: v.set_axis(v.index.astype(str)) for k, v in out.items()}


def read_scores(path) -> pd.DataFrame:
    s = pd.read_parquet(path)
    return s.set_index(s["customer_id"].astype(str))


@pytest.mark.parametrize("name", ["bg", "pnbd"])
@pytest.mark.parametrize("source", ["log.csv", "rfm.parquet"])
def test_scores_equal_the_python_api(d, tmp_path, name, source):
    out = tmp_path / "s.parquet"
    assert run("score", d / name, d / source, "--calendar", d / "cal.csv", "--period-column", "week", "--period", "W",
               "--horizon", HORIZON, "--out", out, "-q") == 0
    scores, api = read_scores(out), api_scores(d, name)
    assert len(scores) == 1200
    for column, values in api.items():
        np.testing.assert_allclose(scores[column].to_numpy(), values.reindex(scores.index).to_numpy(), rtol=1e-8,
                                   atol=1e-12, err_msg=column)
    assert (scores["probability_alive"].between(0, 1)).all() and scores["clv"].gt(0).all()
    models, meta = load_models(d / name)
    assert meta["time_varying"]["option"] == "--calendar" and meta["time_varying"]["period_column"] == "week"
    expected = {"bg": ["tv_purchase:holiday", "tv_purchase:fourier_sin1"],
                "pnbd": ["tv_purchase:holiday", "tv_purchase:fourier_sin1", "tv_dropout:holiday"]}[name]
    assert list(models["purchase"].time_varying_coefficients_.index) == expected


def test_expected_intervals_equal_the_python_api(d, tmp_path):
    out = tmp_path / "s.parquet"
    assert run("score", d / "bg", d / "rfm.parquet", "--calendar", d / "cal.csv", "--period-column", "week",
               "--period", "W", "--horizon", HORIZON, "--interval", 0.8, "--clv-interval", "expected", "--draws", 50,
               "--out", out, "-q") == 0
    scores, api = read_scores(out), api_scores(d, "bg", interval=0.8)
    for column, frame in api.items():
        for end in ("mean_lower", "mean_upper"):
            np.testing.assert_allclose(scores[f"{column}_{end}"].to_numpy(),
                                       frame[end].reindex(scores.index).to_numpy(), rtol=1e-8, err_msg=column)
    assert (scores["clv_mean_lower"] < scores["clv"]).all() and (scores["clv"] < scores["clv_mean_upper"]).all()


def test_predictive_clv_interval_equals_the_python_api(d, tmp_path):
    """``--interval`` (predictive CLV, by simulation along the calendar) gives the interval of
    ``clv(..., kind="predictive")`` with the chunk's seed."""
    from clvmodels.scoring import _chunk_seed

    out = tmp_path / "s.parquet"
    assert run("score", d / "bg", d / "rfm.parquet", "--calendar", d / "cal.csv", "--period-column", "week",
               "--period", "W", "--horizon", HORIZON, "--interval", 0.8, "--samples", 200, "--draws", 20,
               "--out", out, "-q") == 0
    scores = read_scores(out)
    models, _ = load_models(d / "bg")
    path = covariate_calendar(pd.read_csv(d / "cal.csv"), period="week", columns=COLUMNS)
    rfm = pd.read_parquet(d / "rfm.parquet")
    rfm = rfm.set_axis(rfm.index.astype(str)).loc[scores.index]     # the scores' order: the chunk's seed
    tv = forecast_summary(rfm, path)
    pred = clv.clv(models["purchase"], models["spend"], rfm, horizon=HORIZON, period="W", discount_rate=0.01,
                   interval=0.8, n_samples=200, seed=_chunk_seed(0, rfm.index), time_varying=tv,
                   future=future_exposure(rfm, path, HORIZON))
    for end in ("lower", "upper"):
        np.testing.assert_allclose(scores[f"clv_{end}"].to_numpy(), pred[end].to_numpy(), rtol=1e-8)
    assert (scores["clv_lower"] <= scores["clv_upper"]).all() and (scores["clv_upper"] > 0).any()


def test_customers_the_calendar_does_not_cover_are_rejected_one_by_one(d, tmp_path, capsys):
    """A calendar ending 10 weeks after the end of observation covers nobody's 20-week horizon; one
    starting in week 6 misses the customers who bought first before it (rejected with the reason), and
    the others are scored as with the full calendar."""
    cal = pd.read_csv(d / "cal.csv")
    short, late = tmp_path / "short.csv", tmp_path / "late.csv"
    cal.iloc[:-20].to_csv(short, index=False)
    cal.iloc[6:].to_csv(late, index=False)
    args = ["--period-column", "week", "--period", "W", "--horizon", HORIZON]
    out, rejects = tmp_path / "s.parquet", tmp_path / "r.parquet"
    assert run("score", d / "bg", d / "rfm.parquet", "--calendar", short, *args, "--out", out, "--rejects", rejects,
               "-q") == cli.EXIT_REJECTS
    rej = pd.read_parquet(rejects)
    assert len(rej) == 1200 and len(pd.read_parquet(out)) == 0
    end = pd.Timestamp(cal["week"].iloc[-21]) + pd.Timedelta("7D")
    assert set(rej["reason"]) == {f"not covered by the calendar ({pd.Timestamp(cal['week'].iloc[0])} to {end}) from "
                                  "her first purchase to the end of the window"}
    capsys.readouterr()
    assert run("score", d / "bg", d / "rfm.parquet", "--calendar", late, *args, "--out", out, "--rejects", rejects,
               "--allow-rejects", "-q") == 0
    rfm = pd.read_parquet(d / "rfm.parquet")
    first = pd.Timestamp(rfm.attrs["observation_end"]).normalize() - pd.to_timedelta(rfm["T"] * 7, unit="D")
    before = set(rfm.index[(first < pd.Timestamp(cal["week"].iloc[6])).to_numpy()].astype(str))
    rej, scores = pd.read_parquet(rejects), read_scores(out)
    assert 0 < len(before) < 1200 and set(rej["customer_id"]) == before and len(scores) == 1200 - len(before)
    api = api_scores(d, "bg")
    np.testing.assert_allclose(scores["clv"].to_numpy(), api["clv"].reindex(scores.index).to_numpy(), rtol=1e-8)


def test_a_panel_fits_and_scores_like_the_calendar(d, tmp_path):
    """The calendar repeated for every customer as a panel gives the calendar's fit and scores; a customer
    without panel rows is rejected."""
    cal = pd.read_csv(d / "cal.csv")
    ids = pd.read_csv(d / "log.csv")["customer_id"].astype(str).unique()
    panel = pd.concat([cal.assign(customer=i) for i in ids[1:]])
    panel.to_parquet(tmp_path / "panel.parquet", index=False)
    opts = ["--covariate-panel", tmp_path / "panel.parquet", "--panel-id", "customer", "--period-column", "week"]
    assert run("fit", d / "log.csv", "--model", "bgnbd+gg", *opts, "--purchase-time-varying", ",".join(COLUMNS),
               "--out", tmp_path / "m", "-q") == cli.EXIT_BAD_INPUT   # a customer of the log has no rows
    pd.concat([cal.assign(customer=i) for i in ids]).to_parquet(tmp_path / "full.parquet", index=False)
    opts[1] = tmp_path / "full.parquet"
    assert run("fit", d / "log.csv", "--model", "bgnbd+gg", *opts, "--purchase-time-varying", ",".join(COLUMNS),
               "--out", tmp_path / "m", "-q") == 0
    mine, theirs = load_models(tmp_path / "m")[0]["purchase"], load_models(d / "bg")[0]["purchase"]
    np.testing.assert_allclose(mine.time_varying_coefficients_, theirs.time_varying_coefficients_, rtol=1e-6)
    np.testing.assert_allclose(pd.Series(mine.params_), pd.Series(theirs.params_), rtol=1e-6)
    opts[1] = tmp_path / "panel.parquet"
    out, rejects = tmp_path / "s.parquet", tmp_path / "r.parquet"
    assert run("score", tmp_path / "m", d / "rfm.parquet", *opts, "--period", "W", "--horizon", HORIZON, "--out", out,
               "--rejects", rejects, "--allow-rejects", "-q") == 0
    rej = pd.read_parquet(rejects)
    assert list(rej["customer_id"]) == [ids[0]] and list(rej["reason"]) == ["no row in the covariate panel"]
    api = api_scores(d, "bg")
    scores = read_scores(out)
    np.testing.assert_allclose(scores["clv"].to_numpy(), api["clv"].reindex(scores.index).to_numpy(), rtol=1e-6)


def test_bad_options_and_files_exit_2_naming_what_is_wrong(d, tmp_path, capsys):
    cal = pd.read_csv(d / "cal.csv")
    cal.drop(columns="holiday").to_csv(tmp_path / "noholiday.csv", index=False)
    pd.read_parquet(d / "rfm.parquet").to_csv(tmp_path / "rfm.csv", index=False)
    score = ["score", d / "bg", d / "rfm.parquet", "--out", tmp_path / "s.parquet", "--period", "W"]
    cases = [
        (score + ["--calendar", tmp_path / "noholiday.csv", "--period-column", "week"], r"no column\(s\) 'holiday'"),
        (score + ["--calendar", d / "cal.csv"], r"no column\(s\) 'period'.*--period-column"),
        (score, r"time-varying covariates \(holiday, fourier_sin1\): give their future path with --calendar"),
        (["score", d / "bg", tmp_path / "rfm.csv", "--out", tmp_path / "s.parquet", "--calendar", d / "cal.csv",
          "--period-column", "week", "--period", "W"], r"does not record its resolution and observation_end"),
        (["fit", d / "log.csv", "--purchase-time-varying", "holiday", "--out", tmp_path / "m"],
         "give it with --calendar FILE"),
        (["fit", d / "log.csv", "--calendar", d / "cal.csv", "--period-column", "week", "--out", tmp_path / "m"],
         "no --purchase-time-varying or --dropout-time-varying"),
        (["fit", d / "log.csv", "--model", "bgnbd", "--calendar", d / "cal.csv", "--period-column", "week",
          "--dropout-time-varying", "holiday", "--out", tmp_path / "m"], r"no time-varying covariates of its \['dropout'\]"),
        (["fit", d / "log.csv", "--calendar", d / "cal.csv", "--period-column", "week", "--purchase-time-varying",
          "nosuch", "--out", tmp_path / "m"], r"no column\(s\) 'nosuch'"),
    ]
    for argv, match in cases:
        capsys.readouterr()
        assert run(*argv, "-q") == cli.EXIT_BAD_INPUT, argv
        assert re.search(match, one_error_line(capsys.readouterr().err)), argv
    # a model without time-varying covariates refuses a calendar
    assert run("fit", d / "rfm.parquet", "--model", "bgnbd", "--out", tmp_path / "plain", "-q") == 0
    capsys.readouterr()
    assert run("score", tmp_path / "plain", d / "rfm.parquet", "--calendar", d / "cal.csv", "--out",
               tmp_path / "s.parquet") == cli.EXIT_BAD_INPUT
    assert "has no time-varying covariates" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "s.parquet").exists() and not (tmp_path / "m").exists()


def test_outputs_never_over_the_calendar_and_failures_keep_the_previous_file(d, tmp_path, capsys, monkeypatch):
    cal = tmp_path / "cal.csv"
    cal.write_bytes((d / "cal.csv").read_bytes())
    before = cal.read_bytes()
    opts = ["--calendar", cal, "--period-column", "week", "--period", "W"]
    assert run("score", d / "bg", d / "rfm.parquet", *opts, "--out", cal, "--csv") == cli.EXIT_BAD_INPUT
    assert re.search("--out .* is the same file as --calendar", one_error_line(capsys.readouterr().err))
    assert run("fit", d / "log.csv", "--calendar", cal, "--period-column", "week", "--purchase-time-varying", "holiday",
               "--out", tmp_path) == cli.EXIT_BAD_INPUT
    assert cal.read_bytes() == before
    out = tmp_path / "s.parquet"
    assert run("score", d / "bg", d / "rfm.parquet", *opts, "--out", out, "-q") == 0
    previous = out.read_bytes()
    import clvmodels.scoring as scoring

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(scoring, "value_customers", broken)
    assert run("score", d / "bg", d / "rfm.parquet", *opts, "--out", out, "-q") == cli.EXIT_INTERNAL
    assert "simulated bug" in capsys.readouterr().err
    assert out.read_bytes() == previous and cal.read_bytes() == before


@pytest.mark.slow
def test_worker_processes_read_the_calendar(d, tmp_path):
    """``--jobs 2``: the workers get the covariate path and score as one process does."""
    args = ["--calendar", d / "cal.csv", "--period-column", "week", "--period", "W", "--horizon", HORIZON, "-q"]
    assert run("score", d / "pnbd", d / "log.csv", *args, "--out", tmp_path / "one.parquet") == 0
    assert run("score", d / "pnbd", d / "log.csv", *args, "--out", tmp_path / "two.parquet", "--jobs", 2,
               "--chunk-rows", 400) == 0
    one, two = read_scores(tmp_path / "one.parquet"), read_scores(tmp_path / "two.parquet")
    assert len(two) == 1200
    np.testing.assert_allclose(two.loc[one.index, "clv"].to_numpy(), one["clv"].to_numpy(), rtol=1e-10)
