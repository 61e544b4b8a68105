"""Transaction logs: read, validate and clean a log of (customer id, timestamp, amount).

:func:`load_transactions` is the single gate through which every raw log enters clvmodels. It returns
a frame with the canonical columns ``customer_id``, ``timestamp`` and (when given) ``amount``; bad
input raises :class:`~clvmodels.errors.ClvDataError` naming the problem, the column, the number of
rows and a few example rows. Nothing the user gave is modified in place.

The module also holds the vectorised building blocks shared by the summaries
(:func:`factorize_ids`, :func:`group_order`): integer customer ids in a compact range are coded
by direct indexing and rows are grouped by customer with a counting sort, so a 10-million-row log
is validated and summarised in seconds without per-row Python code.
"""

from __future__ import annotations

import logging
import numbers
import os

import numpy as np
import pandas as pd

from .errors import ClvDataError, data_error
from .io import read_columns, table_columns

log = logging.getLogger(__name__)

CUSTOMER = "customer_id"
TIMESTAMP = "timestamp"
AMOUNT = "amount"

REFUND_POLICIES = ("error", "net", "drop")

#: A blank customer id (a missing one), as a regular expression that Python, DuckDB (RE2) and
#: Spark (Java) read alike: only ASCII white space. Any other id is a label, kept as given.
BLANK_ID = r"[ \t\n\r\f\x0b]*"

#: A purchase netted down to at most this fraction of its value (or REFUND_NEAR_ZERO) counts as
#: fully refunded and is removed (every engine).
REFUND_RTOL = 1e-9
REFUND_NEAR_ZERO = 1e-12


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
        A DataFrame, or the path of a CSV or Parquet file (a directory: a Parquet dataset). The id
        column of a CSV is read as text, exactly as written (``007``, ``07`` and ``7`` are three
        customers); ids from Parquet or a DataFrame keep their type.
    customer_id, timestamp, amount
        Names of the columns holding the customer id, the purchase time and the purchase value.
        ``amount=None`` loads a log without values (enough for purchase models, not for spend).
    date_format
        ``strftime`` format of the timestamp column when it holds strings (e.g. ``"%Y%m%d"``).
        Integer timestamps without a format are read as ``YYYYMMDD`` dates (as in CDNOW); convert
        epoch seconds first with ``pd.to_datetime(col, unit="s")``. Times with a UTC offset keep
        their wall-clock time; a column mixing times with and without one is an error.
    refunds
        What to do with negative amounts: ``"error"`` (default) raises; ``"drop"`` removes them;
        ``"net"`` subtracts each refund from the same customer's latest purchase at or before it
        (ties: the last such purchase in the log's order). A purchase netted to zero is removed;
        a refund with no earlier purchase is dropped, and the part of a refund exceeding the
        purchase it nets against is ignored (the purchase stays at zero value and is removed).
        Both are counted in ``attrs``.
    observation_end
        Optional end of observation: a timestamp after it is an error. A date without a time of
        day (midnight) covers that whole day.

    Returns
    -------
    DataFrame with columns ``customer_id`` (dtype and values as given), ``timestamp``
    (``datetime64[ns]``, naive wall-clock time: time-zone-aware input keeps its local time) and
    ``amount`` (float, when given), in the input's row order, with a fresh ``RangeIndex``.
    ``attrs`` holds ``n_rows``, ``n_customers``, ``n_duplicate_rows``, ``timezone`` (name of the
    time zone of time-zone-aware input, else ``None``), ``source_columns`` and the refund counts
    ``n_refunds``, ``n_refunds_netted``, ``n_refunds_dropped``, ``n_purchases_fully_refunded``
    and ``refund_amount_dropped`` (total value of refunds, or parts of refunds, not netted).
    Exact duplicate rows (same customer, timestamp and amount) are kept (two identical purchases
    on one day are plausible) but counted in ``n_duplicate_rows`` and reported in one line (a notice of the logger
    ``clvmodels.data``, not a warning).
    """
    if refunds not in REFUND_POLICIES:
        raise ClvDataError(f"refunds must be one of {REFUND_POLICIES}, got {refunds!r}.")
    wanted = [customer_id, timestamp] + ([amount] if amount is not None else [])
    if len(set(wanted)) != len(wanted):
        raise ClvDataError(f"The customer id, timestamp and amount columns must differ, got {wanted}.")
    available = list(source.columns) if isinstance(source, pd.DataFrame) else table_columns(source)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ClvDataError(
            f"Missing column(s) {missing} in the transaction log; it has {available}. "
            "Pass the right names with customer_id=..., timestamp=..., amount=... "
            "(amount=None for a log without values)."
        )
    if isinstance(source, pd.DataFrame):
        raw = source
    else:  # ids are labels: a CSV's id column is read as text, exactly as written
        raw = read_columns(source, wanted, text_columns=(customer_id,))
    if len(raw) == 0:
        raise ClvDataError("The transaction log is empty (0 rows): there is nothing to summarise.")
    if any(isinstance(raw[c], pd.DataFrame) for c in wanted):
        raise ClvDataError(f"The transaction log has duplicated column names among {wanted}.")

    ids = raw[customer_id]
    _check_ids(ids, raw, customer_id, wanted)
    ts, tz = _parse_timestamps(raw, timestamp, date_format, wanted)
    ids = pd.Series(ids.to_numpy(copy=True) if isinstance(ids.dtype, np.dtype) else ids.array.copy(),
                    dtype=ids.dtype, copy=False)  # explicit dtype: object ids stay object
    columns = {CUSTOMER: ids, TIMESTAMP: ts}
    if amount is not None:
        columns[AMOUNT] = _parse_amounts(raw, amount, wanted)
    out = pd.DataFrame(columns, copy=False)  # arrays owned here; fresh RangeIndex, positions match ``raw``

    if observation_end is not None:
        end = naive_timestamp(observation_end, tz, "observation_end")
        if end == end.normalize():
            end = end + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        late = ts > end.to_datetime64()
        if late.any():
            raise data_error(
                f"Timestamps after the observation end {end}", column=timestamp,
                rows=raw.loc[late, wanted],
                fix="Filter them out, or choose a later observation end.",
            )

    attrs = {"n_refunds": 0, "n_refunds_netted": 0, "n_refunds_dropped": 0,
             "n_purchases_fully_refunded": 0, "refund_amount_dropped": 0.0}
    if amount is not None:
        neg = out[AMOUNT].to_numpy() < 0
        attrs["n_refunds"] = int(neg.sum())
        if attrs["n_refunds"]:
            if refunds == "error":
                raise data_error(
                    "Negative amounts (refunds)", column=amount, rows=raw.loc[neg, wanted],
                    fix="Pass refunds='net' to subtract each refund from the customer's latest "
                    "earlier purchase, or refunds='drop' to ignore refunds.",
                )
            if refunds == "drop":
                attrs.update(n_refunds_dropped=attrs["n_refunds"],
                             refund_amount_dropped=float(-out[AMOUNT].to_numpy()[neg].sum()))
                out = out.loc[~neg]
            else:
                out, stats = _net_refunds(out, neg)
                attrs.update(stats)
            if len(out) == 0:
                raise ClvDataError(
                    f"No purchases left after handling refunds (refunds={refunds!r}): "
                    "the log holds only refunds."
                )
            out = out.reset_index(drop=True)

    codes, uniques = factorize_ids(out[CUSTOMER])
    n_dup = count_duplicate_rows(codes, out[TIMESTAMP].to_numpy(),
                                 out[AMOUNT].to_numpy() if amount is not None else None)
    if n_dup:  # a notice, not a warning: one line on stderr (logging's default), the count in attrs
        log.warning("clvmodels: %s duplicate transaction row(s) (same customer, timestamp and amount) kept; "
                    "they count once per period for frequency and their amounts add up "
                    "(log.attrs['n_duplicate_rows']).", f"{n_dup:,}")
    out.attrs.update(
        n_rows=len(out), n_customers=len(uniques), n_duplicate_rows=n_dup,
        timezone=None if tz is None else str(tz),  # a name: attrs stay JSON (Parquet keeps them)
        source_columns={"customer_id": customer_id, "timestamp": timestamp, "amount": amount},
        **attrs,
    )
    return out


def as_log(transactions, **load_kwargs) -> pd.DataFrame:
    """A log from :func:`load_transactions` as it is, or anything it accepts loaded by it."""
    if (isinstance(transactions, pd.DataFrame) and not load_kwargs
            and list(transactions.columns[:2]) == [CUSTOMER, TIMESTAMP]
            and "n_rows" in transactions.attrs):
        return transactions
    return load_transactions(transactions, **load_kwargs)


# ---------------------------------------------------------------------------- validation helpers
def _check_ids(ids: pd.Series, raw: pd.DataFrame, column: str, wanted) -> None:
    bad = ids.isna().to_numpy(copy=True)
    if pd.api.types.is_string_dtype(ids.dtype) or ids.dtype == object:
        # blank strings are missing ids too; non-string values of an object column are left alone
        blank = ids.str.fullmatch(BLANK_ID) if ids.dtype != object else _blank_object(ids)
        bad |= blank.fillna(False).to_numpy(dtype=bool)
    if bad.any():
        raise data_error(
            "Missing customer ids (empty, blank or NaN)", column=column, rows=raw.loc[bad, wanted],
            fix="Every transaction needs a customer id: remove or fill these rows.",
        )
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=True).startswith("mixed"):
        # ids are labels as given (7 and "7" stay apart), but numbers of different types that are
        # equal (1, 1.0 and True) would silently be one customer
        kinds = ids.map(_number_kind)
        numbers = kinds[kinds != ""]
        if numbers.nunique() > 1:
            counts = ", ".join(f"{k}: {n:,}" for k, n in numbers.value_counts().items())
            first = (~numbers.duplicated()).reindex(ids.index, fill_value=False).to_numpy()
            raise data_error(
                f"Customer ids that are numbers of different types ({counts})",
                column=column, n_rows=len(numbers), rows=raw.loc[first, wanted],
                fix=f"Equal ids of different types (1, 1.0, True) would be one customer: give the column one type "
                    f"first, e.g. log[{column!r}].astype(str), or .astype('int64') where every id is a whole number.",
            )


def _number_kind(value) -> str:
    """``"bool"``, ``"int"`` or ``"float"`` for a number, ``""`` for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    return "float" if isinstance(value, numbers.Real) else ""


def _blank_object(ids: pd.Series) -> pd.Series:
    values = ids.to_numpy()
    is_str = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
    blank = np.zeros(len(values), dtype=bool)
    if is_str.any():
        blank[is_str] = pd.Series(values[is_str], dtype=object).str.fullmatch(BLANK_ID).to_numpy(dtype=bool)
    return pd.Series(blank)


def naive_timestamp(value, tz=None, name: str = "timestamp") -> pd.Timestamp:
    """A user-given time as a naive wall-clock :class:`pandas.Timestamp`.

    A time-zone-aware value is first converted to ``tz`` (the time zone of the log, when it had
    one), then its time zone dropped, as :func:`load_transactions` does with the log.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ClvDataError(f"{name} {value!r} is not a valid date or time: {exc}") from exc
    if ts is pd.NaT:
        raise ClvDataError(f"{name} is missing (NaT).")
    if ts.tz is not None:
        ts = (ts.tz_convert(tz) if tz is not None else ts).tz_localize(None)
    return ts


def _parse_timestamps(raw: pd.DataFrame, column: str, date_format: str | None, wanted):
    """The timestamp column as naive ``datetime64[ns]`` values, and its time zone (or None)."""
    col = raw[column]
    missing = col.isna().to_numpy()
    if missing.any():
        raise data_error(
            "Missing timestamps", column=column, rows=raw.loc[missing, wanted],
            fix="Every transaction needs a time: remove or fill these rows.",
        )
    hint = ""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        ts = col
    else:
        values = col
        if date_format is None and pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            arr = col.to_numpy(dtype=float)
            if not np.all(arr == np.round(arr)):
                raise data_error(
                    "Non-integer numeric timestamps", column=column,
                    rows=raw.loc[arr != np.round(arr), wanted],
                    fix="Numbers are read as YYYYMMDD dates: convert epoch times first with "
                    "pd.to_datetime(col, unit='s'), or pass date_format=...",
                )
            # integers such as 19970101 are dates written as YYYYMMDD (as in CDNOW)
            date_format = "%Y%m%d"
            values = col.astype(np.int64)
            hint = " (numbers are read as YYYYMMDD dates; convert epoch times with pd.to_datetime(col, unit='s'))"
        if date_format is not None and not pd.api.types.is_string_dtype(values.dtype):
            values = values.astype(str)
        ts, aware = parse_datetimes(values, date_format)
        bad = ts.isna().to_numpy()
        each = ts
        if aware is None and bad.any():  # pandas turns the naive values of a mixed column into NaT
            each, aware = _parse_each(values, date_format)
        if aware is not None:
            _check_not_mixed(raw, column, wanted, aware, each.notna().to_numpy())
        if bad.any():
            how = f"with format {date_format!r}" if date_format else "(pass date_format=..., e.g. '%Y-%m-%d')"
            raise data_error(
                f"Unparseable timestamps {how}{hint}", column=column, rows=raw.loc[bad, wanted],
                fix="Fix these values or pass the right date_format.",
            )
    tz = getattr(ts.dt, "tz", None)
    if tz is not None:
        ts = ts.dt.tz_localize(None)  # keep local wall-clock time: calendar days as the user sees them
    out_of_range = ((ts < pd.Timestamp.min) | (ts > pd.Timestamp.max)).to_numpy()
    if out_of_range.any():
        raise data_error(
            f"Timestamps out of the supported range {pd.Timestamp.min.date()} to {pd.Timestamp.max.date()}",
            column=column, rows=raw.loc[out_of_range, wanted],
            fix="These are usually placeholders (e.g. 9999-12-31): remove or fix these rows.",
        )
    return ts.to_numpy(dtype="datetime64[ns]", copy=True), tz


def parse_datetimes(values: pd.Series, date_format: str | None):
    """``pd.to_datetime`` with NaT for unparseable values; mixed ISO forms parse, and mixed UTC
    offsets keep each value's wall-clock time. Also returns, when values had to be parsed one by
    one, which of them carried a time zone or UTC offset (else None)."""
    try:
        ts = pd.to_datetime(values, format=date_format, errors="coerce")
        if date_format is None and ts.isna().any():
            # pandas infers one format from the first value; a column mixing ISO forms
            # ("2024-01-02" and "2024-01-02 10:30") parses with the ISO 8601 parser
            iso = pd.to_datetime(values, format="ISO8601", errors="coerce")
            if iso.notna().sum() > ts.notna().sum():
                ts = iso
        return ts, None
    except (ValueError, TypeError):
        # mixed time zones or offsets (e.g. across a DST change): parse each value, keep its local time
        return _parse_each(values, date_format)


def _parse_each(values: pd.Series, date_format: str | None):
    """Each value parsed on its own as naive wall-clock time (NaT where unparseable), and whether
    it carried a time zone or UTC offset."""
    parsed, aware = [], np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.to_numpy()):
        try:
            t = pd.Timestamp(pd.to_datetime(v, format=date_format)) if date_format else pd.Timestamp(v)
        except (ValueError, TypeError):
            t = pd.NaT
        if t is not pd.NaT and t.tz is not None:
            aware[i] = True
            t = t.tz_localize(None)
        parsed.append(t)
    return pd.Series(pd.to_datetime(parsed), index=values.index), aware


def _check_not_mixed(raw: pd.DataFrame, column: str, wanted, aware: np.ndarray, parsed: np.ndarray) -> None:
    """A column mixing times with and without a time zone (or UTC offset) cannot be put on one clock."""
    naive = ~aware & parsed
    if aware.any() and naive.any():
        examples = np.sort(np.concatenate([np.flatnonzero(aware)[:2], np.flatnonzero(naive)[:3]]))
        raise mixed_timezones_error(column, int(aware.sum()), int(naive.sum()), raw.iloc[examples][wanted])


def mixed_timezones_error(column: str, n_aware: int, n_naive: int, examples: pd.DataFrame) -> ClvDataError:
    """The error for a timestamp column mixing times with and without a time zone (every engine)."""
    return data_error(
        f"Mixed time-zone-aware and naive timestamps ({n_aware:,} with a time zone or UTC offset, "
        f"{n_naive:,} without)", column=column, n_rows=n_aware + n_naive, rows=examples,
        fix="Which clock the naive ones use is unknown: give every timestamp a UTC offset, or none.",
    )


def _parse_amounts(raw: pd.DataFrame, column: str, wanted) -> np.ndarray:
    col = raw[column]
    if pd.api.types.is_bool_dtype(col.dtype):
        raise ClvDataError(f"The amount column {column!r} holds booleans: amounts must be numbers.")
    values = pd.to_numeric(col, errors="coerce")
    bad_type = values.isna().to_numpy() & col.notna().to_numpy()
    if bad_type.any():
        raise data_error(
            "Non-numeric amounts", column=column, rows=raw.loc[bad_type, wanted],
            fix="Amounts must be numbers (no currency symbols or thousands separators).",
        )
    arr = values.to_numpy(dtype=float, na_value=np.nan, copy=True)
    nan = np.isnan(arr)
    if nan.any():
        raise data_error(
            "Missing (NaN) amounts", column=column, rows=raw.loc[nan, wanted],
            fix="Remove these rows or fill in their value.",
        )
    inf = np.isinf(arr)
    if inf.any():
        raise data_error(
            "Infinite amounts", column=column, rows=raw.loc[inf, wanted],
            fix="Remove these rows or fix their value.",
        )
    arr += 0.0  # -0.0 -> 0.0
    return arr


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
    refund = matched["_refund"].to_numpy()
    original = purchases[AMOUNT].to_numpy()
    amounts = original + np.bincount(rows, weights=refund[has_match], minlength=len(purchases))
    excess = float(-amounts[amounts < 0].sum())
    amounts = np.maximum(amounts, 0.0)
    purchases[AMOUNT] = amounts
    fully = amounts <= np.maximum(REFUND_NEAR_ZERO, REFUND_RTOL * original)
    kept = purchases.loc[~fully].drop(columns="_row")
    stats = {
        "n_refunds_netted": int(has_match.sum()),
        "n_refunds_dropped": int((~has_match).sum()),
        "n_purchases_fully_refunded": int(fully.sum()),
        "refund_amount_dropped": float(-refund[~has_match].sum()) + excess,
    }
    return kept, stats


# ---------------------------------------------------------------------------- vectorised building blocks
def factorize_ids(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes ``0..k-1`` of the customer ids and the ``k`` distinct ids, sorted.

    The ids come back unchanged in dtype and value (integers, nullable integers, strings,
    categoricals, objects). Integer ids in a range at most a few times the number of rows (and
    categoricals) are coded by direct indexing, in linear time; other ids by hashing. Ids that
    cannot be ordered (an object column mixing numbers and strings) are sorted by type name,
    then text.
    """
    dtype = ids.dtype
    n = len(ids)
    if isinstance(dtype, pd.CategoricalDtype):
        codes, present = _dense_codes(ids.cat.codes.to_numpy().astype(np.intp), 0, len(dtype.categories), n)
        uniques = pd.CategoricalIndex(pd.Categorical.from_codes(present, dtype=dtype), name=CUSTOMER)
        return codes, uniques
    if pd.api.types.is_integer_dtype(dtype) and n:
        numpy_dtype = dtype if isinstance(dtype, np.dtype) else getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is not None:
            wide = np.uint64 if np.dtype(numpy_dtype).kind == "u" else np.int64  # no overflow in values - lo
            values = ids.to_numpy(dtype=numpy_dtype).astype(wide, copy=False)
            lo, hi = values.min(), values.max()
            if int(hi) - int(lo) < 4 * n + 65_536:
                codes, present = _dense_codes(values, lo, int(hi) - int(lo) + 1, n)
                uniques = (present.astype(wide) + lo).astype(numpy_dtype)
                return codes, _index(pd.array(uniques, dtype=dtype) if not isinstance(dtype, np.dtype) else uniques, dtype)
    codes, uniques = pd.factorize(ids, sort=False)
    try:
        order = np.argsort(np.asarray(uniques) if isinstance(dtype, np.dtype) else uniques, kind="stable")
    except TypeError:
        keys = [(type(v).__name__, str(v)) for v in np.asarray(uniques, dtype=object)]
        order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.intp)
    if np.any(order[1:] < order[:-1]):
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        codes = rank[codes]
        uniques = uniques[order]
    return codes.astype(np.intp, copy=False), _index(uniques, dtype)


def _dense_codes(values: np.ndarray, lo, size: int, n: int):
    """Codes of integer ``values`` in ``[lo, lo+size)`` by direct indexing; and the offsets present."""
    offset = (values - lo).astype(np.intp, copy=False)
    seen = np.zeros(size, dtype=bool)
    seen[offset] = True
    present = np.flatnonzero(seen)
    if len(present) == size:  # every id of the range occurs: the offsets are the codes
        return offset, present
    rank = np.cumsum(seen, dtype=np.intp)
    rank -= 1
    return rank[offset], present


def _index(uniques, dtype) -> pd.Index:
    if isinstance(dtype, np.dtype):
        return pd.Index(np.asarray(uniques), dtype=dtype, name=CUSTOMER)
    return pd.Index(uniques, name=CUSTOMER)


def group_order(codes: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order of the rows grouped by ``codes`` (``0..n_groups-1``), and the group sizes.

    A counting sort, linear in the number of rows (pandas' own groupby kernel when available).
    """
    codes = np.asarray(codes, dtype=np.intp)
    try:
        from pandas._libs.algos import groupsort_indexer
    except ImportError:  # pragma: no cover - private pandas API; the numpy sort gives the same order
        return np.argsort(codes, kind="stable"), np.bincount(codes, minlength=n_groups)
    order, counts = groupsort_indexer(codes, n_groups)
    return order, counts[1:]


def splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array: a well-spread 64-bit hash."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def count_duplicate_rows(codes: np.ndarray, ts: np.ndarray, amount: np.ndarray | None) -> int:
    """Number of rows that repeat an earlier row exactly (same customer code, timestamp and amount).

    Exact, in linear time: each row gets a 64-bit hash of its values; a few rounds of bucket
    counts (``np.bincount``) on fresh hash bits discard the rows alone in their bucket (a row
    equal to another always shares its bucket), and the few rows left are counted exactly with
    :meth:`pandas.DataFrame.duplicated`. A log in time order (the usual case) first keeps only
    the rows whose timestamp equals a neighbour's: equal rows are among them.
    """
    codes, ts = np.asarray(codes), np.asarray(ts)
    if len(codes) < 2:
        return 0
    t64 = ts.view(np.int64)
    if (t64[1:] >= t64[:-1]).all():
        same = t64[1:] == t64[:-1]
        shared_ts = np.zeros(len(t64), dtype=bool)
        shared_ts[1:] = same
        shared_ts[:-1] |= same
        del same
        if shared_ts.sum() < 0.8 * len(t64):
            rows = np.flatnonzero(shared_ts)
            return count_duplicate_rows(codes[rows], ts[rows], None if amount is None else np.asarray(amount)[rows])
    n = len(codes)
    with np.errstate(over="ignore"):
        h = np.multiply(np.asarray(codes, dtype=np.int64).view(np.uint64), np.uint64(0x9E3779B97F4A7C15))
        t = np.multiply(np.asarray(ts).view(np.uint64), np.uint64(0xC2B2AE3D27D4EB4F))
        h += t
        if amount is not None:
            np.multiply(np.ascontiguousarray(amount, dtype=np.float64).view(np.uint64),
                        np.uint64(0x165667B19E3779F9), out=t)
            h += t
        del t
        splitmix64(h)
        bits = min(24, max(8, n.bit_length() + 1))
        rows = None
        for _ in range(8):
            bucket = (h >> np.uint64(64 - bits)).view(np.int64)
            shared = np.bincount(bucket, minlength=1 << bits) > 1
            keep = shared[bucket]
            del bucket, shared
            n_before = len(h)
            h = h[keep]
            rows = np.flatnonzero(keep) if rows is None else rows[keep]
            if len(h) < 2:
                return 0
            if len(h) <= 4096 or len(h) > 0.5 * n_before:
                break
            splitmix64(h)  # fresh bits for the next round
    frame = {"c": codes[rows], "t": ts[rows]}
    if amount is not None:
        frame["a"] = np.asarray(amount)[rows]
    return int(pd.DataFrame(frame).duplicated().sum())
