"""Calendar periods: the resolution at which purchases count once, and period boundaries.

A purchase belongs to the period (hour, day, or week starting on Monday) that contains its
timestamp; periods are numbered by their start in whole hours since 1970-01-01, on naive
wall-clock time. Every engine (pandas, DuckDB, Spark) and every summary (RFM, calibration/holdout,
backtests, baselines) uses these definitions, so that they agree on which purchases are one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ClvDataError
from .units import normalize_unit

#: Length of each resolution in days.
RESOLUTIONS = {"h": 1 / 24, "D": 1.0, "W": 7.0}

#: Nanoseconds per hour and per day (datetime64[ns] arithmetic).
NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 86_400 * 10**9


def resolve_resolution(resolution: str) -> str:
    """The canonical code (``"h"``, ``"D"``, ``"W"``) of a resolution, or a :class:`ClvDataError`."""
    res = normalize_unit(resolution)
    if res not in RESOLUTIONS:
        raise ClvDataError(f"resolution must be hours, days or weeks ('h', 'D', 'W'), got {resolution!r}.")
    return res


def period_hours(ts: np.ndarray, resolution: str) -> np.ndarray:
    """Start of each timestamp's period, in whole hours since the epoch (int64)."""
    ns = np.asarray(ts, dtype="datetime64[ns]").view(np.int64)  # no copy when already ns
    if resolution == "h":
        return ns // NS_PER_HOUR
    days = ns // NS_PER_DAY
    if resolution == "W":
        # weeks start on Monday; 1970-01-01 was a Thursday (weekday 3)
        days -= (days + 3) % 7
    return days * 24


def period_start_days(ts: np.ndarray, resolution: str) -> np.ndarray:
    """Start of each timestamp's period, in (fractional) days since the epoch, as float64."""
    return period_hours(ts, resolution) / 24.0


def period_start_hours(ts: pd.Timestamp, resolution: str) -> int:
    """Start of the period containing the time ``ts``, in hours since the epoch."""
    return int(period_hours(np.array([ts.to_datetime64()]), resolution)[0])


def period_end(ts: pd.Timestamp, resolution: str) -> np.datetime64:
    """Last nanosecond of the period containing ``ts``."""
    start_ns = period_start_hours(pd.Timestamp(ts), resolution) * NS_PER_HOUR
    return np.datetime64(start_ns + int(round(RESOLUTIONS[resolution] * NS_PER_DAY)) - 1, "ns")


def period_label(ts: pd.Timestamp, resolution: str) -> str:
    """How an end of observation is recorded: its date, or its date and time at hourly resolution."""
    return str(ts.date() if resolution != "h" else ts)
