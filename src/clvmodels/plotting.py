"""Diagnostic plots of CLV models and backtests (matplotlib; each function returns a ``Figure``).

Plots of a backtest take a :class:`~clvmodels.backtest.BacktestResult` (or the relevant tidy frame
of one); plots of a model take a fitted purchase model. Figures are built with
``matplotlib.figure.Figure`` (not ``pyplot``), so making many of them leaks no global state; pass
``ax=`` to draw into an existing axes instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import metrics as M
from .errors import ClvDataError
from .periods import period_start_days
from .units import UNIT_NAMES

#: Colour of the actual values in every plot.
ACTUAL_COLOR = "black"
#: How plots name a backtest's targets (``clv`` is the discounted holdout value).
_TARGETS = {"clv": "discounted CLV"}


def _axes(ax, figsize=(8, 4.5)):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _frame(result, name: str) -> pd.DataFrame:
    frame = result if isinstance(result, pd.DataFrame) else getattr(result, name)
    if frame is None or len(frame) == 0:
        raise ClvDataError(f"There is no {name} data to plot.")
    return frame


def _one_cutoff(frame: pd.DataFrame, cutoff):
    cutoffs = list(dict.fromkeys(frame["cutoff"]))
    cutoff = cutoffs[-1] if cutoff is None else str(cutoff)
    if cutoff not in cutoffs:
        raise ClvDataError(f"Unknown cutoff {cutoff!r}; the result has {cutoffs}.")
    return frame[frame["cutoff"] == cutoff], cutoff


#: Forecast colours: tab10 without its red, which marks missed intervals.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _colors(names):
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def legend_outside(ax) -> None:
    """The legend right of the axes, where it cannot cover data (constrained layout makes room)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=9)


def _actual_and_forecasts(ax, frame, names, x: str):
    """Plot the ``actual`` column (from the first forecast's rows) and each forecast's ``predicted``
    against column ``x``; returns the first forecast's rows."""
    first = frame[frame["model"] == names[0]]
    ax.plot(first[x], first["actual"], color=ACTUAL_COLOR, lw=2.2, marker="o", label="actual")
    colors = _colors(names)
    for name in names:
        part = frame[frame["model"] == name]
        ax.plot(part[x], part["predicted"], color=colors[name], ls="--", marker=".", label=name)
    return first


# ---------------------------------------------------------------------------- backtest plots
def plot_tracking(result, *, cumulative: bool = False, cutoff=None, models=None, ax=None) -> Figure:
    """Actual vs expected repeat transactions of the cohort per period (FHL 2005, figs. 2 and 3).

    Parameters
    ----------
    result
        A :class:`~clvmodels.backtest.BacktestResult` or its ``tracking`` frame.
    cumulative
        Cumulative instead of per-period (incremental) transactions.
    cutoff
        Calibration end to show (default: the latest).
    models
        Names of the models to draw (default: all with a tracking series).
    """
    frame, cutoff = _one_cutoff(_frame(result, "tracking"), cutoff)
    names = list(dict.fromkeys(frame["model"])) if models is None else list(models)
    fig, ax = _axes(ax)
    col = "_cumulative" if cumulative else ""
    first = frame[frame["model"] == names[0]]
    ax.plot(first["period_end"], first["actual" + col], color=ACTUAL_COLOR, lw=2, label="actual")
    colors = _colors(names)
    for name in names:
        part = frame[frame["model"] == name]
        ax.plot(part["period_end"], part["predicted" + col], color=colors[name], ls="--", lw=1.8,
                label=f"{name} (expected)")
    boundary = first.loc[first["phase"] == "calibration", "period_end"].max()
    ax.axvline(boundary, color="grey", ls=":", lw=1)
    ax.text(boundary, 0.97, " holdout →", va="top", ha="left", color="grey", fontsize=9,
            transform=ax.get_xaxis_transform())
    ax.set_xlabel("period ending")
    ax.set_ylabel(("cumulative " if cumulative else "") + "repeat transactions")
    weekly = len(first) > 1 and np.median(np.diff(first["period_end"].to_numpy())) == np.timedelta64(7, "D")
    kind = "Cumulative" if cumulative else ("Weekly" if weekly else "Per-period")
    ax.set_title(f"{kind} repeat transactions, calibration end {cutoff}")
    legend_outside(ax)
    return fig


def plot_conditional_expectations(result, *, cutoff=None, models=None, ax=None) -> Figure:
    """Mean holdout purchases by calibration frequency 0..7+: actual vs each forecast (FHL 2005, fig. 4)."""
    frame, cutoff = _one_cutoff(_frame(result, "conditional"), cutoff)
    names = list(dict.fromkeys(frame["model"])) if models is None else list(models)
    fig, ax = _axes(ax)
    _actual_and_forecasts(ax, frame, names, "frequency")
    ax.set_xlabel("repeat transactions in the calibration period")
    ax.set_ylabel("mean repeat transactions in the holdout")
    ax.set_title(f"Conditional expectations, calibration end {cutoff}")
    legend_outside(ax)
    return fig


def plot_calibration(result, *, target: str = "purchases", cutoff=None, bins: int = 10) -> Figure:
    """Calibration of the predictive distributions: randomised-PIT histograms and interval coverage.

    Left: the share of customers in each PIT bin (flat at ``1/bins`` when calibrated; a U shape means
    too narrow, a hump too wide, a slope a biased forecast). Right: empirical vs nominal coverage of
    the central 50/80/90% intervals per model.
    """
    preds, cutoff = _one_cutoff(_frame(result, "predictions"), cutoff)
    col = f"pit_{target}"
    if col not in preds.columns or preds[col].notna().sum() == 0:
        raise ClvDataError(f"No PIT values for {target}: no model in the result has predictive distributions.")
    names = [n for n in dict.fromkeys(preds["model"]) if preds.loc[preds["model"] == n, col].notna().any()]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_pit, ax_cov = fig.subplots(1, 2)
    colors = _colors(names)
    edges = np.linspace(0, 1, bins + 1)
    width = (edges[1] - edges[0]) / (len(names) + 1)
    for i, name in enumerate(names):
        pit = preds.loc[preds["model"] == name, col].to_numpy(dtype=float)
        ax_pit.bar(edges[:-1] + (i + 0.5) * width, M.pit_histogram(pit, bins), width=width,
                   color=colors[name], label=name, align="edge")
        cov = M.pit_coverage(pit)
        ax_cov.plot(list(cov), list(cov.values()), marker="o", color=colors[name], label=name)
    ax_pit.axhline(1 / bins, color=ACTUAL_COLOR, ls="--", lw=1, label="calibrated")
    ax_pit.set_xlabel("randomised PIT")
    ax_pit.set_ylabel("share of customers")
    ax_pit.set_title(f"PIT histogram ({_TARGETS.get(target, target)})")
    ax_cov.plot([0.4, 1], [0.4, 1], color=ACTUAL_COLOR, ls="--", lw=1, label="nominal")
    ax_cov.set_xlabel("nominal coverage of the central interval")
    ax_cov.set_ylabel("share of customers inside")
    ax_cov.set_title(f"Interval coverage ({_TARGETS.get(target, target)}), cutoff {cutoff}")
    handles, labels = ax_pit.get_legend_handles_labels()
    extra = ax_cov.get_legend_handles_labels()
    fig.legend(handles + extra[0][-1:], labels + extra[1][-1:], loc="outside right upper", fontsize=9)
    return fig


def plot_lift(result, *, target: str = "value", cutoff=None, ax=None) -> Figure:
    """Cumulative gains: share of the actual holdout ``target`` captured by the predicted top customers."""
    preds, cutoff = _one_cutoff(_frame(result, "predictions"), cutoff)
    if target not in preds.columns:
        raise ClvDataError(f"The result has no {target} predictions.")
    names = list(dict.fromkeys(preds["model"]))
    fig, ax = _axes(ax, figsize=(7.5, 5))
    colors = _colors(names)
    actual = preds.loc[preds["model"] == names[0], f"actual_{target}"].to_numpy(dtype=float)
    x, perfect = M.gains_curve(actual, actual)
    ax.plot(x, perfect, color=ACTUAL_COLOR, lw=2, label="perfect ranking")
    for name in names:
        part = preds[preds["model"] == name]
        if part[target].isna().all():
            continue
        x, captured = M.gains_curve(part[f"actual_{target}"], part[target])
        ax.plot(x, captured, color=colors[name], label=name)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="random")
    for q in (0.1, 0.2):
        ax.axvline(q, color="grey", lw=0.6, alpha=0.6)
    ax.set_xlabel("share of customers, ranked by prediction")
    ax.set_ylabel(f"share of actual holdout {_TARGETS.get(target, target)}")
    ax.set_title(f"Lift of holdout {_TARGETS.get(target, target)} (cumulative gains)\ncalibration end {cutoff}")
    legend_outside(ax)
    return fig


def plot_totals(result, *, target: str = "purchases", ax=None) -> Figure:
    """Predicted holdout totals (with their intervals, where the model has them) against the actual."""
    totals = _frame(result, "totals")
    totals = totals[totals["target"] == target]
    if len(totals) == 0:
        raise ClvDataError(f"The result has no {target} totals.")
    names = list(dict.fromkeys(totals["model"]))
    cutoffs = list(dict.fromkeys(totals["cutoff"]))
    fig, ax = _axes(ax, figsize=(8, 0.6 + 0.45 * len(names) * len(cutoffs) + 0.8))
    colors = _colors(names)
    y = 0
    ticks, labels = [], []
    for cutoff in cutoffs:
        part = totals[totals["cutoff"] == cutoff]
        actual = float(part["actual"].iloc[0])
        top = y
        for _, r in part.iterrows():
            has = np.isfinite(r["lower"])
            if has:
                ax.plot([r["lower"], r["upper"]], [y, y], color=colors[r["model"]], lw=3, alpha=0.6)
            miss = has and not bool(r["inside"])
            ax.plot(r["predicted"], y, "o", color=colors[r["model"]], ms=7,
                    markeredgecolor="red" if miss else colors[r["model"]], markeredgewidth=2 if miss else 1)
            ticks.append(y)
            labels.append(f"{r['model']}" + (f" ({cutoff})" if len(cutoffs) > 1 else ""))
            y += 1
        ax.plot([actual, actual], [top - 0.4, y - 0.6], color=ACTUAL_COLOR, lw=2)
        y += 0.5
    ax.plot([], [], color=ACTUAL_COLOR, lw=2, label="actual total")
    ax.plot([], [], color="grey", lw=3, alpha=0.6, label="predicted interval")
    ax.set_yticks(ticks, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"holdout {_TARGETS.get(target, target)}, total over customers")
    ax.set_title(f"Predicted vs actual holdout {_TARGETS.get(target, target)} total")
    legend_outside(ax)
    return fig



def plot_survivors(result, *, cohort=None, ax=None) -> Figure:
    """Actual vs projected survivors of a cohort per period (Fader & Hardie 2007, figs. 3-4).

    ``result`` is a :class:`~clvmodels.retention.RetentionBacktestResult` or its ``survivors`` frame.
    """
    frame = _frame(result, "survivors")
    cohorts = list(dict.fromkeys(frame["cohort"]))
    cohort = cohorts[0] if cohort is None else cohort
    if cohort not in cohorts:
        raise ClvDataError(f"Unknown cohort {cohort!r}; the result has {cohorts}.")
    frame = frame[frame["cohort"] == cohort]
    names = list(dict.fromkeys(frame["model"]))
    fig, ax = _axes(ax)
    first = _actual_and_forecasts(ax, frame, names, "period")
    boundary = first.loc[first["phase"] == "calibration", "period"].max()
    ax.axvline(boundary, color="grey", ls=":", lw=1)
    ax.text(boundary, 0.97, " holdout →", va="top", ha="left", color="grey", fontsize=9,
            transform=ax.get_xaxis_transform())
    ax.set_xlabel("period")
    ax.set_ylabel("customers still active")
    ax.set_title(f"Survivors of the cohort {cohort}: actual vs projected")
    legend_outside(ax)
    return fig

# ---------------------------------------------------------------------------- CLV plots
def plot_clv_distribution(values, *, currency: str = "$", horizon: str = "", ax=None) -> Figure:
    """Left: histogram of the customers' expected CLV (customers on a log scale; values above the
    99th percentile pooled in the last bar). Right: value concentration, the share of the total expected CLV held by the
    top x% of customers (:func:`clvmodels.metrics.gains_curve` of the values against themselves),
    with the top 1%, 10% and 20% marked."""
    values = np.asarray(values, dtype=float)
    currency = currency.replace("$", r"\$")  # a literal dollar, not mathtext
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ClvDataError("plot_clv_distribution needs finite CLV values.")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_hist, ax_con = fig.subplots(1, 2)
    top = float(np.quantile(values, 0.99))
    ax_hist.hist(np.minimum(values, top), bins=40, color=_PALETTE[0])
    ax_hist.set_yscale("log")
    ax_hist.set_xlabel(f"expected CLV per customer{horizon} ({currency})")
    ax_hist.set_ylabel("number of customers (log scale)")
    ax_hist.set_title("Expected CLV per customer")
    x, share = M.gains_curve(values, values, n_points=1001)
    ax_con.plot(x, share, color=_PALETTE[0], lw=2, label="customers ranked by expected CLV")
    ax_con.plot([0, 1], [0, 1], color="grey", ls=":", label="equal value")
    for q in (0.01, 0.1, 0.2):
        y = float(np.interp(q, x, share))
        ax_con.plot([q], [y], "o", color=ACTUAL_COLOR)
        ax_con.annotate(f"top {q:.0%}: {y:.0%}", (q, y), textcoords="offset points", xytext=(8, -12), fontsize=9)
    ax_con.set_xlabel("share of customers, highest expected CLV first")
    ax_con.set_ylabel("share of the total expected CLV")
    ax_con.set_title("Value concentration")
    legend_outside(ax_con)
    return fig


# ---------------------------------------------------------------------------- model plots
def _grid(model, max_frequency, max_recency, T):
    rfm = getattr(model, "rfm_", None)
    if rfm is None and (max_frequency is None or max_recency is None):
        raise ClvDataError("Pass max_frequency= and max_recency= (the model has no training data attached).")
    max_frequency = int(rfm["frequency"].max()) if max_frequency is None else int(max_frequency)
    max_recency = float(rfm["T"].max()) if max_recency is None else float(max_recency)
    T = max_recency if T is None else float(T)
    if max_recency > T:
        raise ClvDataError(f"max_recency ({max_recency}) cannot exceed the age T ({T}).")
    freq = np.arange(max_frequency + 1)
    rec = np.linspace(0, max_recency, 60)
    f, r = np.meshgrid(freq, rec, indexing="ij")
    grid = pd.DataFrame({"frequency": f.ravel(), "recency": np.where(f.ravel() == 0, 0.0, r.ravel()),
                         "T": T})
    return grid, freq, rec, T


def _matrix_plot(values, freq, rec, title, label, ax, unit="time units"):
    fig, ax = _axes(ax, figsize=(6, 4.6))
    im = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis",
                   extent=[rec[0], rec[-1], freq[0] - 0.5, freq[-1] + 0.5])
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel(f"recency: age at the last purchase ({unit} after the first)")
    ax.set_ylabel("frequency (repeat purchases)")
    ax.set_title(title)
    return fig


def _unit_name(model) -> str:
    unit = getattr(model, "time_unit_", None)
    return UNIT_NAMES.get(unit, "time units")


def plot_probability_alive_matrix(model, *, max_frequency=None, max_recency=None, T=None, label: str | None = None,
                                  ax=None) -> Figure:
    """P(alive) over frequency × recency for customers of age ``T`` (default: the oldest customer).

    Defaults for the ranges come from the model's training data; ``label`` (e.g. the model's name)
    starts the title.
    """
    grid, freq, rec, T = _grid(model, max_frequency, max_recency, T)
    values = model.probability_alive(grid).to_numpy().reshape(len(freq), len(rec))
    title = f"Probability alive at age T = {T:.3g} {_unit_name(model)}"
    return _matrix_plot(values, freq, rec, f"{label}\n{title}" if label else title, "P(alive)", ax,
                        _unit_name(model))


def plot_frequency_recency_matrix(model, t: float = 1.0, *, max_frequency=None, max_recency=None, T=None,
                                  label: str | None = None, ax=None) -> Figure:
    """Expected purchases in the next ``t`` periods over frequency × recency, for customers of age ``T``."""
    grid, freq, rec, T = _grid(model, max_frequency, max_recency, T)
    values = model.expected_purchases(t, grid).to_numpy().reshape(len(freq), len(rec))
    unit = _unit_name(model)
    window = f"{t:g} {unit[:-1] if t == 1 else unit}"
    title = f"Expected purchases in the next {window} (age T = {T:.3g} {unit})"
    return _matrix_plot(values, freq, rec, f"{label}\n{title}" if label else title, "expected purchases", ax, unit)


def period_transactions(model, rfm: pd.DataFrame | None = None, *, max_frequency: int = 7) -> pd.DataFrame:
    """Observed vs expected number of customers with 0, 1, ..., ``max_frequency``+ repeat purchases.

    The expected count of ``k`` sums over customers the model's probability that a customer just
    acquired makes ``k`` repeat purchases in her observed age ``T_i`` (the purchase pmf of an empty
    history over the window ``T_i``: FHL 2005 eq. 8 for BG/NBD); the last row pools ``max_frequency``
    and more. Distinct ages are evaluated once.
    """
    from .predictive import purchase_pmf

    rfm = model._rfm_or_fitted(rfm)
    k = int(max_frequency)
    if k < 1:
        raise ClvDataError(f"max_frequency must be a positive integer, got {max_frequency!r}.")
    observed = np.bincount(np.minimum(rfm["frequency"].to_numpy(dtype=np.int64), k), minlength=k + 1)
    ages, counts = np.unique(rfm[model.age_column].to_numpy(dtype=float), return_counts=True)
    expected = np.zeros(k + 1)
    empty = pd.DataFrame({c: [0.0] for c in model.data_columns})
    empty.attrs.update(rfm.attrs)
    for age, n in zip(ages, counts):
        if age <= 0:  # acquired at the end of observation: no time to buy again
            expected[0] += n
        else:
            expected += n * purchase_pmf(model, age, k, empty)[0]
    labels = [str(i) for i in range(k)] + [f"{k}+"]
    return pd.DataFrame({"observed": observed, "expected": expected}, index=pd.Index(labels, name="repeat_purchases"))


def plot_period_transactions(model, rfm: pd.DataFrame | None = None, *, max_frequency: int = 7,
                             label: str | None = None, ax=None) -> Figure:
    """Bars of the observed vs the model's expected number of customers by repeat purchases in the
    calibration period (:func:`period_transactions`; lifetimes' ``plot_period_transactions``)."""
    table = period_transactions(model, rfm, max_frequency=max_frequency)
    fig, ax = _axes(ax, figsize=(8, 4.2))
    title = "Customers by number of repeat purchases: observed vs expected"
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["observed"], width=0.4, color=ACTUAL_COLOR, label="observed")
    ax.bar(x + 0.2, table["expected"], width=0.4, color=_PALETTE[0], label="expected by the model")
    ax.set_xticks(x, table.index)
    ax.set_xlabel("repeat purchases in the period the model was fitted on")
    ax.set_ylabel("number of customers")
    ax.set_title(f"{label}: {title}" if label else title)
    legend_outside(ax)
    return fig


def history_alive(model, transactions, customer_id, *, end=None, n_points: int = 300) -> pd.DataFrame:
    """One customer's P(alive) over time, given her purchases up to each moment.

    At age ``τ`` (in the model's time unit since her first purchase) her history is ``x`` = repeat
    purchases by ``τ``, ``t_x`` = the time of the last one and ``T = τ``; P(alive) is the model's
    :meth:`probability_alive` of that history. The grid holds ``n_points`` ages up to ``end``
    (default: the model's end of observation) and every purchase time, where the value is the one
    just after the purchase. Purchases count once per period of the model's resolution (a day).

    Returns a frame with ``date``, ``age``, ``frequency``, ``recency``, ``T``, ``p_alive`` and
    ``purchase`` (whether a purchase happened at that point), and the purchase dates in ``attrs``.
    """
    from .data import CUSTOMER, TIMESTAMP, as_log
    from .units import unit_days

    if model.age_column != "T":
        raise ClvDataError(f"{type(model).__name__} counts discrete opportunities: history_alive needs a "
                           "continuous-time purchase model.")
    model._check_fitted()
    log = as_log(transactions)
    fitted = getattr(model, "rfm_", None)
    attrs = {} if fitted is None else fitted.attrs
    res = attrs.get("resolution", "D")
    unit_len = unit_days(getattr(model, "time_unit_", None) or attrs.get("time_unit", "D"))
    ids = log[CUSTOMER]
    mine = log.loc[ids.astype(str) == str(customer_id), TIMESTAMP]
    if len(mine) == 0:
        raise ClvDataError(f"Customer {customer_id!r} has no transaction in the log.")
    days = np.unique(period_start_days(mine.to_numpy(), res))
    if end is None:
        end = attrs.get("observation_end") or log[TIMESTAMP].max()
    end_day = float(period_start_days(np.array([pd.Timestamp(end).to_datetime64()]), res)[0])
    days = days[days <= end_day]
    if len(days) == 0:
        raise ClvDataError(f"Customer {customer_id!r} has no transaction before {end}.")
    purchases = (days - days[0]) / unit_len
    ages = np.union1d(np.linspace(0.0, (end_day - days[0]) / unit_len, int(n_points)), purchases)
    n_before = np.searchsorted(purchases, ages + 1e-9, side="right")  # purchases up to and including τ
    grid = pd.DataFrame({"frequency": n_before - 1, "recency": purchases[n_before - 1], "T": ages})
    grid.attrs.update(time_unit=getattr(model, "time_unit_", None))
    frame = grid.assign(p_alive=model.probability_alive(grid).to_numpy(), age=ages,
                        purchase=np.isin(ages, purchases))
    frame.insert(0, "date", pd.Timestamp("1970-01-01") + pd.to_timedelta(days[0] + ages * unit_len, unit="D"))
    frame.attrs["purchase_dates"] = list(frame.loc[frame["purchase"], "date"])
    return frame


def plot_history_alive(model, transactions, customer_id, *, end=None, ax=None) -> Figure:
    """A customer's purchases (vertical lines) and her P(alive) over time (:func:`history_alive`;
    lifetimes' ``plot_history_alive``)."""
    frame = history_alive(model, transactions, customer_id, end=end)
    fig, ax = _axes(ax, figsize=(8, 3.6))
    ax.plot(frame["date"], frame["p_alive"], color=_PALETTE[0], lw=1.8, label="P(alive)")
    for i, date in enumerate(frame.attrs["purchase_dates"]):
        ax.axvline(date, color=ACTUAL_COLOR, ls="--", lw=0.9, label="purchase" if i == 0 else None)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("date")
    ax.set_ylabel("P(alive)")
    ax.set_title(f"Customer {customer_id}: purchases and probability alive over time")
    legend_outside(ax)
    return fig


def plot_regularity(regularity, *, bins: int = 20, ax=None) -> Figure:
    """Histogram of Wheat & Morrison's ``M = t1/(t1+t2)`` (a
    :class:`~clvmodels.regularity.Regularity`) against the ``Beta(1, 1)`` density of Poisson buying
    (``k = 1``) and the ``Beta(2, 2)`` of Erlang-2 gaps: a hump in the middle means regular buyers."""
    from scipy import stats

    fig, ax = _axes(ax)
    ax.hist(regularity.m.to_numpy(), bins=bins, range=(0.0, 1.0), density=True, color="0.8",
            edgecolor="white", label=f"{len(regularity.m):,} customers")
    grid = np.linspace(0.0, 1.0, 201)
    for k, style in ((1, "--"), (2, ":")):
        ax.plot(grid, stats.beta(k, k).pdf(grid), style, color=ACTUAL_COLOR, label=f"Beta({k}, {k}): k = {k}")
    ax.set_xlabel("M = t1 / (t1 + t2), the last two inter-purchase times")
    ax.set_ylabel("density")
    ax.set_title(f"Purchase regularity (Wheat & Morrison): k = {regularity.k_wheat:.2f}")
    legend_outside(ax)
    return fig
