"""Progress bars (issue 15): on a terminal or when asked, never nested, off with progressbar=False,
CLVMODELS_PROGRESS=0, --quiet/--no-progress, and off the terminal (pipes, CI, these tests)."""

from __future__ import annotations

import pytest

import clvmodels as clv
from clvmodels import predictive
from clvmodels.datasets import simulate
from clvmodels.progress import ENV, progress, progress_off, show_progress


def test_show_progress_rules(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert show_progress() is False                      # pytest's stderr is not a terminal
    assert show_progress(True) is True and show_progress(False) is False
    monkeypatch.setenv(ENV, "1")
    assert show_progress() is True
    with progress_off():
        assert show_progress() is False and show_progress(True) is True
    with progress(3, "outer") as advance:              # a bar's steps show none of their own
        assert show_progress() is False
        advance(3)
    assert show_progress() is True
    monkeypatch.setenv(ENV, "off")
    assert show_progress() is False


@pytest.fixture(scope="module")
def fitted():
    log = clv.load_transactions(simulate(400, seed=3))
    rfm = clv.rfm_summary(log, time_unit="W")
    return log, rfm, clv.BetaGeoModel().fit(rfm), clv.GammaGammaModel(exclude_invalid=True).fit(rfm)


def test_simulations_and_predictive_distributions_show_a_bar_when_asked(fitted, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    _, rfm, model, spend = fitted
    predictive.simulate_value(model, spend, 10, rfm, n_samples=50, seed=0)
    clv.total_value(model, spend, rfm, horizon=3, n_samples=50, seed=0)
    assert capsys.readouterr().err == ""                 # not a terminal: no bar
    predictive.simulate_value(model, spend, 10, rfm, n_samples=50, seed=0, progressbar=True)
    clv.total_value(model, spend, rfm, horizon=3, n_samples=50, seed=0, progressbar=True)
    err = capsys.readouterr().err
    assert err.count("simulating futures") >= 2 and "customers" in err
    monkeypatch.setenv(ENV, "1")
    predictive.predictive_purchases(model, 10, rfm, interval=0.9)
    assert "predictive distributions" in capsys.readouterr().err


def test_backtest_bar_counts_fits_and_hides_the_inner_bars(fitted, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    log, *_ = fitted
    cut = log["timestamp"].min() + (log["timestamp"].max() - log["timestamp"].min()) / 2
    kw = dict(calibration_end=str(cut.date()), n_samples=50, baselines={"no change": clv.NoChangeBaseline()})
    clv.backtest(log, **kw)
    assert capsys.readouterr().err == ""
    clv.backtest(log, **kw, progressbar=True)
    err = capsys.readouterr().err
    assert "backtest" in err and "0/2 [" in err and "simulating futures" not in err
