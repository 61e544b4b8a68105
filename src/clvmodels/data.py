"""Transaction logs: read, validate and clean a log of (customer id, timestamp, amount).

:func:`load_transactions` is the single gate through which every raw log enters clvmodels. It returns
a frame with the canonical columns ``customer_id``, ``timestamp`` and (when given) ``amount``; bad
input raises :class:`~clvmodels.errors.ClvDataError` naming the problem, the column, the number of
rows and a few example rows. Nothing the user gave is modified in place.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ClvDataError, data_error

CUSTOMER = "customer_id"
TIMESTAMP = "timestamp"
AMOUNT = "amount"

REFUND_POLICIES = ("error", "net", "drop")


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (chosen by extension; a directory is read as a Parquet dataset)."""
    p = Path(path)
    if not p.exists():
        raise ClvDataError(f"File not found: {str(p)!r}. Check the path.")
    suffixes = "".join(p.suffixes).lower()
    try:
        if p.is_dir() or suffixes.endswith((".parquet", ".pq", ".parq")):
            return pd.read_parquet(p, columns=columns)
        if suffixes.endswith((".csv", ".csv.gz", ".txt", ".tsv", ".csv.zip", ".csv.bz2")):
            sep = "\t" if ".tsv" in suffixes else ","
            return pd.read_csv(p, usecols=columns, sep=sep)
    except (ValueError, KeyError) as exc:
        if columns is not None:
            raise ClvDataError(f"Could not read columns {columns} from {str(p)!r}: {exc}") from exc
        raise
    raise ClvDataError(
        f"Unsupported file type for {str(p)!r}: use .csv (optionally compressed) or .parquet."
    )


def load_transactions(
    source: pd.DataFrame | str | os.PathLike,
    customer_id: str = "customer_id",
    timestamp: str = "timestamp",
    amount: str | None = "amount",
    *,
    date_format: str | None = None,
    refunds: str = "error",
    observation_end=None,
) -> pd.DataFrame:
    """Load and validate a transaction log.

    Parameters
    ----------
    source
        A DataFrame, or the path of a CSV or Parquet file.
    customer_id, timestamp, amount
        Names of the columns holding the customer id, the purchase time and the purchase value.
        ``amount=None`` loads a log without values (enough for purchase models, not for spend).
    date_format
        ``strftime`` format of the timestamp column when it holds strings (e.g. ``"%Y%m%d"``).
    refunds
        What to do with negative amounts: ``"error"`` (default) raises; ``"drop"`` removes them;
        ``"net"`` subtracts each refund from the same customer's latest purchase at or before it
        (a purchase refunded in full is removed; a refund with no earlier purchase, or the part of a
        refund exceeding that purchase, is dropped and counted in ``attrs``).
    observation_end
        Optional end of observation: a timestamp after it is an error.

    Returns
    -------
    DataFrame with columns ``customer_id`` (dtype as given), ``timestamp`` (``datetime64``, naive
    wall-clock time) and ``amount`` (float, when given), in the input's row order. ``attrs`` holds
    ``n_rows``, ``n_customers``, ``n_duplicate_rows``, ``n_refunds`` and refund-handling counts.
    Exact duplicate rows are kept (two identical purchases on one day are plausible) but counted
    and reported with a warning.
    """
    if refunds not in REFUND_POLICIES:
        raise ClvDataError(f"refunds must be one of {REFUND_POLICIES}, got {refunds!r}.")
    wanted = [customer_id, timestamp] + ([amount] if amount is not None else [])
    if len(set(wanted)) != len(wanted):
        raise ClvDataError(f"The customer id, timestamp and amount columns must differ, got {wanted}.")
    if isinstance(source, pd.DataFrame):
        raw = source
    else:
        raw = read_table(source)
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise ClvDataError(
            f"Missing column(s) {missing} in the transaction log; it has {list(raw.columns)}. "
            "Pass the right names with customer_id=..., timestamp=..., amount=... "
            "(amount=None for a log without values)."
        )
    if len(raw) == 0:
        raise ClvDataError("The transaction log is empty (0 rows): there is nothing to summarise.")

    out = pd.DataFrame({CUSTOMER: raw[customer_id].to_numpy(copy=True) if not isinstance(
        raw[customer_id].dtype, pd.CategoricalDtype) else raw[customer_id].copy()})
    out.index = raw.index

    ids = out[CUSTOMER]
    bad_id = ids.isna().to_numpy()
    if ids.dtype == object:
        bad_id |= ids.map(lambda v: isinstance(v, str) and v.strip() == "").to_numpy(dtype=bool)
    if bad_id.any():
        raise data_error(
            "Missing customer ids", column=customer_id, rows=raw.loc[bad_id, wanted],
            fix="Every transaction needs a customer id: remove or fill these rows.",
        )

    out[TIMESTAMP] = _parse_timestamps(raw, timestamp, date_format, wanted)

    if amount is not None:
        out[AMOUNT] = _parse_amounts(raw, amount, wanted)

    if observation_end is not None:
        end = pd.Timestamp(observation_end)
        late = (out[TIMESTAMP] > end).to_numpy()
        if late.any():
            raise data_error(
                f"Timestamps after the observation end {end}", column=timestamp,
                rows=raw.loc[late, wanted],
                fix="Filter them out, or choose a later observation end.",
            )

    attrs = {"n_refunds": 0, "n_refunds_netted": 0, "n_refunds_dropped": 0,
             "n_purchases_fully_refunded": 0}
    if amount is not None:
        neg = (out[AMOUNT] < 0).to_numpy()
        attrs["n_refunds"] = int(neg.sum())
        if neg.any():
            if refunds == "error":
                raise data_error(
                    "Negative amounts (refunds)", column=amount, rows=raw.loc[neg, wanted],
                    fix="Pass refunds='net' to subtract each refund from the customer's latest "
                    "earlier purchase, or refunds='drop' to ignore refunds.",
                )
            if refunds == "drop":
                out = out.loc[~neg]
                attrs["n_refunds_dropped"] = int(neg.sum())
            else:
                out, netted, dropped, removed = _net_refunds(out, neg)
                attrs.update(n_refunds_netted=netted, n_refunds_dropped=dropped,
                             n_purchases_fully_refunded=removed)
        if len(out) == 0:
            raise ClvDataError("No purchases left after handling refunds: the log holds only refunds.")

    n_dup = int(out.duplicated(keep="first").sum())
    if n_dup:
        warnings.warn(
            f"{n_dup:,} duplicate transaction row(s) (same customer, timestamp and amount) were "
            "found and kept: purchases in the same period count once for frequency, and their "
            "amounts add up. De-duplicate the log first if they are double-recorded.",
            UserWarning, stacklevel=2,
        )
    out = out.reset_index(drop=True)
    out.attrs.update(
        n_rows=len(out), n_customers=int(out[CUSTOMER].nunique()), n_duplicate_rows=n_dup,
        source_columns={"customer_id": customer_id, "timestamp": timestamp, "amount": amount},
        **attrs,
    )
    return out


def _parse_timestamps(raw: pd.DataFrame, column: str, date_format: str | None, wanted) -> pd.Series:
    col = raw[column]
    missing = col.isna().to_numpy()
    if missing.any():
        raise data_error(
            "Missing timestamps", column=column, rows=raw.loc[missing, wanted],
            fix="Every transaction needs a time: remove or fill these rows.",
        )
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        ts = col
    else:
        if date_format is None and pd.api.types.is_integer_dtype(col.dtype):
            # integers such as 19970101 are dates written as YYYYMMDD (as in CDNOW)
            date_format = "%Y%m%d"
        values = col.astype(str) if date_format is not None and not pd.api.types.is_string_dtype(col.dtype) else col
        ts = pd.to_datetime(values, format=date_format, errors="coerce")
        bad = ts.isna().to_numpy()
        if bad.any():
            hint = f"with format {date_format!r}" if date_format else "(pass date_format=..., e.g. '%Y-%m-%d')"
            raise data_error(
                f"Unparseable timestamps {hint}", column=column, rows=raw.loc[bad, wanted],
                fix="Fix these values or pass the right date_format.",
            )
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)  # keep local wall-clock time: calendar days as the user sees them
    return ts.astype("datetime64[ns]").set_axis(raw.index)


def _parse_amounts(raw: pd.DataFrame, column: str, wanted) -> pd.Series:
    col = raw[column]
    values = pd.to_numeric(col, errors="coerce")
    bad_type = values.isna().to_numpy() & col.notna().to_numpy()
    if bad_type.any():
        raise data_error(
            "Non-numeric amounts", column=column, rows=raw.loc[bad_type, wanted],
            fix="Amounts must be numbers (no currency symbols or thousands separators).",
        )
    arr = values.to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise data_error(
            "Missing (NaN) or infinite amounts", column=column, rows=raw.loc[bad, wanted],
            fix="Remove these rows or fill in their value.",
        )
    return pd.Series(arr, index=raw.index)


def _net_refunds(out: pd.DataFrame, neg: np.ndarray):
    """Subtract each refund from the same customer's latest purchase at or before it."""
    purchases = out.loc[~neg].copy()
    refunds = out.loc[neg]
    purchases["_row"] = np.arange(len(purchases))
    p_sorted = purchases.sort_values(TIMESTAMP, kind="stable")
    r_sorted = refunds.sort_values(TIMESTAMP, kind="stable")
    matched = pd.merge_asof(
        r_sorted[[TIMESTAMP, CUSTOMER, AMOUNT]].rename(columns={AMOUNT: "_refund"}),
        p_sorted[[TIMESTAMP, CUSTOMER, "_row"]],
        on=TIMESTAMP, by=CUSTOMER, direction="backward",
    )
    has_match = matched["_row"].notna().to_numpy()
    rows = matched.loc[has_match, "_row"].to_numpy(dtype=np.int64)
    amounts = purchases[AMOUNT].to_numpy(copy=True)
    np.add.at(amounts, rows, matched.loc[has_match, "_refund"].to_numpy())
    excess = amounts < -1e-12
    amounts[excess] = 0.0
    purchases[AMOUNT] = amounts
    fully = amounts <= 1e-12
    kept = purchases.loc[~fully].drop(columns="_row")
    dropped = int((~has_match).sum())
    return kept, int(has_match.sum()), dropped, int(fully.sum())
