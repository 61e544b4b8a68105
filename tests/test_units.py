"""Time units: one conversion table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvmodels.errors import ClvDataError
from clvmodels.units import UNIT_DAYS, convert, normalize_unit, timedelta_in_units, unit_days


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


def test_convert():
    assert convert(2, "W", "D") == 14
    np.testing.assert_allclose(convert([1.0, 52.0], "W", "Y"), [7 / 365.25, 364 / 365.25])
    assert convert(1, "Y", "M") == pytest.approx(12)
    assert convert(36, "h", "D") == 1.5


def test_timedelta_in_units():
    assert timedelta_in_units(pd.Timedelta(days=14), "W") == 2
    s = pd.Series(pd.to_timedelta([1, 7, 30.4375], unit="D"))
    np.testing.assert_allclose(timedelta_in_units(s, "D"), [1, 7, 30.4375])
    np.testing.assert_allclose(timedelta_in_units(np.array([12], dtype="timedelta64[h]"), "D"), [0.5])
