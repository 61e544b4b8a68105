"""Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, JMR 42(4); Fader & Hardie 2013).

Each transaction's value is ``Gamma(shape p, rate nu)`` with ``nu ~ Gamma(shape q, rate gamma)`` across
customers. The model is fitted on the mean repeat spend ``m`` of customers with ``x > 0`` repeat
transactions, and assumes spend is independent of purchase frequency.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import AssumptionWarning, ClvDataError, data_error
from ..validation import HISTORY_CHECKS, validate_columns

from .draws import is_bayesian
from .namespaces import likelihood
from .spend import SpendModel

#: |Pearson correlation| between frequency and mean spend above which the independence
#: assumption is reported as violated.
CORRELATION_WARNING = 0.3


@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Per-customer log density of the mean spend (Fader & Hardie 2013, eq. 5), in the namespace
    ``xp`` (:mod:`.namespaces`).

    ``ln f = lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + (px−1) ln m + px ln x − (px+q) ln(γ + x m)``:
    the sum of :func:`frequency_terms` and :func:`spend_terms`.
    """
    return frequency_terms(params, data, xp) + spend_terms(params, data, xp)


@likelihood
def frequency_terms(params: dict, data: dict, xp):
    """The terms of eq. (5) that read only ``x``: ``lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q ln γ + px ln x``."""
    p, q, gamma = params["p"], params["q"], params["gamma"]
    px = p * data["frequency"]
    return xp.gammaln(px + q) - xp.gammaln(px) - xp.gammaln(q) + q * xp.log(gamma) + px * xp.log(data["frequency"])


@likelihood
def spend_terms(params: dict, data: dict, xp):
    """The terms of eq. (5) that read the mean spend: ``(px−1) ln m − (px+q) ln(γ + x m)``."""
    p, q, gamma = params["p"], params["q"], params["gamma"]
    x, m = data["frequency"], data["monetary_value"]
    px = p * x
    return (px - 1) * xp.log(m) - (px + q) * xp.log(gamma + x * m)


def check_spend(monetary_value, rows: pd.DataFrame | None = None) -> None:
    """Refuse negative mean spends (ClvDataError naming the column and row count; ``rows``, the
    customers' frame, adds examples). Spend is positive under the model, and a negative ``m`` would
    give a negative expected spend. A mean of 0 with repeat purchases (zero-value transactions,
    found in CDNOW) is outside the model's support but has a well-defined positive prediction, the
    limit ``m -> 0``, so it is scored; customers with ``x = 0`` have no mean spend to read.
    """
    bad = np.asarray(monetary_value) < 0
    if np.any(bad):
        raise data_error(
            "Gamma-Gamma needs a non-negative mean spend per repeat transaction; found negative values",
            column="monetary_value", rows=None if rows is None else rows.loc[bad], n_rows=int(np.sum(bad)),
            fix="Fix these customers or leave them out (refunds should be netted against their purchases).")


def expected_spend(params, frequency, monetary_value):
    """E[Z | p, q, γ, m, x] = p (γ + x m) / (p x + q − 1): conditional mean spend per transaction.

    Customers with ``x = 0`` get the population mean ``p γ / (q − 1)``. Needs ``q > 1``. A negative
    mean spend is refused (:func:`check_spend`), never turned into a negative prediction.
    """
    check_spend(monetary_value)
    p, q, gamma = params["p"], params["q"], params["gamma"]
    x = frequency
    m = np.where(x > 0, monetary_value, 0.0)
    return p * (gamma + x * m) / (p * x + q - 1.0)


def simulate_spend(params, frequency, monetary_value, *, n_transactions, rng):
    """One draw of each customer's total spend over ``n_transactions`` future transactions, exactly,
    from her individual-level posterior (Fader & Hardie 2013): ``ν ~ Gamma(px+q, rate γ + x m)``
    (the prior ``Gamma(q, γ)`` when ``x = 0``), and the sum of ``n`` transaction values
    ``Gamma(p, ν)`` is ``Gamma(n p, ν)`` (0 when ``n = 0``): one draw per total, not one per transaction.

    ``n_transactions`` has the broadcast shape of the parameters ``(n_samples, 1)`` against the
    customers ``(n,)``, optionally with trailing axes (e.g. periods, ``(n_samples, n, H)``): the
    customer's ``ν`` is the same across them and each entry's spend is drawn given it.
    """
    check_spend(monetary_value)
    p, q, gamma = params["p"], params["q"], params["gamma"]
    x = np.asarray(frequency, dtype=float)
    m = np.where(x > 0, monetary_value, 0.0)
    shape_nu, rate_nu = np.broadcast_arrays(p * x + q, gamma + x * m)
    n = np.asarray(n_transactions)
    per_entry = int(np.prod(n.shape[shape_nu.ndim:], dtype=np.int64))   # e.g. periods per customer
    # draws only where there are transactions: ν once per customer and sample, then each total
    where = np.flatnonzero(n)                                           # counts are >= 0
    owners = where // per_entry                                         # flat (sample, customer)
    new = np.r_[True, owners[1:] != owners[:-1]] if owners.size else np.zeros(0, dtype=bool)
    first = owners[new]
    nu = rng.gamma(np.ravel(shape_nu)[first], 1.0 / np.ravel(rate_nu)[first])[np.cumsum(new) - 1]
    p = np.ravel(np.broadcast_to(p, shape_nu.shape))[owners]
    total = np.zeros(n.shape)
    total.reshape(-1)[where] = rng.gamma(n.reshape(-1)[where] * p, 1.0 / nu)
    return total


class GammaGammaModel(SpendModel):
    """Gamma-Gamma spend model.

    Parameters
    ----------
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`.
    exclude_invalid
        ``False`` (default): customers with ``frequency == 0`` or non-positive ``monetary_value``
        raise an error at ``fit``; ``True``: they are left out of the fit (counted in
        ``n_excluded_``). Predictions work for every customer.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``p``, ``q``, ``gamma``
    correlation_ : Pearson correlation of frequency and mean spend among the fitted customers
    """

    display_name = "Gamma-Gamma"
    short_names = ("gg", "gammagamma")
    param_names = ("p", "q", "gamma")
    #: Weakly informative priors (see :mod:`clvmodels.models.bayes`): a half-normal for the shape p;
    #: for q, a log-normal that is nearly uniform in log q over (0.01, 100): a flat prior on q
    #: favours the large q (little heterogeneity of mean spend) that the data pin down poorly and
    #: put gamma's posterior mean 4-6% above the MLE on CDNOW, this one 2-3%; gamma has the unit of
    #: money, so its scale is 10 x the mean spend (whatever the currency).
    default_priors = {
        "p": ("HalfNormal", {"sigma": 20.0}),
        "q": ("LogNormal", {"mu": 0.0, "sigma": 3.0}),
        "gamma": ("HalfNormal", {"sigma": 10.0}, {"sigma": "monetary_value"}),
    }
    #: The mean spend ``pγ/(q−1)`` exists for ``q > 1`` only: parameter draws stay there (a weakly
    #: identified ``q``'s asymptotic normal reaches below 1, where simulated spends overflow).
    draw_bounds = {"q": 1.0}
    log_likelihood = staticmethod(log_likelihood)
    expected_spend_formula = staticmethod(expected_spend)
    simulate_spend_formula = staticmethod(simulate_spend)
    #: ``log_likelihood`` as a sum of parts, each with the columns it reads (see :mod:`.mle`).
    log_likelihood_parts = ((("frequency",), frequency_terms),
                            (("frequency", "monetary_value"), spend_terms))

    #: Covariates scale the rate of the mixing distribution: ``γ_i = γ exp(δ·z_i)``, so that a positive
    #: coefficient raises the mean spend ``pγ_i/(q−1)`` (in proportion ``exp(δ·z_i)``).
    covariate_links = {"spend": (("gamma", 1.0),)}
    covariate_effects = {"gamma": "the mean spend per transaction"}

    def __init__(self, *, exclude_invalid: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.exclude_invalid = exclude_invalid

    def initial_params(self, data, weights):
        m = np.average(data["monetary_value"], weights=weights)
        return np.array([1.0, 2.0, m])

    @staticmethod
    def fit_mask(data: dict[str, np.ndarray]) -> np.ndarray:
        """The model is fitted on customers with repeat purchases and positive mean spend
        (Fader & Hardie 2013: ``monetary_value`` is the mean of the repeat transactions)."""
        return (data["frequency"] > 0) & (data["monetary_value"] > 0)

    def fit(self, rfm: pd.DataFrame, **kwargs) -> "GammaGammaModel":
        """Fit on customers with repeat purchases (``frequency > 0``, ``monetary_value > 0``)."""
        # non-positive spends get this model's own message (and exclude_invalid) below
        data = validate_columns(rfm, self.data_columns, checks=HISTORY_CHECKS)
        invalid = ~self.fit_mask(data)
        weights = kwargs.pop("weights", None)
        n_invalid = int(invalid.sum()) if weights is None else int(round(float(np.sum(np.asarray(weights)[invalid]))))
        if n_invalid and not self.exclude_invalid:
            raise data_error(
                "Gamma-Gamma is fitted on customers with repeat purchases and positive spend; found "
                "customers with frequency 0 or monetary_value <= 0", column="frequency/monetary_value",
                rows=rfm.loc[invalid, list(self.data_columns)],
                fix="Pass exclude_invalid=True to leave them out of the fit (they are still scored), "
                    "or filter rfm[rfm.frequency > 0].",
            )
        kept = ~invalid
        fit_rows = rfm.loc[kept] if invalid.any() else rfm
        fit_weights = None if weights is None else np.asarray(weights, dtype=float)[kept]
        if (len(fit_rows) if weights is None else fit_weights.sum()) < 2:
            raise ClvDataError("Gamma-Gamma needs at least 2 customers with repeat purchases to fit.")
        super().fit(fit_rows, weights=fit_weights, **kwargs)
        self.n_excluded_ = n_invalid
        self.rfm_ = rfm
        f, m = data["frequency"][kept], data["monetary_value"][kept]
        if np.std(f) > 0 and np.std(m) > 0:  # Pearson's r over customers (rows weighted by their counts)
            cov = np.cov(f, m, aweights=fit_weights) if fit_weights is not None else np.corrcoef(f, m)
            self.correlation_ = float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
        else:
            self.correlation_ = 0.0
        if abs(self.correlation_) > CORRELATION_WARNING:
            warnings.warn(
                f"Frequency and mean spend are correlated (r = {self.correlation_:.2f}): the "
                "Gamma-Gamma model assumes they are independent, so its spend predictions may be biased.",
                AssumptionWarning, stacklevel=2,
            )
        if self.params_["q"] <= 1:
            warnings.warn(
                f"q = {self.params_['q']:.3g} <= 1: the expected spend is infinite under the fitted "
                "model (heavy-tailed spend); expected_spend will refuse to predict.",
                AssumptionWarning, stacklevel=2,
            )
        return self

    def expected_spend(self, rfm: pd.DataFrame | None = None, **kwargs):
        """Conditional expected spend per transaction (Fader & Hardie 2013, eq. 10).

        Customers without repeat purchases get the population mean. A negative ``monetary_value`` is
        refused (ClvDataError naming the customers; see :func:`check_spend`)."""
        self._check_fitted()
        if self.params_["q"] <= 1 and not is_bayesian(self):
            raise ClvDataError(f"q = {self.params_['q']:.3g} <= 1: expected spend is infinite under this fit.")
        frame = self._rfm_or_fitted(rfm)
        check_spend(validate_columns(frame, self.data_columns)["monetary_value"], rows=frame[list(self.data_columns)])
        return super().expected_spend(frame, **kwargs)

