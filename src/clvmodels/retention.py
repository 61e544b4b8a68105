"""Backtest of contractual retention: fit on a cohort's first periods, project the rest.

The validation of Fader & Hardie 2007 ("How to project customer retention", J. Interactive
Marketing 21(1), §4): the shifted-beta-geometric model is fitted on a cohort's survivor counts at
the start of periods ``0..k`` and projects the survivors of periods ``k+1..K``, which are compared
with the actual counts. The baseline is the same projection without heterogeneity: one churn
probability for every customer (the geometric model, fitted by maximum likelihood on the same
periods), whose retention rate stays flat where the actual one rises.

:func:`retention_backtest` returns a :class:`RetentionBacktestResult`;
:func:`clvmodels.compare_report` turns it into HTML.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .backtest import best_per_metric, model_warnings, parameter_table, result_html
from .errors import ClvDataError
from .models.base import check_kind
from .models.contractual import ContractualModel, survivor_table
from .models.sbg import ShiftedBetaGeoModel

#: Name of the constant-churn (geometric) baseline.
CONSTANT_CHURN = "constant churn"


@dataclass
class RetentionBacktestResult:
    """Tidy results of :func:`retention_backtest`.

    * ``survivors``: one row per cohort, forecast and period ``1..K`` with the actual and projected
      survivors, the error and the error in % of the actual (``phase``: calibration or holdout);
    * ``metrics``: per cohort and forecast, over the holdout periods: ``mae`` (customers), ``mape``
      (mean absolute % error) and ``final_error_pct`` (signed % error of the last period);
    * ``parameters``, ``warnings``, ``settings`` and the fitted ``models`` by (cohort, name).
    """

    survivors: pd.DataFrame
    metrics: pd.DataFrame
    parameters: pd.DataFrame
    warnings: pd.DataFrame
    settings: dict
    models: dict = field(default_factory=dict, repr=False)

    @property
    def cohorts(self) -> list[str]:
        return list(dict.fromkeys(self.survivors["cohort"]))

    def table(self, cohort: str | None = None) -> pd.DataFrame:
        """Wide metrics table (rows: forecasts, columns: metrics) of one cohort, or the mean over cohorts."""
        m = self.metrics if cohort is None else self.metrics[self.metrics["cohort"] == cohort]
        return m.pivot_table(index="model", columns="metric", values="value", aggfunc="mean", sort=False)

    def best(self, cohort: str | None = None) -> pd.Series:
        """Name of the best forecast per metric."""
        return best_per_metric(self.table(cohort))

    def _repr_html_(self) -> str:
        return result_html(self)


def constant_churn_survival(survivors, calibration_periods: int, periods) -> np.ndarray:
    """Survival ``(1−θ)^t`` of the geometric model, with the MLE ``θ = lost / customer-periods at
    risk`` over periods ``1..calibration_periods`` (Fader & Hardie 2007, §3: no heterogeneity)."""
    s = np.asarray(survivors, dtype=float)[:calibration_periods + 1]
    theta = (s[0] - s[-1]) / s[:-1].sum()
    return (1.0 - theta) ** np.asarray(periods, dtype=float)


def retention_backtest(survivors, models=None, *, calibration_periods: int) -> RetentionBacktestResult:
    """Fit on the first ``calibration_periods`` periods of each cohort and score the projection of the rest.

    Parameters
    ----------
    survivors
        One cohort's customers active at the start of periods ``0..K`` (the first is the cohort
        size), or a dict ``{cohort name: counts}``.
    models
        An sBG model, or a dict ``{name: model}`` (unfitted; each cohort fits a clone). Default:
        ``{"sBG": ShiftedBetaGeoModel()}``. The constant-churn baseline is always added.
    calibration_periods
        ``k``: the fit uses the counts at periods ``0..k``; periods ``k+1..K`` are the holdout.

    Returns
    -------
    :class:`RetentionBacktestResult`

    Examples
    --------
    >>> res = retention_backtest({"regular": REGULAR}, calibration_periods=7)   # doctest: +SKIP
    >>> res.table()                                                              # doctest: +SKIP
    """
    from sklearn.base import clone

    cohorts = dict(survivors) if isinstance(survivors, dict) else {"cohort": survivors}
    named = {"sBG": ShiftedBetaGeoModel()} if models is None else (
        dict(models) if isinstance(models, dict) else {models.display_name or type(models).__name__: models})
    for name, m in named.items():
        check_kind(m, ContractualModel, f"retention_backtest model {name!r}")
    if CONSTANT_CHURN in named:
        raise ClvDataError(f"{CONSTANT_CHURN!r} is the baseline's name: rename the model.")
    rows, metrics, params, notes, fitted = [], [], [], [], {}
    for cohort, counts in cohorts.items():
        survivor_table(counts)  # validates the counts: finite, non-negative, non-increasing
        s = np.asarray(counts, dtype=float)
        k = _check_split(s, calibration_periods, cohort)
        periods = np.arange(1, len(s))
        forecasts = {}
        for name, template in named.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = clone(template).fit_survivors(s[:k + 1])
            notes.extend({"cohort": r["cutoff"], "model": name, "category": r["category"], "message": r["message"]}
                         for r in model_warnings(cohort, name, caught))
            fitted[(cohort, name)] = model
            params.append(parameter_table(model, cohort, name).rename(columns={"cutoff": "cohort"}))
            forecasts[name] = model.expected_survivors(periods, cohort_size=s[0]).to_numpy()
        forecasts[CONSTANT_CHURN] = s[0] * constant_churn_survival(s, k, periods)
        for name, predicted in forecasts.items():
            frame = _survivor_rows(cohort, name, periods, s[1:], predicted, k)
            rows.append(frame)
            metrics.extend(_holdout_metrics(cohort, name, frame[frame["phase"] == "holdout"]))
    return RetentionBacktestResult(
        survivors=pd.concat(rows, ignore_index=True), metrics=pd.DataFrame(metrics),
        parameters=pd.concat(params, ignore_index=True),
        warnings=pd.DataFrame(notes, columns=["cohort", "model", "category", "message"]),
        settings={"calibration_periods": k, "models": {n: type(m).__name__ for n, m in named.items()},
                  "baselines": {CONSTANT_CHURN: "geometric, one churn probability"}},
        models=fitted,
    )


def _check_split(s: np.ndarray, k, cohort) -> int:
    if int(k) != k or not 1 <= k < len(s) - 1:
        raise ClvDataError(f"calibration_periods must be a whole number from 1 to {len(s) - 2} (cohort {cohort!r} "
                           f"has counts for periods 0..{len(s) - 1}), got {k!r}.")
    return int(k)


def _survivor_rows(cohort, name, periods, actual, predicted, k) -> pd.DataFrame:
    frame = pd.DataFrame({"cohort": cohort, "model": name, "period": periods, "actual": actual,
                          "predicted": predicted, "phase": np.where(periods <= k, "calibration", "holdout")})
    frame["error"] = frame["predicted"] - frame["actual"]
    frame["error_pct"] = 100.0 * frame["error"] / frame["actual"]
    return frame


def _holdout_metrics(cohort, name, holdout: pd.DataFrame) -> list[dict]:
    values = {"mae": holdout["error"].abs().mean(), "mape": holdout["error_pct"].abs().mean(),
              "final_error_pct": holdout["error_pct"].iloc[-1]}
    return [{"cohort": cohort, "model": name, "metric": m, "value": float(v)} for m, v in values.items()]
