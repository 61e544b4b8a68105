"""Time units: the one table that converts between days, weeks, months and years.

A month is 365.25/12 = 30.4375 days and a year 365.25 days by default. Functions that need a
different convention (e.g. lifetimes' month of 4.345 weeks) take the length explicitly.
"""

from __future__ import annotations

import numpy as np

from .errors import ClvDataError

#: Length of each time unit in days.
UNIT_DAYS: dict[str, float] = {
    "h": 1.0 / 24.0,
    "D": 1.0,
    "W": 7.0,
    "M": 365.25 / 12.0,
    "Q": 365.25 / 4.0,
    "Y": 365.25,
}

#: Plain-language names of the units (plural), for reports and axis labels.
UNIT_NAMES: dict[str, str] = {"h": "hours", "D": "days", "W": "weeks", "M": "months", "Q": "quarters", "Y": "years"}

_ALIASES = {
    "hour": "h", "hours": "h", "H": "h",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "week": "W", "weeks": "W",
    "m": "M", "month": "M", "months": "M", "ME": "M", "MS": "M",
    "q": "Q", "quarter": "Q", "quarters": "Q",
    "y": "Y", "year": "Y", "years": "Y", "A": "Y",
}


def normalize_unit(unit: str) -> str:
    """Return the canonical code ('h', 'D', 'W', 'M', 'Q', 'Y') of a time unit name."""
    if not isinstance(unit, str):
        raise ClvDataError(
            f"A time unit is one name such as 'W' or 'days', got {unit!r} ({type(unit).__name__}). "
            f"Use one of {sorted(UNIT_DAYS)}."
        )
    code = _ALIASES.get(unit, unit)
    if code not in UNIT_DAYS:
        raise ClvDataError(
            f"Unknown time unit {unit!r}. Use one of {sorted(UNIT_DAYS)} "
            "(hours, days, weeks, months, quarters, years)."
        )
    return code


def unit_days(unit: str) -> float:
    """Length of ``unit`` in days."""
    return UNIT_DAYS[normalize_unit(unit)]


def check_period_length(value) -> float:
    """A period length given by the caller: a finite, positive number."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ClvDataError(f"period_length must be a positive number, got {value!r}.")
    return value


def period_length(period: str, model_unit: str | None, given: float | None = None) -> float:
    """Length of one discounting ``period`` (e.g. ``"M"``) in the model's time unit ``model_unit``
    (the unit of its data, e.g. ``"W"``): ``given`` when the caller sets it (another convention, e.g.
    lifetimes' month of 4.345 weeks), else the ratio of the two units' lengths in days."""
    if given is not None:
        return check_period_length(given)
    if model_unit is None:
        raise ClvDataError(
            "The model does not know its time unit (its RFM table had no 'time_unit' attribute): pass "
            "period_length=<length of one period in the model's unit> (--period-length on the command line)."
        )
    return unit_days(period) / unit_days(model_unit)
