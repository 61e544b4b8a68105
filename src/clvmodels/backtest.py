"""Backtests: fit on a calibration period, predict the holdout, compare with what customers did.

:func:`backtest` runs every continuous-time purchase model (BG/NBD, or any :class:`~clvmodels.CLVModel`
with ``expected_purchases``) and the baselines of :mod:`clvmodels.baselines` on one or several
calibration cutoffs (rolling origin); :func:`discrete_backtest` does the same for models of discrete
transaction opportunities (BG/BB). Both return a :class:`BacktestResult` of tidy frames:

* ``metrics``: one row per cutoff, model, target (``purchases``, ``value``: holdout spend, or ``clv``:
  holdout spend discounted period by period) and metric;
* ``totals``: the predicted and actual holdout totals with the predicted total's 90% interval
  (models with predictive distributions) and whether the actual total falls inside;
* ``predictions``: every customer's predicted and actual holdout purchases and value (and PIT);
* ``tracking``: period-by-period actual vs predicted repeat transactions of the cohort over
  calibration plus holdout (incremental and cumulative; FHL 2005, figs. 2-3);
* ``conditional``: mean holdout purchases by calibration frequency 0, 1, ..., 7+ (FHL 2005, fig. 4);
* ``parameters``, ``warnings`` and ``data`` (one row of data summary per cutoff).

With ``covariates=`` (a customer-level table; both backtests) models with and without covariates are compared in one
run; :meth:`BacktestResult.covariate_tests` gives the likelihood-ratio test of each covariate model
against the same model without covariates. With ``time_varying=`` (a calendar or panel of
:mod:`clvmodels.timevarying`) models with time-varying covariates (``purchase_time_varying=...``) are
fitted on each cutoff's :func:`~clvmodels.timevarying.timevarying_holdout` summary and forecast the
holdout along the path (:func:`~clvmodels.timevarying.future_exposure`), their tracking series along
the calendar (:meth:`~clvmodels.models.purchase.PurchaseModel.expected_tracking`) and their predictive
scores from futures simulated along the path (no closed-form pmf), next to the same models without them.

The purchase models' value forecast is ``E[purchases] × E[spend]`` with the spend model
(Gamma-Gamma by default) fitted on the same calibration data, and their ``clv`` forecast the
holdout's expected discounted value (:func:`clvmodels.clv.value_customers`: periods of
``clv_period`` from the calibration end, the last one cut at the holdout's end, discounted at
``discount_rate`` per period). Predictive distributions come from :mod:`clvmodels.predictive`:
per-customer purchase pmfs (coverage, randomised PIT, log score and CRPS; the holdout total's
distribution by exact convolution) and one simulation per model of each customer's spend per period
(:func:`clvmodels.clv.discounted_chunks`), scored as holdout value and as discounted CLV
(randomised PIT, coverage at 50/80/90%, CRPS from samples, the totals' intervals). Next to them,
``expected_coverage_90``: how many customers' actual value falls in the 90% interval of their
*expected* value (parameter uncertainty only), the interval ``clv(..., kind="expected")`` gives:
it is not meant to contain what customers do, and this metric shows by how much it does not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from . import metrics as M
from .baselines import default_baselines
from .clv import check_discounting, discounted_chunks, value_customers
from .data import AMOUNT, CUSTOMER, TIMESTAMP
from .errors import MODEL_WARNINGS, ClvDataError, ModelKindError, renamed_argument
from . import predictive as P
from .data import as_log
from .models import BetaGeoBetaBinomModel, BetaGeoModel, GammaGammaModel
from .models.base import check_kind
from .models.covariates import lr_test
from .models.draws import at_estimate, check_interval, covariance_problem
from .validation import validate_columns
from .models.purchase import DiscretePurchaseModel, PurchaseModel
from .models.rows import unique_rows
from .models.spend import SpendModel
from .progress import progress
from .periods import period_end, period_hours, period_start_days, period_start_hours, resolve_resolution
from .rfm import bgbb_summary, calibration_holdout, join_covariates
from .timevarying import CovariatePath, future_exposure, new_customer_exposure, timevarying_holdout
from . import units
from .units import normalize_unit, unit_days

#: Calibration frequencies 0..7 are shown one by one, larger ones pooled as "7+" (FHL 2005, fig. 4).
MAX_FREQUENCY_GROUP = 7

#: Metrics and whether larger is better (None: closest to the nominal level is best; "abs": smallest |x|).
METRIC_DIRECTION = {
    "mae": "min", "rmse": "min", "bias": "abs", "total_error_pct": "abs", "spearman": "max", "gini": "max",
    "top10_share": "max", "top20_share": "max", "coverage_50": 0.5, "coverage_80": 0.8, "coverage_90": 0.9,
    "log_score": "min", "crps": "min", "mape": "min", "final_error_pct": "abs", "expected_coverage_90": 0.9,
}

#: Level of the expected-value interval whose coverage backtests report (``expected_coverage_90``).
EXPECTED_LEVEL = 0.9

#: How each kind of result renders as HTML (in Jupyter): filled in by :mod:`clvmodels.report`, so
#: that results do not import the report.
HTML_RENDERERS: dict[type, Callable[[object], str]] = {}


def result_html(result) -> str:
    """A result's HTML from its registered renderer (its repr, escaped, when there is none)."""
    render = HTML_RENDERERS.get(type(result))
    if render is None:
        import html

        return f"<pre>{html.escape(repr(result))}</pre>"
    return render(result)


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

    def covariate_tests(self) -> pd.DataFrame:
        """Likelihood-ratio tests (:func:`~clvmodels.lr_test`) of each model with covariates against the
        same model without them, per cutoff, when both are in the backtest: the same class and
        settings but the covariates, static or time-varying (see :func:`without_covariates`). Columns
        ``cutoff``, ``model``, ``without`` (the smaller model's name), ``statistic``, ``df``, ``p_value``
        and ``note`` (why a pair could not be tested, e.g. a Bayesian or penalised fit; its numbers are
        then NaN)."""
        rows = []
        for (cutoff, name), big in self.models.items():
            if not (getattr(big, "has_covariates", False) or getattr(big, "has_time_varying", False)):
                continue
            for (other_cutoff, other), small in self.models.items():
                if other_cutoff != cutoff or not without_covariates(small, big):
                    continue
                row = {"cutoff": cutoff, "model": name, "without": other, "statistic": np.nan, "df": pd.NA,
                       "p_value": np.nan, "note": ""}
                try:
                    row.update(lr_test(small, big))
                except ClvDataError as exc:
                    row["note"] = str(exc)
                rows.append(row)
        columns = ["cutoff", "model", "without", "statistic", "df", "p_value", "note"]
        return pd.DataFrame(rows, columns=columns).astype({"df": "Int64"})

    def _repr_html_(self) -> str:
        return result_html(self)


#: Settings that only concern covariates: a model without covariates is nested in one with them
#: when every other setting is the same.
COVARIATE_SETTINGS = ("covariate_constraints", "covariate_penalty", "one_hot")


def without_covariates(small, big) -> bool:
    """Whether ``small`` is the fitted model ``big`` without its covariates: the same class, no
    covariates (static or time-varying), and the same settings apart from the covariates' (so
    ``lr_test(small, big)`` applies)."""
    if (type(small) is not type(big) or getattr(small, "has_covariates", True)
            or getattr(small, "has_time_varying", False)):
        return False

    def settings(model):
        return {k: v for k, v in model.get_params().items()
                if not k.endswith(("_covariates", "_time_varying")) and k not in COVARIATE_SETTINGS}

    return settings(small) == settings(big)


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
def _named_models(models, *, discrete: bool = False) -> dict[str, object]:
    if models is None:
        return {"BG/BB": BetaGeoBetaBinomModel()} if discrete else {"BG/NBD": BetaGeoModel()}
    if isinstance(models, dict):
        named = dict(models)
    elif isinstance(models, (list, tuple)):
        named = {}
        for m in models:
            name = m.display_name or type(m).__name__
            if name in named:
                raise ClvDataError(f"Two models would both be called {name!r}: pass a dict {{name: model}}.")
            named[name] = m
    else:
        named = {models.display_name or type(models).__name__: models}
    for name, m in named.items():
        check_kind(m, PurchaseModel, f"backtest model {name!r}")
        if isinstance(m, DiscretePurchaseModel) and not discrete:
            raise ClvDataError(f"Model {name!r} ({type(m).__name__}) counts discrete transaction opportunities: "
                               "backtest it with discrete_backtest(..., period=...). Its holdout counts "
                               "(periods with a transaction) do not compare with continuous-time models' "
                               "transactions.")
        if discrete and not isinstance(m, DiscretePurchaseModel):
            raise ClvDataError(f"Model {name!r} ({type(m).__name__}) is a continuous-time model: backtest it "
                               "with backtest(...).")
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
    t: float | None = None,
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
    holdout: float | None = None,
    clv_period: str = "M",
    discount_rate: float = 0.01,
    progressbar: bool | None = None,
    covariates: pd.DataFrame | None = None,
    covariate_id: str | None = None,
    missing_covariates: str = "error",
    time_varying: CovariatePath | None = None,
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
    t
        The prediction window: the holdout's length in ``time_unit`` after each cutoff. Default: up
        to ``observation_end``. (``holdout`` is its deprecated name.)
    observation_end
        End of the holdout when ``t`` is not given (default: the last transaction).
    step, n_cutoffs
        Rolling origin: ``n_cutoffs`` (default 3) calibration ends ``step`` time units apart, the
        last one being ``calibration_end``.
    time_unit, resolution
        Unit of ``T``, ``recency`` and ``t`` (weeks by default); purchases within one period of
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
    clv_period, discount_rate
        The ``clv`` target: holdout spend discounted at ``discount_rate`` per period of
        ``clv_period`` (``"M"``: months) after the calibration end, as :func:`clvmodels.clv` does.
    progressbar
        A progress bar over the fits (cutoffs x models and baselines); default: on a terminal or in
        Jupyter (:mod:`clvmodels.progress`).
    covariates, covariate_id, missing_covariates
        A customer-level table of static covariates, joined by customer id to each cutoff's
        calibration summary (:func:`~clvmodels.calibration_holdout`, :func:`~clvmodels.rfm.join_covariates`),
        so that models with covariates (``purchase_covariates=...``) and without them are compared on
        the same customers in one run. Customers without a covariate row are an error; with
        ``missing_covariates="drop"`` they are left out of that cutoff's backtest (every forecast's)
        and counted in ``data["customers_without_covariates"]``; covariate rows matching no
        customer of a cutoff are counted in ``data["covariate_rows_unmatched"]``. Baselines ignore
        the covariates.
    time_varying
        A :class:`~clvmodels.timevarying.CovariatePath` (:func:`~clvmodels.covariate_calendar` or
        :func:`~clvmodels.covariate_panel`) covering every customer from her first purchase to the end
        of the holdout, for the models constructed with ``purchase_time_varying=`` (or
        ``dropout_time_varying=``): each cutoff fits them on the calibration summary of
        :func:`~clvmodels.timevarying.timevarying_holdout`, forecasts the holdout over the path's future
        pieces, and draws their tracking series along the calendar; models without time-varying
        covariates run as before. Their predictive scores (coverage, PIT, log score, CRPS, the totals'
        intervals) come from ``n_samples`` futures simulated along the path (no closed-form pmf).

    Returns
    -------
    :class:`BacktestResult`

    Examples
    --------
    >>> log = load_transactions(load_cdnow(sample=False), timestamp="date")     # doctest: +SKIP
    >>> res = backtest(log, calibration_end="1997-09-30", t=39)                # doctest: +SKIP
    >>> res.table("purchases")                                                  # doctest: +SKIP
    """
    from sklearn.base import clone

    holdout = renamed_argument("backtest", "t", t, "holdout", holdout)
    log = as_log(transactions)
    unit = normalize_unit(time_unit)
    res = resolve_resolution(resolution)
    named = _named_models(models)
    varying = _time_varying_models(named, time_varying)
    if spend_model is None:
        spend_model = GammaGammaModel(exclude_invalid=True)
    if spend_model is not False:
        check_kind(spend_model, SpendModel, "backtest's spend_model")
    has_value = "amount" in log.columns and spend_model is not False
    base = default_baselines(seed) if baselines is None else dict(baselines)
    overlap = set(named) & set(base)
    if overlap:
        raise ClvDataError(f"Models and baselines share the name(s) {sorted(overlap)}: rename one.")
    check_interval(interval)
    check_discounting(1, discount_rate)
    clv_period_length = units.period_length(clv_period, unit)
    cuts = _cutoffs(calibration_end, step, n_cutoffs, unit)
    log_end = pd.Timestamp(log[TIMESTAMP].max())
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=(len(cuts), len(named)))
    spend_name = spend_model.display_name or type(spend_model).__name__ if spend_model is not False else None

    out = {k: [] for k in ("metrics", "totals", "predictions", "tracking", "conditional", "parameters",
                           "warnings", "data")}
    fitted = {}
    with progress(len(cuts) * (len(named) + len(base)), "backtest", "fits", progressbar) as advance:
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
            litt = any("litt" in getattr(m, "fit_columns", ()) for m in named.values())
            tv = None
            if varying:
                ch, summary = timevarying_holdout(log, time_varying, cut, obs_end, unit, resolution=res, truncate=True,
                                                  litt=litt, static_covariates=covariates, covariate_id=covariate_id,
                                                  missing_covariates=missing_covariates)
            else:
                ch = calibration_holdout(log, cut, obs_end, unit, resolution=res, truncate=True, litt=litt,
                                         covariates=covariates, covariate_id=covariate_id,
                                         missing_covariates=missing_covariates)
            label = str(cut.date())
            t = float(ch["duration_holdout"].iloc[0])
            if varying:
                tv = {"time_varying": summary, "future": future_exposure(ch, time_varying, t)}
            actual = {"purchases": ch["frequency_holdout"].to_numpy(dtype=float)}
            bounds, factors = holdout_periods(t, clv_period_length, discount_rate)
            if has_value:
                actual["value"] = ch["value_holdout"].to_numpy(dtype=float)
                actual["clv"] = holdout_discounted_value(log, ch, cut, obs_end, unit, res, bounds, factors)
            out["data"].append(_data_summary(log, ch, cut, obs_end, unit))
            preds: dict[str, dict[str, np.ndarray]] = {}
            dists: dict[str, dict] = {}

            spend = None
            if has_value:
                spend, spend_warnings = fit_with_warnings(clone(spend_model), ch, spend_name, label)
                out["warnings"].extend(spend_warnings)
                if spend is not None:
                    fitted[(label, spend_name)] = spend
                    out["parameters"].append(parameter_table(spend, label, spend_name))
                    try:
                        spend_mean = spend.expected_spend(ch).to_numpy()
                    except ClvDataError as exc:
                        out["warnings"].append(_warning(label, spend_name, "AssumptionWarning", str(exc)))
                        spend = None

            for j, (name, template) in enumerate(named.items()):
                path = tv if name in varying else None
                model, purchases = _fit_model(out, fitted, clone(template), ch, name, label, t, path)
                if model is None:
                    advance(1)
                    continue
                preds[name] = {"purchases": purchases}
                if spend is not None:
                    preds[name]["value"] = purchases * spend_mean
                    try:
                        preds[name]["clv"] = _expected_value(model, spend, ch, bounds, factors, path)["mean"]
                    except ModelKindError as exc:   # predictions per fitted customer only (Pareto/GGG)
                        out["warnings"].append(_warning(label, name, "AssumptionWarning", f"No discounted value: {exc}"))
                dists[name] = _predictive(model, spend, ch, t, actual, purchases, interval=interval,
                                          n_draws=n_draws, n_samples=n_samples, seed=int(seeds[i, j]),
                                          bounds=bounds, factors=factors, path=path)
                out["warnings"].extend(_warning(label, name, "PredictiveWarning", msg)
                                       for msg in dists[name].pop("notes", []))
                if model.new_customer_formula is not None:
                    try:
                        out["tracking"].append(_tracking(log, ch, model, name, cut, obs_end, unit, res,
                                                         tracking_period, time_varying if path else None))
                    except ClvDataError as exc:
                        out["warnings"].append(_warning(label, name, "AssumptionWarning", f"No tracking series: {exc}"))
                advance(1)

            for name, baseline in base.items():
                b = clone(baseline)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    b.fit(log, cut, t=t, time_unit=unit, resolution=res)
                    forecast = b.predict(ch, t)
                out["warnings"].extend(model_warnings(label, name, caught))
                preds[name] = {"purchases": forecast["purchases"].to_numpy()}
                if has_value:
                    preds[name]["value"] = forecast["value"].to_numpy()
                advance(1)

            _score_cutoff(out, label, ch, actual, preds, dists, named, interval)

    settings = {"time_unit": unit, "resolution": res, "t": holdout, "interval": interval,
                "n_draws": n_draws, "n_samples": n_samples, "seed": seed, "tracking_period": tracking_period,
                "clv_period": clv_period, "discount_rate": discount_rate,
                "models": {k: type(v).__name__ for k, v in named.items()},
                "baselines": {k: type(v).__name__ for k, v in base.items()},
                "spend_model": type(spend_model).__name__ if has_value else None,
                "covariates": _covariate_columns(covariates, covariate_id),
                "time_varying": list(time_varying.columns) if varying else None,
                "time_varying_models": sorted(varying)}
    return _result(out, settings, fitted)


def _time_varying_models(named: dict, path) -> set[str]:
    """The names of the models constructed with time-varying covariates (checked against ``path``)."""
    varying = {name for name, m in named.items()
               if any(getattr(m, f"{p}_time_varying", None) for p in ("purchase", "dropout"))}
    if varying and path is None:
        raise ClvDataError(f"Model(s) {sorted(varying)} have time-varying covariates: pass their covariate path, "
                           "backtest(..., time_varying=covariate_calendar(calendar)) (or a covariate_panel).")
    if path is not None and not isinstance(path, CovariatePath):
        raise ClvDataError(f"time_varying must be a CovariatePath (covariate_calendar or covariate_panel), got "
                           f"{type(path).__name__}.")
    if path is not None and not varying:
        raise ClvDataError("time_varying= was given but no model has time-varying covariates: construct one with "
                           "purchase_time_varying=[...] (columns of the path).")
    return varying


def discrete_backtest(
    transactions,
    models=None,
    *,
    calibration_end,
    t: int | None = None,
    observation_end=None,
    period: str = "Y",
    interval: float = 0.9,
    n_draws: int = 200,
    seed: int | None = 0,
    holdout: int | None = None,
    covariates: pd.DataFrame | None = None,
    covariate_id: str | None = None,
    missing_covariates: str = "error",
) -> BacktestResult:
    """Backtest of discrete-time models (BG/BB): one transaction opportunity per calendar period.

    The validation of Fader, Hardie & Shang 2010 (§4): each customer's calibration history
    ``(x, t_x, n)`` is built with :func:`~clvmodels.bgbb_summary` up to the calibration end; the
    model predicts her transactions over the holdout's ``t`` opportunities (eq. 13), and the
    actual is the number of holdout periods in which she transacted (several transactions in one
    period count as one, as in calibration). The "no change" baseline repeats her calibration rate
    ``x / n`` per opportunity. Purchases only: there is no spend model per opportunity.

    Parameters
    ----------
    transactions
        A log from :func:`~clvmodels.load_transactions` (or a frame it accepts as is).
    models
        A discrete model, a list of them, or a dict ``{name: model}`` (unfitted; each cutoff fits a
        clone). Default: ``{"BG/BB": BetaGeoBetaBinomModel()}``.
    calibration_end
        Last day of the calibration period, or a list of them; each must end a ``period``.
    t
        The prediction window: the number of holdout opportunities (periods) after each calibration
        end (``holdout`` is its deprecated name). Default: up to the
        period of ``observation_end`` (default: of the last transaction).
    period
        pandas period alias of an opportunity (``"Y"``, ``"Q"``, ``"M"``, ``"W"``).
    interval, n_draws, seed
        As for :func:`backtest`.
    covariates, covariate_id, missing_covariates
        As for :func:`backtest`: a customer-level table joined by customer id to each cutoff's
        calibration summary (:func:`~clvmodels.rfm.join_covariates`), so that models with covariates
        (``purchase_covariates=...``, ``dropout_covariates=...``) and without them are compared on the
        same customers in one run (:meth:`BacktestResult.covariate_tests`); the tracking series sums
        each cohort customer at her own parameters.

    Returns
    -------
    :class:`BacktestResult` with ``time_unit`` set to ``period``; its ``tracking`` holds the actual
    and expected repeat transactions of the cohort per period (FHS 2010, fig. 5).

    Examples
    --------
    >>> res = discrete_backtest(log, calibration_end="2001-12-31", t=5)         # doctest: +SKIP
    """
    from sklearn.base import clone

    holdout = renamed_argument("discrete_backtest", "t", t, "holdout", holdout)
    log = as_log(transactions)
    named = _named_models(models, discrete=True)
    check_interval(interval)
    ordinal = _period_ordinals(log[TIMESTAMP], period)
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=(len(named),))
    out = {k: [] for k in ("metrics", "totals", "predictions", "tracking", "conditional", "parameters",
                           "warnings", "data")}
    fitted = {}
    for cut in _cutoffs(calibration_end, None, None, "D"):
        cut_p = _period_ending(cut, period)
        end_p = _holdout_end(cut_p, holdout, observation_end, pd.Timestamp(log[TIMESTAMP].max()), period)
        ch = _discrete_summary(log, ordinal, period, cut_p, end_p)
        if covariates is not None:
            ch = join_covariates(ch, covariates, covariate_id, missing_covariates)
        t = float(end_p.ordinal - cut_p.ordinal)
        label = str(cut.date())
        actual = {"purchases": ch["frequency_holdout"].to_numpy(dtype=float)}
        out["data"].append(_data_summary(log, ch, cut, end_p.end_time.normalize(), period))
        preds = {}
        dists = {}
        for j, (name, template) in enumerate(named.items()):
            model, purchases = _fit_model(out, fitted, clone(template), ch, name, label, t)
            if model is None:
                continue
            preds[name] = {"purchases": purchases}
            dists[name] = _predictive(model, None, ch, t, actual, purchases, interval=interval, n_draws=n_draws,
                                      n_samples=0, seed=int(seeds[j]))
            out["warnings"].extend(_warning(label, name, "PredictiveWarning", msg)
                                   for msg in dists[name].pop("notes", []))
            out["tracking"].append(_discrete_tracking(log, ordinal, ch, model, name, label, cut_p, end_p))
        x, n = ch["frequency"].to_numpy(dtype=float), ch["n_periods"].to_numpy(dtype=float)
        preds["no change"] = {"purchases": np.divide(x, n, out=np.zeros_like(x), where=n > 0) * t}
        _score_cutoff(out, label, ch, actual, preds, dists, named, interval)

    settings = {"time_unit": period, "resolution": period, "t": holdout, "interval": interval,
                "n_draws": n_draws, "n_samples": None, "seed": seed, "tracking_period": period,
                "models": {k: type(v).__name__ for k, v in named.items()},
                "baselines": {"no change": "calibration rate x/n per opportunity"}, "spend_model": None,
                "covariates": _covariate_columns(covariates, covariate_id)}
    return _result(out, settings, fitted)


def _covariate_columns(covariates: pd.DataFrame | None, covariate_id: str | None) -> list[str] | None:
    """The columns of a backtest's covariate table (its id column left out), for its settings."""
    return None if covariates is None else [str(c) for c in covariates.columns if c != covariate_id]


def _period_ordinals(timestamps, period: str) -> np.ndarray:
    try:
        return pd.PeriodIndex(pd.DatetimeIndex(timestamps), freq=period).asi8
    except (ValueError, TypeError) as exc:
        raise ClvDataError(f"period must be a pandas period alias such as 'Y', 'Q', 'M' or 'W', "
                           f"got {period!r} ({exc}).") from exc


def _period_ending(cut: pd.Timestamp, period: str) -> pd.Period:
    """The period whose last day is ``cut`` (a calibration cannot end inside an opportunity)."""
    p = cut.to_period(period)
    if p.end_time.normalize() != cut.normalize():
        raise ClvDataError(f"The calibration end {cut.date()} falls inside the period {p}: a discrete "
                           f"backtest cuts between opportunities, e.g. at {p.end_time.date()} or "
                           f"{(p - 1).end_time.date()}.")
    return p


def _holdout_end(cut_p: pd.Period, holdout, observation_end, log_end: pd.Timestamp, period: str) -> pd.Period:
    last = log_end.to_period(period)
    if holdout is None:
        end_p = pd.Timestamp(observation_end).to_period(period) if observation_end is not None else last
    else:
        if int(holdout) != holdout or holdout < 1:
            raise ClvDataError(f"holdout must be a positive whole number of periods, got {holdout!r}.")
        end_p = cut_p + int(holdout)
        if end_p > last:
            raise ClvDataError(f"The holdout of {holdout} periods after {cut_p} ends in {end_p}, after the last "
                               f"transaction ({log_end.date()}): choose an earlier calibration end or a shorter "
                               "holdout.")
    if end_p <= cut_p:
        raise ClvDataError(f"The holdout after {cut_p} is empty (observation end in {end_p}).")
    return end_p


def _discrete_summary(log, ordinal, period: str, cut_p: pd.Period, end_p: pd.Period) -> pd.DataFrame:
    """BG/BB calibration summary at ``cut_p`` (:func:`~clvmodels.bgbb_summary`) with the actual number
    of holdout periods with a transaction (``frequency_holdout``) and the holdout length."""
    calibration = ordinal <= cut_p.ordinal
    ch = bgbb_summary(log.loc[calibration], period=period, observation_end=cut_p.end_time)
    holdout = ~calibration & (ordinal <= end_p.ordinal) & log[CUSTOMER].isin(ch.index).to_numpy()
    pairs = pd.DataFrame({"c": log.loc[holdout, CUSTOMER].to_numpy(), "p": ordinal[holdout]}).drop_duplicates()
    ch["frequency_holdout"] = pairs["c"].value_counts().reindex(ch.index, fill_value=0).to_numpy(np.int64)
    ch["duration_holdout"] = float(end_p.ordinal - cut_p.ordinal)
    new = ~calibration & (ordinal <= end_p.ordinal) & ~log[CUSTOMER].isin(ch.index).to_numpy()
    ch.attrs["n_excluded_new_customers"] = int(log.loc[new, CUSTOMER].nunique())
    return ch


def _discrete_tracking(log, ordinal, ch, model, name, label, cut_p: pd.Period, end_p: pd.Period) -> pd.DataFrame:
    """Actual vs expected repeat transactions of the cohort per period (FHS 2010, fig. 5).

    A customer first seen in period ``f`` is expected to make ``E[X(k)] − E[X(k−1)]`` repeat
    transactions in period ``f + k`` (eq. 9); actual ones are her later periods with a transaction.
    """
    cohort = log[CUSTOMER].isin(ch.index).to_numpy() & (ordinal <= end_p.ordinal)
    pairs = pd.DataFrame({"c": log.loc[cohort, CUSTOMER].to_numpy(), "p": ordinal[cohort]}).drop_duplicates()
    first = pairs.groupby("c")["p"].transform("min")
    start = int(pairs["p"].min())
    periods = np.arange(start, end_p.ordinal + 1)
    actual = np.bincount(pairs.loc[pairs["p"] > first, "p"] - start, minlength=len(periods)).astype(float)
    first_periods = pairs.groupby("c")["p"].min()
    if model.has_covariates:
        cumulative = _cumulative_with_covariates(model, ch.loc[first_periods.index], first_periods.to_numpy(),
                                                 periods, 1.0)
        predicted = np.diff(cumulative, prepend=0.0)
    else:
        f_vals, f_counts = np.unique(first_periods.to_numpy(), return_counts=True)
        cumulative = np.asarray(model.expected_purchases_new_customer(np.arange(len(periods))), dtype=float)
        ages = periods[:, None] - f_vals[None, :]
        incremental = np.diff(cumulative, prepend=0.0)
        predicted = np.where(ages >= 0, incremental[np.maximum(ages, 0)], 0.0) @ f_counts
    frame = pd.DataFrame({
        "cutoff": label, "model": name,
        "period_end": [pd.Period(ordinal=int(p), freq=cut_p.freq).end_time.normalize() for p in periods],
        "t": (periods - cut_p.ordinal).astype(float),
        "actual": actual, "predicted": predicted,
    })
    frame["actual_cumulative"] = frame["actual"].cumsum()
    frame["predicted_cumulative"] = frame["predicted"].cumsum()
    frame["phase"] = np.where(periods <= cut_p.ordinal, "calibration", "holdout")
    return frame


def _score_cutoff(out: dict, label, ch, actual, preds, dists, named, interval) -> None:
    """Append one cutoff's metrics, totals, per-customer predictions and conditional expectations to ``out``."""
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
            out["totals"].append(_total_row(label, name, kind, target, a, p[target], dist.get("total"), interval))
        frame = pd.DataFrame({"cutoff": label, CUSTOMER: ch.index, "model": name,
                              "frequency": ch["frequency"].to_numpy(),
                              "actual_purchases": actual["purchases"], "purchases": p["purchases"]})
        for target in ("value", "clv"):
            if target in actual:
                frame[f"actual_{target}"] = actual[target]
                frame[target] = p.get(target, np.nan)
        for target in actual:
            if "pit" in dists.get(name, {}).get(target, {}):
                frame[f"pit_{target}"] = dists[name][target]["pit"]
        out["predictions"].append(frame)
    out["conditional"].append(_conditional(ch, preds, label))


def _result(out: dict, settings: dict, fitted: dict) -> BacktestResult:
    """The :class:`BacktestResult` of the collected rows, with the result-level warnings added."""
    result = BacktestResult(
        metrics=pd.DataFrame(out["metrics"]),
        totals=pd.DataFrame(out["totals"]).astype({"inside": "boolean"}),
        predictions=pd.concat(out["predictions"], ignore_index=True),
        tracking=pd.concat(out["tracking"], ignore_index=True) if out["tracking"] else pd.DataFrame(),
        conditional=pd.concat(out["conditional"], ignore_index=True),
        parameters=pd.concat(out["parameters"], ignore_index=True) if out["parameters"] else pd.DataFrame(),
        warnings=pd.DataFrame(out["warnings"], columns=["cutoff", "model", "category", "message"]),
        data=pd.DataFrame(out["data"]),
        settings=settings,
        models=fitted,
    )
    _add_result_warnings(result)
    return result


# ---------------------------------------------------------------------------- pieces
def _warning(cutoff, model, category, message) -> dict:
    return {"cutoff": cutoff, "model": model, "category": category, "message": message}


def model_warnings(cutoff, model, caught) -> list[dict]:
    """The records of the caught warnings that are about the model (:data:`~.errors.MODEL_WARNINGS`);
    others (a library's notices) are not results of the backtest."""
    return [_warning(cutoff, model, w.category.__name__, str(w.message)) for w in caught
            if issubclass(w.category, MODEL_WARNINGS)]


def _fit_model(out: dict, fitted: dict, model, ch, name, label, t, path: dict | None = None):
    """Fit ``model`` on ``ch``, recording its warnings, parameters and the fitted model; returns it with
    its customers' expected holdout purchases, or ``(None, None)`` when the fit failed. ``path``: with
    time-varying covariates, ``{"time_varying": the calibration summary, "future": the holdout's pieces}``."""
    model, records = fit_with_warnings(model, ch, name, label,
                                       **({} if path is None else {"time_varying": path["time_varying"]}))
    out["warnings"].extend(records)
    if model is None:
        return None, None
    fitted[(label, name)] = model
    out["parameters"].append(parameter_table(model, label, name))
    return model, model.expected_purchases(t, ch, **(path or {})).to_numpy()


def fit_with_warnings(model, rfm, name, label, **fit_args):
    """Fit, recording (and re-emitting, with context) the fit's warnings; a failed fit is reported, not
    fatal, and a fit whose parameters cannot be drawn (:func:`~.models.draws.covariance_problem`)
    forecasts at its estimate (:func:`~.models.draws.at_estimate`, recorded as a ``PredictiveWarning``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(rfm, **fit_args)
        except (ClvDataError, FloatingPointError) as exc:
            caught_msgs = model_warnings(label, name, caught)
            return None, caught_msgs + [_warning(label, name, "FitError", f"The fit failed: {exc}")]
    records = model_warnings(label, name, caught)
    for w in caught:
        warnings.warn(f"[{name}, calibration end {label}] {w.message}", w.category, stacklevel=3)
    if getattr(model, "converged_", True) is False and not any(r["category"] == "ConvergenceWarning" for r in records):
        records.append(_warning(label, name, "ConvergenceWarning", "The fit did not converge."))
    problem = covariance_problem(model)
    if problem is not None:   # (its ConvergenceWarning was emitted above)
        model = at_estimate(model)
        message = (f"The fit {problem}, so its parameter uncertainty cannot be estimated: its forecasts' intervals "
                   "leave it out and are too narrow by that much.")
        records.append(_warning(label, name, "PredictiveWarning", message))
    return model, records


def parameter_table(model, label: str, name: str) -> pd.DataFrame:
    """A fitted model's parameter table (its summary) in long form, tagged with the cutoff (or cohort) and name."""
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
    if "n_without_covariates" in ch.attrs:
        row["customers_without_covariates"] = int(ch.attrs["n_without_covariates"])
        row["covariate_rows_unmatched"] = int(ch.attrs["n_covariates_unmatched"])
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


def holdout_periods(t: float, period_length: float, discount_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries of the discounting periods of a holdout of length ``t`` (``Δ, 2Δ, ...``, the last
    one cut at ``t``) and their factors ``1/(1+d)^i``."""
    n = max(1, int(np.ceil(t / period_length - 1e-9)))
    steps = np.arange(1.0, n + 1)
    return np.minimum(steps * period_length, t), (1.0 + discount_rate) ** -steps


def holdout_discounted_value(log, ch, cut, obs_end, unit, res, bounds, factors) -> np.ndarray:
    """Each customer's actual holdout spend discounted by period: a transaction ``u`` time units after
    the start of the calibration end's period lies in period ``i`` with ``t_{i−1} < u <= t_i``
    (the time frame of the models' ``T`` and ``t``). Undiscounted, the sum is ``value_holdout``."""
    ts = log[TIMESTAMP].to_numpy()
    hold = (ts > period_end(cut, res)) & (ts <= period_end(obs_end, res))
    u = (period_hours(ts[hold], res) - period_start_hours(cut, res)) / 24.0 / unit_days(unit)
    period = np.minimum(np.searchsorted(bounds, u - 1e-9, side="left"), len(bounds) - 1)
    code = ch.index.get_indexer(log.loc[hold, CUSTOMER])
    known = code >= 0
    amount = log.loc[hold, AMOUNT].to_numpy(dtype=float)
    return np.bincount(code[known], weights=(amount * factors[period])[known], minlength=len(ch))


def _expected_value(model, spend, ch, bounds, factors, path=None, **draws) -> dict[str, np.ndarray]:
    """Expected discounted holdout value per customer (``clv`` of :func:`clvmodels.clv.value_customers`
    over the periods ``bounds``; with time-varying covariates along the ``path``): the point value, or
    with ``interval`` its expected-value interval."""
    columns = tuple(dict.fromkeys(model.data_columns + spend.data_columns))
    return value_customers(model, spend, validate_columns(ch, columns), bounds=bounds, factors=factors,
                           rfm=ch, **(path or {}), **draws)["clv"]


def _sample_scores(samples: np.ndarray, y: np.ndarray, expected: dict, interval: float, rng) -> dict:
    """Scores of samples ``(n_samples, n)`` of each customer's value against the actual ``y``:
    randomised PIT, its coverage at 50/80/90%, the CRPS, the total's interval, and the coverage of
    the expected value's interval (``expected``: its ``lower``/``upper``)."""
    pit = M.pit_samples(samples, y, seed=int(rng.integers(2**31 - 1)))
    scores = {f"coverage_{round(lev * 100)}": c for lev, c in M.pit_coverage(pit).items()}
    scores["crps"] = M.crps_samples(samples, y)
    scores["expected_coverage_90"] = float(np.mean((expected["lower"] <= y) & (y <= expected["upper"])))
    mean, lo, hi = M.total_interval_samples(samples, interval)
    return {"scores": scores, "pit": pit, "total": {"lower": lo, "upper": hi, "simulated_mean": mean}}


def _predictive(model, spend, ch, t, actual, expected, *, interval, n_draws, n_samples, seed,
                bounds=None, factors=None, path=None) -> dict:
    """Predictive-distribution scores of one fitted purchase model (and its value and discounted
    value forecasts, from one simulation per period of ``bounds``); ``expected`` holds the customers'
    expected purchases.

    With time-varying covariates (``path``: the calibration summary and the holdout's pieces) there
    is no closed-form pmf: each customer's pmf is the share of ``n_samples`` futures simulated along
    her path with that many purchases (those of the value's simulation when there is one, else
    :func:`clvmodels.predictive.simulated_pmf`), scored as the closed form is (randomised PIT,
    coverage, CRPS), the log score with outcomes no future reached floored at half a future
    (``0.5 / n_samples``: the simulation's resolution, where an exact pmf's floor would score a
    merely unsampled count as impossible); the total's interval from the futures' totals
    (:func:`_simulated_total`)."""
    out: dict = {"notes": []}
    if path is None and model.purchase_pmf_formula is None:
        out["notes"].append(f"{type(model).__name__} has no predictive pmf: no coverage, PIT, log score, "
                            "CRPS or interval of the total.")
        return out
    rng = np.random.default_rng(seed)
    y = actual["purchases"]
    value = spend is not None and "value" in actual
    # columns 0..n_max-1 of the pmf are exact, the last one is P(N >= n_max): keep every actual below it
    n_max = int(np.ceil(max(y.max(), np.max(expected + 10 * np.sqrt(expected) + 10)))) + 1
    samples = None
    if path is None:
        pmf = P.purchase_pmf(model, t, n_max, ch)
    elif value:                 # one simulation of the futures: their purchases and their value
        samples = _value_samples(model, spend, ch, bounds, factors, n_samples, int(rng.integers(2**31 - 1)), path)
        pmf, totals = M.sample_pmf(samples["purchases"], n_max), samples["purchases"].sum(axis=1)
    else:
        pmf, totals = P.simulated_pmf(model, t, n_max, ch, n_samples=n_samples, seed=int(rng.integers(2**31 - 1)),
                                      **path)
    tail = pmf[:, -1]
    if tail.max() > 1e-3:
        out["notes"].append(f"The purchase pmf puts up to {tail.max():.2g} on {n_max} or more purchases: the "
                            f"CRPS and the total's interval count that tail as {n_max}.")
    pit = M.randomized_pit(pmf, y, seed=int(rng.integers(2**31 - 1)))
    scores = {f"coverage_{round(lev * 100)}": v for lev, v in M.pit_coverage(pit).items()}
    floor = {} if path is None else {"floor": 0.5 / n_samples}
    scores |= {"log_score": M.log_score(pmf, y, **floor), "crps": M.crps_pmf(pmf, y)}
    total = (_purchase_total(model, pmf, ch, t, interval, n_draws, int(rng.integers(2**31 - 1)), out["notes"])
             if path is None else _simulated_total(pmf, totals, interval))
    out["purchases"] = {"scores": scores, "pit": pit, "total": total}
    if value:
        if model.simulate_purchases_formula is None:
            out["notes"].append(f"{type(model).__name__} has no purchase simulator: no predictive value scores.")
            return out
        if samples is None:
            samples = _value_samples(model, spend, ch, bounds, factors, n_samples, int(rng.integers(2**31 - 1)))
        draws = {"interval": EXPECTED_LEVEL, "n_draws": n_draws, "seed": int(rng.integers(2**31 - 1))}
        try:
            intervals = {"value": _expected_value(model, spend, ch, bounds[-1:], np.ones(1), path, **draws),
                         "clv": _expected_value(model, spend, ch, bounds, factors, path, **draws)}
        except ClvDataError as exc:
            out["notes"].append(f"No expected-value interval: {exc}")
            intervals = {k: {"lower": np.full(len(ch), np.nan), "upper": np.full(len(ch), np.nan)}
                         for k in ("value", "clv")}
        for target in ("value", "clv"):
            out[target] = _sample_scores(samples[target], actual[target], intervals[target], interval, rng)
    return out


def _value_samples(model, spend, ch, bounds, factors, n_samples, seed, path=None) -> dict[str, np.ndarray]:
    """``n_samples`` simulated futures ``(n_samples, customers)`` of each customer's holdout
    ``purchases``, ``value`` and discounted value (``clv``) over the periods ``bounds``
    (:func:`clvmodels.clv.discounted_chunks`; along the ``path`` with time-varying covariates)."""
    shape = (int(n_samples), len(ch))
    samples = {"purchases": np.empty(shape, dtype=np.int64), "value": np.empty(shape), "clv": np.empty(shape)}
    for sl, discounted, counts, per_period in discounted_chunks(model, spend, ch, bounds=bounds, factors=factors,
                                                                n_samples=n_samples, seed=seed, **(path or {})):
        samples["purchases"][:, sl], samples["value"][:, sl], samples["clv"][:, sl] = \
            counts, per_period.sum(axis=-1), discounted
    return samples


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
    formula = model.formula("expected_purchases_formula")
    try:
        draws = model.parameter_draws(n_draws, seed=seed)
    except ClvDataError as exc:
        notes.append(f"No parameter uncertainty in the total's interval: {exc}")
        row.update(lower=plug_lo, upper=plug_hi)
        return row
    data, inverse = unique_rows({**validate_columns(ch, model.data_columns), **model.covariate_data(ch)})
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


def _simulated_total(pmf, totals, level) -> dict:
    """Interval of the holdout's total purchases of a model with time-varying covariates: quantiles of
    the simulated futures' totals over customers (``totals``; each future at one parameter draw that
    all customers share, so the interval carries process and parameter uncertainty, as the mixture of
    :func:`_purchase_total` does). The "plugin" interval convolves the customers' simulated pmfs as if
    independent: like a Bayesian fit's, they are averaged over the draws customer by customer."""
    mean, lower, upper = M.total_interval_samples(np.asarray(totals)[:, None], level)
    plug_lo, plug_hi = M.interval_from_pmf(*M.total_pmf(pmf), level)
    return {"plugin_lower": plug_lo, "plugin_upper": plug_hi, "lower": lower, "upper": upper, "simulated_mean": mean}


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


def _tracking(log, ch, model, name, cut, obs_end, unit, res, period, path=None) -> pd.DataFrame:
    """Actual vs expected repeat transactions of the cohort, per ``period``, over calibration + holdout.

    Expected cumulative repeat transactions by day ``e``: ``Σ_i E[X((e − f_i)/unit)]`` over the
    cohort's first-purchase days ``f_i`` (FHL 2005, eq. 9), computed once per distinct first day;
    with time-varying covariates along the covariate ``path`` from each first day
    (:meth:`~clvmodels.models.purchase.PurchaseModel.expected_tracking`).
    Bins end at the calibration end plus whole periods, so the calibration/holdout boundary is an edge.
    """
    cohort = log.loc[log[CUSTOMER].isin(ch.index)]
    codes, uniques = pd.factorize(cohort[CUSTOMER])
    day = period_start_days(cohort[TIMESTAMP].to_numpy(), res)
    pairs = pd.DataFrame({"c": codes, "d": day}).drop_duplicates()
    first = pairs.groupby("c")["d"].transform("min").to_numpy()
    repeat_days = pairs["d"].to_numpy()[pairs["d"].to_numpy() > first]
    first_days = pairs.groupby("c")["d"].min().to_numpy()

    step = unit_days(normalize_unit(period))
    end_day = period_start_days(np.array([cut.to_datetime64()]), res)[0]
    obs_day = period_start_days(np.array([obs_end.to_datetime64()]), res)[0]
    k_min = int(np.floor((first_days.min() - end_day) / step))
    k_max = int(np.ceil((obs_day - end_day) / step))
    edges = np.minimum(end_day + step * np.arange(k_min, k_max + 1), obs_day)
    edges = np.unique(np.maximum(edges, first_days.min() - step))
    actual_cum = np.searchsorted(np.sort(repeat_days), edges, side="right").astype(float)

    if path is not None:     # a calendar: one path per first day (and static profile); a panel: each customer's own
        profiles = (ch.loc[np.asarray(uniques), model.covariate_sources()].reset_index(drop=True)
                    if model.has_covariates else pd.DataFrame(index=range(len(first_days))))
        f_vals, f_counts = first_days, None
        if path.customers is None:
            keys = profiles.assign(_first=first_days)
            groups = keys.groupby(list(keys.columns), sort=True).size().rename("_n").reset_index()
            f_vals, f_counts = groups["_first"].to_numpy(), groups["_n"].to_numpy()
            profiles = groups[list(profiles.columns)]
        born = pd.Timestamp("1970-01-01") + pd.to_timedelta(f_vals, unit="D")
        pieces = new_customer_exposure(path, born, (edges[-1] - f_vals) / unit_days(unit), unit,
                                       customers=None if path.customers is None else pd.Index(uniques))
        per_period = model.expected_tracking(pieces, f_vals / unit_days(unit), edges / unit_days(unit),
                                             weights=f_counts, covariates=profiles if model.has_covariates else None)
        predicted_cum = np.cumsum(per_period.to_numpy())
    elif model.has_covariates:
        predicted_cum = _cumulative_with_covariates(model, ch.loc[np.asarray(uniques)], first_days, edges,
                                                    unit_days(unit))
    else:
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


def _cumulative_with_covariates(model, customers: pd.DataFrame, first, edges, length: float) -> np.ndarray:
    """``Σ_i E[X_i((e − f_i) / length)]`` at each edge ``e`` for a model with covariates: each customer of
    the cohort (first purchase at ``f_i``: a day, or a discrete model's period) at her own parameters,
    from her row of ``customers``; ``length``: the model's time unit in the edges' (days, or 1 period)."""
    profiles = customers[model.covariate_sources()]
    out = np.zeros(len(edges))
    for k, edge in enumerate(edges):
        age = np.maximum(edge - first, 0.0) / length
        started = age > 0
        if started.any():
            out[k] = np.asarray(model.expected_purchases_new_customer(age[started], covariates=profiles[started]),
                                dtype=float).sum()
    return out


def _add_result_warnings(result: BacktestResult) -> None:
    """Make misses visible: actual totals outside the predicted interval, large total errors."""
    rows = []
    for _, r in result.totals.iterrows():
        if r["kind"] != "model":
            continue
        r = r.copy()
        r["target"] = "discounted CLV" if r["target"] == "clv" else r["target"]
        # an error in percent of an actual 0 is undefined (+inf): say what was predicted instead
        error = f", {r['error_pct']:+.1f}%" if r["actual"] != 0 else ""
        if pd.notna(r["inside"]) and not r["inside"]:
            rows.append(_warning(r["cutoff"], r["model"], "IntervalMiss",
                                 f"The actual holdout {r['target']} total {r['actual']:,.0f} lies outside the "
                                 f"predicted {r['level']:.0%} interval [{r['lower']:,.0f}, {r['upper']:,.0f}] "
                                 f"(predicted {r['predicted']:,.0f}{error})."))
        elif r["actual"] == 0 and r["predicted"] != 0:
            rows.append(_warning(r["cutoff"], r["model"], "LargeTotalError",
                                 f"The actual holdout {r['target']} total is 0 and {r['predicted']:,.3g} was predicted "
                                 "(an error in percent of 0 is undefined)."))
        elif abs(r["error_pct"]) > 10:
            rows.append(_warning(r["cutoff"], r["model"], "LargeTotalError",
                                 f"The predicted holdout {r['target']} total is {r['error_pct']:+.1f}% off "
                                 f"({r['predicted']:,.0f} predicted vs {r['actual']:,.0f} actual)."))
    if rows:
        result.warnings = pd.concat([result.warnings, pd.DataFrame(rows)], ignore_index=True)
