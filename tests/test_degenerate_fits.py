"""Logs whose fits are degenerate (real data: one cohort, no sign of drop-out, no repeat purchases):
the backtest, the CLV report and the CLI still give their answers, and say what they could not
estimate, instead of failing on the first interval."""

from __future__ import annotations

import re

import numpy as np
import pytest

import clvmodels as clv
from clvmodels import ClvDataError, cli
from clvmodels.backtest import backtest
from clvmodels.clv_report import clv_report
from clvmodels.models.draws import covariance_problem, parameter_draws
from clvmodels.report import recommend_model
from messy_logs import degenerate_log

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def no_dropout():
    log = clv.load_transactions(degenerate_log())
    return log, backtest(log, calibration_end="2024-09-01", time_unit="W", seed=1)


def test_a_fit_without_covariance_forecasts_at_its_estimate_and_says_so(no_dropout, tmp_path):
    log, result = no_dropout
    cutoff = result.cutoffs[-1]
    model = result.models[(cutoff, "BG/NBD")]
    assert covariance_problem(model).startswith("has no finite covariance matrix")   # alpha -> infinity
    warned = result.warnings[(result.warnings["model"] == "BG/NBD") & (result.warnings["category"] == "PredictiveWarning")]
    assert warned["message"].str.contains("leave it out").any()
    # every draw is the point estimate; the model as fitted refuses to draw, naming itself
    draws = parameter_draws(model, 5, np.random.default_rng(0))
    for k, v in model.params_.items():
        np.testing.assert_array_equal(draws[k], np.full(5, v))
    with pytest.raises(ClvDataError, match="This BetaGeoModel fit has no finite covariance"):
        parameter_draws(clv.BetaGeoModel().fit(model.rfm_), 5, np.random.default_rng(0))
    assert model.summary()["se"].isna().all()   # its summary still shows no standard errors
    # the backtest's intervals exist (process uncertainty) and the CLV report is written, saying so
    totals = result.totals[(result.totals["model"] == "BG/NBD") & (result.totals["target"] == "purchases")]
    assert np.isfinite(totals[["lower", "upper"]].to_numpy()).all()
    report = clv_report(result, log, tmp_path / "r.html", n_samples=200)
    assert report.total["lower"].iloc[0] < report.total["mean"].iloc[0] < report.total["upper"].iloc[0]
    text = re.sub("<.*?>", "", (tmp_path / "r.html").read_text())
    assert "fit on the whole log: The fit has no finite covariance matrix" in text


def test_without_repeat_purchases_the_report_compares_purchase_models(tmp_path, capsys):
    log = degenerate_log(repeats=False)
    result = backtest(clv.load_transactions(log), calibration_end="2024-09-01", time_unit="W", seed=1)
    # Gamma-Gamma cannot be fitted: models are ranked on purchases, not on value only baselines forecast
    choice = recommend_model(result)
    assert choice.attrs["target"] == "purchases" and choice.loc["BG/NBD", "recommended"]
    # nobody buys again in the holdout: the total's error is not "+inf%" of an actual 0
    totals = result.totals[result.totals["model"] == "BG/NBD"]
    assert (totals["actual"] == 0).all() and np.isinf(totals["error_pct"]).all()
    missed = result.warnings.loc[result.warnings["model"] == "BG/NBD", "message"]
    assert missed.str.contains("total 0 lies outside|total is 0 and").any() and not missed.str.contains("inf%").any()
    with pytest.raises(ClvDataError, match="spend model could not be fitted .*Gamma-Gamma needs at least 2 customers"):
        clv_report(result, log)
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    out = tmp_path / "report.html"
    assert cli.main(["report", str(path), "--calibration-end", "2024-09-01", "--out", str(out)]) == cli.EXIT_OK
    assert "no CLV report: the spend model could not be fitted" in capsys.readouterr().err
    assert "BG/NBD" in out.read_text()
