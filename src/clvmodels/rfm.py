"""RFM summaries (frequency, recency, age T, mean spend) and calibration/holdout splits.

Definitions follow Fader, Hardie & Lee (2005): purchases within one period of the chosen
``resolution`` (a day by default) count as one transaction whose value is their sum; ``frequency``
is the number of such transactions after the first (repeat purchases); ``recency`` is the time from
the first to the last transaction; ``T`` the time from the first transaction to the end of
observation; ``monetary_value`` the mean value of the repeat transactions (0 when there are none).
Durations are measured between the starts of the periods and expressed in ``time_unit``.

The computation is hash/bincount based (no per-customer Python code, no full sort), so it is
linear in the number of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import AMOUNT, CUSTOMER, TIMESTAMP, load_transactions
from .errors import ClvDataError, data_error
from .units import normalize_unit, unit_days

RFM_COLUMNS = ["frequency", "recency", "T", "monetary_value"]

_NS_PER_DAY = 86_400 * 10**9
_RESOLUTIONS = {"h": 1 / 24, "D": 1.0, "W": 7.0}


def _period_start_days(ts: np.ndarray, resolution: str) -> np.ndarray:
    """Start of each timestamp's period, in (fractional) days since the epoch, as float64."""
    ns = ts.astype("datetime64[ns]").astype(np.int64)
    if resolution == "h":
        return (ns // (3_600 * 10**9)) / 24.0
    days = ns // _NS_PER_DAY
    if resolution == "D":
        return days.astype(np.float64)
    # weeks start on Monday; 1970-01-01 was a Thursday (weekday 3)
    return (days - (days + 3) % 7).astype(np.float64)


def _resolve(resolution: str) -> str:
    res = normalize_unit(resolution)
    if res not in _RESOLUTIONS:
        raise ClvDataError(f"resolution must be hours, days or weeks ('h', 'D', 'W'), got {resolution!r}.")
    return res


def _as_log(transactions, **load_kwargs) -> pd.DataFrame:
    """Accept either a frame from :func:`load_transactions` or anything it can load."""
    if (isinstance(transactions, pd.DataFrame) and not load_kwargs
            and list(transactions.columns[:2]) == [CUSTOMER, TIMESTAMP]
            and "n_rows" in transactions.attrs):
        return transactions
    return load_transactions(transactions, **load_kwargs)


def _summarise(codes: np.ndarray, period: np.ndarray, amount: np.ndarray | None, n_customers: int):
    """Per-customer first/last period, number of distinct periods, and repeat-purchase spend.

    ``period`` holds period starts in days (float, exact integers or multiples of 1/24).
    """
    order_key = np.round(period * 24).astype(np.int64)
    # pandas' grouped min/max are single-pass cython loops
    grp = pd.Series(order_key).groupby(codes, sort=True)
    first = grp.min().to_numpy()
    last = grp.max().to_numpy()
    # distinct (customer, period) pairs
    span = int(order_key.max() - order_key.min() + 1)
    pair = codes.astype(np.int64) * span + (order_key - order_key.min())
    unique_pairs = pd.unique(pair)
    n_periods = np.bincount(unique_pairs // span, minlength=n_customers)
    out = {"first": first, "last": last, "n_periods": n_periods}
    if amount is not None:
        total = np.bincount(codes, weights=amount, minlength=n_customers)
        in_first = order_key == first[codes]
        first_value = np.bincount(codes[in_first], weights=amount[in_first], minlength=n_customers)
        out["repeat_value"] = total - first_value
    return out


def rfm_summary(
    transactions,
    observation_end=None,
    time_unit: str = "W",
    *,
    resolution: str = "D",
    truncate: bool = False,
    **load_kwargs,
) -> pd.DataFrame:
    """Per-customer RFM summary of a transaction log.

    Parameters
    ----------
    transactions
        A log returned by :func:`~clvmodels.data.load_transactions`, or anything it accepts
        (then pass its column arguments here, e.g. ``customer_id="id"``).
    observation_end
        End of observation (inclusive: the whole period containing it is observed). Defaults to
        the last timestamp of the log.
    time_unit
        Unit of ``recency`` and ``T``: ``"D"``, ``"W"`` (default, as in the papers), ``"M"``, ...
    resolution
        Purchases within one period of this length count as one transaction (``"D"``: same-day
        repeats are one purchase, as in the papers; ``"h"`` or ``"W"`` also possible).
    truncate
        Transactions after ``observation_end`` raise an error unless ``truncate=True``, which
        ignores them.

    Returns
    -------
    DataFrame indexed by customer id (sorted), with ``frequency`` (int), ``recency``, ``T`` and,
    when the log has amounts, ``monetary_value``. ``attrs`` records the time unit, resolution and
    observation end.
    """
    log = _as_log(transactions, **load_kwargs)
    unit = normalize_unit(time_unit)
    res = _resolve(resolution)
    ts = log[TIMESTAMP].to_numpy()
    end = pd.Timestamp(observation_end) if observation_end is not None else pd.Timestamp(ts.max())
    late = ts > np.datetime64(_period_end(end, res))
    if late.any():
        if not truncate:
            raise data_error(
                f"Transactions after the observation end {end.date()}", column=TIMESTAMP,
                rows=log.loc[late], fix="Pass truncate=True to ignore them, or a later observation_end.",
            )
        log = log.loc[~late]
        ts = log[TIMESTAMP].to_numpy()
        if len(log) == 0:
            raise ClvDataError(f"No transactions on or before the observation end {end}.")
    codes, uniques = pd.factorize(log[CUSTOMER], sort=True)
    has_amount = AMOUNT in log.columns
    period = _period_start_days(ts, res)
    s = _summarise(codes, period, log[AMOUNT].to_numpy(dtype=float) if has_amount else None, len(uniques))
    end_day = _period_start_days(np.array([end.to_datetime64()]), res)[0]
    scale = 1.0 / unit_days(unit)
    frequency = s["n_periods"] - 1
    first_day = s["first"] / 24.0
    out = pd.DataFrame(
        {
            "frequency": frequency.astype(np.int64),
            "recency": (s["last"] - s["first"]) / 24.0 * scale,
            "T": (end_day - first_day) * scale,
        },
        index=_customer_index(uniques),
    )
    if has_amount:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["monetary_value"] = np.where(frequency > 0, s["repeat_value"] / np.maximum(frequency, 1), 0.0)
    out.attrs.update(time_unit=unit, resolution=res, observation_end=str(end.date() if res != "h" else end))
    return out


def first_purchase(transactions, **load_kwargs) -> pd.Series:
    """Date of each customer's first purchase (index: customer id, sorted)."""
    log = _as_log(transactions, **load_kwargs)
    s = log.groupby(CUSTOMER, sort=True, observed=True)[TIMESTAMP].min()
    s.index = _customer_index(s.index)
    return s


def calibration_holdout(
    transactions,
    calibration_end,
    observation_end=None,
    time_unit: str = "W",
    *,
    resolution: str = "D",
    truncate: bool = False,
    **load_kwargs,
) -> pd.DataFrame:
    """Calibration-period RFM summary plus each customer's actual holdout behaviour.

    The calibration period runs to the end of the period containing ``calibration_end``; the holdout
    from there to ``observation_end`` (default: the last timestamp of the log).

    Returns
    -------
    DataFrame indexed by customer id with the calibration columns of :func:`rfm_summary`, plus
    ``frequency_holdout`` (number of distinct purchase periods in the holdout), ``value_holdout``
    (the customer's actual spend in the holdout: historical value, when the log has amounts) and
    ``duration_holdout`` (holdout length in ``time_unit``). Customers whose first purchase falls after
    the calibration end cannot be scored from calibration data: they are excluded and counted in
    ``attrs["n_excluded_new_customers"]``.
    """
    log = _as_log(transactions, **load_kwargs)
    res = _resolve(resolution)
    unit = normalize_unit(time_unit)
    cal_end = pd.Timestamp(calibration_end)
    obs_end = pd.Timestamp(observation_end) if observation_end is not None else pd.Timestamp(log[TIMESTAMP].max())
    if obs_end < cal_end:
        raise ClvDataError(f"observation_end {obs_end} is before calibration_end {cal_end}.")
    ts = log[TIMESTAMP].to_numpy()
    late = ts > np.datetime64(_period_end(obs_end, res))
    if late.any():
        if not truncate:
            raise data_error(
                f"Transactions after the observation end {obs_end.date()}", column=TIMESTAMP,
                rows=log.loc[late], fix="Pass truncate=True to ignore them, or a later observation_end.",
            )
        log = log.loc[~late]
        ts = log[TIMESTAMP].to_numpy()
    in_cal = ts <= np.datetime64(_period_end(cal_end, res))
    if not in_cal.any():
        raise ClvDataError(f"No transactions on or before the calibration end {cal_end}: choose a later one.")
    cal_log = log.loc[in_cal]
    cal_log.attrs = dict(log.attrs)
    cal = rfm_summary(cal_log, observation_end=cal_end, time_unit=unit, resolution=res)
    hold = log.loc[~in_cal]
    n_new = int(pd.Index(hold[CUSTOMER].unique()).difference(pd.Index(cal_log[CUSTOMER].unique())).size)
    codes = cal.index.get_indexer(_customer_index(pd.Index(hold[CUSTOMER])))
    known = codes >= 0
    codes = codes[known]
    period = _period_start_days(hold[TIMESTAMP].to_numpy()[known], res)
    n = len(cal)
    if len(codes):
        key = np.round(period * 24).astype(np.int64)
        span = int(key.max() - key.min() + 1)
        pairs = pd.unique(codes.astype(np.int64) * span + (key - key.min()))
        freq_h = np.bincount(pairs // span, minlength=n)
    else:
        freq_h = np.zeros(n, dtype=np.int64)
    cal["frequency_holdout"] = freq_h.astype(np.int64)
    if AMOUNT in log.columns:
        amounts = hold[AMOUNT].to_numpy(dtype=float)[known]
        cal["value_holdout"] = np.bincount(codes, weights=amounts, minlength=n) if len(codes) else 0.0
    days = _period_start_days(np.array([obs_end.to_datetime64(), cal_end.to_datetime64()]), res)
    cal["duration_holdout"] = (days[0] - days[1]) / unit_days(unit)
    cal.attrs.update(calibration_end=str(cal_end.date()), observation_end=str(obs_end.date()),
                     n_excluded_new_customers=n_new)
    return cal


def _period_end(ts: pd.Timestamp, res: str) -> np.datetime64:
    """Last nanosecond of the period containing ``ts``."""
    start_days = _period_start_days(np.array([ts.to_datetime64()]), res)[0]
    length = _RESOLUTIONS[res]
    return np.datetime64(int(round((start_days + length) * _NS_PER_DAY)) - 1, "ns")


def _customer_index(uniques) -> pd.Index:
    idx = pd.Index(uniques)
    idx.name = CUSTOMER
    return idx
