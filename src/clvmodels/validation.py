"""Validation of a customer (RFM) table: one definition of what a valid row is, with two uses.

* :func:`problems` gives, per row, why it cannot be used (empty string when it can): batch scoring
  rejects those customers one by one and scores the rest (:mod:`clvmodels.scoring`).
* :func:`validate_columns` returns the columns as float arrays and raises a
  :class:`~clvmodels.errors.ClvDataError` naming the first problem, its column, its row count and
  example rows when any row has one (fitting and predicting refuse bad input as a whole).

The checks (in order; a row gets the first that fails): values present, numeric and finite;
frequency a non-negative integer; T not negative; recency in [0, T]; recency 0 without repeat
purchases; monetary value not negative. :func:`check_time_unit` refuses a table whose recorded
time unit differs from a model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ClvDataError, data_error

#: Relative and absolute slack of ``recency <= T`` (rounding of summaries computed elsewhere).
RECENCY_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Check:
    """One rule on the columns ``needs``: ``bad(values)`` flags the rows that break it."""

    needs: tuple[str, ...]
    bad: Callable[[dict[str, np.ndarray]], np.ndarray]
    reason: str  #: per-row reason (rejects files)
    problem: str  #: what the error says (followed by the column and the row count)
    column: str
    fix: str | None = None


#: The rules on the purchase history (frequency, recency, T).
HISTORY_CHECKS = (
    Check(("frequency",), lambda v: (v["frequency"] < 0) | (v["frequency"] != np.round(v["frequency"])),
          "frequency is not a non-negative integer", "Frequencies must be non-negative integers", "frequency"),
    Check(("T",), lambda v: v["T"] < 0, "T is negative", "Customer ages T must not be negative", "T",
          "Check the observation end used to compute T."),
    Check(("recency", "T"),
          lambda v: (v["recency"] < 0) | (v["recency"] > v["T"] * (1 + RECENCY_TOLERANCE) + RECENCY_TOLERANCE),
          "recency is not in [0, T]", "Recency must lie in [0, T]", "recency",
          "Check the observation end used to compute T."),
    Check(("frequency", "recency"), lambda v: (v["frequency"] == 0) & (v["recency"] > 0),
          "recency > 0 without repeat purchases", "Customers without repeat purchases must have recency 0",
          "recency"),
)
#: Every rule: the history's and a mean spend that is not negative.
CHECKS = HISTORY_CHECKS + (
    Check(("monetary_value",), lambda v: v["monetary_value"] < 0, "monetary_value is negative",
          "Mean spends must not be negative", "monetary_value", "Fix or drop these customers."),
)


def _floats(col: pd.Series) -> np.ndarray:
    """A column as float64 (NaN where a value is missing or not a number)."""
    if pd.api.types.is_float_dtype(col.dtype) and not isinstance(col.dtype, pd.api.extensions.ExtensionDtype):
        return col.to_numpy(dtype=float)  # already float64/32: no coercion pass
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _missing_ids(ids: pd.Series) -> np.ndarray:
    bad = ids.isna().to_numpy(copy=True)
    if ids.dtype == object or pd.api.types.is_string_dtype(ids.dtype):
        bad |= ids.astype(str).str.strip().eq("").to_numpy() & ~bad
    return bad


def problems(frame: pd.DataFrame, columns: Iterable[str], id_column: str | None = None,
             checks: tuple[Check, ...] = CHECKS) -> pd.Series:
    """Why each row of ``frame`` cannot be used (empty string when it can), checked vectorised.

    ``id_column``: also flag rows without a customer id (missing or blank). ``checks``: the rules
    after the finiteness of ``columns`` (default :data:`CHECKS`; those on absent columns are skipped).
    Returns a Series named ``reason`` with the index of ``frame``.
    """
    reason = np.full(len(frame), "", dtype=object)

    def flag(mask, text):
        reason[np.asarray(mask, dtype=bool) & (reason == "")] = text

    if id_column is not None:
        flag(_missing_ids(frame[id_column]), f"missing {id_column}")
    values = {}
    for c in columns:
        v = _floats(frame[c])
        finite = np.isfinite(v)
        flag(~finite, f"missing, non-numeric or infinite {c}")
        values[c] = np.where(finite, v, 0.0)
    for check in checks:
        if all(c in values for c in check.needs):
            flag(check.bad(values), check.reason)
    return pd.Series(reason, index=frame.index, name="reason")


def require_columns(frame, columns: Iterable[str], *, what: str = "The RFM frame",
                    fix: str = "Build it with clvmodels.rfm_summary(...) or rename your columns.") -> None:
    """Refuse a frame (pandas or Spark) that lacks some of ``columns``, naming them, those it has and ``fix``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ClvDataError(f"{what} lacks column(s) {missing} (it has {list(frame.columns)}). {fix}")


def validate_columns(frame: pd.DataFrame, columns, checks: tuple[Check, ...] = CHECKS) -> dict[str, np.ndarray]:
    """Float arrays of ``columns`` of ``frame``; a :class:`ClvDataError` for missing or bad values.

    The same rules as :func:`problems`, raised for the first one that any row breaks (with the
    row count and example rows).
    """
    columns = list(columns)
    if not isinstance(frame, pd.DataFrame):
        raise ClvDataError(f"Expected a pandas DataFrame with columns {columns}, got {type(frame).__name__}.")
    require_columns(frame, columns)
    if len(frame) == 0:
        raise ClvDataError("The RFM frame is empty (0 customers).")
    out = {}
    for c in columns:
        values = _floats(frame[c])
        bad = ~np.isfinite(values)
        if bad.any():
            raise data_error("Missing, non-numeric or infinite values", column=c, rows=frame.loc[bad, columns],
                             fix="Fix or drop these customers.")
        out[c] = values
    for check in checks:
        if all(c in out for c in check.needs):
            bad = check.bad(out)
            if bad.any():
                raise data_error(check.problem, column=check.column, rows=frame.loc[bad, columns], fix=check.fix)
    return out


def check_time_unit(model, rfm, *, model_resolution: str | None = None) -> str | None:
    """Refuse a customer table whose recorded time unit (or resolution) differs from the model's.

    ``rfm``: a frame (its ``attrs``) or a dict of recorded attributes (e.g. a Parquet table's, see
    :func:`clvmodels.io.table_attrs`). ``model``: a fitted model (its ``time_unit_``).
    ``model_resolution``: the resolution of the table the model was fitted on, when known.
    Returns the table's time unit, or None when it records none (nothing can be checked).
    Expected purchases of a table in days scored with a model fitted in weeks would be 7x off.
    """
    from .units import normalize_unit

    attrs = rfm if isinstance(rfm, dict) else getattr(rfm, "attrs", {})
    table_unit, model_unit = attrs.get("time_unit"), getattr(model, "time_unit_", None)
    if table_unit is None:
        return None
    table_unit = normalize_unit(table_unit)
    if model_unit is not None and normalize_unit(model_unit) != table_unit:
        raise ClvDataError(
            f"Time unit mismatch: the customer table's recency and T are in {table_unit!r} but the "
            f"model was fitted in {model_unit!r}, so every prediction would be off by a constant factor. "
            f"Re-summarise the log in the model's unit (clvmodels summarize --time-unit {model_unit}, "
            f"or rfm_summary(..., time_unit={model_unit!r})), or fit the model on this table."
        )
    table_resolution = attrs.get("resolution")
    if model_resolution is not None and table_resolution is not None \
            and normalize_unit(model_resolution) != normalize_unit(table_resolution):
        raise ClvDataError(
            f"Resolution mismatch: the customer table counts purchases per {table_resolution!r} but the "
            f"model was fitted on a table counting per {model_resolution!r}. Re-summarise the log with "
            f"--resolution {model_resolution} (clvmodels summarize), or fit the model on this table."
        )
    return table_unit
