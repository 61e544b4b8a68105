"""The protocol of spend models: the formulas each one declares, and the prediction method
written once over them.

A spend model describes the value of each customer's transactions from her number of repeat
purchases ``frequency`` and their mean value ``monetary_value``. Its formulas are numpy functions
of a parameter dict whose values broadcast over draws, and live in the model's module with their
source (e.g. :mod:`clvmodels.models.gamma_gamma`):

* ``expected_spend(params, frequency, monetary_value)``: the conditional expected value of one
  future transaction;
* ``simulate_spend(params, frequency, monetary_value, *, n_transactions, rng)``: one exact draw of
  each customer's total spend over ``n_transactions`` future transactions.

:func:`clvmodels.clv` multiplies a purchase model's discounted expected purchases by
``expected_spend``; :mod:`clvmodels.predictive` simulates with ``simulate_spend``.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pandas as pd

from .base import CLVModel


class SpendModel(CLVModel):
    """A model of the value of customers' transactions.

    Subclasses declare the formulas below (see the module docstring)."""

    kind_name = "spend model"
    data_columns = ("frequency", "monetary_value")

    def __init__(self, *, spend_covariates: list[str] | None = None, **kwargs):
        """``spend_covariates``: columns of the customer table whose values scale spend (``covariate_links``); the other settings as for :class:`~clvmodels.models.base.CLVModel`."""
        super().__init__(**kwargs)
        self.spend_covariates = spend_covariates

    @staticmethod
    @abstractmethod
    def expected_spend_formula(params, frequency, monetary_value):
        """E[value of a future transaction | frequency, monetary_value]."""

    @staticmethod
    @abstractmethod
    def simulate_spend_formula(params, frequency, monetary_value, *, n_transactions, rng):
        """One exact draw of each customer's total spend over ``n_transactions`` transactions."""

    @staticmethod
    def fit_mask(data: dict[str, np.ndarray]) -> np.ndarray:
        """Which customers (rows of ``data``, the :attr:`data_columns`) the model learns from; the
        others are still scored. All of them unless a model says otherwise."""
        return np.ones(len(data["frequency"]), dtype=bool)

    def expected_spend(self, rfm: pd.DataFrame | None = None, **kwargs):
        """Conditional expected spend per transaction of each customer; ``interval=0.9`` adds
        parameter uncertainty (see :meth:`CLVModel._predict`)."""
        kwargs.setdefault("compress_rows", False)  # a few operations per row: cheaper than deduplicating
        return self._predict(self.expected_spend_formula, rfm, name="expected_spend", **kwargs)


__all__ = ["SpendModel"]
