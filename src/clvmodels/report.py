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
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from . import plotting
from ._version import __version__
from .backtest import HTML_RENDERERS, BacktestResult, best_per_metric
from .errors import ClvDataError
from .io import atomic_file
from .models.timevarying import coefficient_name, piece_columns
from .retention import RetentionBacktestResult
from .units import UNIT_NAMES

#: Section ids of the report, in order (tests check that each is present).
SECTIONS = ("summary", "data", "metrics", "totals", "intervals", "tracking", "conditional", "calibration", "lift",
            "models", "parameters", "covariates", "glossary", "warnings")
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
.clv-report .finding.good { border-color: #2e8b57; background: #eef8f1; }
.clv-report figure { margin: .5em 0 1.2em; }
.clv-report figcaption { color: #444; font-size: 13px; max-width: 900px; }
.clv-report dl.glossary dt { font-weight: bold; margin-top: .5em; }
.clv-report dl.glossary dd { margin-left: 1.5em; }
.clv-report .warn { border-left: 5px solid #e0a800; background: #fff8e1; padding: .4em .8em; margin: .3em 0;
  font-size: 13px; white-space: pre-wrap; }
.clv-report img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.clv-report .row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
"""

_METRIC_LABELS = {
    "mae": "MAE", "rmse": "RMSE", "bias": "bias", "total_error_pct": "total error %", "spearman": "Spearman",
    "gini": "Gini", "top10_share": "top 10% share", "top20_share": "top 20% share",
    "coverage_50": "coverage 50%", "coverage_80": "coverage 80%", "coverage_90": "coverage 90%",
    "log_score": "log score", "crps": "CRPS", "expected_coverage_90": "expected-value coverage 90%",
    "mape": "mean abs. % error", "final_error_pct": "last-period error %",
}
#: Metrics measured in the target's unit (purchases, or money, per customer).
_IN_TARGET_UNIT = ("mae", "rmse", "bias", "crps")

#: Plain-language definitions of the report's terms (the glossary section).
GLOSSARY = {
    "Calibration and holdout periods": "The model is fitted on the calibration period only and then predicts the "
    "holdout period that follows; comparing the prediction with what customers actually did there is the backtest.",
    "P(alive)": "The probability that a customer has not yet (silently) stopped buying, given when and how often she "
    "bought. BG/NBD-type models never see a customer without repeat purchases drop out, so they count all of them "
    "as alive.",
    "CLV (customer lifetime value)": "What a customer will spend over the forecast horizon, each period's spend "
    "discounted at the discount rate per period. <i>Expected CLV</i> is its average over possible futures.",
    "Predictive interval": "The range in which the realised value will fall with the stated probability (e.g. 90%): it "
    "includes both the randomness of customers' behaviour and the uncertainty of the model's parameters.",
    "Expected-value interval": "The range of the <i>average</i> value allowed by parameter uncertainty alone; much "
    "narrower, and not a range for what a customer or the base will actually spend.",
    "Total error %": "(predicted total − actual total) / actual total of the holdout, in percent. Negative: the "
    "forecast was too low.",
    "MAE": "Mean absolute error: the average over customers of |predicted − actual|, in the target's unit "
    "(purchases or money per customer). Lower is better.",
    "RMSE": "Root mean squared error, in the target's unit; weighs large misses more than MAE.",
    "Bias": "Mean of (predicted − actual) per customer: systematic over- (positive) or under-prediction.",
    "Spearman": "Rank correlation between predicted and actual values (−1 to 1): how well the forecast orders "
    "customers. Higher is better.",
    "Gini": "How well the predicted ranking concentrates the actual value on the top customers (0: random, 1: "
    "perfect).",
    "Top 10% / 20% share": "Share of the actual holdout total made by the 10% (20%) of customers the forecast ranked "
    "highest.",
    "Coverage": "Share of customers whose actual value lies inside their central predictive interval of a given "
    "level. A 90% interval should hold about 90% of customers; much less means the forecast is over-confident.",
    "PIT": "Probability integral transform: where each actual value falls within its predicted distribution (0 to 1). "
    "For a calibrated forecast the PIT values are spread evenly (a flat histogram); a U shape means too narrow, a "
    "hump too wide, a slope biased. Randomised for counts, so that ties at zero are fair.",
    "Log score": "Minus the average log of the probability the forecast gave to what happened; lower is better.",
    "CRPS": "Continuous ranked probability score: the error of the whole predicted distribution, in the target's "
    "unit (it equals the absolute error for a point forecast). Lower is better.",
    "Lift (cumulative gains)": "Share of the actual holdout total captured by the top x% of customers ranked by the "
    "forecast.",
    "Value concentration": "Share of the total expected CLV held by the top 1%, 10% or 20% of customers.",
    "Covariate coefficient": "How a customer attribute (a covariate, e.g. channel or first-order value) shifts a "
    "model parameter: the parameter of a customer is the population's times exp(coefficient × her value of the "
    "attribute). <i>Per unit</i>, exp(coefficient) is the factor per unit of the attribute (for a category: that "
    "category against the baseline one): e.g. a purchase-rate factor of 1.3 means 30% more purchases per week, "
    "0.8 means 20% fewer. Coefficients are fitted on standardised attributes (mean 0, standard deviation 1) and "
    "also shown per unit of the attribute as given. An interval that contains 0 (a factor of 1) means the data "
    "cannot tell the direction of the effect.",
    "Time-varying covariate": "A covariate that changes over the calendar (a holiday season, a promotion, a "
    "yearly cycle), the same for all customers or per customer: while it holds, the purchase rate (for "
    "Pareto/NBD also the drop-out rate) is multiplied by exp(coefficient × its value). \"Purchases run 2x as fast "
    "when holiday = 1\" means twice the purchases in holiday weeks, for the same customers.",
    "Likelihood-ratio test": "Whether a model with covariates fits the calibration data better than the same model "
    "without them by more than chance: the statistic is twice the gain in log-likelihood, compared with a "
    "chi-squared law with as many degrees of freedom as there are coefficients. A small p-value (e.g. below 0.05) "
    "means the covariates explain real differences between customers; the holdout metrics show whether that "
    "also improves the forecast.",
}

#: Warning categories that are about the models and forecasts (the report's Warnings section shows
#: only these; messages of other libraries or of the environment are left out).
MODEL_WARNINGS = ("ConvergenceWarning", "PriorSensitivityWarning", "AssumptionWarning", "FitError", "IntervalMiss",
                  "LargeTotalError", "PredictiveWarning")
#: A forecast whose holdout total is off by more than this (in %) is marked as a problem.
TOTAL_ERROR_LIMIT = 10.0
#: A 90% interval whose coverage is further than this from 0.90 is marked as a problem.
COVERAGE_TOLERANCE = 0.05


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
           cell_class=None, unit: str | None = None, text_columns=()) -> str:
    """An HTML table of ``frame``; metric columns get their label (and ``unit``, where they are in the
    target's unit); ``text_columns`` are aligned left."""
    def label(c):
        text = _METRIC_LABELS.get(c, c)
        return f"{text} ({unit})" if unit and c in _IN_TARGET_UNIT else text

    head = f'<th class="name">{_esc(index_name)}</th>' + "".join(f"<th>{_esc(label(c))}</th>" for c in frame.columns)
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
            if col in text_columns:
                cls.append("name")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{_fmt(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _plot(fn, *args, caption: str, **kwargs) -> str:
    """Embed a plot with its caption (HTML: what it shows and how to read it); a plot that cannot be
    drawn for this result says why instead."""
    try:
        fig = fn(*args, **kwargs)
    except ClvDataError as exc:
        return f'<p class="note">Plot not available: {_esc(exc)}</p>'
    return f"<figure>{figure_png(fig)}<figcaption>{caption}</figcaption></figure>"


# ---------------------------------------------------------------------------- units and labels
#: How the data summary's fields read in the report: label, and the kind of unit of the value.
DATA_LABELS = {
    "calibration_start": ("First transaction", None), "calibration_end": ("Calibration period ends", None),
    "holdout_end": ("Holdout period ends", None), "holdout_length": ("Holdout period", "time"),
    "time_unit": ("Time unit of the models", "unit"), "customers": ("Customers (bought in the calibration period)", None),
    "customers_with_repeat_purchases": ("… of whom bought again in the calibration period", None),
    "new_customers_in_holdout_excluded": ("New customers in the holdout (not scored)", None),
    "calibration_repeat_transactions": ("Repeat transactions in the calibration period", None),
    "holdout_transactions": ("Repeat transactions in the holdout period", None),
    "log_rows": ("Rows in the transaction log", None), "duplicate_rows": ("Duplicate rows dropped", None),
    "refunds": ("Refund rows netted", None), "holdout_value": ("Holdout spend of these customers", "money"),
    "calibration_mean_repeat_spend": ("Mean repeat-purchase spend in the calibration period", "money"),
    "customers_without_covariates": ("Customers without covariates (left out)", None),
    "covariate_rows_unmatched": ("Covariate rows of no customer of this cohort", None),
}


def unit_name(unit: str) -> str:
    """A time unit spelled out ("weeks")."""
    return UNIT_NAMES.get(unit, str(unit))


def money(value, currency: str, digits: int = 0) -> str:
    """An amount with its currency, e.g. ``$1,234`` (``–`` when not finite)."""
    if value is None or not np.isfinite(value):
        return "–"
    sign = "−" if value < 0 else ""
    return f"{sign}{_esc(currency)}{abs(value):,.{digits}f}"


def target_unit(target: str, currency: str) -> str:
    """The unit of a per-customer error of ``target``."""
    return "purchases per customer" if target == "purchases" else f"{currency} per customer"


def _target_amount(target: str, value: float, currency: str) -> str:
    return f"{value:,.0f} purchases" if target == "purchases" else money(value, currency)


# ---------------------------------------------------------------------------- which model
def recommend_model(result: BacktestResult) -> pd.DataFrame:
    """Which model to use, by several criteria of the backtest, with the rule applied.

    One row per forecast (models, then baselines), on the holdout value (spend) when the backtest
    has it, else on purchases, averaged over cutoffs: ``total_error_pct``, ``inside`` (the actual
    total inside the model's predicted interval at every cutoff), ``mae``, ``coverage_90``,
    ``spearman``, ``crps``, ``problems`` (plain-language list) and ``recommended``.

    The rule (also in ``attrs["rule"]``): a forecast has a problem when its holdout total is off by
    more than :data:`TOTAL_ERROR_LIMIT` %, when the actual total lies outside its predicted
    interval, or when its 90% intervals hold a share of customers further than
    :data:`COVERAGE_TOLERANCE` from 0.90. Among the models (baselines give neither intervals nor
    CLV), the one with the fewest problems is recommended; ties go to the lowest CRPS (the error of
    the whole predicted distribution), then the lowest MAE.
    """
    metrics = result.metrics
    # on value where a model forecasts it (a spend model was fitted), else on purchases
    targets = set(metrics.loc[metrics["kind"] == "model", "target"]) if len(metrics) else set()
    target = "value" if "value" in targets else "purchases"
    table = result.table(target)
    totals = result.totals[result.totals["target"] == target]
    rows = []
    for name in table.index:
        kind = "model" if name in result.settings.get("models", {}) else "baseline"
        get = lambda col: float(table.loc[name, col]) if col in table.columns else np.nan  # noqa: E731
        inside = totals.loc[totals["model"] == name, "inside"]
        inside = pd.NA if inside.isna().all() else bool(inside.dropna().all())
        problems = []
        error = get("total_error_pct")
        if np.isfinite(error) and abs(error) > TOTAL_ERROR_LIMIT:
            problems.append(f"holdout total {error:+.1f}% off (limit ±{TOTAL_ERROR_LIMIT:g}%)")
        if inside is False:
            problems.append("actual total outside its predicted interval")
        coverage = get("coverage_90")
        if np.isfinite(coverage) and abs(coverage - 0.9) > COVERAGE_TOLERANCE:
            problems.append(f"its 90% intervals hold {coverage:.0%} of customers (target "
                            f"{0.9 - COVERAGE_TOLERANCE:.0%}–{0.9 + COVERAGE_TOLERANCE:.0%})")
        rows.append({"forecast": name, "kind": kind, "total_error_pct": error, "inside": inside, "mae": get("mae"),
                     "coverage_90": coverage, "spearman": get("spearman"), "crps": get("crps"),
                     "problems": problems})
    frame = pd.DataFrame(rows).set_index("forecast") if rows else pd.DataFrame(
        columns=["kind", "total_error_pct", "inside", "mae", "coverage_90", "spearman", "crps", "problems"])
    frame["recommended"] = False
    models = frame[frame["kind"] == "model"]
    if len(models):
        order = models.assign(n_problems=models["problems"].map(len),
                              crps_key=models["crps"].fillna(np.inf), mae_key=models["mae"].fillna(np.inf))
        best = order.sort_values(["n_problems", "crps_key", "mae_key"], kind="stable").index[0]
        frame.loc[best, "recommended"] = True
    frame.attrs.update(target=target, rule=(
        f"A forecast has a problem when its holdout {TARGET_NAMES[target]} total is off by more than "
        f"±{TOTAL_ERROR_LIMIT:g}%, when the actual total lies outside its predicted interval, or when its 90% "
        f"intervals hold fewer than {0.9 - COVERAGE_TOLERANCE:.0%} or more than {0.9 + COVERAGE_TOLERANCE:.0%} of "
        "customers. Among the models (baselines give neither intervals nor a CLV), the one with the fewest problems "
        "is recommended; ties go to the lowest CRPS, then the lowest MAE."))
    return frame


def recommendation_text(choice: pd.DataFrame, currency: str) -> tuple[str | None, str]:
    """The recommended model's name and why, in plain language (HTML), from :func:`recommend_model`."""
    target = choice.attrs["target"]
    if not choice["recommended"].any():
        return None, "No model could be fitted: see the Warnings section."
    name = choice.index[choice["recommended"]][0]
    r = choice.loc[name]
    unit = target_unit(target, currency)
    why = [f"holdout {TARGET_NAMES[target]} total {r['total_error_pct']:+.1f}% off"
           + (" (within" if abs(r["total_error_pct"]) <= TOTAL_ERROR_LIMIT else " (beyond")
           + f" the ±{TOTAL_ERROR_LIMIT:g}% limit)"]
    if not pd.isna(r["inside"]):
        why.append("actual total " + ("inside" if r["inside"] else "outside") + " its predicted interval")
    if np.isfinite(r["coverage_90"]):
        why.append(f"its 90% intervals hold {r['coverage_90']:.0%} of customers (target 90%)")
    ranked = choice["spearman"].rank(ascending=False)
    if np.isfinite(r["spearman"]):
        why.append(f"ranks customers with Spearman {r['spearman']:.2f} ({_ordinal(int(ranked[name]))} of {len(choice)})")
    why.append(f"per-customer error (MAE) {r['mae']:.2f} {unit}")
    others = [n for n in choice.index[choice["mae"] < r["mae"]]]
    note = ""
    if others:
        o = choice.loc[others].sort_values("mae").iloc[0]
        off = ("" if not np.isfinite(o["total_error_pct"]) else
               f" but misses the holdout total by {o['total_error_pct']:+.1f}%")
        note = (f" {_esc(o.name)} has a lower MAE ({o['mae']:.2f}){off}"
                + (" and gives no intervals or CLV" if o["kind"] == "baseline" else "") + ".")
    n_models = int((choice["kind"] == "model").sum())
    lead = "the only model compared" if n_models == 1 else f"best of {n_models} models by several criteria"
    return name, f"{lead}: " + "; ".join(why) + "." + note


def _ordinal(n: int) -> str:
    return {1: "best", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


# ---------------------------------------------------------------------------- sections
def _finding(text: str, bad: bool | None) -> str:
    cls = "" if bad is None else (" bad" if bad else " good")
    return f'<div class="finding{cls}">{text}</div>'


def _summary_section(result: BacktestResult, currency: str) -> str:
    choice = recommend_model(result)
    name, why = recommendation_text(choice, currency)
    parts = []
    if name is not None:
        parts.append(_finding(f"Recommended model: <b>{_esc(name)}</b> – {why}",
                              bad=bool(choice.loc[name, "problems"])))
    parts.append(f'<p class="note">{_esc(choice.attrs["rule"])} Below, per model and cutoff: green when the total is '
                 f"within ±{TOTAL_ERROR_LIMIT:g}% and the actual total inside the predicted interval; red when "
                 "either fails.</p>")
    for _, r in result.totals[result.totals["kind"] == "model"].iterrows():
        interval = ""
        bad = abs(r["error_pct"]) > TOTAL_ERROR_LIMIT
        if np.isfinite(r["lower"]):
            bad = bad or not r["inside"]
            interval = (f"; its {r['level']:.0%} predictive interval "
                        f"[{_target_amount(r['target'], r['lower'], currency)}, "
                        f"{_target_amount(r['target'], r['upper'], currency)}] "
                        f"{'contains' if r['inside'] else '<b>does not contain</b>'} the actual total")
        limit = ("within" if abs(r["error_pct"]) <= TOTAL_ERROR_LIMIT else "<b>beyond</b>") + \
            f" the ±{TOTAL_ERROR_LIMIT:g}% limit"
        parts.append(_finding(
            f'<b>{_esc(r["model"])}</b>, calibration end {_esc(r["cutoff"])}, holdout {TARGET_NAMES[r["target"]]}: '
            f'predicted total {_target_amount(r["target"], r["predicted"], currency)} vs actual '
            f'{_target_amount(r["target"], r["actual"], currency)} (<b>{r["error_pct"]:+.1f}%</b>, {limit}){interval}.',
            bad=bool(bad)))
    last = result.cutoffs[-1]
    for name in result.settings.get("time_varying_models") or []:
        model = result.models.get((last, name))
        if model is not None:
            parts.append(_finding(f"<b>{_esc(name)}</b>, calibration end {_esc(last)}, the calendar's effect: "
                                  + " ".join(_esc(s) for s in calendar_effects(model)), bad=None))
    return "".join(parts)


def _data_value(key, value, unit: str, currency: str) -> str:
    kind = DATA_LABELS.get(key, (key, None))[1]
    if kind == "time":
        return f"{value:g} {unit_name(unit)}"
    if kind == "unit":
        return unit_name(value)
    if kind == "money":
        return money(value, currency, 2)
    return _fmt(value)


def _data_section(result: BacktestResult, currency: str) -> str:
    data = result.data.set_index("calibration_end", drop=False)
    unit = result.settings["time_unit"]
    head = "".join(f"<th>calibration end {_esc(c)}</th>" for c in data.index)
    rows = "".join(
        f'<tr><td class="name">{_esc(DATA_LABELS.get(key, (key, None))[0])}</td>'
        + "".join(f"<td>{_data_value(key, v, unit, currency)}</td>" for v in data[key]) + "</tr>"
        for key in data.columns)
    return (f'<table><thead><tr><th class="name"></th>{head}</tr></thead><tbody>{rows}</tbody></table>'
            '<p class="note">Customers are the cohort that bought in the calibration period; those whose '
            "first purchase falls in the holdout cannot be scored from calibration data and are excluded. "
            "Purchases on the same day count as one transaction; the first purchase is not a repeat.</p>")


def _metrics_section(result: BacktestResult, currency: str) -> str:
    out = ['<p class="note">Per-customer errors of the holdout forecasts (see the glossary). Best value per column in '
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
        unit = target_unit(target, currency)
        out.append(f"<h3>Holdout {TARGET_NAMES[target]}{over}</h3>")
        out.append(_table(table, best=best_per_metric(table), index_name="forecast", unit=unit))
        if multi:
            for cutoff in result.cutoffs:
                t = result.table(target, cutoff)
                out.append(f"<h4>Holdout {TARGET_NAMES[target]}, calibration end {_esc(cutoff)}</h4>")
                out.append(_table(t, best=best_per_metric(t), index_name="forecast", unit=unit))
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


def _totals_section(result: BacktestResult, currency: str) -> str:
    totals = result.totals.copy()
    cols = ["cutoff", "target", "actual", "predicted", "error_pct", "lower", "upper", "inside",
            "plugin_lower", "plugin_upper"]
    frame = totals.set_index("model")[cols]
    frame.columns = ["calibration end", "holdout total of", "actual", "predicted", "total error %",
                     "interval lower", "interval upper", "actual inside", "process-only lower", "process-only upper"]
    frame["holdout total of"] = frame["holdout total of"].map(TARGET_NAMES)

    def mark(idx, col, value):
        if col == "actual inside" and value is not pd.NA and not pd.isna(value):
            return "hit" if value else "miss"
        return None

    out = [f'<p class="note">Totals over all customers of the holdout period: purchases in transactions, value and '
           f"discounted CLV in {_esc(currency)}. \"Interval\": the predicted total's {result.settings['interval']:.0%} "
           "predictive interval (process and parameter uncertainty); \"process-only\": process uncertainty at "
           "the point estimate (Bayesian fits: each customer's posterior predictive; time-varying covariates: each "
           "customer's distribution simulated along her path), by exact convolution of the "
           "customers' predicted distributions. An actual total outside the interval is marked red: the model's "
           "uncertainty is understated there. Baselines have no interval.</p>",
           _table(frame, index_name="forecast", cell_class=mark)]
    out.append('<div class="row">')
    for target in dict.fromkeys(totals["target"]):
        unit = "transactions" if target == "purchases" else currency
        out.append(_plot(plotting.plot_totals, result, target=target, caption=(
            f"Predicted holdout {TARGET_NAMES[target]} total per forecast (dot, in {_esc(unit)}) with its predictive "
            "interval (bar), against the actual total (black vertical line). A red-edged dot: the actual lies "
            "outside that model's interval.")))
    out.append("</div>")
    return "".join(out)


def _tracking_section(result: BacktestResult) -> str:
    if result.tracking is None or len(result.tracking) == 0:
        return '<p class="note">No model with a tracking series.</p>'
    caption = ("Expected repeat transactions of the whole cohort, each customer from her first purchase on "
               "(unconditional expectation, FHL 2005 eq. 9), against the actual count {}; the dotted line separates "
               "the calibration period (fitted) from the holdout (predicted).")
    varying = result.settings.get("time_varying_models") or []
    if varying:
        caption += (f" {', '.join(map(_esc, varying))} follow{'s' if len(varying) == 1 else ''} the calendar of the "
                    f"time-varying covariates ({', '.join(map(_esc, result.settings['time_varying']))}); the other "
                    "models assume purchase rates constant over the calendar.")
    out = (_plot(plotting.plot_tracking, result, caption=caption.format("per period"))
           + _plot(plotting.plot_tracking, result, cumulative=True, caption=caption.format("summed over time")))
    if varying:
        out += ("<h3>Tracking error per period, with and without the calendar</h3>"
                + _table(tracking_errors(result), index_name="model")
                + '<p class="note">Mean absolute difference between the expected and the actual repeat transactions '
                  "per period of the tracking plot, over the calibration period and over the holdout.</p>")
    return out


def tracking_errors(result: BacktestResult) -> pd.DataFrame:
    """Mean absolute error of each model's tracking series per period (rows: models; columns:
    ``calibration`` and ``holdout``), at the latest cutoff."""
    frame = result.tracking[result.tracking["cutoff"] == result.cutoffs[-1]]
    error = (frame["predicted"] - frame["actual"]).abs()
    table = error.groupby([frame["model"], frame["phase"]], sort=False).mean().unstack("phase")
    return table.reindex(columns=[c for c in ("calibration", "holdout") if c in table.columns])


def _models_section(result: BacktestResult) -> str:
    names = list(result.settings.get("models", {}))
    last = result.cutoffs[-1]
    unit = unit_name(result.settings["time_unit"])
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
        out.append(_plot(plotting.plot_probability_alive_matrix, model, max_frequency=max_frequency, label=name,
                         caption=(f"P(alive) (colour, 0 to 1) of a customer of the oldest cohort's age, by her number "
                                  f"of repeat purchases (vertical) and the time of her last one ({unit} after her "
                                  "first, horizontal): recent buyers are more likely still active.")))
        out.append(_plot(plotting.plot_frequency_recency_matrix, model, t=1.0, max_frequency=max_frequency,
                         label=name, caption=(f"Expected purchases in the next 1 {unit[:-1]} (colour) by repeat "
                                              "purchases and the time of the last one, for the same age.")))
        out.append("</div>")
    return "".join(out) or '<p class="note">No fitted model.</p>'


def _parameters_section(result: BacktestResult) -> str:
    if result.parameters is None or len(result.parameters) == 0:
        return '<p class="note">No parameters (no model was fitted).</p>'
    out = ['<p class="note">The fitted population parameters (e.g. BG/NBD: r, alpha for the purchase rates, '
           "a, b for the drop-out probability; Gamma-Gamma: p, q, v for the spend) with their standard errors and "
           "intervals (maximum likelihood) or posterior summaries (Bayesian fits).</p>"]
    for (cutoff, model), part in result.parameters.groupby(["cutoff", "model"], sort=False):
        wide = part.pivot_table(index="parameter", columns="statistic", values="value", sort=False)
        out.append(f"<h4>{_esc(model)}, calibration end {_esc(cutoff)}</h4>")
        out.append(_table(wide.rename(columns=statistic_label), index_name="parameter"))
    return "".join(out)


#: What exp(coefficient) of a time-varying covariate multiplies (``tv_<process>:<column>``).
TIME_VARYING_EFFECTS = {"tv_purchase": "the purchase rate while the covariate holds",
                        "tv_dropout": "the drop-out rate while the covariate holds"}
#: How the plain-words sentences name each process's speed.
PROCESS_SUBJECTS = {"purchase": "Purchases run", "dropout": "Drop-out runs"}


def coefficient_meaning(model, coefficient: str) -> str:
    """What exp(coefficient) multiplies, in words (the model class's ``covariate_effects``), for the
    coefficient ``"<param>:<column>"`` of a model with covariates (``tv_<process>:<column>``: a
    time-varying covariate's rate)."""
    param = coefficient.split(":", 1)[0]
    if param in TIME_VARYING_EFFECTS:
        return TIME_VARYING_EFFECTS[param]
    return type(model).covariate_effects.get(param, f"the parameter {param}")


#: Widest log-interval of a calendar effect still read as an effect (a factor interval spanning 1e6x is none).
IDENTIFIED_LOG_WIDTH = np.log(1e6)


def calendar_effects(model) -> list[str]:
    """Plain-words sentences of a fitted model's time-varying effects, one per coefficient: "Purchases
    run 2.00x as fast when holiday = 1 as when holiday = 0 (95% interval 1.80x to 2.20x)" for a 0/1
    column of the training pieces, "... per unit of fourier_sin1" otherwise (exp of the coefficient per
    unit of the user's column; the interval where the fit has one)."""
    summary = getattr(model, "time_varying_summary_", None)
    table = model.summary()
    out = []
    for process, subject in PROCESS_SUBJECTS.items():
        for column in model.time_varying_["processes"].get(process, ()):
            row = table.loc[coefficient_name(process, column)]
            estimate = row.get("user_estimate", row.get("user_mean", np.nan))
            binary = False
            if summary is not None and column in summary.pieces.columns:
                binary = bool(np.isin(piece_columns(summary.pieces, [column]), (0.0, 1.0)).all())
            where = f"when {column} = 1 as when {column} = 0" if binary else f"per unit of {column}"
            lower = [c for c in row.index if c.startswith("user_lower_")]
            upper = [c for c in row.index if c.startswith("user_upper_")]
            interval = ""
            if lower and upper:
                level = lower[0].removeprefix("user_lower_")
                lo, hi = float(row[lower[0]]), float(row[upper[0]])
                if np.isfinite(lo) and np.isfinite(hi) and hi - lo < IDENTIFIED_LOG_WIDTH:
                    interval = f" ({level} interval {np.exp(lo):.2f}x to {np.exp(hi):.2f}x)"
                else:    # a boundary fit (warned at the fit): its interval is no information
                    out.append(f"The effect of {column} on the {process.replace('dropout', 'drop-out')} rate is not "
                               f"identified by these data (the {level} interval of its factor is unbounded; the fit "
                               "warned): read no effect into it.")
                    continue
            out.append(f"{subject} {np.exp(estimate):.2f}x as fast {where}{interval}.")
    return out


def _covariates_section(result: BacktestResult) -> str:
    purchase_models = result.settings.get("models", {})
    covariate_models = sorted(((c, n, m) for (c, n), m in result.models.items()
                               if getattr(m, "has_covariates", False) or getattr(m, "has_time_varying", False)),
                              key=lambda cnm: (cnm[0], cnm[1] not in purchase_models))   # purchase models first
    if not covariate_models:
        return '<p class="note">No model with covariates in this backtest.</p>'
    out = ['<p class="note">How customer attributes (covariates) shift each model\'s parameters. A customer\'s '
           "parameter is the population's times exp(coefficient × her attribute value); the <i>factor per unit</i> "
           "exp(coefficient) multiplies the quantity named in the last column per unit of the attribute as given "
           "(for a category: against the baseline level), e.g. 1.3: 30% more, 0.8: 20% less. Coefficients are "
           "fitted on standardised attributes (first columns) and shown per unit of the attribute too. Time-varying "
           "covariates (<i>tv_</i> rows) follow the calendar instead: while one holds, the purchase (or drop-out) "
           "rate of every customer is multiplied by exp(coefficient × its value). See the glossary.</p>"]
    tests = result.covariate_tests()
    if len(tests):
        table = tests.set_index("model")[["cutoff", "without", "statistic", "df", "p_value", "note"]]
        out.append("<h3>Likelihood-ratio tests: with against without covariates</h3>")
        out.append(_table(table.rename(columns={"without": "against (no covariates)", "p_value": "p-value",
                                                "statistic": "LR statistic"}),
                          index_name="model with covariates", text_columns=("cutoff", "against (no covariates)", "note")))
        out.append('<p class="note">The statistic is 2 × (log-likelihood with covariates − without), on the '
                   "calibration data of the same customers; the p-value is that of a chi-squared law with "
                   "<i>df</i> degrees of freedom (the number of coefficients). A small p-value: the covariates "
                   "explain real differences between customers (time-varying ones: over the calendar).</p>")
    for cutoff, name, model in covariate_models:
        part = result.parameters[(result.parameters["cutoff"] == cutoff) & (result.parameters["model"] == name)
                                 & result.parameters["parameter"].str.contains(":", regex=False)]
        wide = part.pivot_table(index="parameter", columns="statistic", values="value", sort=False)
        for column in [c for c in wide.columns if c.startswith("user_") and c not in ("user_se", "user_sd")]:
            wide[f"factor per unit: {statistic_label(column.removeprefix('user_'))}"] = np.exp(wide[column])
        wide = wide.rename(columns=lambda c: f"per unit: {statistic_label(c.removeprefix('user_'))}"
                           if c.startswith("user_") else c if c.startswith("factor") else statistic_label(c))
        wide["multiplies"] = [coefficient_meaning(model, p) for p in wide.index]
        dropped = model.covariates_["dropped"] if getattr(model, "has_covariates", False) else {}
        base = "; ".join(f"{_esc(k)}: {_esc(v)}" for k, v in dropped.items())
        out.append(f"<h4>{_esc(name)}, calibration end {_esc(cutoff)}</h4>")
        out.append(_table(wide, index_name="coefficient", text_columns=("multiplies",)))
        if getattr(model, "has_time_varying", False):
            out.append('<p class="note">Time-varying covariates (<i>tv_</i>): '
                       + " ".join(_esc(s) for s in calendar_effects(model)) + "</p>")
        if base:
            out.append(f'<p class="note">Baseline levels of the categories (their effect is 0): {base}.</p>')
    return "".join(out)


def statistic_label(name: str) -> str:
    """How a parameter table's column reads: ``se`` -> "standard error", ``lower_95%`` -> "95% interval
    lower", ``hdi_3%`` -> "HDI 3%", ``ess_bulk`` -> "effective sample size (bulk)"."""
    fixed = {"se": "standard error", "sd": "posterior sd", "mean": "posterior mean", "r_hat": "R-hat"}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"(lower|upper)_(.+%)", name)
    if m:
        return f"{m.group(2)} interval {m.group(1)}"
    m = re.fullmatch(r"ess_(\w+)", name)
    if m:
        return f"effective sample size ({m.group(1)})"
    return name.replace("hdi_", "HDI ").replace("_", " ")


def model_warnings(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a warnings table that are about the models (:data:`MODEL_WARNINGS`)."""
    return frame[frame["category"].isin(MODEL_WARNINGS)] if len(frame) else frame


def _warnings_section(result: BacktestResult) -> str:
    rows = model_warnings(result.warnings)
    if len(rows) == 0:
        return '<p class="note">No warnings: every fit converged, no assumption check failed and no interval missed.</p>'
    return "".join(
        f'<div class="warn"><b>{_esc(r["category"])}</b> – {_esc(r["model"])}, calibration end {_esc(r["cutoff"])}: '
        f'{_esc(r["message"])}</div>' for _, r in rows.iterrows())


def glossary_section(terms=None) -> str:
    """The glossary as a definition list (all of :data:`GLOSSARY`, or the given terms)."""
    terms = GLOSSARY if terms is None else {k: GLOSSARY[k] for k in terms}
    return "<dl class='glossary'>" + "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in terms.items()) + "</dl>"


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
                         + _plot(plotting.plot_survivors, result, cohort=cohort, caption=(
                             "Customers of the cohort still active per period: actual (black) and projected by each "
                             "model; the dotted line separates the fitted periods from the projected ones."))
                         + "</div>")
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


CONDITIONAL_CAPTION = ("Mean repeat purchases per customer in the holdout, by the number of repeat purchases in the "
                       "calibration period (7+ pooled): actual (black) against each forecast (FHL 2005, fig. 4).")


def calibration_caption(target: str) -> str:
    return (f"Left: where each customer's actual holdout {TARGET_NAMES[target]} falls in its predicted distribution "
            "(randomised PIT, share of customers per tenth); flat at the dashed line when calibrated, U-shaped "
            "when intervals are too narrow. Right: share of customers inside the central 50/80/90% predictive "
            "intervals against the nominal level (dashed diagonal).")


def lift_caption(target: str) -> str:
    return (f"Share of the actual holdout {TARGET_NAMES[target]} made by the top x% of customers as ranked by each "
            "forecast, against a perfect ranking (black) and a random one (dotted); thin lines at 10% and 20%.")


def _backtest_sections(result: BacktestResult, currency: str = "$") -> dict:
    return {
        "summary": ("Key findings", _summary_section(result, currency)),
        "data": ("Data summary", _data_section(result, currency)),
        "metrics": ("Metrics per forecast", _metrics_section(result, currency)),
        "totals": ("Holdout totals and their intervals", _totals_section(result, currency)),
        "intervals": ("Per-customer intervals: predictive vs expected value", _intervals_section(result)),
        "tracking": ("Tracking: repeat transactions per period", _tracking_section(result)),
        "conditional": ("Conditional expectations by calibration frequency",
                        _plot(plotting.plot_conditional_expectations, result, caption=CONDITIONAL_CAPTION)),
        "calibration": ("Calibration of the predictive distributions (PIT)", "".join(
            _plot(plotting.plot_calibration, result, target=t, caption=calibration_caption(t))
            for t in ("purchases", "value") if f"pit_{t}" in result.predictions.columns)),
        "lift": ("Lift charts", "<div class='row'>" + "".join(
            _plot(plotting.plot_lift, result, target=t, caption=lift_caption(t)) for t in ("value", "purchases")
            if t in result.predictions.columns) + "</div>"),
        "models": ("Model diagnostics: P(alive) and expected purchases", _models_section(result)),
        "parameters": ("Parameters with intervals", _parameters_section(result)),
        "covariates": ("Covariates: coefficients and likelihood-ratio tests", _covariates_section(result)),
        "glossary": ("Glossary", glossary_section()),
        "warnings": (f"Warnings ({len(model_warnings(result.warnings))})", _warnings_section(result)),
    }


def page(title: str, note: str, sections: dict, order, *, standalone: bool, css: str = "") -> str:
    """The report's HTML: a heading, a note and the ``sections`` (id -> (heading, content)) in ``order``;
    a full document (``standalone``) or a ``<div>`` for Jupyter."""
    body = [f"<h1>{_esc(title)}</h1>", f'<p class="note">{note}; clvmodels {_esc(__version__)}.</p>']
    for key in order:
        heading, content = sections[key]
        body.append(f'<section id="{key}"><h2>{_esc(heading)}</h2>{content}</section>')
    div = f'<div class="clv-report"><style>{_CSS}{css}</style>{"".join(body)}</div>'
    if not standalone:
        return div
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title></head><body>{div}</body></html>\n")


def report_html(result, *, title: str | None = None, standalone: bool = True, currency: str = "$") -> str:
    """The comparison report of a :class:`BacktestResult` or a
    :class:`~clvmodels.retention.RetentionBacktestResult` as HTML: a full document (``standalone``) or a
    ``<div>`` for Jupyter. ``currency`` prefixes money amounts (those of the log)."""
    if isinstance(result, BacktestResult):
        s = result.settings
        title = title or "CLV model comparison: backtest report"
        sections, order = _backtest_sections(result, currency), SECTIONS
        note = (f"Cutoffs: {', '.join(map(_esc, result.cutoffs))}; time unit: {_esc(unit_name(s['time_unit']))}; "
                f"forecasts: {', '.join(map(_esc, result.model_names))}; seed {_esc(s['seed'])}")
    elif isinstance(result, RetentionBacktestResult):
        title = title or "Retention backtest report"
        sections, order = _retention_sections(result), RETENTION_SECTIONS
        note = (f"Cohorts: {', '.join(map(_esc, result.cohorts))}; fitted on periods 0–"
                f"{result.settings['calibration_periods']}")
    else:
        raise ClvDataError(f"Expected a BacktestResult (from clvmodels.backtest) or a RetentionBacktestResult, "
                           f"got {type(result).__name__}.")
    return page(title, note, sections, order, standalone=standalone)


def write_html(text: str, path: str | os.PathLike) -> Path:
    """Write a report atomically (a temporary file renamed into place)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def compare_report(result, path: str | os.PathLike, *, title: str | None = None, currency: str = "$") -> Path:
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
    currency
        Prefix of money amounts (the currency of the log's amounts), e.g. ``"$"`` or ``"EUR "``.

    Returns
    -------
    The path written.
    """
    return write_html(report_html(result, title=title, standalone=True, currency=currency), path)


HTML_RENDERERS[BacktestResult] = HTML_RENDERERS[RetentionBacktestResult] = partial(report_html, standalone=False)
