"""The CLV report: which model and why, the base's value with its interval, active customers, the
backtest's miss, segments (exported), top customers, captions, units and model-only warnings; and
the page in a headless browser."""

import base64
import os
import re
import shutil
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.backtest import BacktestResult
from clvmodels.clv_report import CLV_SECTIONS, concentration, default_segments
from clvmodels.datasets import load_cdnow
from clvmodels.errors import ClvDataError
from clvmodels.report import MODEL_WARNINGS, recommend_model, recommendation_text


@pytest.fixture(scope="module")
def log():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clv.load_transactions(load_cdnow(sample=True), timestamp="date")


@pytest.fixture(scope="module")
def result(log):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = clv.backtest(log, {"BG/NBD": clv.BetaGeoModel(), "Pareto/NBD": clv.ParetoNBDModel()},
                           calibration_end="1997-09-30", n_samples=200, seed=2)
    # environment noise that a fit may have caught: never a model warning
    noise = pd.DataFrame([{"cutoff": "1997-09-30", "model": "BG/NBD", "category": "UserWarning",
                           "message": "WARNING (pytensor.tensor.blas): Using NumPy C-API based implementation for BLAS"}])
    res.warnings = pd.concat([res.warnings, noise], ignore_index=True)
    return res


@pytest.fixture(scope="module")
def report(result, log, tmp_path_factory):
    out = tmp_path_factory.mktemp("clv_report")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clv.clv_report(result, log, out / "report.html", export=out / "segments.csv", n_samples=400, seed=3)


@pytest.fixture(scope="module")
def html(report):
    return report.html


def test_every_section_in_order_self_contained(html):
    positions = [html.index(f'<section id="{s}">') for s in CLV_SECTIONS]
    assert positions == sorted(positions)
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<script" not in html and "<link" not in html and "url(" not in html
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Plot not available" not in html


def test_every_chart_is_captioned_and_no_two_share_a_title(html):
    figures = re.findall(r"<figure>(.*?)</figure>", html, flags=re.S)
    images = re.findall(r"<img ", html)
    assert len(figures) == len(images) >= 15
    assert all(re.search(r"<figcaption>[^<]{40,}", f) for f in figures)
    titles = re.findall(r'<img alt="([^"]*)"', html)
    assert len(set(titles)) == len(titles), titles
    for expected in ("Customers by number of repeat purchases", "purchases and probability alive over time",
                     "Expected CLV per customer", "Lift of holdout value", "Lift of holdout purchases"):
        assert any(expected in t for t in titles), expected


def test_headline_answers_which_model_how_much_and_how_sure(report, result, html):
    head = html[html.index('<section id="headline">'):html.index('<section id="value">')]
    choice = recommend_model(result)
    assert report.model == choice.index[choice["recommended"]][0]
    assert f'<div class="a">{report.model}' in head
    total = report.total.iloc[0]
    assert f"${total['mean']:,.0f}" in head and f"${total['lower']:,.0f} – ${total['upper']:,.0f}" in head
    assert "90% predictive interval" in head and "parameter uncertainty" in head
    active = report.active.iloc[0]
    assert f"{active['mean']:,.0f} of {len(report.customers):,}" in head
    miss = result.totals.query("model == @report.model and target == 'value'").iloc[-1]
    assert f"{miss['error_pct']:+.1f}%" in head and f"${miss['actual']:,.0f}" in head
    assert "39 weeks" in head and "per month" in head
    once = report.customers.loc[report.customers["frequency"] == 0, "p_alive"]
    assert (f"counts the {len(once):,} customers who never bought again as active" in head) == (once.min() == 1.0)
    for raw in ("holdout_length", "total_error_pct", "customers_with_repeat_purchases", "time unit W"):
        assert raw not in html


def test_the_numbers_add_up(report, log):
    c = report.customers
    total = report.total.iloc[0]
    np.testing.assert_allclose(total["mean"], c["clv_mean"].sum(), rtol=1e-9)  # the same simulated futures
    assert total["lower"] < total["mean"] < total["upper"]
    seg = report.segments
    assert seg["customers"].sum() == len(c)
    np.testing.assert_allclose(seg["expected_clv"].sum(), total["mean"], rtol=1e-9)
    np.testing.assert_allclose(seg["share_of_value"].sum(), 1.0)
    np.testing.assert_allclose(seg["expected_active"].sum(), c["p_alive"].sum())
    for label, row in seg.iterrows():
        np.testing.assert_allclose(row["expected_clv"], c.loc[c["segment"] == label, "clv_mean"].sum(), rtol=1e-9)
        assert row["clv_lower"] <= row["expected_clv"] <= row["clv_upper"]
    # P(alive) x value tiers: the top 10% tier holds the customers with the highest expected CLV
    top = c[c["segment"].str.endswith("top 10% by value")]
    assert len(top) == round(0.1 * len(c))
    assert np.all(c.loc[c["p_alive"] >= 0.7, "segment"].str.startswith("likely active"))
    # value concentration from the customers' expected CLV
    shares = np.sort(c["clv_mean"].to_numpy())[::-1].cumsum() / c["clv_mean"].sum()
    np.testing.assert_allclose(report.concentration[0.1], shares[round(0.1 * len(c)) - 1])
    assert report.concentration[0.01] < report.concentration[0.1] < report.concentration[0.2] < 1
    # the active customers: the sum of P(alive), with a predictive interval
    # (its mean is that of Σ P(alive) over parameter draws: P(alive) is not linear in the parameters)
    active = report.active.iloc[0]
    p = c["p_alive"].to_numpy()
    model = {"BG/NBD": clv.BetaGeoModel, "Pareto/NBD": clv.ParetoNBDModel}[report.model]()
    model.fit(clv.rfm_summary(log, time_unit="W"))
    draws = {k: np.asarray(v)[:, None] for k, v in model.parameter_draws(400, seed=0).items()}
    per_draw = model.probability_alive_formula(draws, **{k: c[k].to_numpy(float) for k in model.data_columns}).sum(axis=1)
    error = np.sqrt(per_draw.var() / 200 + np.sum(p * (1 - p)) / 400)    # the report's 200 draws, 400 futures
    assert abs(active["mean"] - per_draw.mean()) < 5 * error + 2
    assert active["lower"] < p.sum() < active["upper"]


def test_top_customers_and_segments_are_listed(report, html):
    section = html[html.index('<section id="customers">'):html.index('<section id="choice">')]
    ids = report.customers.sort_values("clv_mean", ascending=False).index[:20]
    positions = [section.index(f'<td class="name">{i}</td>') for i in ids]
    assert positions == sorted(positions)
    best = report.customers.loc[ids[0]]
    assert f"${best['clv_lower']:,.2f} – ${best['clv_upper']:,.2f}" in section
    seg = html[html.index('<section id="segments">'):html.index('<section id="customers">')]
    for label in report.segments.index:
        assert f">{label}</td>" in seg


def test_segment_export_is_atomic_and_never_over_an_input(report, log, tmp_path):
    csv = report.export_segments(tmp_path / "segments.csv")
    back = pd.read_csv(csv, index_col="segment")
    pd.testing.assert_frame_equal(back, report.segments, check_dtype=False, check_exact=False, check_names=False)
    pq = report.export_segments(tmp_path / "segments.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(pq), report.segments, check_names=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segments.csv", "segments.parquet"]
    source = tmp_path / "log.csv"
    log.to_csv(source, index=False)
    before = source.read_bytes()
    report.inputs.append(source)
    try:
        with pytest.raises(ClvDataError, match="never overwrites an input"):
            report.export_segments(source)
        with pytest.raises(ClvDataError, match="never overwrites an input"):
            report.save(source)
    finally:
        report.inputs.remove(source)
    assert source.read_bytes() == before


def test_warnings_section_holds_only_model_warnings(result, html):
    section = html[html.index('<section id="warnings">'):]
    assert "BLAS" not in section and "UserWarning" not in section
    categories = set(result.warnings["category"]) & set(MODEL_WARNINGS)
    assert "IntervalMiss" in categories
    for category in categories:
        assert f"<b>{category}</b>" in section
    shown = re.search(r"Warnings \((\d+)\)", html).group(1)
    assert int(shown) == len(re.findall(r'<div class="warn">', section)) >= 1


def test_inline_in_jupyter(report):
    inline = report._repr_html_()
    assert inline.startswith('<div class="clv-report">') and "<html" not in inline
    assert all(f'<section id="{s}">' in inline for s in CLV_SECTIONS)


def test_user_segments(result, log):
    rfm = clv.rfm_summary(log, time_unit="W")
    labels = pd.Series(np.where(rfm["frequency"] > 0, "repeat buyers", "one-time buyers"), index=rfm.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ruled = clv.clv_report(result, log, n_samples=50, seed=0).model     # the rule's choice
        other = "BG/NBD" if ruled == "Pareto/NBD" else "Pareto/NBD"
        rep = clv.clv_report(result, log, segments=labels, n_samples=100, seed=0, model=other)
    assert rep.model == other and f"chosen by the caller; the rule would pick {ruled}" in rep.html
    assert list(rep.segments.index) == ["repeat buyers", "one-time buyers"]
    assert rep.segments["customers"].to_dict() == labels.value_counts().to_dict()
    assert "Segments as given" in rep.html


def _result(rows, totals):
    metrics = pd.DataFrame([{"cutoff": "c", "model": m, "kind": k, "target": "value", "metric": metric, "value": v}
                            for m, k, values in rows for metric, v in values.items()])
    return BacktestResult(metrics=metrics, totals=pd.DataFrame(totals).astype({"inside": "boolean"}),
                          predictions=pd.DataFrame(), tracking=pd.DataFrame(), conditional=pd.DataFrame(),
                          parameters=pd.DataFrame(), warnings=pd.DataFrame(), data=pd.DataFrame({"calibration_end": ["c"]}),
                          settings={"models": {"A": "X", "B": "X"}})


def test_recommendation_never_picks_the_lowest_mae_despite_a_large_total_error():
    """The issue's case: the forecast with the lowest MAE misses the total by -28.6%."""
    res = _result([("A", "model", {"mae": 1.0, "total_error_pct": -28.6, "coverage_90": 0.90, "crps": 0.50}),
                   ("B", "model", {"mae": 1.2, "total_error_pct": 3.0, "coverage_90": 0.88, "crps": 0.60}),
                   ("gradient boosting", "baseline", {"mae": 0.9, "total_error_pct": -28.6})],
                  [{"cutoff": "c", "model": m, "target": "value", "inside": inside} for m, inside in
                   (("A", False), ("B", True), ("gradient boosting", pd.NA))])
    choice = recommend_model(res)
    assert choice["recommended"].tolist() == [False, True, False]
    assert choice.loc["A", "problems"] == ["holdout total -28.6% off (limit ±10%)",
                                           "actual total outside its predicted interval"]
    name, why = recommendation_text(choice, "$")
    assert name == "B"
    assert "gradient boosting has a lower MAE (0.90) but misses the holdout total by -28.6%" in why
    assert "gives no intervals or CLV" in why
    # equal problems: the lower CRPS decides
    res = _result([("A", "model", {"mae": 1.0, "total_error_pct": 2.0, "coverage_90": 0.90, "crps": 0.70}),
                   ("B", "model", {"mae": 1.2, "total_error_pct": 3.0, "coverage_90": 0.88, "crps": 0.60})],
                  [{"cutoff": "c", "model": m, "target": "value", "inside": True} for m in "AB"])
    assert recommend_model(res)["recommended"].tolist() == [False, True]


def test_default_segments_and_concentration():
    p = pd.Series([0.9, 0.5, 0.1, 0.95, 0.2] * 4)
    v = pd.Series(np.arange(20.0))
    seg = default_segments(p, v)
    assert seg[19] == "likely lost · top 10% by value" and seg[18] == "likely active · top 10% by value"
    assert (seg.str.endswith("next 40%")).sum() == 8 and (seg.str.endswith("bottom 50%")).sum() == 10
    assert seg[2] == "likely lost · bottom 50%"
    c = concentration(v)
    assert c[0.1] == pytest.approx((19 + 18) / v.sum()) and c[0.01] == pytest.approx(19 / v.sum())


def test_report_refuses_a_purchases_only_backtest(log):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = clv.backtest(log.drop(columns="amount"), calibration_end="1997-09-30", baselines={}, seed=0)
    with pytest.raises(ClvDataError, match="compare_report"):
        clv.clv_report(res, log)


# ---------------------------------------------------------------------------- headless browser
def _browser():
    for name in (os.environ.get("CLV_BROWSER"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CLV_REQUIRE_BROWSER"):
        pytest.fail("CLV_REQUIRE_BROWSER is set but no Chromium was found (apt-get install chromium).")
    pytest.skip("No headless Chromium installed (apt-get install chromium, or set CLV_BROWSER).")


def _render(browser, page, *args):
    """Chromium's DOM of ``page`` after load and the console messages it logged."""
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--enable-logging=stderr", "--window-size=1400,900", *args, page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


def test_report_in_a_headless_browser(report, tmp_path):
    browser = _browser()
    # the check can fail: a page with a script error is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in line for line in _render(browser, broken, "--dump-dom")[1])

    page = tmp_path / "report.html"
    page.write_text(report.html, encoding="utf-8")
    dom, console = _render(browser, page, "--dump-dom")
    assert console == []
    for section in CLV_SECTIONS:
        assert f'<section id="{section}">' in dom
    # the first screen: the whole summary lies above the fold of a 1400 x 900 window
    probe = tmp_path / "probe.html"
    probe.write_text(report.html.replace(
        "</body>", "<script>document.body.dataset.bottom = Math.ceil(document.getElementById('headline')"
        ".getBoundingClientRect().bottom);</script></body>"), encoding="utf-8")
    dom, console = _render(browser, probe, "--dump-dom")
    bottom = int(re.search(r'data-bottom="(\d+)"', dom).group(1))
    assert console == [] and 300 < bottom <= 900
    shot = tmp_path / "first_screen.png"
    _render(browser, page, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
