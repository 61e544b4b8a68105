"""Customer lifetime value: discounted expected future spend.

``CLV = E[Z] · Σ_{i=1}^{H} (E[Y(iΔ)] − E[Y((i−1)Δ)]) / (1+d)^i`` over ``H`` periods of length ``Δ``
with per-period discount rate ``d`` (the discrete discounting of lifetimes' ``customer_lifetime_value``
and of Fader, Hardie & Lee 2005). With parameter draws, the same formula per draw of both models
gives a distribution of CLV per customer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ClvDataError
from .models.base import summarise_draws, unique_rows, validate_columns
from .units import normalize_unit, unit_days


def discounted_purchases(purchase_fn, params, data, *, horizon: int, period: float, discount_rate: float):
    """``Σ_i (E[Y(iΔ)] − E[Y((i−1)Δ)]) / (1+d)^i`` per draw and customer."""
    total = 0.0
    previous = 0.0
    for i in range(1, horizon + 1):
        current = purchase_fn(params, **data, t=i * period)
        total = total + (current - previous) / (1.0 + discount_rate) ** i
        previous = current
    return total


def clv(
    purchase_model,
    spend_model,
    rfm: pd.DataFrame | None = None,
    *,
    horizon: int = 12,
    time_unit: str = "M",
    discount_rate: float = 0.01,
    period_length: float | None = None,
    interval: float | None = None,
    n_draws: int | None = None,
    seed: int | None = None,
) -> pd.Series | pd.DataFrame:
    """Discounted customer lifetime value over ``horizon`` periods of ``time_unit``.

    Parameters
    ----------
    purchase_model
        A fitted purchase model with an ``expected_purchases`` formula (e.g. :class:`BetaGeoModel`).
    spend_model
        A fitted :class:`GammaGammaModel`.
    rfm
        Customers to score (default: the purchase model's training data). Needs ``frequency``,
        ``recency``, ``T`` and ``monetary_value``.
    horizon
        Number of discounting periods.
    time_unit
        Length of a discounting period (``"M"``: months).
    discount_rate
        Discount rate per period (e.g. 0.01 per month).
    period_length
        Length of one period in the purchase model's time unit. By default derived from
        ``time_unit`` and the unit the model was fitted in (a month is 365.25/12 days); pass it to
        use another convention (lifetimes takes a month as 4.345 weeks).
    interval, n_draws, seed
        With ``interval`` (e.g. 0.9), per-customer mean, median and interval over parameter draws of
        both models (posterior draws, or the MLE's asymptotic normal).

    Returns
    -------
    Series of CLV per customer, or a frame with ``mean``, ``median``, ``lower``, ``upper``.
    """
    purchase_model._check_fitted()
    spend_model._check_fitted()
    if int(horizon) != horizon or horizon < 1:
        raise ClvDataError(f"horizon must be a positive integer, got {horizon!r}.")
    if not np.isfinite(discount_rate) or discount_rate <= -1:
        raise ClvDataError(f"discount_rate must be > -1, got {discount_rate!r}.")
    rfm = purchase_model.rfm_ if rfm is None else rfm
    if period_length is None:
        model_unit = getattr(purchase_model, "time_unit_", None)
        if model_unit is None:
            raise ClvDataError(
                "The purchase model does not know its time unit (its RFM frame had no 'time_unit' "
                "attribute): pass period_length=<length of one period in the model's unit>."
            )
        period_length = unit_days(normalize_unit(time_unit)) / unit_days(model_unit)
    period_length = float(period_length)
    columns = tuple(dict.fromkeys(purchase_model.data_columns + spend_model.data_columns))
    data = validate_columns(rfm, columns)

    purchase_fn = type(purchase_model).expected_purchases_formula
    from .models.gamma_gamma import expected_spend

    point = interval is None and getattr(purchase_model, "posterior_draws_", None) is None \
        and getattr(spend_model, "posterior_draws_", None) is None
    if point:
        pd_, sd_ = purchase_model.parameter_draws(), spend_model.parameter_draws()
    else:
        n = n_draws if n_draws is not None else _n_draws(purchase_model, spend_model)
        pd_ = purchase_model.parameter_draws(n, seed=seed)
        sd_ = spend_model.parameter_draws(n, seed=None if seed is None else seed + 1)
        n = min(len(next(iter(pd_.values()))), len(next(iter(sd_.values()))))
        pd_ = {k: v[:n] for k, v in pd_.items()}
        sd_ = {k: v[:n] for k, v in sd_.items()}
    purchase_keys, spend_keys = set(pd_), set(sd_)
    if purchase_keys & spend_keys:
        raise ClvDataError(f"Parameter names clash between the models: {purchase_keys & spend_keys}.")

    # the discounted purchases depend on the purchase history only: evaluate them once per distinct
    # history (the costly part), then combine with each customer's spend draw by draw
    histories, history_code = unique_rows({k: data[k] for k in purchase_model.data_columns})
    purchases = discounted_purchases(
        purchase_fn, {k: v[:, None] for k, v in pd_.items()}, histories,
        horizon=int(horizon), period=period_length, discount_rate=discount_rate)
    n_histories = len(next(iter(histories.values())))
    purchases = np.broadcast_to(purchases, (len(next(iter(pd_.values()))), n_histories))

    def clv_fn(params, history, frequency, monetary_value):
        sp = {k: params[k] for k in spend_keys}
        return purchases[:, history.astype(np.int64)] * expected_spend(sp, frequency, monetary_value)

    clv_fn.__name__ = "clv"
    # per customer this is a gather and a few products, and mean spends are nearly all distinct:
    # de-duplicating these rows would cost more than it saves
    values = summarise_draws(
        clv_fn, {**pd_, **sd_},
        {"history": history_code.astype(float), "frequency": data["frequency"],
         "monetary_value": data["monetary_value"]},
        interval=interval, compress_rows=False)
    if interval is None:
        return pd.Series(values["mean"], index=rfm.index, name="clv")
    return pd.DataFrame(values, index=rfm.index)


def _n_draws(*models) -> int:
    sizes = [len(next(iter(m.posterior_draws_.values()))) for m in models
             if getattr(m, "posterior_draws_", None) is not None]
    return min(sizes) if sizes else 1000
