"""How regular are a log's inter-purchase times? The diagnostics of Platzer & Reutterer (2016)
and BTYDplus' ``estimateRegularity``, before fitting a CNBD-k model.

* Wheat & Morrison (1990, "Estimating purchase regularity with two interpurchase times", JMR 27(1)):
  for each customer with at least two inter-purchase times, ``M = t1/(t1+t2)`` of her last two.
  With Erlang-k gaps of any rate, ``M ~ Beta(k, k)`` (uniform for Poisson buying, ``k = 1``), whose
  variance is ``1/(4(2k+1))``; so ``k = (1/(4 var(M)) − 1)/2`` from the sample variance.
* Per customer with at least ``min_purchases`` purchases: the maximum-likelihood shape of a gamma
  distribution of her inter-purchase times; the median over customers estimates ``k`` (biased upward
  for few purchases, which is why only customers with many are used).

Purchases within one period of ``resolution`` count once (as for ``frequency``); times are in
``time_unit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import digamma, polygamma

from .data import CUSTOMER, TIMESTAMP, as_log, factorize_ids
from .errors import ClvDataError
from .periods import period_hours, resolve_resolution
from .units import normalize_unit, unit_days


@dataclass(frozen=True)
class Regularity:
    """The regularity estimates of a log (:func:`estimate_regularity`).

    ``k_wheat``: Wheat & Morrison's estimate from ``m`` (per customer with >= 2 inter-purchase
    times, ``t1/(t1+t2)`` of the last two); ``k_gamma_median``: the median of ``shapes``, the
    per-customer gamma shapes of customers with >= ``min_purchases`` purchases (NaN when none has).
    """

    k_wheat: float
    m: pd.Series
    k_gamma_median: float
    shapes: pd.Series
    min_purchases: int


def inter_purchase_times(log, time_unit: str = "W", resolution: str = "D") -> pd.Series:
    """Every customer's inter-purchase times in ``time_unit`` (between her distinct purchase periods),
    in time order, indexed by customer id (customers without repeat purchases are absent)."""
    log = as_log(log)
    unit, res = normalize_unit(time_unit), resolve_resolution(resolution)
    codes, ids = factorize_ids(log[CUSTOMER])
    hours = period_hours(log[TIMESTAMP].to_numpy(), res)
    pairs = np.unique(np.column_stack([codes, hours]), axis=0)       # distinct (customer, period), sorted
    same = pairs[1:, 0] == pairs[:-1, 0]
    gaps = np.diff(pairs[:, 1])[same] / 24.0 / unit_days(unit)
    return pd.Series(gaps, index=pd.Index(ids[pairs[1:, 0][same]], name=CUSTOMER), name="itt")


def gamma_shape_mle(itts: pd.Series) -> pd.Series:
    """The maximum-likelihood gamma shape of each customer's inter-purchase times: the root of
    ``ln k − ψ(k) = ln(mean) − mean(ln)`` (Minka's starting value, then Newton steps)."""
    grouped = itts.groupby(level=0, sort=True)
    s = np.log(grouped.mean()) - np.log(itts).groupby(level=0, sort=True).mean()
    s = s.to_numpy()
    with np.errstate(divide="ignore"):
        k = (3.0 - s + np.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)   # Minka (2002)
    for _ in range(50):
        good = np.isfinite(k) & (k > 0)
        step = np.zeros_like(k)
        step[good] = (np.log(k[good]) - digamma(k[good]) - s[good]) / (1.0 / k[good] - polygamma(1, k[good]))
        k = np.where(good, np.maximum(k - step, k / 10), k)
        if np.all(np.abs(step[good]) <= 1e-12 * k[good]):
            break
    return pd.Series(k, index=grouped.mean().index, name="shape")


def estimate_regularity(log, *, time_unit: str = "W", resolution: str = "D", min_purchases: int = 10) -> Regularity:
    """Wheat & Morrison's estimate of the Erlang order ``k`` and the median per-customer gamma shape
    (see the module docstring) of a transaction log (anything :func:`clvmodels.load_transactions`
    accepts, loaded). ``min_purchases``: the purchases (distinct periods, the first included) a
    customer needs for her own gamma shape."""
    if int(min_purchases) != min_purchases or min_purchases < 3:
        raise ClvDataError(f"min_purchases must be a whole number of at least 3, got {min_purchases!r}.")
    itts = inter_purchase_times(log, time_unit, resolution)
    last_two = itts.groupby(level=0, sort=True).tail(2)
    counts = last_two.groupby(level=0, sort=True).size()
    pairs = last_two[last_two.index.isin(counts.index[counts == 2])].to_numpy().reshape(-1, 2)
    if len(pairs) < 2:
        raise ClvDataError(f"Only {len(pairs)} customer(s) have two inter-purchase times (three purchases on "
                           "distinct periods): too few to estimate regularity.")
    m = pd.Series(pairs[:, 0] / pairs.sum(axis=1), index=counts.index[counts == 2], name="m")
    variance = float(m.var(ddof=1))
    k_wheat = (1.0 / (4.0 * variance) - 1.0) / 2.0 if variance > 0 else np.inf
    n_itts = itts.groupby(level=0, sort=True).size()
    many = itts[itts.index.isin(n_itts.index[n_itts >= min_purchases - 1])]
    shapes = gamma_shape_mle(many) if len(many) else pd.Series([], dtype=float, name="shape")
    return Regularity(k_wheat=float(k_wheat), m=m, k_gamma_median=float(shapes.median()) if len(shapes) else np.nan,
                      shapes=shapes, min_purchases=int(min_purchases))


__all__ = ["Regularity", "estimate_regularity", "gamma_shape_mle", "inter_purchase_times"]
