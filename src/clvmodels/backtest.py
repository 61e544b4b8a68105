"""Backtests: fit on a calibration period, predict the holdout, compare with what customers did.

:func:`backtest` runs every purchase model (BG/NBD, or any :class:`~clvmodels.CLVModel` with
``expected_purchases``) and the baselines of :mod:`clvmodels.baselines` on one or several
calibration cutoffs (rolling origin) and returns a :class:`BacktestResult` of tidy frames:

* ``metrics``: one row per cutoff, model, target (``purchases`` or ``value``) and metric;
* ``totals``: the predicted and actual holdout totals with the predicted total's 90% interval
  (models with predictive distributions) and whether the actual total falls inside;
* ``predictions``: every customer's predicted and actual holdout purchases and value (and PIT);
* ``tracking``: period-by-period actual vs predicted repeat transactions of the cohort over
  calibration plus holdout (incremental and cumulative; FHL 2005, figs. 2-3);
* ``conditional``: mean holdout purchases by calibration frequency 0, 1, ..., 7+ (FHL 2005, fig. 4);
* ``parameters``, ``warnings`` and ``data`` (one row of data summary per cutoff).

The purchase models' value forecast is ``E[purchases] × E[spend]`` with the spend model
(Gamma-Gamma by default) fitted on the same calibration data. Predictive distributions come from
:mod:`clvmodels.predictive`: per-customer purchase pmfs (coverage, randomised PIT, log score and
CRPS; the holdout total's distribution by exact convolution) and simulated values (value PIT, CRPS
and the value total's interval).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import metrics as M
from .baselines import default_baselines
from .data import CUSTOMER, TIMESTAMP
from .errors import ClvDataError
from .models.base import unique_rows, validate_columns
from .rfm import _as_log, _period_start_days, _resolve, calibration_holdout
from .units import normalize_unit, unit_days

#: Calibration frequencies 0..7 are shown one by one, larger ones pooled as "7+" (FHL 2005, fig. 4).
MAX_FREQUENCY_GROUP = 7

#: Metrics and whether larger is better (None: closest to the nominal level is best; "abs": smallest |x|).
METRIC_DIRECTION = {
    "mae": "min", "rmse": "min", "bias": "abs", "total_error_pct": "abs", "spearman": "max", "gini": "max",
    "top10_share": "max", "top20_share": "max", "coverage_50": 0.5, "coverage_80": 0.8, "coverage_90": 0.9,
    "log_score": "min", "crps": "min",
}


@dataclass
class BacktestResult:
    """Tidy results of :func:`backtest`; ``compare_report(result, path)`` turns them into HTML."""

    metrics: pd.DataFrame
    totals: pd.DataFrame
    predictions: pd.DataFrame
    tracking: pd.DataFrame
    conditional: pd.DataFrame
    parameters: pd.DataFrame
    warnings: pd.DataFrame
    data: pd.DataFrame
    settings: dict
    models: dict = field(default_factory=dict, repr=False)

    @property
    def cutoffs(self) -> list[str]:
        """Calibration ends, oldest first."""
        return list(self.data["calibration_end"])

    @property
    def model_names(self) -> list[str]:
        """Names of the compared forecasts: models first, then baselines."""
        return list(dict.fromkeys(self.metrics["model"]))

    def table(self, target: str = "purchases", cutoff: str | None = None) -> pd.DataFrame:
        """Wide metrics table (rows: models, columns: metrics) for one cutoff, or the mean over cutoffs."""
        m = self.metrics[self.metrics["target"] == target]
        if cutoff is not None:
            m = m[m["cutoff"] == cutoff]
        wide = m.pivot_table(index="model", columns="metric", values="value", aggfunc="mean", sort=False)
        order = [c for c in METRIC_DIRECTION if c in wide.columns] + \
            [c for c in wide.columns if c not in METRIC_DIRECTION]
        return wide.reindex(index=[n for n in self.model_names if n in wide.index], columns=order)

    def best(self, target: str = "purchases", cutoff: str | None = None) -> pd.Series:
        """Name of the best model per metric (see :data:`METRIC_DIRECTION`)."""
        return best_per_metric(self.table(target, cutoff))

    def _repr_html_(self) -> str:
        from .report import report_html

        return report_html(self, standalone=False)


def best_per_metric(table: pd.DataFrame) -> pd.Series:
    """Index label of the best row for each column of a wide metrics table (NaN columns skipped)."""
    out = {}
    for col in table.columns:
        values = table[col].astype(float)
        if values.notna().sum() == 0 or col not in METRIC_DIRECTION:
            continue
        rule = METRIC_DIRECTION[col]
        if rule == "min":
            out[col] = values.idxmin()
        elif rule == "max":
            out[col] = values.idxmax()
        elif rule == "abs":
            out[col] = values.abs().idxmin()
        else:
            out[col] = (values - rule).abs().idxmin()
    return pd.Series(out, dtype=object)


# ---------------------------------------------------------------------------- input handling
def _named_models(models) -> dict[str, object]:
    from .models import BetaGeoModel

    if models is None:
        return {"BG/NBD": BetaGeoModel()}
    if isinstance(models, dict):
        named = dict(models)
    elif isinstance(models, (list, tuple)):
        named = {}
        for m in models:
            name = type(m).__name__.removesuffix("Model")
            if name in named:
                raise ClvDataError(f"Two models would both be called {name!r}: pass a dict {{name: model}}.")
            named[name] = m
    else:
        named = {type(models).__name__.removesuffix("Model"): models}
    for name, m in named.items():
        if not hasattr(m, "expected_purchases") or not hasattr(m, "fit"):
            raise ClvDataError(f"Model {name!r} ({type(m).__name__}) is not a purchase model: it needs "
                               "fit(rfm) and expected_purchases(t, rfm).")
    return named


def _cutoffs(calibration_end, step, n_cutoffs, unit: str) -> list[pd.Timestamp]:
    if isinstance(calibration_end, (list, tuple, pd.Index, pd.Series, np.ndarray)):
        if step is not None or n_cutoffs is not None:
            raise ClvDataError("Give either a list of calibration ends or one end with step= and n_cutoffs=.")
        cuts = sorted({pd.Timestamp(c) for c in calibration_end})
    else:
        last = pd.Timestamp(calibration_end)
        if step is None:
            if n_cutoffs not in (None, 1):
                raise ClvDataError("n_cutoffs > 1 needs step= (the distance between cutoffs, in time_unit).")
            cuts = [last]
        else:
            n = 3 if n_cutoffs is None else int(n_cutoffs)
            if n < 1 or not step > 0:
                raise ClvDataError(f"n_cutoffs must be >= 1 and step > 0, got {n_cutoffs!r} and {step!r}.")
            days = float(step) * unit_days(unit)
            cuts = [last - pd.Timedelta(days=round(k * days)) for k in range(n - 1, -1, -1)]
    if not cuts:
        raise ClvDataError("No calibration end given.")
    return cuts


# ---------------------------------------------------------------------------- the backtest
def backtest(
    transactions,
    models=None,
    *,
    calibration_end,
    holdout: float | None = None,
    observation_end=None,
    step: float | None = None,
    n_cutoffs: int | None = None,
    time_unit: str = "W",
    resolution: str = "D",
    spend_model=None,
    baselines=None,
    interval: float = 0.9,
    n_draws: int = 200,
    n_samples: int = 500,
    tracking_period: str = "W",
    seed: int | None = 0,
) -> BacktestResult:
    """Fit each model on the calibration period(s), predict the holdout and score the predictions.

    Parameters
    ----------
    transactions
        A log from :func:`~clvmodels.load_transactions` (or a frame with ``customer_id``,
        ``timestamp`` and optionally ``amount`` columns). Value metrics need amounts.
    models
        A purchase model, a list of them, or a dict ``{name: model}`` (unfitted; each cutoff fits a
        clone). Default: ``{"BG/NBD": BetaGeoModel()}``.
    calibration_end
        Last day of the calibration period; or a list of them (rolling origin); or the *latest*
        cutoff when ``step`` is given.
    holdout
        Holdout length in ``time_unit`` after each cutoff. Default: up to ``observation_end``.
    observation_end
        End of the holdout when ``holdout`` is not given (default: the last transaction).
    step, n_cutoffs
        Rolling origin: ``n_cutoffs`` (default 3) calibration ends ``step`` time units apart, the
        last one being ``calibration_end``.
    time_unit, resolution
        Unit of ``T``, ``recency`` and ``holdout`` (weeks by default); purchases within one period of
        ``resolution`` (a day) count as one transaction, as in :func:`~clvmodels.rfm_summary`.
    spend_model
        Spend model for the value forecasts of the purchase models (default:
        ``GammaGammaModel(exclude_invalid=True)``); ``False`` for purchases only.
    baselines
        Dict ``{name: baseline}`` (see :mod:`clvmodels.baselines`); default: no change, RFM score and
        gradient boosting; ``{}`` for none.
    interval
        Level of the predicted total's interval (0.9).
    n_draws, n_samples
        Parameter draws for the total's parameter uncertainty; simulated futures per customer for
        the value distribution.
    tracking_period
        Bin width of the tracking series (``"W"``: weekly).
    seed
        Seed of every random step (parameter draws, simulations, PIT randomisation, boosting).

    Returns
    -------
    :class:`BacktestResult`

    Examples
    --------
    >>> log = load_transactions(load_cdnow(sample=False), timestamp="date")     # doctest: +SKIP
    >>> res = backtest(log, calibration_end="1997-09-30", holdout=39)          # doctest: +SKIP
    >>> res.table("purchases")                                                  # doctest: +SKIP
    """
    from sklearn.base import clone

    from .models import GammaGammaModel

    log = _as_log(transactions)
    unit = normalize_unit(time_unit)
    res = _resolve(resolution)
    named = _named_models(models)
    if spend_model is None:
        spend_model = GammaGammaModel(exclude_invalid=True)
    has_value = "amount" in log.columns and spend_model is not False
    base = default_baselines(seed) if baselines is None else dict(baselines)
    overlap = set(named) & set(base)
    if overlap:
        raise ClvDataError(f"Models and baselines share the name(s) {sorted(overlap)}: rename one.")
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval}.")
    cuts = _cutoffs(calibration_end, step, n_cutoffs, unit)
    log_end = pd.Timestamp(log[TIMESTAMP].max())
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=(len(cuts), len(named)))
    spend_name = "Gamma-Gamma" if isinstance(spend_model, GammaGammaModel) else type(spend_model).__name__

    out = {k: [] for k in ("metrics", "totals", "predictions", "tracking", "conditional", "parameters",
                           "warnings", "data")}
    fitted = {}
    for i, cut in enumerate(cuts):
        if holdout is not None:
            obs_end = cut + pd.Timedelta(days=round(float(holdout) * unit_days(unit)))
            if obs_end.normalize() > log_end.normalize():
                raise ClvDataError(
                    f"The holdout of {holdout} {unit} after the calibration end {cut.date()} ends on "
                    f"{obs_end.date()}, after the last transaction ({log_end.date()}): choose an earlier "
                    "calibration end, a shorter holdout, or fewer cutoffs.")
        else:
            obs_end = pd.Timestamp(observation_end) if observation_end is not None else log_end
        if obs_end <= cut:
            raise ClvDataError(f"The holdout after {cut.date()} is empty (observation end {obs_end.date()}).")
        ch = calibration_holdout(log, cut, obs_end, unit, resolution=res, truncate=True)
        label = str(cut.date())
        t = float(ch["duration_holdout"].iloc[0])
        actual = {"purchases": ch["frequency_holdout"].to_numpy(dtype=float)}
        if has_value:
            actual["value"] = ch["value_holdout"].to_numpy(dtype=float)
        out["data"].append(_data_summary(log, ch, cut, obs_end, unit))
        preds: dict[str, dict[str, np.ndarray]] = {}
        dists: dict[str, dict] = {}

        spend = None
        if has_value:
            spend, spend_warnings = _fit_with_warnings(clone(spend_model), ch, spend_name, label)
            out["warnings"].extend(spend_warnings)
            if spend is not None:
                fitted[(label, spend_name)] = spend
                out["parameters"].append(_parameters(spend, label, spend_name))
                try:
                    spend_mean = spend.expected_spend(ch).to_numpy()
                except ClvDataError as exc:
                    out["warnings"].append(_warning(label, spend_name, "AssumptionWarning", str(exc)))
                    spend = None

        for j, (name, template) in enumerate(named.items()):
            model, model_warnings = _fit_with_warnings(clone(template), ch, name, label)
            out["warnings"].extend(model_warnings)
            if model is None:
                continue
            fitted[(label, name)] = model
            out["parameters"].append(_parameters(model, label, name))
            purchases = model.expected_purchases(t, ch).to_numpy()
            preds[name] = {"purchases": purchases}
            if spend is not None:
                preds[name]["value"] = purchases * spend_mean
            dists[name] = _predictive(model, spend, ch, t, actual, purchases, interval=interval, n_draws=n_draws,
                                      n_samples=n_samples, seed=int(seeds[i, j]))
            out["warnings"].extend(_warning(label, name, "PredictiveWarning", msg)
                                   for msg in dists[name].pop("notes", []))
            if getattr(model, "expected_purchases_new_customer", None) is not None:
                out["tracking"].append(_tracking(log, ch, model, name, cut, obs_end, unit, res, tracking_period))

        for name, baseline in base.items():
            b = clone(baseline)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                b.fit(log, cut, horizon=t, time_unit=unit, resolution=res)
                forecast = b.predict(ch, t)
            out["warnings"].extend(_warning(label, name, type(w.message).__name__, str(w.message)) for w in caught)
            preds[name] = {"purchases": forecast["purchases"].to_numpy()}
            if has_value:
                preds[name]["value"] = forecast["value"].to_numpy()

        if not preds:
            failures = "; ".join(f"{w['model']}: {w['message']}" for w in out["warnings"] if w["cutoff"] == label)
            raise ClvDataError(f"No forecast for the calibration end {label}: every model failed ({failures}).")
        for name, p in preds.items():
            kind = "model" if name in named else "baseline"
            for target, a in actual.items():
                if target not in p:
                    continue
                dist = dists.get(name, {}).get(target, {})
                scores = _point_metrics(a, p[target]) | dist.get("scores", {})
                out["metrics"].extend({"cutoff": label, "model": name, "kind": kind, "target": target,
                                       "metric": k, "value": float(v)} for k, v in scores.items())
                out["totals"].append(_total_row(label, name, kind, target, a, p[target], dist.get("total"),
                                                interval))
            frame = pd.DataFrame({"cutoff": label, CUSTOMER: ch.index, "model": name,
                                  "frequency": ch["frequency"].to_numpy(),
                                  "actual_purchases": actual["purchases"], "purchases": p["purchases"]})
            if "value" in actual:
                frame["actual_value"] = actual["value"]
                frame["value"] = p.get("value", np.nan)
            for target in actual:
                if "pit" in dists.get(name, {}).get(target, {}):
                    frame[f"pit_{target}"] = dists[name][target]["pit"]
            out["predictions"].append(frame)
        out["conditional"].append(_conditional(ch, preds, label))

    result = BacktestResult(
        metrics=pd.DataFrame(out["metrics"]),
        totals=pd.DataFrame(out["totals"]).astype({"inside": "boolean"}),
        predictions=pd.concat(out["predictions"], ignore_index=True),
        tracking=pd.concat(out["tracking"], ignore_index=True) if out["tracking"] else pd.DataFrame(),
        conditional=pd.concat(out["conditional"], ignore_index=True),
        parameters=pd.concat(out["parameters"], ignore_index=True) if out["parameters"] else pd.DataFrame(),
        warnings=pd.DataFrame(out["warnings"], columns=["cutoff", "model", "category", "message"]),
        data=pd.DataFrame(out["data"]),
        settings={"time_unit": unit, "resolution": res, "holdout": holdout, "interval": interval,
                  "n_draws": n_draws, "n_samples": n_samples, "seed": seed, "tracking_period": tracking_period,
                  "models": {k: type(v).__name__ for k, v in named.items()},
                  "baselines": {k: type(v).__name__ for k, v in base.items()},
                  "spend_model": type(spend_model).__name__ if has_value else None},
        models=fitted,
    )
    _add_result_warnings(result)
    return result


# ---------------------------------------------------------------------------- pieces
def _warning(cutoff, model, category, message) -> dict:
    return {"cutoff": cutoff, "model": model, "category": category, "message": message}


def _fit_with_warnings(model, rfm, name, label):
    """Fit, recording (and re-emitting, with context) the fit's warnings; a failed fit is reported, not fatal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(rfm)
        except (ClvDataError, FloatingPointError) as exc:
            caught_msgs = [_warning(label, name, type(w.message).__name__, str(w.message)) for w in caught]
            return None, caught_msgs + [_warning(label, name, "FitError", f"The fit failed: {exc}")]
    records = [_warning(label, name, type(w.message).__name__, str(w.message)) for w in caught]
    for w in caught:
        warnings.warn(f"[{name}, calibration end {label}] {w.message}", w.category, stacklevel=3)
    if getattr(model, "converged_", True) is False and not any(r["category"] == "ConvergenceWarning" for r in records):
        records.append(_warning(label, name, "ConvergenceWarning", "The fit did not converge."))
    return model, records


def _parameters(model, label: str, name: str) -> pd.DataFrame:
    table = model.summary().copy()
    table.index.name = "parameter"
    long = table.reset_index().melt(id_vars="parameter", var_name="statistic", value_name="value")
    long.insert(0, "model", name)
    long.insert(0, "cutoff", label)
    return long


def _data_summary(log, ch, cut, obs_end, unit) -> dict:
    cal_log = log.loc[log[TIMESTAMP] <= cut + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")]
    row = {
        "calibration_start": str(pd.Timestamp(cal_log[TIMESTAMP].min()).date()),
        "calibration_end": str(cut.date()), "holdout_end": str(obs_end.date()),
        "holdout_length": float(ch["duration_holdout"].iloc[0]), "time_unit": unit,
        "customers": len(ch), "customers_with_repeat_purchases": int((ch["frequency"] > 0).sum()),
        "new_customers_in_holdout_excluded": int(ch.attrs.get("n_excluded_new_customers", 0)),
        "calibration_repeat_transactions": int(ch["frequency"].sum()),
        "holdout_transactions": int(ch["frequency_holdout"].sum()),
        "log_rows": int(log.attrs.get("n_rows", len(log))),
        "duplicate_rows": int(log.attrs.get("n_duplicate_rows", 0)),
        "refunds": int(log.attrs.get("n_refunds", 0)),
    }
    if "value_holdout" in ch.columns:
        row["holdout_value"] = float(ch["value_holdout"].sum())
        row["calibration_mean_repeat_spend"] = float(ch.loc[ch["frequency"] > 0, "monetary_value"].mean())
    return row


def _point_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return M.point_errors(actual, predicted) | {
        "total_error_pct": M.total_error_pct(actual, predicted),
        "spearman": M.spearman(actual, predicted),
        "gini": M.gini(actual, predicted),
        "top10_share": M.top_share(actual, predicted, 0.1),
        "top20_share": M.top_share(actual, predicted, 0.2),
    }


def _total_row(label, name, kind, target, actual, predicted, total, level) -> dict:
    row = {"cutoff": label, "model": name, "kind": kind, "target": target, "actual": float(actual.sum()),
           "predicted": float(predicted.sum()), "lower": np.nan, "upper": np.nan, "inside": pd.NA,
           "plugin_lower": np.nan, "plugin_upper": np.nan}
    row["error_pct"] = M.total_error_pct(actual, predicted)
    if total is not None:
        row.update(total)
        row["inside"] = bool(row["lower"] <= row["actual"] <= row["upper"])
    row["level"] = level
    return row


def _predictive(model, spend, ch, t, actual, expected, *, interval, n_draws, n_samples, seed) -> dict:
    """Predictive-distribution scores of one fitted purchase model (and its value forecast);
    ``expected`` holds the customers' expected purchases."""
    from . import predictive as P

    out: dict = {"notes": []}
    if getattr(type(model), "purchase_pmf_formula", None) is None:
        out["notes"].append(f"{type(model).__name__} has no predictive pmf: no coverage, PIT, log score, "
                            "CRPS or interval of the total.")
        return out
    rng = np.random.default_rng(seed)
    y = actual["purchases"]
    # columns 0..n_max-1 of the pmf are exact, the last one is P(N >= n_max): keep every actual below it
    n_max = int(np.ceil(max(y.max(), np.max(expected + 10 * np.sqrt(expected) + 10)))) + 1
    pmf = P.purchase_pmf(model, t, n_max, ch)
    tail = pmf[:, -1]
    if tail.max() > 1e-3:
        out["notes"].append(f"The purchase pmf puts up to {tail.max():.2g} on {n_max} or more purchases: the "
                            f"CRPS and the total's interval count that tail as {n_max}.")
    pit = M.randomized_pit(pmf, y, seed=int(rng.integers(2**31 - 1)))
    scores = {f"coverage_{round(lev * 100)}": v for lev, v in M.pit_coverage(pit).items()}
    scores |= {"log_score": M.log_score(pmf, y), "crps": M.crps_pmf(pmf, y)}
    out["purchases"] = {"scores": scores, "pit": pit,
                        "total": _purchase_total(model, pmf, ch, t, interval, n_draws, int(rng.integers(2**31 - 1)),
                                                 out["notes"])}
    if spend is not None and "value" in actual:
        if getattr(type(model), "simulate_purchases_formula", None) is None:
            out["notes"].append(f"{type(model).__name__} has no purchase simulator: no predictive value scores.")
            return out
        samples = P.simulate_value(model, spend, t, ch, n_samples=n_samples, seed=int(rng.integers(2**31 - 1)))
        v = actual["value"]
        vpit = M.pit_samples(samples, v, seed=int(rng.integers(2**31 - 1)))
        vscores = {f"coverage_{round(lev * 100)}": c for lev, c in M.pit_coverage(vpit).items()}
        vscores["crps"] = M.crps_samples(samples, v)
        mean, lo, hi = M.total_interval_samples(samples, interval)
        out["value"] = {"scores": vscores, "pit": vpit,
                        "total": {"lower": lo, "upper": hi, "simulated_mean": mean}}
    return out


def _purchase_total(model, pmf, ch, t, level, n_draws, seed, notes) -> dict:
    """Interval of the holdout's total purchases.

    Process uncertainty: the exact distribution of the total given the parameters, by convolving
    the customers' pmfs (:func:`clvmodels.metrics.total_pmf`). For a fit with parameter uncertainty
    the total given each parameter draw is that distribution shifted by the draw's expected total
    minus the estimate's (customers share the parameters, so their parameter errors add up rather
    than cancel); the interval is taken from the mixture over draws. For a Bayesian fit the pmfs
    are already averaged over the posterior customer by customer, so the "plugin" interval carries
    part of the parameter uncertainty (as if independent between customers) and the mixture
    interval errs on the wide side.
    """
    support, probs = M.total_pmf(pmf)
    plug_lo, plug_hi = M.interval_from_pmf(support, probs, level)
    row = {"plugin_lower": plug_lo, "plugin_upper": plug_hi}
    formula = type(model).expected_purchases_formula
    try:
        draws = model.parameter_draws(n_draws, seed=seed)
    except ClvDataError as exc:
        notes.append(f"No parameter uncertainty in the total's interval: {exc}")
        row.update(lower=plug_lo, upper=plug_hi)
        return row
    data, inverse = unique_rows(validate_columns(ch, model.data_columns))
    counts = np.bincount(inverse).astype(float)
    params = {k: np.asarray(v, dtype=float)[:, None] for k, v in draws.items()}
    totals = formula(params, **data, t=t) @ counts  # expected total per draw
    centre = float(support @ probs)
    rng = np.random.default_rng(seed)
    n_mc = 20_000
    process = rng.choice(support, size=n_mc, p=probs) - centre
    mixture = process + totals[rng.integers(len(totals), size=n_mc)]
    lo, hi = np.quantile(mixture, [(1 - level) / 2, (1 + level) / 2])
    row.update(lower=float(lo), upper=float(hi))
    return row


def _conditional(ch, preds, label) -> pd.DataFrame:
    """Mean actual and predicted holdout purchases by calibration frequency 0..7+ (FHL 2005, fig. 4)."""
    x = ch["frequency"].to_numpy()
    group = np.minimum(x, MAX_FREQUENCY_GROUP)
    labels = [str(g) if g < MAX_FREQUENCY_GROUP else f"{MAX_FREQUENCY_GROUP}+" for g in range(MAX_FREQUENCY_GROUP + 1)]
    actual = ch["frequency_holdout"].to_numpy(dtype=float)
    n = np.bincount(group, minlength=MAX_FREQUENCY_GROUP + 1)
    rows = []
    for name, p in preds.items():
        pred = np.bincount(group, weights=p["purchases"], minlength=MAX_FREQUENCY_GROUP + 1)
        act = np.bincount(group, weights=actual, minlength=MAX_FREQUENCY_GROUP + 1)
        for g in range(MAX_FREQUENCY_GROUP + 1):
            if n[g]:
                rows.append({"cutoff": label, "model": name, "frequency": labels[g], "customers": int(n[g]),
                             "actual": act[g] / n[g], "predicted": pred[g] / n[g]})
    return pd.DataFrame(rows)


def _tracking(log, ch, model, name, cut, obs_end, unit, res, period) -> pd.DataFrame:
    """Actual vs expected repeat transactions of the cohort, per ``period``, over calibration + holdout.

    Expected cumulative repeat transactions by day ``e``: ``Σ_i E[X((e − f_i)/unit)]`` over the
    cohort's first-purchase days ``f_i`` (FHL 2005, eq. 9), computed once per distinct first day.
    Bins end at the calibration end plus whole periods, so the calibration/holdout boundary is an edge.
    """
    cohort = log.loc[log[CUSTOMER].isin(ch.index)]
    codes, uniques = pd.factorize(cohort[CUSTOMER])
    day = _period_start_days(cohort[TIMESTAMP].to_numpy(), res)
    pairs = pd.DataFrame({"c": codes, "d": day}).drop_duplicates()
    first = pairs.groupby("c")["d"].transform("min").to_numpy()
    repeat_days = pairs["d"].to_numpy()[pairs["d"].to_numpy() > first]
    first_days = pairs.groupby("c")["d"].min().to_numpy()

    step = unit_days(normalize_unit(period))
    end_day = _period_start_days(np.array([cut.to_datetime64()]), res)[0]
    obs_day = _period_start_days(np.array([obs_end.to_datetime64()]), res)[0]
    k_min = int(np.floor((first_days.min() - end_day) / step))
    k_max = int(np.ceil((obs_day - end_day) / step))
    edges = np.minimum(end_day + step * np.arange(k_min, k_max + 1), obs_day)
    edges = np.unique(np.maximum(edges, first_days.min() - step))
    actual_cum = np.searchsorted(np.sort(repeat_days), edges, side="right").astype(float)

    f_vals, f_counts = np.unique(first_days, return_counts=True)
    ages = np.maximum(edges[:, None] - f_vals[None, :], 0.0) / unit_days(unit)
    grid, inv = np.unique(ages, return_inverse=True)
    expected = np.asarray(model.expected_purchases_new_customer(grid), dtype=float).ravel()
    predicted_cum = (expected[inv.reshape(ages.shape)] * f_counts[None, :]).sum(axis=1)

    origin = pd.Timestamp("1970-01-01")
    frame = pd.DataFrame({
        "cutoff": str(cut.date()), "model": name,
        "period_end": [origin + pd.Timedelta(days=float(e)) for e in edges],
        "t": (edges - end_day) / unit_days(unit),
        "actual_cumulative": actual_cum, "predicted_cumulative": predicted_cum,
    })
    frame["actual"] = np.diff(actual_cum, prepend=0.0)
    frame["predicted"] = np.diff(predicted_cum, prepend=0.0)
    frame["phase"] = np.where(edges <= end_day, "calibration", "holdout")
    return frame.iloc[1:].reset_index(drop=True)  # the first edge precedes every first purchase


def _add_result_warnings(result: BacktestResult) -> None:
    """Make misses visible: actual totals outside the predicted interval, large total errors."""
    rows = []
    for _, r in result.totals.iterrows():
        if r["kind"] != "model":
            continue
        if pd.notna(r["inside"]) and not r["inside"]:
            rows.append(_warning(r["cutoff"], r["model"], "IntervalMiss",
                                 f"The actual holdout {r['target']} total {r['actual']:,.0f} lies outside the "
                                 f"predicted {r['level']:.0%} interval [{r['lower']:,.0f}, {r['upper']:,.0f}] "
                                 f"(predicted {r['predicted']:,.0f}, {r['error_pct']:+.1f}%)."))
        elif abs(r["error_pct"]) > 10:
            rows.append(_warning(r["cutoff"], r["model"], "LargeTotalError",
                                 f"The predicted holdout {r['target']} total is {r['error_pct']:+.1f}% off "
                                 f"({r['predicted']:,.0f} predicted vs {r['actual']:,.0f} actual)."))
    if rows:
        result.warnings = pd.concat([result.warnings, pd.DataFrame(rows)], ignore_index=True)
