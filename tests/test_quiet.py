"""Quiet by default (issue 15): a fit, a backtest, a report, the CLI and Bayesian fits raise no
warning but the model warnings of :data:`clvmodels.errors.MODEL_WARNINGS` (no environment or library
noise: PyTensor's BLAS search, nutpie's deprecations, PyMC's log lines, the duplicate-row notice
as a warning, source lines printed by the CLI)."""

from __future__ import annotations

import contextlib
import logging
import warnings

import pytest

import clvmodels as clv
from clvmodels import cli
from clvmodels.datasets import load_cdnow
from clvmodels.errors import MODEL_WARNINGS


@contextlib.contextmanager
def only_model_warnings():
    """Every warning an error, except the documented model warnings (recorded)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        for category in MODEL_WARNINGS:
            warnings.simplefilter("always", category)
        yield caught
    assert all(issubclass(w.category, MODEL_WARNINGS) for w in caught)


@pytest.fixture(scope="module")
def log():
    with only_model_warnings():
        return clv.load_transactions(load_cdnow(), timestamp="date")


def test_model_warnings_are_the_documented_classes():
    assert MODEL_WARNINGS == (clv.ConvergenceWarning, clv.PriorSensitivityWarning, clv.AssumptionWarning)


def test_fit_predict_backtest_and_report_raise_only_model_warnings(log, tmp_path):
    with only_model_warnings() as caught:
        rfm = clv.rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
        bgnbd = clv.BetaGeoModel().fit(rfm)
        spend = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
        clv.clv(bgnbd, spend, rfm, horizon=12, period="M", discount_rate=0.01, interval=0.9, seed=0)
        result = clv.backtest(log, {"BG/NBD": clv.BetaGeoModel()}, calibration_end="1997-09-30", time_unit="W",
                              n_samples=100, seed=0)   # with the three baselines (scikit-learn's boosting)
        path = clv.compare_report(result, tmp_path / "report.html")
    assert path.stat().st_size > 10_000
    # the report's Warnings section holds model warnings only
    findings = {"PredictiveWarning", "FitError", "IntervalMiss", "LargeTotalError"}  # the backtest's own
    assert set(result.warnings["category"]) <= {c.__name__ for c in MODEL_WARNINGS} | findings
    assert "BLAS" not in path.read_text()
    del caught


@pytest.mark.slow
def test_bayesian_fits_print_nothing_but_model_warnings(log, capfd):
    """PyTensor's BLAS search (Pareto/NBD's MAP optimises a matrix product), nutpie's deprecated
    arguments and PyMC's INFO lines (ADVI's "Convergence achieved at ...") stay out of the output."""
    rfm = clv.rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
    with only_model_warnings():
        clv.ParetoNBDModel().fit(rfm, method="map")
        clv.BetaGeoModel(draws=100, tune=100, chains=2, progressbar=False).fit(rfm, method="nuts")
        clv.BetaGeoModel(draws=100, progressbar=False).fit(rfm, method="advi", advi_iterations=2_000)
    out, err = capfd.readouterr()
    assert "BLAS" not in out + err and "Convergence achieved" not in out + err and "Interrupted at" not in out + err
    import pytensor

    assert pytensor.config.blas__ldflags == ""


def test_duplicate_rows_are_one_notice_line(caplog, cdnow_sample_raw):
    with only_model_warnings(), caplog.at_level(logging.WARNING, logger="clvmodels"):
        clv.load_transactions(cdnow_sample_raw, timestamp="date")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("clvmodels: 21 duplicate transaction row(s)") and "\n" not in line


def test_cli_backtest_prints_no_source_lines(log, tmp_path, capfd):
    source = tmp_path / "log.csv"
    log.to_csv(source, index=False)
    with only_model_warnings():
        code = cli.main(["backtest", str(source), "--calibration-end", "1997-09-30", "--out", str(tmp_path / "bt"),
                         "--models", "bgnbd", "--quiet"])
    assert code == 0
    out, err = capfd.readouterr()
    assert out.strip() == f"wrote {tmp_path / 'bt'}"
    # no "  frame = load_transactions(..." below a warning: every stderr line says what it is
    assert all(line.startswith(("clvmodels", "20")) for line in err.splitlines()), err


class _NoisyBetaGeo(clv.BetaGeoModel):
    """BG/NBD whose fit also emits a library's notice and a model warning."""

    def fit(self, rfm, **kwargs):
        import warnings as w

        w.warn("PyTensor could not link to a BLAS installation.", UserWarning)
        w.warn("the fit landed on a boundary", clv.ConvergenceWarning)
        return super().fit(rfm, **kwargs)


def test_backtest_records_only_model_warnings():
    """What the report's Warnings section shows: the model warning, not the library's notice."""
    from clvmodels.datasets import simulate

    log = clv.load_transactions(simulate(300, seed=2))
    cut = log["timestamp"].min() + (log["timestamp"].max() - log["timestamp"].min()) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clv.backtest(log, {"noisy": _NoisyBetaGeo()}, calibration_end=str(cut.date()), n_samples=50,
                              baselines={})
    fit_rows = result.warnings[result.warnings["model"] == "noisy"]
    assert "ConvergenceWarning" in set(fit_rows["category"])
    assert not fit_rows["message"].str.contains("BLAS").any() and "UserWarning" not in set(fit_rows["category"])
