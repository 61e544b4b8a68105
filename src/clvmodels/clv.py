"""Customer lifetime value: discounted expected future spend.

``CLV = E[Z] · Σ_{i=1}^{H} (E[Y(iΔ)] − E[Y((i−1)Δ)]) / (1+d)^i`` over ``H`` periods of length ``Δ``
with per-period discount rate ``d`` (the discrete discounting of lifetimes' ``customer_lifetime_value``
and of Fader, Hardie & Lee 2005). With parameter draws, the same formula per draw of both models
gives a distribution of CLV per customer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ClvDataError, renamed_argument
from .models.base import check_kind
from .validation import validate_columns
from .models.draws import EXPECTED, interval_frame, model_draws, summarise_draws
from .models.purchase import PurchaseModel
from .models.rows import unique_rows
from .models.spend import SpendModel
from . import units


def purchase_value_draws(model_cls, params, histories: dict, *, horizon: int, period: float,
                         discount_rate: float) -> dict[str, np.ndarray]:
    """Per draw (rows) and history (columns): ``probability_alive``, ``expected_purchases`` by the
    horizon ``HΔ`` and ``discounted_purchases`` ``Σ_i (E[Y(iΔ)] − E[Y((i−1)Δ)]) / (1+d)^i``.

    ``E[Y(t) | x, t_x, T] = P(alive) · E[Y(t) | alive at T]`` and the second factor depends on
    ``(x, T)`` only, which far fewer customers share than whole histories: the horizon's sum is taken
    once per distinct ``(x, T)`` and multiplied by ``P(alive)`` once per history."""
    pairs, pair_code = unique_rows({k: histories[k] for k in ("frequency", model_cls.age_column)})
    future = model_cls.future_purchases_formula
    total = 0.0
    previous = 0.0
    for i in range(1, horizon + 1):
        current = future(params, **pairs, t=i * period)
        total = total + (current - previous) / (1.0 + discount_rate) ** i
        previous = current
    alive = model_cls.probability_alive_formula(params, **histories)
    alive = np.broadcast_to(alive, np.broadcast_shapes(np.shape(alive), (1, len(pair_code))))
    return {"probability_alive": alive,
            "expected_purchases": alive * np.take(np.atleast_2d(previous), pair_code, axis=-1),
            "discounted_purchases": alive * np.take(np.atleast_2d(total), pair_code, axis=-1)}


def value_customers(purchase_model, spend_model, data: dict[str, np.ndarray], *, horizon: int,
                    period_length: float, discount_rate: float, interval: float | None = None,
                    n_draws: int | None = None, seed: int | None = None,
                    what: tuple[str, ...] = ("clv",), finite: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Per-customer summaries (``mean``, and with ``interval`` ``median``/``lower``/``upper``) of
    ``what`` among ``expected_purchases`` (by the horizon), ``probability_alive``,
    ``expected_spend`` and ``clv``, all from one set of parameter draws of each model.

    The purchase-model quantities are evaluated once per distinct history (see
    :func:`purchase_value_draws`); ``spend_model`` may be ``None`` when ``what`` needs no spend.
    ``finite=False``: a non-finite value makes its customer's mean non-finite instead of raising
    (see :func:`clvmodels.models.base.summarise_draws`)."""
    models = [purchase_model] + ([spend_model] if spend_model is not None else [])
    draws = model_draws(*models, interval=interval, n_draws=n_draws, seed=seed)
    histories, history_code = unique_rows({k: data[k] for k in purchase_model.data_columns})
    values = purchase_value_draws(
        type(purchase_model), {k: v[:, None] for k, v in draws[0].items()}, histories,
        horizon=int(horizon), period=period_length, discount_rate=discount_rate)
    out = {}
    per_history = {"history": np.arange(len(next(iter(histories.values()))), dtype=float)}
    for name in ("expected_purchases", "probability_alive"):
        if name in what:
            summary = summarise_draws(_gather(values[name], name), draws[0], per_history, interval=interval,
                                      compress_rows=False, finite=finite)
            out[name] = {k: v[history_code] for k, v in summary.items()}
    if {"expected_spend", "clv"} & set(what):
        expected_spend = type(spend_model).expected_spend_formula
        spend_data = {k: data[k] for k in spend_model.data_columns}
        if "expected_spend" in what:
            out["expected_spend"] = summarise_draws(expected_spend, draws[1], spend_data, interval=interval,
                                                    compress_rows=False, finite=finite)
        if "clv" in what:
            purchases = values["discounted_purchases"]

            def clv_fn(params, history, **spend_history):
                return purchases[:, history.astype(np.int64)] * expected_spend(params, **spend_history)

            clv_fn.__name__ = "clv"
            # per customer a gather and a few products, and mean spends are nearly all distinct:
            # de-duplicating these rows would cost more than it saves
            out["clv"] = summarise_draws(clv_fn, draws[1], {"history": history_code.astype(float), **spend_data},
                                         interval=interval, compress_rows=False, finite=finite)
    return out


def _gather(values: np.ndarray, name: str):
    def fn(params, history):
        return values[:, history.astype(np.int64)]

    fn.__name__ = name
    return fn


def check_discounting(horizon, discount_rate) -> None:
    """A CLV horizon is a positive whole number of periods; a discount rate a finite number > -1."""
    if int(horizon) != horizon or horizon < 1:
        raise ClvDataError(f"horizon must be a positive integer, got {horizon!r}.")
    if not np.isfinite(discount_rate) or discount_rate <= -1:
        raise ClvDataError(f"discount_rate must be a number > -1 (e.g. 0.01 per period), got {discount_rate!r}.")


def clv(
    purchase_model,
    spend_model,
    rfm: pd.DataFrame | None = None,
    *,
    horizon: int = 12,
    period: str = "M",
    discount_rate: float = 0.01,
    period_length: float | None = None,
    interval: float | None = None,
    n_draws: int | None = None,
    seed: int | None = None,
    time_unit: str | None = None,
) -> pd.Series | pd.DataFrame:
    """Discounted customer lifetime value over ``horizon`` discounting periods of length ``period``.

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
    period
        Length of a discounting period (``"M"``: months). The data's own unit (``time_unit`` of
        the RFM table, e.g. weeks) is the model's; ``time_unit=`` here is the deprecated name of
        ``period``.
    discount_rate
        Discount rate per period (e.g. 0.01 per month).
    period_length
        Length of one period in the purchase model's time unit. By default derived from
        ``period`` and the unit the model was fitted in (a month is 365.25/12 days); pass it to
        use another convention (lifetimes takes a month as 4.345 weeks).
    interval, n_draws, seed
        With ``interval`` (e.g. 0.9), per-customer mean, median and interval over parameter draws of
        both models (posterior draws, or the MLE's asymptotic normal).

    Returns
    -------
    Series of CLV per customer, or a frame with ``mean``, ``median``, ``lower``, ``upper``.
    """
    check_kind(purchase_model, PurchaseModel, "clv (the purchase model)")
    check_kind(spend_model, SpendModel, "clv (the spend model)")
    purchase_model._check_fitted()
    spend_model._check_fitted()
    check_discounting(horizon, discount_rate)
    period = renamed_argument("clv", "period", period, "time_unit", time_unit)
    rfm = purchase_model._rfm_or_fitted(rfm)
    period_length = units.period_length(period, purchase_model.time_unit_, period_length)
    columns = tuple(dict.fromkeys(purchase_model.data_columns + spend_model.data_columns))
    data = validate_columns(rfm, columns)

    values = value_customers(purchase_model, spend_model, data, horizon=int(horizon), period_length=period_length,
                             discount_rate=discount_rate, interval=interval, n_draws=n_draws, seed=seed)["clv"]
    if interval is None:
        return pd.Series(values["mean"], index=rfm.index, name="clv")
    return interval_frame(values, rfm.index, interval, EXPECTED)
