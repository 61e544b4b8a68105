"""Continuous-time purchase models (BG/NBD, MBG/NBD, Pareto/NBD): their per-customer prediction
methods, written once over the formulas each model class declares.

Each formula lives in its model's module, with its source (paper and equation); this class only
validates the arguments and evaluates the formula per customer and parameter draw
(:meth:`CLVModel._predict`: a point value, or with ``interval=0.9`` the mean, median and interval
over draws of the posterior or of the MLE's asymptotic normal).
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

from .base import CLVModel, check_n, check_t


class PurchaseModel(CLVModel):
    """Base class of the continuous-time purchase models; subclasses declare the formulas."""

    #: ``probability_of_n_purchases(params, frequency, recency, T, *, t, n)``.
    probability_of_n_purchases_formula: ClassVar = None
    #: ``expected_purchases_new_customer(params, *, t)``.
    new_customer_formula: ClassVar = None
    #: Whether P(alive) is evaluated once per distinct history: ``False`` where it costs a few
    #: operations per row, which is cheaper than finding the distinct rows.
    compress_alive_rows: ClassVar[bool] = True

    def expected_purchases(self, t: float, rfm: pd.DataFrame | None = None, **kwargs):
        """Expected repeat purchases in the next ``t`` periods, given each customer's history.
        ``interval=0.9`` adds parameter uncertainty; see :meth:`CLVModel._predict`."""
        check_t(t)
        return self._predict(self.expected_purchases_formula, rfm, name="expected_purchases", t=float(t), **kwargs)

    def probability_alive(self, rfm: pd.DataFrame | None = None, **kwargs):
        """Probability that each customer is still alive at the end of observation ``T``."""
        kwargs.setdefault("compress_rows", self.compress_alive_rows)
        return self._predict(self.probability_alive_formula, rfm, name="probability_alive", **kwargs)

    def probability_of_n_purchases(self, t: float, n: int, rfm: pd.DataFrame | None = None, **kwargs):
        """Probability that each customer makes exactly ``n`` repeat purchases in the next ``t`` periods."""
        check_t(t)
        check_n(n)
        return self._predict(self.probability_of_n_purchases_formula, rfm, name=f"p_{int(n)}_purchases",
                             t=float(t), n=int(n), **kwargs)

    def predictive_purchases(self, t: float, rfm: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Per-customer predictive distribution of the number of purchases in the next ``t`` periods
        (parameter and process uncertainty): mean and quantiles; see
        :func:`clvmodels.predictive.predictive_purchases`."""
        from ..predictive import predictive_purchases

        return predictive_purchases(self, t, rfm, **kwargs)

    def expected_purchases_new_customer(self, t, **kwargs):
        """E[X(t)] for a newly acquired customer, for one or several ``t``."""
        return self._predict_over_t(self.new_customer_formula, t, **kwargs)


__all__ = ["PurchaseModel"]
