"""One self-contained HTML report comparing the forecasts of a backtest.

:func:`compare_report` writes a single HTML file (plots embedded as base64 PNG, styles inline, no
script and no network access needed) with the data summary, the key findings (holdout totals and
whether the actual fell inside each predicted interval), metrics tables per target with the best
value marked, the tracking, conditional-expectation, calibration/PIT and lift plots, the models'
P(alive) and frequency/recency matrices, parameter tables with intervals, and every warning
(non-convergence, violated assumptions, missed intervals). :func:`report_html` returns the same
content as a string; a :class:`~clvmodels.backtest.BacktestResult` shows it inline in Jupyter. A
:class:`~clvmodels.retention.RetentionBacktestResult` (contractual retention, sBG) gets its own
sections: findings, holdout metrics, actual vs projected survivors, parameters and warnings.
"""

from __future__ import annotations

import base64
import html
import io
import os
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from . import plotting
from ._version import __version__
from .backtest import HTML_RENDERERS, BacktestResult, best_per_metric
from .errors import ClvDataError
from .io import atomic_file
from .retention import RetentionBacktestResult

#: Section ids of the report, in order (tests check that each is present).
SECTIONS = ("summary", "data", "metrics", "totals", "intervals", "tracking", "conditional", "calibration", "lift",
            "models", "parameters", "warnings")
#: How the report names the backtests' targets.
TARGET_NAMES = {"purchases": "purchases", "value": "value", "clv": "discounted CLV"}
#: Section ids of the report of a retention backtest, in order.
RETENTION_SECTIONS = ("summary", "metrics", "survivors", "parameters", "warnings")

_CSS = """
.clv-report { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
  max-width: 1250px; margin: 0 auto; padding: 0 1em 2em; line-height: 1.4; }
.clv-report h1 { border-bottom: 3px solid #2c5d8f; padding-bottom: .2em; }
.clv-report h2 { color: #2c5d8f; border-bottom: 1px solid #ccd; margin-top: 1.8em; }
.clv-report table { border-collapse: collapse; margin: .6em 0 1em; font-size: 13px; }
.clv-report th, .clv-report td { border: 1px solid #d4d8de; padding: 3px 8px; text-align: right; }
.clv-report th { background: #eef2f7; }
.clv-report td.name, .clv-report th.name { text-align: left; }
.clv-report td.best { background: #d8f0d8; font-weight: bold; }
.clv-report td.miss { background: #fbdada; color: #a00; font-weight: bold; }
.clv-report td.hit { background: #e4f4e4; }
.clv-report td.off { background: #fbdada; color: #a00; font-weight: bold; }
.clv-report td.near { background: #e4f4e4; }
.clv-report .note { color: #555; font-size: 13px; }
.clv-report .finding { padding: .5em .8em; margin: .4em 0; border-left: 5px solid #2c5d8f; background: #f3f6fa; }
.clv-report .finding.bad { border-color: #c0392b; background: #fdf0ee; }
.clv-report .warn { border-left: 5px solid #e0a800; background: #fff8e1; padding: .4em .8em; margin: .3em 0;
  font-size: 13px; white-space: pre-wrap; }
.clv-report img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.clv-report .row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
"""

_METRIC_LABELS = {
    "mae": "MAE", "rmse": "RMSE", "bias": "bias", "total_error_pct": "total error %", "spearman": "Spearman",
    "gini": "Gini", "top10_share": "top 10% share", "top20_share": "top 20% share",
    "coverage_50": "coverage 50%", "coverage_80": "coverage 80%", "coverage_90": "coverage 90%",
    "log_score": "log score", "crps": "CRPS",
}


def _esc(value) -> str:
    return html.escape(str(value))


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:,.{digits}f}"
    return _esc(value)


def figure_png(fig) -> str:
    """A matplotlib figure as an ``<img>`` tag with the PNG embedded in base64."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_esc(fig.axes[0].get_title() if fig.axes else "plot")}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, *, best: pd.Series | None = None, index_name: str = "",
           cell_class=None) -> str:
    head = f'<th class="name">{_esc(index_name)}</th>' + "".join(f"<th>{_esc(_METRIC_LABELS.get(c, c))}</th>"
                                                               for c in frame.columns)
    rows = []
    for idx, row in frame.iterrows():
        cells = [f'<td class="name">{_esc(idx)}</td>']
        for col, value in row.items():
            cls = []
            if best is not None and best.get(col) == idx:
                cls.append("best")
            if cell_class is not None:
                extra = cell_class(idx, col, value)
                if extra:
                    cls.append(extra)
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{_fmt(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _plot(fn, *args, **kwargs) -> str:
    """Embed a plot; a plot that cannot be drawn for this result says why instead."""
    try:
        fig = fn(*args, **kwargs)
    except ClvDataError as exc:
        return f'<p class="note">Plot not available: {_esc(exc)}</p>'
    return figure_png(fig)


# ---------------------------------------------------------------------------- sections
def _summary_section(result: BacktestResult) -> str:
    parts = []
    for _, r in result.totals[result.totals["kind"] == "model"].iterrows():
        interval = ""
        bad = abs(r["error_pct"]) > 10
        if np.isfinite(r["lower"]):
            verdict = "inside" if r["inside"] else "OUTSIDE"
            bad = bad or not r["inside"]
            interval = (f"; predicted {r['level']:.0%} interval [{r['lower']:,.0f}, {r['upper']:,.0f}]: "
                        f"the actual total is <b>{verdict}</b> it")
        parts.append(
            f'<div class="finding{" bad" if bad else ""}"><b>{_esc(r["model"])}</b>, calibration end '
            f'{_esc(r["cutoff"])}, holdout {_esc(r["target"])}: predicted total {r["predicted"]:,.0f} vs actual '
            f'{r["actual"]:,.0f} (<b>{r["error_pct"]:+.1f}%</b>){interval}.</div>')
    for target in TARGET_NAMES:
        if (result.metrics["target"] == target).any():
            table = result.table(target)
            if "mae" in table:
                best = table["mae"].idxmin()
                parts.append(f'<div class="finding">Lowest per-customer {TARGET_NAMES[target]} MAE'
                             f'{" (mean over cutoffs)" if len(result.cutoffs) > 1 else ""}: <b>{_esc(best)}</b> '
                             f'({table.loc[best, "mae"]:.3f}).</div>')
    return "".join(parts)


def _data_section(result: BacktestResult) -> str:
    frame = result.data.set_index("calibration_end").T
    frame.columns = [f"calibration end {c}" for c in frame.columns]
    return (_table(frame, index_name="") +
            '<p class="note">Customers are the cohort that bought in the calibration period; those whose '
            "first purchase falls in the holdout cannot be scored from calibration data and are excluded. "
            "Purchases on the same day count as one transaction; the first purchase is not a repeat.</p>")


def _metrics_section(result: BacktestResult) -> str:
    out = ['<p class="note">Per-customer errors of the holdout forecasts. Best value per column in '
           "<span style='background:#d8f0d8;font-weight:bold'>green</span>: lowest MAE, RMSE, |bias|, "
           "|total error|, log score and CRPS; highest Spearman, Gini and top-10%/20% shares (share of the "
           "actual holdout total held by the customers predicted highest); coverage closest to its nominal "
           "level (from the randomised PIT). Predictive scores (coverage, log score, CRPS) exist only for "
           "models with predictive distributions.</p>"]
    multi = len(result.cutoffs) > 1
    for target in TARGET_NAMES:
        if not (result.metrics["target"] == target).any():
            continue
        table = result.table(target)
        over = f" – mean over {len(result.cutoffs)} cutoffs" if multi else ""
        out.append(f"<h3>Holdout {TARGET_NAMES[target]}{over}</h3>")
        out.append(_table(table, best=best_per_metric(table), index_name="forecast"))
        if multi:
            for cutoff in result.cutoffs:
                t = result.table(target, cutoff)
                out.append(f"<h4>{target}, calibration end {_esc(cutoff)}</h4>")
                out.append(_table(t, best=best_per_metric(t), index_name="forecast"))
    return "".join(out)


def _intervals_section(result: BacktestResult) -> str:
    """Both kinds of per-customer 90% interval side by side, with the share of customers whose actual
    holdout value (and discounted value) each contains."""
    m = result.metrics[result.metrics["metric"].isin(["coverage_90", "expected_coverage_90"])
                       & result.metrics["target"].isin(["value", "clv"])]
    if m.empty:
        return ('<p class="note">No per-customer value intervals: they need amounts in the log, a spend model '
                "and a purchase model with a simulator.</p>")
    table = m.pivot_table(index=["model", "target"], columns="metric", values="value", aggfunc="mean", sort=False)
    table = table.reindex(columns=["coverage_90", "expected_coverage_90"])
    table.columns = ["predictive 90% interval", "expected-value 90% interval"]
    table.index = [f"{model}: holdout {TARGET_NAMES[target]}" for model, target in table.index]

    def mark(idx, col, value):  # within 0.05 of the nominal 0.90, or not
        return None if pd.isna(value) else ("near" if abs(value - 0.9) <= 0.05 else "off")

    return ('<p class="note">Share of customers whose actual holdout value lies in their 90% interval'
            f'{" (mean over cutoffs)" if len(result.cutoffs) > 1 else ""}; nominal: 0.90. The '
            "<b>predictive</b> interval (<code>clv(..., interval=0.9)</code>, <code>clv_lower</code>/"
            "<code>clv_upper</code>) describes what each customer will actually spend: process and parameter "
            "uncertainty (its coverage is read from the randomised PIT, so the atom at zero spend counts "
            "fairly). The <b>expected-value</b> interval (<code>kind=\"expected\"</code>, "
            "<code>clv_mean_lower</code>/<code>clv_mean_upper</code>) describes only how uncertain the "
            "<i>average</i> is (parameter uncertainty): it is not meant to contain what customers do, and its "
            "low coverage here shows why it must not be read as one.</p>"
            + _table(table, index_name="forecast", cell_class=mark))


def _totals_section(result: BacktestResult) -> str:
    totals = result.totals.copy()
    cols = ["cutoff", "target", "actual", "predicted", "error_pct", "lower", "upper", "inside",
            "plugin_lower", "plugin_upper"]
    frame = totals.set_index("model")[cols]

    def mark(idx, col, value):
        if col == "inside" and value is not pd.NA and not pd.isna(value):
            return "hit" if value else "miss"
        return None

    out = ['<p class="note">"lower"/"upper": the predicted total\'s interval with process and parameter '
           "uncertainty; \"plugin\": process uncertainty only, at the point estimate (Bayesian fits: each customer's "
           "posterior predictive), by exact convolution of the customers' predicted distributions. An actual total outside the interval is marked red: the model's "
           "uncertainty is understated there.</p>", _table(frame, index_name="forecast", cell_class=mark)]
    out.append('<div class="row">')
    for target in dict.fromkeys(totals["target"]):
        out.append(_plot(plotting.plot_totals, result, target=target))
    out.append("</div>")
    return "".join(out)


def _tracking_section(result: BacktestResult) -> str:
    if result.tracking is None or len(result.tracking) == 0:
        return '<p class="note">No model with a tracking series.</p>'
    return (_plot(plotting.plot_tracking, result) + _plot(plotting.plot_tracking, result, cumulative=True) +
            '<p class="note">Expected repeat transactions of the whole cohort, each customer from her first '
            "purchase on (unconditional expectation, FHL 2005 eq. 9), against the actual count per week.</p>")


def _models_section(result: BacktestResult) -> str:
    names = list(result.settings.get("models", {}))
    last = result.cutoffs[-1]
    out = []
    for name in names:
        model = result.models.get((last, name))
        if model is None:
            continue
        if "T" not in model.data_columns:
            out.append(f'<p class="note">{_esc(name)} counts discrete transaction opportunities: no '
                       "P(alive) or expected-purchase matrix over continuous recency.</p>")
            continue
        # up to the 99th percentile of frequency: the few heaviest buyers would squash the rest
        max_frequency = int(max(10, np.quantile(model.rfm_["frequency"], 0.99)))
        out.append(f"<h3>{_esc(name)}, calibration end {_esc(last)}</h3><div class='row'>")
        out.append(_plot(plotting.plot_probability_alive_matrix, model, max_frequency=max_frequency))
        out.append(_plot(plotting.plot_frequency_recency_matrix, model, t=1.0, max_frequency=max_frequency))
        out.append("</div>")
    return "".join(out) or '<p class="note">No fitted model.</p>'


def _parameters_section(result: BacktestResult) -> str:
    if result.parameters is None or len(result.parameters) == 0:
        return '<p class="note">No parameters (no model was fitted).</p>'
    out = []
    for (cutoff, model), part in result.parameters.groupby(["cutoff", "model"], sort=False):
        wide = part.pivot_table(index="parameter", columns="statistic", values="value", sort=False)
        out.append(f"<h4>{_esc(model)}, calibration end {_esc(cutoff)}</h4>")
        out.append(_table(wide, index_name="parameter"))
    return "".join(out)


def _warnings_section(result: BacktestResult) -> str:
    if len(result.warnings) == 0:
        return '<p class="note">No warnings: every fit converged and no assumption check failed.</p>'
    return "".join(
        f'<div class="warn"><b>{_esc(r["category"])}</b> – {_esc(r["model"])}, calibration end {_esc(r["cutoff"])}: '
        f'{_esc(r["message"])}</div>' for _, r in result.warnings.iterrows())


def _retention_sections(result: RetentionBacktestResult) -> dict:
    findings = []
    for (cohort, name), part in result.survivors.groupby(["cohort", "model"], sort=False):
        last = part.iloc[-1]
        mape = result.table(cohort).loc[name, "mape"]
        findings.append(f'<div class="finding{" bad" if mape > 10 else ""}"><b>{_esc(name)}</b>, cohort '
                        f'{_esc(cohort)}: period {int(last["period"])} survivors projected '
                        f'{last["predicted"]:,.0f} vs actual {last["actual"]:,.0f} (<b>{last["error_pct"]:+.1f}%</b>); '
                        f"holdout mean absolute error {mape:.1f}%.</div>")
    metrics = []
    for cohort in result.cohorts:
        table = result.table(cohort)
        metrics.append(f"<h3>Cohort {_esc(cohort)}</h3>"
                       + _table(table, best=best_per_metric(table), index_name="forecast"))
    survivors = []
    for cohort in result.cohorts:
        part = result.survivors[result.survivors["cohort"] == cohort]
        wide = part.pivot_table(index="period", columns="model", values="predicted", sort=False)
        wide.insert(0, "actual", part.groupby("period")["actual"].first())
        survivors.append(f"<h3>Cohort {_esc(cohort)}</h3><div class='row'>" + _table(wide, index_name="period")
                         + _plot(plotting.plot_survivors, result, cohort=cohort) + "</div>")
    params = "".join(f"<h4>{_esc(m)}, cohort {_esc(c)}</h4>"
                     + _table(part.pivot_table(index="parameter", columns="statistic", values="value", sort=False),
                              index_name="parameter")
                     for (c, m), part in result.parameters.groupby(["cohort", "model"], sort=False))
    warns = "".join(f'<div class="warn"><b>{_esc(r["category"])}</b> – {_esc(r["model"])}, cohort '
                    f'{_esc(r["cohort"])}: {_esc(r["message"])}</div>' for _, r in result.warnings.iterrows())
    return {
        "summary": ("Key findings", "".join(findings)),
        "metrics": ("Holdout errors of the projected survivors",
                    '<p class="note">Over the holdout periods: MAE in customers, mean absolute % error, and the '
                    "signed % error of the last period. The constant-churn baseline gives every customer the same "
                    "churn probability.</p>" + "".join(metrics)),
        "survivors": ("Survivors per period: actual vs projected", "".join(survivors)),
        "parameters": ("Parameters with intervals", params),
        "warnings": (f"Warnings ({len(result.warnings)})",
                     warns or '<p class="note">No warnings: every fit converged.</p>'),
    }


def _backtest_sections(result: BacktestResult) -> dict:
    return {
        "summary": ("Key findings", _summary_section(result)),
        "data": ("Data summary", _data_section(result)),
        "metrics": ("Metrics per forecast", _metrics_section(result)),
        "totals": ("Holdout totals and their intervals", _totals_section(result)),
        "intervals": ("Per-customer intervals: predictive vs expected value", _intervals_section(result)),
        "tracking": ("Tracking: repeat transactions per period", _tracking_section(result)),
        "conditional": ("Conditional expectations by calibration frequency",
                        _plot(plotting.plot_conditional_expectations, result)),
        "calibration": ("Calibration of the predictive distributions (PIT)",
                        _plot(plotting.plot_calibration, result, target="purchases")
                        + (_plot(plotting.plot_calibration, result, target="value")
                           if "pit_value" in result.predictions.columns else "")),
        "lift": ("Lift chart", "<div class='row'>" + "".join(
            _plot(plotting.plot_lift, result, target=t) for t in ("value", "purchases")
            if t in result.predictions.columns) + "</div>"),
        "models": ("Model diagnostics: P(alive) and expected purchases", _models_section(result)),
        "parameters": ("Parameters with intervals", _parameters_section(result)),
        "warnings": (f"Warnings ({len(result.warnings)})", _warnings_section(result)),
    }


def report_html(result, *, title: str | None = None, standalone: bool = True) -> str:
    """The comparison report of a :class:`BacktestResult` or a
    :class:`~clvmodels.retention.RetentionBacktestResult` as HTML: a full document (``standalone``) or a
    ``<div>`` for Jupyter."""
    if isinstance(result, BacktestResult):
        s = result.settings
        title = title or "CLV model comparison: backtest report"
        sections, order = _backtest_sections(result), SECTIONS
        note = (f"Cutoffs: {', '.join(map(_esc, result.cutoffs))}; time unit {_esc(s['time_unit'])}; "
                f"forecasts: {', '.join(map(_esc, result.model_names))}; seed {_esc(s['seed'])}")
    elif isinstance(result, RetentionBacktestResult):
        title = title or "Retention backtest report"
        sections, order = _retention_sections(result), RETENTION_SECTIONS
        note = (f"Cohorts: {', '.join(map(_esc, result.cohorts))}; fitted on periods 0–"
                f"{result.settings['calibration_periods']}")
    else:
        raise ClvDataError(f"Expected a BacktestResult (from clvmodels.backtest) or a RetentionBacktestResult, "
                           f"got {type(result).__name__}.")
    body = [f"<h1>{_esc(title)}</h1>", f'<p class="note">{note}; clvmodels {_esc(__version__)}.</p>']
    for key in order:
        heading, content = sections[key]
        body.append(f'<section id="{key}"><h2>{_esc(heading)}</h2>{content}</section>')
    div = f'<div class="clv-report"><style>{_CSS}</style>{"".join(body)}</div>'
    if not standalone:
        return div
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title></head><body>{div}</body></html>\n")


def compare_report(result, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the comparison report of a backtest to one self-contained HTML file, atomically.

    Parameters
    ----------
    result
        The :class:`~clvmodels.backtest.BacktestResult` of :func:`~clvmodels.backtest.backtest` or
        :func:`~clvmodels.backtest.discrete_backtest`, or the
        :class:`~clvmodels.retention.RetentionBacktestResult` of :func:`~clvmodels.retention.retention_backtest`.
    path
        Output file (``.html``); written to a temporary file first and renamed into place.
    title
        Heading of the report.

    Returns
    -------
    The path written.
    """
    text = report_html(result, title=title, standalone=True)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


HTML_RENDERERS[BacktestResult] = HTML_RENDERERS[RetentionBacktestResult] = partial(report_html, standalone=False)
