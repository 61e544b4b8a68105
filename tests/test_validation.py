"""One definition of a valid customer row: per-row reasons and the raising check agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvmodels.errors import ClvDataError
from clvmodels.models import base
from clvmodels.units import normalize_unit
from clvmodels.validation import CHECKS, check_time_unit, problems, validate_columns

COLUMNS = ["frequency", "recency", "T", "monetary_value"]


def table() -> pd.DataFrame:
    return pd.DataFrame({"frequency": [2, 0, 3, 1], "recency": [5.0, 0.0, 7.0, 1.0],
                         "T": [10.0, 4.0, 7.0, 9.0], "monetary_value": [12.5, 0.0, 3.0, 8.0]})


# one broken row per rule: (column, value, per-row reason, error message)
BROKEN = [
    ("frequency", np.nan, "missing, non-numeric or infinite frequency", "Missing, non-numeric or infinite values"),
    ("T", np.inf, "missing, non-numeric or infinite T", "Missing, non-numeric or infinite values"),
    ("frequency", 1.5, "frequency is not a non-negative integer", "Frequencies must be non-negative integers"),
    ("T", -1.0, "T is negative", "Customer ages T must not be negative"),
    ("recency", 11.0, "recency is not in [0, T]", "Recency must lie in"),
    ("monetary_value", -5.0, "monetary_value is negative", "Mean spends must not be negative"),
]


@pytest.mark.parametrize("column,value,reason,message", BROKEN)
def test_every_rule_gives_the_same_verdict_both_ways(column, value, reason, message):
    t = table()
    t[column] = t[column].astype(float)
    t.loc[2, column] = value
    got = problems(t, COLUMNS)
    assert got.tolist() == ["", "", reason, ""]
    with pytest.raises(ClvDataError, match=rf"{message}.*\(1 row\)"):
        validate_columns(t, COLUMNS)


def test_recency_without_repeat_purchases_and_first_reason_wins():
    t = table().assign(recency=[5.0, 2.0, 7.0, 1.0])
    assert problems(t, COLUMNS).tolist() == ["", "recency > 0 without repeat purchases", "", ""]
    with pytest.raises(ClvDataError, match="without repeat purchases must have recency 0"):
        validate_columns(t, COLUMNS)
    t.loc[1, "frequency"] = -1  # breaks two rules: the first one is reported
    assert problems(t, COLUMNS)[1] == "frequency is not a non-negative integer"


def test_monetary_value_negative_is_refused_by_both_uses():
    """Issue #11: the raising check and the per-row check disagreed on a negative mean spend."""
    t = table().assign(monetary_value=[12.5, 0.0, -3.0, 8.0])
    assert problems(t, COLUMNS).tolist() == ["", "", "monetary_value is negative", ""]
    with pytest.raises(ClvDataError, match="monetary_value"):
        base.validate_columns(t, COLUMNS)  # the models' name is the same function
    assert base.validate_columns is validate_columns


def test_valid_rows_and_id_column():
    t = table().assign(customer_id=["a", " ", None, "007"])
    assert problems(t, COLUMNS, "customer_id").tolist() == ["", "missing customer_id", "missing customer_id", ""]
    arrays = validate_columns(table(), COLUMNS)
    assert set(arrays) == set(COLUMNS) and arrays["recency"].tolist() == [5.0, 0.0, 7.0, 1.0]
    assert all(c.reason and c.problem for c in CHECKS)


def test_structural_errors_keep_their_texts():
    with pytest.raises(ClvDataError, match="lacks column"):
        validate_columns(table().drop(columns="T"), COLUMNS)
    with pytest.raises(ClvDataError, match="empty"):
        validate_columns(table().iloc[:0], COLUMNS)


class _Model:
    def __init__(self, unit):
        self.time_unit_ = unit


def test_check_time_unit():
    days = table()
    days.attrs.update(time_unit="D", resolution="D")
    with pytest.raises(ClvDataError, match=r"'D'.*'W'.*--time-unit W"):
        check_time_unit(_Model("W"), days)
    assert check_time_unit(_Model("days"), days) == "D"
    assert check_time_unit(_Model("W"), table()) is None  # nothing recorded: nothing to check
    assert check_time_unit(_Model("D"), {"time_unit": "D"}) == "D"
    with pytest.raises(ClvDataError, match="Resolution mismatch.*--resolution W"):
        check_time_unit(_Model("D"), days, model_resolution="W")


@pytest.mark.parametrize("unit", [["W"], 7, None])
def test_a_time_unit_that_is_not_a_string_gets_a_clear_error(unit):
    with pytest.raises(ClvDataError, match="one name such as 'W'"):
        normalize_unit(unit)
