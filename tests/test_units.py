"""Time units: one conversion table."""

from __future__ import annotations

import pytest

from clvmodels.errors import ClvDataError
from clvmodels.units import UNIT_DAYS, normalize_unit, unit_days


@pytest.mark.parametrize("name,code", [("hours", "h"), ("H", "h"), ("day", "D"), ("d", "D"), ("weeks", "W"),
                                       ("w", "W"), ("month", "M"), ("ME", "M"), ("quarter", "Q"),
                                       ("years", "Y"), ("A", "Y"), ("W", "W")])
def test_aliases(name, code):
    assert normalize_unit(name) == code


def test_unknown_unit():
    with pytest.raises(ClvDataError, match="Unknown time unit 'fortnight'"):
        normalize_unit("fortnight")


def test_lengths():
    assert unit_days("h") == 1 / 24 and unit_days("D") == 1 and unit_days("W") == 7
    assert unit_days("M") == 30.4375 and unit_days("Q") == 91.3125 and unit_days("Y") == 365.25
    assert unit_days("Y") == 12 * unit_days("M") == 4 * unit_days("Q")
    assert set(UNIT_DAYS) == {"h", "D", "W", "M", "Q", "Y"}
