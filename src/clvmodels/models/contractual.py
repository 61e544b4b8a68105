"""The protocol of contractual retention models: the formulas each one declares, and the
prediction methods written once over them.

A contractual model describes how a cohort of subscribers renews period after period. Its data
are per-period counts, not per-customer histories: a row per churn period ``t`` (``churned = 1``)
and one censored row (``churned = 0``) with their customer counts as weights
(:func:`survivor_table`). Each formula is a numpy function of a parameter dict whose values
broadcast over draws, and lives in its model's module with its source:

==========================  ===================================================================
formula                     meaning
==========================  ===================================================================
``survival``                ``S(t)``: share of a new cohort still active after ``t`` periods
``retention_rate``          ``r(t) = S(t)/S(t−1)``, ``t >= 1``
``derl``                    discounted expected residual lifetime after ``n`` renewals
``del``                     discounted expected lifetime of a new customer
==========================  ===================================================================
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pandas as pd

from ..errors import ClvDataError, data_error
from ..validation import validate_columns
from .base import CLVModel


def survivor_table(survivors) -> pd.DataFrame:
    """Per-period rows of a cohort's survivor counts, ready for :meth:`ShiftedBetaGeoModel.fit`.

    Parameters
    ----------
    survivors
        Customers active at the start of periods ``0, 1, ..., K`` (non-increasing counts; the first
        is the cohort size).

    Returns
    -------
    DataFrame with ``period``, ``churned`` and ``count``: one row per period ``t = 1..K`` with the
    customers lost at its end (``churned = 1``) and one row ``(K, 0)`` with the customers still
    active (censored). Pass ``weights=table["count"]`` to ``fit``.
    """
    s = np.asarray(survivors, dtype=float)
    if s.ndim != 1 or len(s) < 2:
        raise ClvDataError("survivors must be a 1-d sequence of at least 2 counts (periods 0, 1, ...).")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ClvDataError(f"survivors must be finite, non-negative counts, got {s.tolist()}.")
    lost = -np.diff(s)
    if np.any(lost < 0):
        bad = int(np.argmax(lost < 0)) + 1
        raise ClvDataError(f"survivors must not increase: {s[bad - 1]:g} at period {bad - 1} but "
                           f"{s[bad]:g} at period {bad}. Pass the survivors of one cohort.")
    K = len(s) - 1
    return pd.DataFrame({
        "period": np.r_[np.arange(1, K + 1), K].astype(np.int64),
        "churned": np.r_[np.ones(K, dtype=np.int64), 0],
        "count": np.r_[lost, s[-1]],
    })


class ContractualModel(CLVModel):
    """A model of contractual retention (subscribers renewing period after period).

    Subclasses declare the formulas below (see the module docstring)."""

    kind_name = "contractual model"
    data_columns = ("period", "churned")

    def __init__(self, *, dropout_covariates: list[str] | None = None, **kwargs):
        """``dropout_covariates``: columns of the customer table whose values scale churn (``covariate_links``); the other settings as for :class:`~clvmodels.models.base.CLVModel`."""
        super().__init__(**kwargs)
        self.dropout_covariates = dropout_covariates

    @staticmethod
    @abstractmethod
    def survival_formula(params, period):
        """``S(t)``: the share of a new cohort still active after ``period`` periods."""

    @staticmethod
    @abstractmethod
    def retention_rate_formula(params, period):
        """``r(t)``: the share of period ``t−1``'s customers renewing in period ``t >= 1``."""

    @staticmethod
    @abstractmethod
    def derl_formula(params, renewals, *, discount_rate):
        """Discounted expected residual lifetime of a customer with ``renewals`` renewals so far."""

    @staticmethod
    @abstractmethod
    def del_formula(params, *, discount_rate):
        """Discounted expected lifetime (payments) of a new customer, the first payment included."""

    def _data_arrays(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        data = validate_columns(rfm, self.data_columns)
        t = data["period"]
        bad = (t < 1) | (t != np.round(t))
        if bad.any():
            raise data_error("Periods must be positive integers (1 = the first period)", column="period",
                             rows=rfm.loc[bad, list(self.data_columns)])
        bad = ~np.isin(data["churned"], (0.0, 1.0))
        if bad.any():
            raise data_error("churned must be 0 (still active after the period) or 1 (lost at its end)",
                             column="churned", rows=rfm.loc[bad, list(self.data_columns)])
        return data

    def fit_survivors(self, survivors, **kwargs) -> "ContractualModel":
        """Fit on one cohort's survivor counts at the start of periods 0..K (see :func:`survivor_table`)."""
        table = survivor_table(survivors)
        table = table[table["count"] > 0].reset_index(drop=True)
        return self.fit(table, weights=table["count"].to_numpy(), **kwargs)

    # ------------------------------------------------------------------ predictions
    def _grid_predict(self, fn, periods, name, column="period", covariates=None, **kwargs):
        """``fn`` over a grid of ``periods`` (a model with covariates: for the customers of ``covariates``,
        one profile for every period or a frame of profiles for one period)."""
        ps = np.atleast_1d(np.asarray(periods, dtype=float))
        if not np.all(np.isfinite(ps)) or np.any(ps < 0):
            raise ClvDataError(f"{column} must be finite and non-negative, got {ps}.")
        grid = self._covariate_grid(pd.DataFrame({column: ps}, index=pd.Index(ps, name=column)), covariates)
        return self._predict(fn, grid, name=name, columns=(column,), **kwargs)

    def survival(self, periods, **kwargs):
        """Share of a new cohort still active after each of ``periods`` (``S(t)``); ``interval=0.9``
        adds parameter uncertainty."""
        return self._grid_predict(self.survival_formula, periods, "survival", **kwargs)

    def retention_rate(self, periods, **kwargs):
        """Retention rate ``r(t)`` of each period ``t >= 1``: the share of period ``t−1``'s customers renewing."""
        if np.any(np.asarray(periods, dtype=float) < 1):
            raise ClvDataError("Retention rates are defined for periods t >= 1.")
        return self._grid_predict(self.retention_rate_formula, periods, "retention_rate", **kwargs)

    def expected_survivors(self, periods, cohort_size: float, **kwargs):
        """Projected active customers of a cohort of ``cohort_size`` after each of ``periods``."""
        return cohort_size * self.survival(periods, **kwargs)

    def derl(self, renewals, discount_rate: float, **kwargs):
        """Discounted expected residual lifetime of a customer with ``renewals`` renewals so far,
        evaluated just before her next renewal decision (Fader & Hardie 2010, eq. 6). Multiply by
        the payment per period for the residual lifetime value."""
        _check_rate(discount_rate)
        if np.any(np.asarray(renewals, dtype=float) != np.round(np.asarray(renewals, dtype=float))):
            raise ClvDataError("renewals must be non-negative integers.")
        return self._grid_predict(self.derl_formula, renewals, "derl", column="renewals",
                                  discount_rate=discount_rate, **kwargs)

    def discounted_expected_lifetime(self, discount_rate, **kwargs):
        """DEL: discounted expected number of payments of a new customer, the first included
        (Fader & Hardie 2010, eq. 5), for one or several discount rates."""
        rates = np.atleast_1d(np.asarray(discount_rate, dtype=float))
        _check_rate(rates)
        out = self._grid_predict(self.del_formula, rates, "del", column="discount_rate", **kwargs)
        return float(out.iloc[0]) if np.ndim(discount_rate) == 0 and isinstance(out, pd.Series) else out


def _check_rate(d) -> None:
    d = np.asarray(d, dtype=float)
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ClvDataError(f"discount_rate must be positive (DERL is infinite without discounting), got {d}.")


__all__ = ["ContractualModel", "survivor_table"]
