"""The CLV report: which model to use, what the customer base is worth, and how sure that is.

:func:`clv_report` takes a backtest (:func:`~clvmodels.backtest.backtest`) and the transaction log.
It chooses the model by several criteria of the backtest (:func:`~clvmodels.report.recommend_model`:
holdout total error, interval coverage, ranking, per-customer error), refits that model and the
spend model on the whole log, and forecasts the customers' discounted value over the horizon by
predictive simulation (:func:`~clvmodels.clv.value_forecast`: process and parameter uncertainty)
and the number of customers still active (:func:`~clvmodels.predictive.active_customers`). The
result is one self-contained HTML page (shown inline in Jupyter) whose first screen answers which
model, how much value and how sure, followed by the value's distribution and concentration, a
segment table (P(alive) tiers x value tiers, or the caller's segments) that can be exported as CSV
or Parquet, the top customers with their intervals, the model checks, the backtest's details, a
glossary and the model warnings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import plotting
from .backtest import BacktestResult, fit_with_warnings
from .clv import clv, value_forecast
from .data import as_log
from .errors import ClvDataError
from .io import check_outputs, write_table
from .models.spend import SpendModel
from .predictive import active_customers
from .report import (TARGET_NAMES, TOTAL_ERROR_LIMIT, COVERAGE_TOLERANCE, _backtest_sections, _esc, _plot,
                     _table, calibration_caption, CONDITIONAL_CAPTION, model_warnings, money, page,
                     recommend_model, recommendation_text, target_unit, unit_name, write_html)
from .rfm import rfm_summary
from .units import normalize_unit

#: Section ids of the CLV report, in order (the first is the first screen).
CLV_SECTIONS = ("headline", "value", "segments", "customers", "choice", "fit", "data", "metrics", "totals",
                "intervals", "tracking", "lift", "models", "parameters", "covariates", "glossary", "warnings")
#: P(alive) tiers of the default segments: (lower bound, label), highest first.
ALIVE_TIERS = ((0.7, "likely active"), (0.3, "at risk"), (0.0, "likely lost"))
#: Value tiers of the default segments: (share of customers from the top, label).
VALUE_TIERS = ((0.1, "top 10% by value"), (0.5, "next 40%"), (1.0, "bottom 50%"))
#: Shares of customers whose part of the total value the report shows.
CONCENTRATION = (0.01, 0.1, 0.2)

_CSS = """
.clv-report .headline h1 { margin: .2em 0 .1em; }
.clv-report .cards { display: grid; grid-template-columns: 1fr 1fr; gap: .7em; margin: .5em 0; }
.clv-report .card { border: 1px solid #ccd; border-left: 6px solid #2c5d8f; border-radius: 4px;
  padding: .45em .8em; background: #f7f9fc; font-size: 14px; }
.clv-report .card.good { border-left-color: #2e8b57; }
.clv-report .card.bad { border-left-color: #c0392b; background: #fdf5f3; }
.clv-report .card .q { color: #555; font-size: 13px; text-transform: uppercase; letter-spacing: .03em; }
.clv-report .card .a { font-size: 24px; font-weight: bold; margin: .1em 0; color: #123; }
.clv-report .card p { margin: .2em 0; }
.clv-report #headline h2 { display: none; }
.clv-report #headline table { margin: .3em 0; }
"""


@dataclass
class ClvReport:
    """What :func:`clv_report` computed, and its HTML.

    ``customers``: per customer, her history, ``p_alive``, ``segment`` and the predictive CLV
    (``clv_mean``, ``clv_median``, ``clv_lower``, ``clv_upper``, ``p_no_purchase``); ``segments``:
    the segment table (what :meth:`export_segments` writes); ``total`` and ``active``: the base's
    total value and active customers with their predictive intervals; ``recommendation``: the
    criteria of :func:`~clvmodels.report.recommend_model`; ``model``: the name of the model used.
    """

    html: str
    inline: str
    model: str
    recommendation: pd.DataFrame
    customers: pd.DataFrame
    segments: pd.DataFrame
    total: pd.DataFrame
    active: pd.DataFrame
    concentration: pd.Series
    settings: dict
    inputs: list = field(default_factory=list, repr=False)

    def _repr_html_(self) -> str:
        return self.inline

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report (one self-contained HTML file) atomically; never over an input."""
        check_outputs(self.inputs, {"the report": path})
        return write_html(self.html, path)

    def export_segments(self, path: str | os.PathLike, *, escape: bool = True) -> Path:
        """Write the segment table to CSV (``.csv``) or Parquet (otherwise), atomically; never over
        an input. ``escape``: CSV cells that look like formulas get a leading ``'``."""
        check_outputs(self.inputs, {"the segment table": path})
        write_table(self.segments, path, index=True, escape=escape)
        return Path(path)


def default_segments(p_alive: pd.Series, value: pd.Series) -> pd.Series:
    """P(alive) tier x value tier of each customer (:data:`ALIVE_TIERS`, :data:`VALUE_TIERS`): value
    tiers by rank of ``value`` (the expected CLV; the top ``round(share x n)`` customers, as in
    :func:`concentration`), ties broken by order."""
    alive = np.select([p_alive.to_numpy() >= lo for lo, _ in ALIVE_TIERS], [name for _, name in ALIVE_TIERS],
                      default=ALIVE_TIERS[-1][1])
    rank = value.rank(ascending=False, method="first").to_numpy()
    tier = np.select([rank <= round(share * len(value)) for share, _ in VALUE_TIERS], [name for _, name in VALUE_TIERS],
                     default=VALUE_TIERS[-1][1])
    return pd.Series([f"{a} · {v}" for a, v in zip(alive, tier)], index=p_alive.index, name="segment")


def concentration(values: pd.Series, shares=CONCENTRATION) -> pd.Series:
    """Share of the total held by the top ``shares`` of customers ranked by ``values``."""
    v = np.sort(values.to_numpy(dtype=float))[::-1]
    total = v.sum()
    return pd.Series({s: float(v[:max(1, int(round(s * len(v))))].sum() / total) if total > 0 else np.nan
                      for s in shares}, name="share_of_value")


def _segment_table(customers: pd.DataFrame, by_segment: pd.DataFrame, total_mean: float) -> pd.DataFrame:
    grouped = customers.groupby("segment", sort=True)
    table = pd.DataFrame({
        "customers": grouped.size(),
        "mean_p_alive": grouped["p_alive"].mean(),
        "expected_active": grouped["p_alive"].sum(),
        "expected_clv": by_segment["mean"],
        "clv_lower": by_segment["lower"],
        "clv_upper": by_segment["upper"],
    })
    table.insert(1, "share_of_customers", table["customers"] / table["customers"].sum())
    table["clv_per_customer"] = table["expected_clv"] / table["customers"]
    table["share_of_value"] = table["expected_clv"] / total_mean if total_mean > 0 else np.nan
    table.index.name = "segment"
    table.attrs.update(by_segment.attrs)
    return table.sort_values("expected_clv", ascending=False)


def clv_report(result: BacktestResult, transactions, path: str | os.PathLike | None = None, *, model: str | None = None,
               observation_end=None, horizon: int = 12, period: str = "M", discount_rate: float = 0.01,
               interval: float = 0.9, segments=None, currency: str = "$", n_samples: int = 1000, seed: int | None = 0,
               title: str | None = None, export: str | os.PathLike | None = None, top: int = 20,
               covariates: pd.DataFrame | None = None, covariate_id: str | None = None,
               missing_covariates: str = "error", **load_kwargs) -> ClvReport:
    """The CLV report of a backtest: which model to use and why, the expected value of the customer
    base over the horizon with its predictive interval, how many customers are likely active, how
    much the forecast missed by in the backtest, and the CLV's distribution, segments and top customers.

    Parameters
    ----------
    result
        A :class:`~clvmodels.backtest.BacktestResult` of :func:`~clvmodels.backtest.backtest` with
        amounts (a spend model).
    transactions
        The transaction log (a frame from :func:`~clvmodels.load_transactions`, or a path with
        ``load_kwargs``): the chosen model and the spend model are refitted on it up to
        ``observation_end`` (default: its last transaction) and forecast from there.
    path
        Also write the HTML here (atomically; never over an input).
    model
        Name of the model to use (default: the one :func:`~clvmodels.report.recommend_model` picks).
    horizon, period, discount_rate
        The CLV: ``horizon`` periods of length ``period`` (``"M"``: months), discounted at
        ``discount_rate`` per period.
    interval
        Level of the predictive intervals (0.9).
    segments
        Segment labels (a column name of the RFM summary, or a Series indexed by customer id);
        default: P(alive) tier x value tier (:func:`default_segments`).
    currency
        Prefix of money amounts (the currency of the log's amounts), e.g. ``"$"`` or ``"EUR "``.
    n_samples, seed
        Simulated futures and the seed of every random step.
    export
        Also write the segment table here (``.csv`` or Parquet; atomically; never over an input).
    top
        Number of top customers listed.
    covariates, covariate_id, missing_covariates
        The customer-level covariate table of a backtest with covariates (as given to
        :func:`~clvmodels.backtest.backtest`), joined to the whole log's RFM summary for the refit
        and the forecast; its columns can also name the ``segments``.

    Returns
    -------
    :class:`ClvReport` (``report.save(path)``, ``report.export_segments(path)``; shown inline in Jupyter).
    """
    if not isinstance(result, BacktestResult):
        raise ClvDataError(f"clv_report needs a BacktestResult (from clvmodels.backtest), got {type(result).__name__}.")
    inputs = [transactions] if isinstance(transactions, (str, os.PathLike)) else []
    check_outputs(inputs, {"the report": path, "the segment table": export})
    settings = result.settings
    unit = normalize_unit(settings["time_unit"])
    last = result.cutoffs[-1]
    spend_fit, why = fitted_spend_model(result)
    if spend_fit is None:
        raise ClvDataError(f"clv_report needs a fitted spend model (Gamma-Gamma) at the last calibration end: {why} "
                           "compare_report (clvmodels report on a log without amounts) reports the purchase models.")
    choice = recommend_model(result)
    name = model if model is not None else (choice.index[choice["recommended"]][0] if choice["recommended"].any()
                                            else None)
    if name is None or (last, name) not in result.models:
        known = [n for (c, n) in result.models if c == last and n in settings.get("models", {})]
        if name is None:
            raise ClvDataError(f"No purchase model was fitted at the calibration end {last}: {_failures(result, last)}.")
        raise ClvDataError(f"No fitted model {name!r} at the calibration end {last}: the backtest has {known}.")

    from sklearn.base import clone

    log = as_log(transactions, **load_kwargs)
    rfm = rfm_summary(log, observation_end=observation_end, time_unit=unit, resolution=settings["resolution"],
                      truncate=True, covariates=covariates, covariate_id=covariate_id,
                      missing_covariates=missing_covariates)
    fit_rows = []
    purchase, records = fit_with_warnings(clone(result.models[(last, name)]), rfm, name, "whole log")
    fit_rows += records
    spend_name = type(spend_fit).__name__
    spend, records = fit_with_warnings(clone(spend_fit), rfm, spend_name, "whole log")
    fit_rows += records
    if purchase is None or spend is None:
        failed = "; ".join(r["message"] for r in fit_rows if r["category"] == "FitError")
        raise ClvDataError(f"Refitting on the whole log failed: {failed}")

    p_alive = purchase.probability_alive(rfm)
    expected = clv(purchase, spend, rfm, horizon=horizon, period=period, discount_rate=discount_rate)
    if segments is None:
        labels = default_segments(p_alive, expected)
    elif isinstance(segments, str):
        labels = rfm[segments].rename("segment")
    else:
        labels = pd.Series(segments).reindex(rfm.index).rename("segment")
    per, by_segment, total = value_forecast(purchase, spend, rfm, segments=labels, horizon=horizon, period=period,
                                            discount_rate=discount_rate, interval=interval, n_samples=n_samples,
                                            seed=seed)
    active = active_customers(purchase, rfm, interval=interval, n_samples=n_samples, seed=seed)
    customers = rfm.assign(p_alive=p_alive, segment=labels, clv_mean=per["mean"], clv_median=per["median"],
                           clv_lower=per["lower"], clv_upper=per["upper"], p_no_purchase=per["p_zero"])
    table = _segment_table(customers, by_segment, float(total["mean"].iloc[0]))
    conc = concentration(customers["clv_mean"])
    run = {"model": name, "spend_model": spend_name, "observation_end": rfm.attrs.get("observation_end"),
           "horizon": int(horizon), "period": normalize_unit(period), "discount_rate": float(discount_rate),
           "interval": float(interval), "currency": currency, "time_unit": unit, "n_samples": int(n_samples),
           "seed": seed, "default_segments": segments is None}
    ctx = _Context(result=result, choice=choice, run=run, customers=customers, segments=table, total=total,
                   active=active, concentration=conc, purchase=purchase, log=log, fit_warnings=fit_rows, top=int(top))
    title = title or "Customer lifetime value report"
    sections = _sections(ctx)
    note = (f"{len(rfm):,} customers, transactions up to {_esc(run['observation_end'])}; backtest cutoffs "
            f"{', '.join(map(_esc, result.cutoffs))}; time unit: {unit_name(unit)}; seed {_esc(seed)}")
    html = page(title, note, sections, CLV_SECTIONS, standalone=True, css=_CSS)
    inline = page(title, note, sections, CLV_SECTIONS, standalone=False, css=_CSS)
    report = ClvReport(html=html, inline=inline, model=name, recommendation=choice, customers=customers,
                       segments=table, total=total, active=active, concentration=conc, settings=run, inputs=inputs)
    if path is not None:
        report.save(path)
    if export is not None:
        report.export_segments(export)
    return report


def fitted_spend_model(result: BacktestResult) -> tuple[SpendModel | None, str]:
    """The spend model fitted at the backtest's last calibration end, or ``None`` and why not (its
    fit's error, or a backtest of purchases only)."""
    last = result.cutoffs[-1]
    spends = [m for (c, _), m in result.models.items() if c == last and isinstance(m, SpendModel)]
    if spends:
        return spends[0], ""
    if result.settings.get("spend_model") is None:
        return None, "the backtest has purchases only (no amounts)."
    return None, f"the spend model could not be fitted at the last calibration end ({_failures(result, last)})."


def _failures(result: BacktestResult, cutoff) -> str:
    """The failed fits' messages at ``cutoff``, by model."""
    w = result.warnings
    rows = w[(w["cutoff"] == cutoff) & (w["category"] == "FitError")] if len(w) else w
    return "; ".join(f"{r['model']}: {r['message'].removeprefix('The fit failed: ')}" for _, r in rows.iterrows())


@dataclass
class _Context:
    result: BacktestResult
    choice: pd.DataFrame
    run: dict
    customers: pd.DataFrame
    segments: pd.DataFrame
    total: pd.DataFrame
    active: pd.DataFrame
    concentration: pd.Series
    purchase: object
    log: pd.DataFrame
    fit_warnings: list
    top: int

    @property
    def currency(self) -> str:
        return self.run["currency"]

    @property
    def horizon(self) -> str:
        n = self.run["horizon"]
        return f"{n} {unit_name(self.run['period']) if n != 1 else unit_name(self.run['period'])[:-1]}"

    def money(self, value, digits: int = 0) -> str:
        return money(value, self.currency, digits)


# ---------------------------------------------------------------------------- sections
def _sections(ctx: _Context) -> dict:
    sections = {k: v for k, v in _backtest_sections(ctx.result, ctx.currency).items() if k in CLV_SECTIONS}
    sections.update({
        "headline": ("Summary", _headline(ctx)),
        "value": (f"Value of the customer base over the next {ctx.horizon}", _value_section(ctx)),
        "segments": ("Segments", _segments_section(ctx)),
        "customers": (f"Top {ctx.top} customers by expected CLV", _customers_section(ctx)),
        "choice": ("Which model, and why", _choice_section(ctx)),
        "fit": ("How well the model fits", _fit_section(ctx)),
        "data": ("Backtest data", sections["data"][1]),
        "metrics": ("Backtest metrics per forecast", sections["metrics"][1]),
        "warnings": _warnings(ctx),
    })
    return sections


def _interval_text(frame: pd.DataFrame, fmt) -> str:
    r = frame.iloc[0]
    return f"{frame.attrs['interval']:.0%} predictive interval {fmt(r['lower'])} – {fmt(r['upper'])}"


def _headline(ctx: _Context) -> str:
    run, choice = ctx.run, ctx.choice
    name, why = recommendation_text(choice, ctx.currency)
    problems = choice.loc[ctx.run["model"], "problems"] if ctx.run["model"] in choice.index else []
    chosen_by = "" if name == run["model"] else f" (chosen by the caller; the rule would pick {_esc(name)})"
    total, active = ctx.total, ctx.active
    n = len(ctx.customers)
    cards = [
        _card("Which model to use", _esc(run["model"]) + chosen_by,
              f"<p>{why}</p>" + (f"<p><b>Problems:</b> {_esc('; '.join(problems))}.</p>" if problems else "")
              + "<p class='note'>Rule: the model with the fewest problems (total beyond ±"
              f"{TOTAL_ERROR_LIMIT:g}%, actual total outside its interval, 90% coverage outside "
              f"{0.9 - COVERAGE_TOLERANCE:.0%}–{0.9 + COVERAGE_TOLERANCE:.0%}); ties: lowest CRPS.</p>",
              bad=bool(problems)),
        _card(f"Expected value of the customer base, next {ctx.horizon}", ctx.money(total["mean"].iloc[0]),
              f"<p>{_interval_text(total, ctx.money)}: with {total.attrs['interval']:.0%} probability the {n:,} "
              f"customers will actually spend this much, discounted at {run['discount_rate']:.1%} per "
              f"{unit_name(run['period'])[:-1]} (includes both purchase randomness and parameter uncertainty; "
              "new customers are not counted).</p>"),
        _card("How many customers are likely active", f"{active['mean'].iloc[0]:,.0f} of {n:,} "
              f"({active['mean'].iloc[0] / n:.0%})",
              f"<p>{_interval_text(active, lambda v: f'{v:,.0f}')} (the sum of each customer's P(alive) at "
              f"{_esc(run['observation_end'])}, simulated with parameter uncertainty).{_never_dropped(ctx)}</p>"),
        _miss_card(ctx),
    ]
    target = choice.attrs["target"]
    table = _table(criteria_table(choice), index_name=f"forecast (holdout {TARGET_NAMES[target]})",
                   unit=target_unit(target, ctx.currency),
                   cell_class=lambda idx, col, _: _criteria_mark(choice, idx, col))
    return (f'<div class="headline"><div class="cards">{"".join(cards)}</div>{table}'
            f'<p class="note">Red cells break the rule: total error beyond ±{TOTAL_ERROR_LIMIT:g}%, 90% coverage '
            f"outside {0.9 - COVERAGE_TOLERANCE:.0%}–{0.9 + COVERAGE_TOLERANCE:.0%}. Details, the rule and every term: "
            "sections below and the glossary.</p></div>")


def criteria_table(choice: pd.DataFrame) -> pd.DataFrame:
    """The criteria of :func:`~clvmodels.report.recommend_model` formatted for reading."""
    def fmt(fn):
        return lambda v: "–" if pd.isna(v) else fn(v)

    return pd.DataFrame({
        "total_error_pct": choice["total_error_pct"].map(fmt(lambda v: f"{v:+.1f}%")),
        "coverage_90": choice["coverage_90"].map(fmt(lambda v: f"{v:.0%}")),
        "spearman": choice["spearman"].map(fmt(lambda v: f"{v:.2f}")),
        "mae": choice["mae"].map(fmt(lambda v: f"{v:.2f}")),
        "crps": choice["crps"].map(fmt(lambda v: f"{v:.2f}")),
    }, index=choice.index)


def _criteria_mark(choice: pd.DataFrame, idx, col) -> str | None:
    """Cell class of a criterion: ``off`` when it breaks the rule, ``near`` when it keeps it."""
    value = choice.loc[idx, col] if col in ("total_error_pct", "coverage_90") else np.nan
    if pd.isna(value):
        return None
    if col == "total_error_pct":
        return "off" if abs(value) > TOTAL_ERROR_LIMIT else "near"
    if col == "coverage_90":
        return "off" if abs(value - 0.9) > COVERAGE_TOLERANCE else "near"
    return None


def _card(question: str, answer: str, body: str, bad: bool | None = None) -> str:
    cls = "" if bad is None else (" bad" if bad else " good")
    return f'<div class="card{cls}"><div class="q">{_esc(question)}</div><div class="a">{answer}</div>{body}</div>'


def _never_dropped(ctx: _Context) -> str:
    """A note when the model counts every customer without a repeat purchase as alive (BG/NBD's assumption)."""
    once = ctx.customers.loc[ctx.customers["frequency"] == 0, "p_alive"]
    if len(once) == 0 or once.min() < 1 - 1e-9:
        return ""
    return (f" {_esc(ctx.run['model'])} counts the {len(once):,} customers who never bought again as active: in this "
            "model a customer can only drop out right after a repeat purchase.")


def _miss_card(ctx: _Context) -> str:
    totals = ctx.result.totals
    target = "value" if (totals["target"] == "value").any() else "purchases"
    rows = totals[(totals["model"] == ctx.run["model"]) & (totals["target"] == target)]
    if len(rows) == 0:
        return _card("How much the forecast missed in the backtest", "–", "<p>No backtest total.</p>")
    r = rows.iloc[-1]
    fmt = ctx.money if target == "value" else (lambda v: f"{v:,.0f} purchases")
    inside = r["inside"]
    bad = abs(r["error_pct"]) > TOTAL_ERROR_LIMIT or (not pd.isna(inside) and not bool(inside))
    where = "" if pd.isna(inside) else (
        f"; the actual lies {'inside' if inside else '<b>outside</b>'} its {r['level']:.0%} predictive interval "
        f"{fmt(r['lower'])} – {fmt(r['upper'])}")
    length = ctx.result.data.set_index("calibration_end").loc[r["cutoff"], "holdout_length"]
    did = "customers actually spent" if target == "value" else "customers actually made"
    return _card("How much the forecast missed in the backtest", f"{r['error_pct']:+.1f}%",
                 f"<p>Fitted up to {_esc(r['cutoff'])}, it predicted {fmt(r['predicted'])} of holdout "
                 f"{TARGET_NAMES[target]} over the next {length:g} {unit_name(ctx.run['time_unit'])}; {did} "
                 f"{fmt(r['actual'])}{where}. Rule: a miss beyond ±{TOTAL_ERROR_LIMIT:g}% or outside the interval is "
                 "a problem.</p>", bad=bool(bad))


def _value_section(ctx: _Context) -> str:
    c = ctx.customers
    conc = ctx.concentration
    shares = ", ".join(f"the top {s:.0%} of customers hold {v:.0%}" for s, v in conc.items())
    per = c["clv_mean"]
    text = (f"<p>Expected CLV over the next {ctx.horizon} (discounted at {ctx.run['discount_rate']:.1%} per "
            f"{unit_name(ctx.run['period'])[:-1]}): total {ctx.money(ctx.total['mean'].iloc[0])} "
            f"({_interval_text(ctx.total, ctx.money)}); per customer: mean {ctx.money(per.mean(), 2)}, median "
            f"{ctx.money(per.median(), 2)}, 90th percentile {ctx.money(per.quantile(0.9), 2)}. "
            f"Value concentration: {shares}. {c['p_no_purchase'].mean():.0%} of customers are expected to buy "
            "nothing in the horizon (mean probability of no purchase).</p>")
    return text + _plot(plotting.plot_clv_distribution, per, currency=ctx.currency, horizon=f", next {ctx.horizon}",
                        caption=(f"Left: how many customers have each expected CLV ({_esc(ctx.currency)}, next "
                                 f"{ctx.horizon}; count on a log scale; values above the 99th percentile, "
                                 f"{ctx.money(per.quantile(0.99))}, pooled in the last bar). Right: share of the total expected CLV "
                                 "(vertical) held by the customers with the highest expected CLV (horizontal); the "
                                 "dotted diagonal is an equal split."))


def _segments_section(ctx: _Context) -> str:
    table = ctx.segments
    shown = pd.DataFrame({
        "customers": table["customers"].map(lambda v: f"{v:,}"),
        "share of customers": table["share_of_customers"].map(lambda v: f"{v:.1%}"),
        "mean P(alive)": table["mean_p_alive"].map(lambda v: f"{v:.2f}"),
        "expected active customers": table["expected_active"].map(lambda v: f"{v:,.0f}"),
        f"expected CLV ({ctx.currency})": table["expected_clv"].map(ctx.money),
        f"{table.attrs.get('interval', 0.9):.0%} predictive interval": [
            f"{ctx.money(lo)} – {ctx.money(hi)}" for lo, hi in zip(table["clv_lower"], table["clv_upper"])],
        f"per customer ({ctx.currency})": table["clv_per_customer"].map(lambda v: ctx.money(v, 2)),
        "share of value": table["share_of_value"].map(lambda v: f"{v:.1%}"),
    }, index=table.index)
    rule = ("Segments: P(alive) tiers (likely active: P(alive) ≥ 0.7; at risk: 0.3 to 0.7; likely lost: below 0.3) "
            "crossed with value tiers (the 10% of customers with the highest expected CLV, the next 40%, the bottom "
            "50%). " if ctx.run["default_segments"] else "Segments as given. ")
    return (f'<p class="note">{rule}Expected CLV over the next {_esc(ctx.horizon)} in {_esc(ctx.currency)}; the '
            "interval is the predictive interval of the segment's total (what its customers will actually spend, "
            "with process and parameter uncertainty); expected active customers: the sum of P(alive). Export: "
            "<code>report.export_segments('segments.csv')</code> (or <code>.parquet</code>; "
            "<code>--segments-out</code> on the command line).</p>" + _table(shown, index_name="segment"))


def _customers_section(ctx: _Context) -> str:
    c = ctx.customers.sort_values("clv_mean", ascending=False).head(ctx.top)
    unit = unit_name(ctx.run["time_unit"])
    cols = {"segment": ("segment", str), "clv_mean": (f"expected CLV ({ctx.currency})", lambda v: ctx.money(v, 2)),
            "clv_lower": ("interval", None), "p_no_purchase": ("P(no purchase)", lambda v: f"{v:.2f}"),
            "p_alive": ("P(alive)", lambda v: f"{v:.2f}"), "frequency": ("repeat purchases", lambda v: f"{v:,}"),
            "recency": (f"last purchase ({unit} after first)", lambda v: f"{v:.1f}"),
            "T": (f"age ({unit})", lambda v: f"{v:.1f}")}
    if "monetary_value" in c.columns:
        cols["monetary_value"] = (f"mean repeat spend ({ctx.currency})", lambda v: ctx.money(v, 2))
    shown = pd.DataFrame(index=c.index.astype(str))
    for col, (label, fmt) in cols.items():
        if col == "clv_lower":
            shown[f"{ctx.run['interval']:.0%} predictive interval ({ctx.currency})"] = [
                f"{ctx.money(lo, 2)} – {ctx.money(hi, 2)}" for lo, hi in zip(c["clv_lower"], c["clv_upper"])]
        else:
            shown[label] = [fmt(v) for v in c[col]]
    return ('<p class="note">The customers with the highest expected CLV over the next '
            f"{_esc(ctx.horizon)}, each with the {ctx.run['interval']:.0%} predictive interval of what she will "
            "actually spend (discounted) and the probability that she buys nothing in the horizon.</p>"
            + _table(shown, index_name="customer", text_columns=("segment",)))


def _choice_section(ctx: _Context) -> str:
    choice = ctx.choice
    target = choice.attrs["target"]
    frame = criteria_table(choice)
    frame.insert(0, "kind", choice["kind"])
    frame.insert(2, "actual total inside its interval",
                 choice["inside"].map(lambda v: "–" if pd.isna(v) else ("yes" if v else "no")))
    frame["problems"] = choice["problems"].map(lambda p: "; ".join(p) or "none")
    frame["recommended"] = choice["recommended"].map({True: "yes", False: "no"})
    return (f'<p class="note">{_esc(choice.attrs["rule"])} Criteria on the holdout {TARGET_NAMES[target]}'
            f'{" (mean over cutoffs)" if len(ctx.result.cutoffs) > 1 else ""}; MAE and CRPS in '
            f"{_esc(target_unit(target, ctx.currency))}. The totals' and per-customer details follow in the backtest "
            "sections.</p>" + _table(frame, index_name="forecast", unit=target_unit(target, ctx.currency),
                                     cell_class=lambda idx, col, _: _criteria_mark(choice, idx, col),
                                     text_columns=("kind", "problems")))


def _fit_section(ctx: _Context) -> str:
    name = ctx.run["model"]
    c = ctx.customers
    out = [_plot(plotting.plot_period_transactions, ctx.purchase, label=name, caption=(
        f"Number of customers with 0, 1, 2, ... repeat purchases up to {_esc(ctx.run['observation_end'])}: observed "
        f"(black) and expected by {_esc(name)} fitted on the whole log (blue), each customer over her own observed "
        "time. Bars of similar height mean the model reproduces how often customers buy."))]
    examples = [c["clv_mean"].idxmax()]
    at_risk = c[(c["p_alive"] < 0.7) & (c["frequency"] >= 3)]
    if len(at_risk):
        examples.append(at_risk["clv_mean"].idxmax())
    for cid in examples:
        row = c.loc[cid]
        out.append(_plot(plotting.plot_history_alive, ctx.purchase, ctx.log, cid, caption=(
            f"Customer {_esc(cid)} ({_esc(row['segment'])}): her purchases (dashed lines) and her P(alive) over time "
            f"under {_esc(name)}, which jumps up after each purchase and decays while she does not buy; P(alive) at "
            f"the end: {row['p_alive']:.2f}.")))
    out.append(_plot(plotting.plot_conditional_expectations, ctx.result, caption=CONDITIONAL_CAPTION))
    for t in ("purchases", "value"):
        if f"pit_{t}" in ctx.result.predictions.columns:
            out.append(_plot(plotting.plot_calibration, ctx.result, target=t, caption=calibration_caption(t)))
    return "".join(out)


def _warnings(ctx: _Context) -> tuple[str, str]:
    rows = model_warnings(pd.concat([ctx.result.warnings, pd.DataFrame(ctx.fit_warnings, columns=ctx.result.warnings.columns)],
                                    ignore_index=True))
    notes = ctx.active.attrs.get("notes", [])
    items = [f'<div class="warn"><b>{_esc(r["category"])}</b> – {_esc(r["model"])}, '
             f'{"fit on the " + _esc(r["cutoff"]) if r["cutoff"] == "whole log" else "calibration end " + _esc(r["cutoff"])}: '
             f'{_esc(r["message"])}</div>' for _, r in rows.iterrows()]
    items += [f'<div class="warn"><b>PredictiveWarning</b> – active customers: {_esc(n)}</div>' for n in notes]
    body = "".join(items) or ('<p class="note">No warnings: every fit converged, no assumption check failed and no '
                              "interval missed.</p>")
    return f"Warnings ({len(items)})", ('<p class="note">Only warnings about the models: fits that did not converge, '
                                         "parameters decided by the prior, violated assumptions, failed fits and "
                                         "totals outside their intervals or off by more than ±"
                                         f"{TOTAL_ERROR_LIMIT:g}%.</p>" + body)
