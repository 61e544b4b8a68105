"""The HTML comparison report: one self-contained file with every section, image and marking."""

import base64
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import load_cdnow
from clvmodels.errors import ClvDataError
from clvmodels.report import SECTIONS, compare_report, report_html


@pytest.fixture(scope="module")
def result():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
        return clv.backtest(log, calibration_end=["1997-08-31", "1997-09-30"], t=26, n_samples=200, seed=2)


@pytest.fixture(scope="module")
def text(result, tmp_path_factory):
    path = compare_report(result, tmp_path_factory.mktemp("report") / "compare.html", title="CDNOW sample")
    return path.read_text(encoding="utf-8")


def test_report_has_every_section_in_order(text):
    positions = [text.index(f'<section id="{s}">') for s in SECTIONS]
    assert positions == sorted(positions)
    assert text.startswith("<!DOCTYPE html>") and "<title>CDNOW sample</title>" in text


def test_report_is_self_contained(text):
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<script" not in text and "<link" not in text and "@import" not in text and "url(" not in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    # totals x3 (purchases, value, discounted CLV), tracking x2, conditional, calibration x2 (purchases, value),
    # lift x2, P(alive) and F/R matrices
    assert len(images) == 12
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Plot not available" not in text


def test_best_values_and_misses_are_marked(result, text):
    for cutoff in result.cutoffs:
        assert f"calibration end {cutoff}" in text
    table = result.table("purchases")
    best_mae = table["mae"].min()
    assert f'<td class="best">{best_mae:.3f}</td>' in text
    best_crps = table["crps"].dropna()
    assert len(best_crps) == 1 and f'<td class="best">{best_crps.iloc[0]:.3f}</td>' in text
    misses = result.totals["inside"].eq(False).sum()
    assert misses >= 1 and text.count('class="miss"') == misses
    assert text.count("<b>does not contain</b> the actual total") == misses
    assert "IntervalMiss" in text


def test_both_kinds_of_interval_side_by_side(result, text):
    """The report shows the predictive and the expected-value interval's coverage of holdout value
    next to each other, the expected value's visibly low (marked off its nominal level)."""
    section = text[text.index('<section id="intervals">'):text.index('<section id="tracking">')]
    assert "predictive 90% interval" in section and "expected-value 90% interval" in section
    assert "BG/NBD: holdout value" in section and "BG/NBD: holdout discounted CLV" in section
    table = result.table("value")
    assert table.loc["BG/NBD", "expected_coverage_90"] < 0.3 < 0.8 < table.loc["BG/NBD", "coverage_90"]
    assert f'<td class="off">{table.loc["BG/NBD", "expected_coverage_90"]:.3f}</td>' in section
    assert f'>{table.loc["BG/NBD", "coverage_90"]:.3f}</td>' in section


def test_inline_display_in_jupyter(result):
    inline = result._repr_html_()
    assert inline.startswith('<div class="clv-report">') and "<html" not in inline
    assert all(f'<section id="{s}">' in inline for s in SECTIONS)


def test_report_write_is_atomic(result, tmp_path, monkeypatch):
    from pathlib import Path

    target = tmp_path / "report.html"
    target.write_text("previous report")

    def broken_write(self, data, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(data[:100])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken_write)
    with pytest.raises(OSError, match="disk full"):
        compare_report(result, target)
    monkeypatch.undo()
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(ClvDataError, match="BacktestResult"):
        report_html(pd.DataFrame())


def test_degenerate_data_reports_failures_instead_of_crashing(tmp_path):
    """Nobody buys twice: BG/NBD's estimate runs to a boundary and Gamma-Gamma cannot be fitted;
    the backtest records both and the report still renders, with the warnings listed."""
    rng = np.random.default_rng(0)
    n = 300
    first = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    log = pd.DataFrame({"customer_id": np.arange(n), "timestamp": first, "amount": rng.gamma(2, 10, n)})
    extra = pd.DataFrame({"customer_id": [0, 1], "timestamp": pd.to_datetime(["2020-04-05", "2020-04-14"]),
                          "amount": [5.0, 6.0]})
    log = clv.load_transactions(pd.concat([log, extra], ignore_index=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = clv.backtest(log, calibration_end="2020-03-31", t=2, seed=0)
    categories = set(res.warnings["category"])
    assert "FitError" in categories  # Gamma-Gamma: no customer with repeat purchases
    assert "ConvergenceWarning" in categories  # BG/NBD at a boundary
    assert res.totals.query("target == 'purchases'")["actual"].iloc[0] == 2
    html = compare_report(res, tmp_path / "degenerate.html").read_text()
    assert all(f'<section id="{s}">' in html for s in SECTIONS)
    assert "FitError" in html


def test_parameter_columns_read_in_words():
    from clvmodels.report import statistic_label

    assert [statistic_label(c) for c in ("se", "lower_95%", "upper_95%", "hdi_3%", "ess_bulk", "r_hat", "estimate")] == [
        "standard error", "95% interval lower", "95% interval upper", "HDI 3%", "effective sample size (bulk)", "R-hat",
        "estimate"]


def test_findings_state_their_rule_and_units(text):
    summary = text[text.index('<section id="summary">'):text.index('<section id="data">')]
    assert "Recommended model: <b>" in summary and "Lowest per-customer" not in summary
    assert "the ±10% limit" in summary and "A forecast has a problem when" in summary
    data = text[text.index('<section id="data">'):text.index('<section id="metrics">')]
    assert "Holdout period</td>" in data and "26 weeks" in data and "holdout_length" not in data
    assert "MAE ($ per customer)" in text and "MAE (purchases per customer)" in text
    assert "holdout clv" not in text and "discounted CLV total" in text
