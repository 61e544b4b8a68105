"""RFM summaries of large transaction logs, out of core, with DuckDB.

:func:`rfm_summary_duckdb` and :func:`calibration_holdout_duckdb` give the same summaries as
:func:`clvmodels.rfm_summary` and :func:`clvmodels.calibration_holdout` (same definitions: purchases
in one period of the ``resolution`` count once, durations between period starts in ``time_unit``,
``monetary_value`` the mean of the repeat transactions; same validation and refund policies), but
read the log straight from Parquet or CSV files with DuckDB, an embedded engine that streams the
file and spills to disk beyond its ``memory_limit``: the log never has to fit in memory, only the
per-customer result does.

DuckDB reduces the log to integer per-customer aggregates (first and last period, number of
distinct periods, spend totals); the final arithmetic is the pandas path's own function
(:func:`clvmodels.rfm.rfm_from_aggregates`), so frequency, recency and T are identical and monetary values agree to the
rounding of the sums (about 1e-15 relative).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .data import (AMOUNT, BLANK_ID, CUSTOMER, REFUND_NEAR_ZERO, REFUND_POLICIES, REFUND_RTOL, TIMESTAMP,
                   mixed_timezones_error, naive_timestamp)
from .errors import ClvDataError, data_error
from .periods import period_label, period_start_hours, resolve_resolution
from .rfm import SPEND_SCALE, check_finite_spend, rfm_from_aggregates
from .units import normalize_unit, unit_days

#: Default cap on DuckDB's memory; beyond it DuckDB spills to a temporary directory.
DEFAULT_MEMORY_LIMIT = "4GB"


def _connect(memory_limit: str | None, threads: int | None, temp_directory: str | None, tz: str | None):
    """A DuckDB connection with the user's settings, each passed as a parameter (never pasted into SQL)."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is in the 'scale' extra
        raise ClvDataError("The DuckDB engine needs the 'duckdb' package: pip install 'clvmodels[scale]'.") from None
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or threads < 1):
        raise ClvDataError(f"threads must be a whole number of at least 1, got {threads!r}.")
    settings = {
        "memory_limit": (memory_limit or DEFAULT_MEMORY_LIMIT, "memory limit", "e.g. '4GB' or '500MB'"),
        "temp_directory": (str(temp_directory or tempfile.gettempdir()), "temporary directory", "a directory path"),
        "threads": (int(threads) if threads else None, "threads", "a whole number of at least 1"),
        # keep wall-clock time of tz-aware timestamps, as the pandas path does
        "TimeZone": (tz or "UTC", "time zone of the log", "a time zone name such as 'Europe/Paris'"),
    }
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET preserve_insertion_order = true")
        for name, (value, what, expected) in settings.items():
            if value is None:
                continue
            if not isinstance(value, (str, int)):
                raise ClvDataError(f"Invalid {what} {value!r}: expected {expected}.")
            try:
                con.execute(f"SET {name} = ?", [value])
            except duckdb.Error as exc:
                raise ClvDataError(f"Invalid {what} {value!r} for DuckDB: expected {expected} "
                                   f"({str(exc).splitlines()[0]}).") from None
    except BaseException:
        con.close()
        raise
    return con


#: A text timestamp with a time zone: a time of day followed by ``Z`` or a UTC offset (RE2).
_AWARE_TEXT = r"\d:\d\d(:\d\d)?(\.\d+)?\s*(Z|[+-]\d\d(:?\d\d)?)$"


def _q(name: str) -> str:
    """Quote an identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def _sql_str(s: str) -> str:
    """The text of a SQL string literal (quotes doubled); for values DuckDB cannot take as
    parameters (table functions inside a view)."""
    return str(s).replace("'", "''")


def _source(source, columns: list[str], timestamp: str, glob: bool, workdir: Path):
    """Check the columns of ``source`` (a path or, with ``glob``, a pattern); return the path DuckDB
    should read, whether it is Parquet, and the time zone of its timestamp column (or None).

    DuckDB expands ``*``, ``?``, ``[...]`` and ``{...}`` in any path it is given: a path holding
    them is read through a link with a plain name in ``workdir``, so it is read literally.
    """
    from .io import require_columns, table_format

    if glob:
        import glob as globbing

        matches = sorted(globbing.glob(str(source), recursive=True))
        if not matches:
            raise ClvDataError(f"No file matches the pattern {str(source)!r}. Check the pattern.")
        first, read = Path(matches[0]), str(source)
    else:
        first = Path(source)
        if not first.exists():
            raise ClvDataError(f"File not found: {str(first)!r}. Check the path.")
        read = str(first)
    require_columns(first, columns, what="the transaction log",
                    fix="Pass the right names with customer_id=..., timestamp=..., amount=... "
                        "(amount=None for a log without values).")
    parquet = table_format(first) == "parquet"
    tz = None
    if parquet:
        import pyarrow.dataset as ds

        tz = getattr(ds.dataset(first, format="parquet").schema.field(timestamp).type, "tz", None)
    if not glob and any(ch in read for ch in "*?[]{}"):
        link = workdir / ("log" + ("" if first.is_dir() else _known_suffix(first)))
        link.symlink_to(first.resolve())
        read = str(link)
    if parquet and not glob and first.is_dir():
        read = str(Path(read) / "**" / "*.parquet")
    return read, parquet, None if tz is None else str(tz)


def _known_suffix(path: Path) -> str:
    """The file-type ending of ``path`` that DuckDB reads the format and compression from."""
    from .io import CSV_SUFFIXES, PARQUET_SUFFIXES

    name = path.name.lower()
    return next(s for s in sorted(PARQUET_SUFFIXES + CSV_SUFFIXES, key=len, reverse=True) if name.endswith(s))


def _register_source(con, read: str | pd.DataFrame, parquet: bool, columns: list[str], customer_id: str,
                     timestamp: str, date_format: str | None):
    """Create the view ``raw`` over ``read`` (a path from :func:`_source`, or a DataFrame) with a
    row number ``_rn``. A CSV's id and timestamp columns are read as text (ids are labels: ``007``
    is not ``7``), whatever the file holds beyond DuckDB's type-detection sample."""
    if isinstance(read, pd.DataFrame):
        con.register("_source", read)
        relation = "_source"
    elif parquet:
        relation = f"read_parquet('{_sql_str(read)}')"
    else:
        # the timestamps too: the sniffer would read offsets as instants (UTC), not wall-clock times
        types = ", ".join(f"'{_sql_str(c)}': 'VARCHAR'" for c in (customer_id, timestamp))
        sep = "\t" if ".tsv" in Path(read).name.lower() else ","
        relation = f"read_csv('{_sql_str(read)}', header=true, delim='{sep}', types={{{types}}})"
    cols = ", ".join(_q(c) for c in columns)
    con.execute(f"CREATE VIEW raw AS SELECT {cols}, row_number() OVER () AS _rn FROM {relation}")


def _frame_source(source: pd.DataFrame, columns: list[str], timestamp: str):
    """The columns of a DataFrame log, checked, and the time zone of its timestamps (or None)."""
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise ClvDataError(
            f"Missing column(s) {missing} in the transaction log; it has {list(source.columns)}. "
            "Pass the right names with customer_id=..., timestamp=..., amount=...")
    if any(isinstance(source[c], pd.DataFrame) for c in columns):
        raise ClvDataError(f"The transaction log has duplicated column names among {columns}.")
    frame = source[columns].reset_index(drop=True)
    tz = getattr(frame[timestamp].dtype, "tz", None)
    return frame, None if tz is None else str(tz)


def _timestamp_expr(con, column: str, date_format: str | None) -> str:
    """SQL expression turning the timestamp column into a TIMESTAMP (NULL where unparseable)."""
    kind = dict((r[0], r[1]) for r in con.execute("DESCRIBE raw").fetchall())[column].upper()
    col = _q(column)
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        # time-zone-aware values become wall-clock time of the session's (the log's) time zone
        inner = f"CAST({col} AS TIMESTAMP)" if kind in ("TIMESTAMP WITH TIME ZONE", "DATE") else col
        return f"CAST({inner} AS TIMESTAMP_NS)"
    if any(kind.startswith(k) for k in ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "UBIGINT", "UINTEGER")):
        fmt = date_format or "%Y%m%d"  # integers such as 19970101 are YYYYMMDD dates, as in load_transactions
        return f"CAST(try_strptime(CAST({col} AS VARCHAR), '{_sql_str(fmt)}') AS TIMESTAMP_NS)"
    if date_format:
        return f"CAST(try_strptime(CAST({col} AS VARCHAR), '{_sql_str(date_format)}') AS TIMESTAMP_NS)"
    # text: ISO times (an offset is dropped, keeping the wall-clock time, as on the pandas path),
    # or eight digits, YYYYMMDD, as a CSV column of integers is read by load_transactions
    return (f"coalesce(TRY_CAST({col} AS TIMESTAMP_NS), CASE WHEN regexp_full_match({col}, '[0-9]{{8}}') "
            f"THEN CAST(try_strptime({col}, '%Y%m%d') AS TIMESTAMP_NS) END)")


def _period_key(ts: str, res: str) -> str:
    """Start of the period containing ``ts``, in hours since the epoch (as :func:`clvmodels.periods.period_hours`)."""
    if res == "h":
        return f"datediff('hour', TIMESTAMP '1970-01-01', date_trunc('hour', {ts}))"
    days = f"datediff('day', DATE '1970-01-01', CAST({ts} AS DATE))"
    if res == "D":
        return f"({days}) * 24"
    # weeks start on Monday; 1970-01-01 was a Thursday
    return f"(({days}) - ((({days}) + 3) % 7 + 7) % 7) * 24"


def _examples(con, where: str, columns: list[str], n: int = 5) -> pd.DataFrame:
    """The first ``n`` rows meeting ``where``, indexed by their position in the log."""
    cols = ", ".join(_q(c) for c in columns)
    rows = con.execute(f"SELECT {cols}, _rn - 1 AS _row FROM raw WHERE {where} ORDER BY _rn LIMIT {int(n)}").df()
    return rows.set_index("_row").rename_axis(None)


def _validate(con, customer_id, timestamp, amount, ts_expr, date_format, refunds) -> None:
    """The checks of :func:`clvmodels.load_transactions`, as one scan of the log."""
    wanted = [customer_id, timestamp] + ([amount] if amount else [])
    cid, ts = _q(customer_id), _q(timestamp)
    kinds = dict((r[0], r[1].upper()) for r in con.execute("DESCRIBE raw").fetchall())
    blank = f" OR regexp_full_match({cid}, '{_sql_str(BLANK_ID)}')" if kinds[customer_id] == "VARCHAR" else ""
    checks = {
        "bad_id": f"{cid} IS NULL{blank}",
        "no_ts": f"{ts} IS NULL",
    }
    if kinds[timestamp] == "VARCHAR" and not date_format:
        aware = f"regexp_matches({ts}, '{_sql_str(_AWARE_TEXT)}')"
        checks["aware_ts"] = f"{ts_expr} IS NOT NULL AND {aware}"
        checks["naive_ts"] = f"{ts_expr} IS NOT NULL AND NOT {aware}"
    checks["bad_ts"] = f"{ts} IS NOT NULL AND {ts_expr} IS NULL"
    if amount:
        amt = _q(amount)
        checks["bad_amount_type"] = f"{amt} IS NOT NULL AND TRY_CAST({amt} AS DOUBLE) IS NULL"
        checks["bad_amount"] = (f"{amt} IS NULL OR isnan(TRY_CAST({amt} AS DOUBLE)) "
                                f"OR isinf(TRY_CAST({amt} AS DOUBLE))")
        checks["negative"] = f"TRY_CAST({amt} AS DOUBLE) < 0"
    select = ", ".join(f"count(*) FILTER (WHERE {w})" for w in checks.values())
    n_rows, *values = con.execute(f"SELECT count(*), {select} FROM raw").fetchone()
    counts = dict(zip(checks, values))
    if n_rows == 0:
        raise ClvDataError("The transaction log is empty (0 rows): there is nothing to summarise.")
    messages = {
        "bad_id": ("Missing customer ids", customer_id, "Every transaction needs a customer id: remove or fill these rows."),
        "no_ts": ("Missing timestamps", timestamp, "Every transaction needs a time: remove or fill these rows."),
        "bad_ts": ("Unparseable timestamps", timestamp, "Fix these values or pass the right date_format."),
        "bad_amount_type": ("Non-numeric amounts", amount,
                            "Amounts must be numbers (no currency symbols or thousands separators)."),
        "bad_amount": ("Missing (NaN) or infinite amounts", amount, "Remove these rows or fill in their value."),
        "negative": ("Negative amounts (refunds)", amount,
                     "Pass refunds='net' to subtract each refund from the customer's latest earlier "
                     "purchase, or refunds='drop' to ignore refunds."),
    }
    for key, (problem, column, fix) in messages.items():
        if key == "bad_ts" and counts.get("aware_ts") and counts.get("naive_ts"):
            rows = pd.concat([_examples(con, checks["aware_ts"], wanted, 2), _examples(con, checks["naive_ts"], wanted, 3)])
            raise mixed_timezones_error(timestamp, int(counts["aware_ts"]), int(counts["naive_ts"]), rows)
        if key == "negative" and refunds != "error":
            continue
        if counts.get(key):
            raise data_error(problem, column=column, n_rows=int(counts[key]),
                             rows=_examples(con, checks[key], wanted), fix=fix)


def _clean_log(con, customer_id, timestamp, amount, date_format, refunds, resolution) -> dict:
    """Create the view ``tx(cid, ts, amount, pkey)`` of valid purchases after the refund policy."""
    ts_expr = _timestamp_expr(con, timestamp, date_format)
    _validate(con, customer_id, timestamp, amount, ts_expr, date_format, refunds)
    amt = f"CAST({_q(amount)} AS DOUBLE)" if amount else "NULL::DOUBLE"
    con.execute(f"CREATE VIEW base AS SELECT {_q(customer_id)} AS cid, {ts_expr} AS ts, {amt} AS amount, "
                "_rn FROM raw")
    stats = {"n_refunds": 0, "n_refunds_netted": 0, "n_refunds_dropped": 0, "n_purchases_fully_refunded": 0}
    if amount:
        stats["n_refunds"] = int(con.execute("SELECT count(*) FROM base WHERE amount < 0").fetchone()[0])
    if not amount or stats["n_refunds"] == 0:
        source = "SELECT cid, ts, amount FROM base"
    elif refunds == "drop":
        stats["n_refunds_dropped"] = stats["n_refunds"]
        source = "SELECT cid, ts, amount FROM base WHERE amount >= 0"
    else:
        # each refund nets against the same customer's latest purchase at or before it (ties: the
        # last one in the log's order), as pandas.merge_asof does on the pandas path
        key = "(CAST(epoch_ns(ts) AS HUGEINT) * 1099511627776 + {rn})"
        con.execute(f"""
            CREATE TEMP TABLE netted AS
            WITH purchases AS (SELECT cid, ts, amount, _rn, {key.format(rn='_rn')} AS k FROM base WHERE amount >= 0),
                 refunds AS (SELECT cid, amount, {key.format(rn='1099511627775')} AS k FROM base WHERE amount < 0),
                 matched AS (SELECT r.amount AS refund, p._rn AS prn
                             FROM refunds r ASOF LEFT JOIN purchases p ON r.cid = p.cid AND r.k >= p.k),
                 per_purchase AS (SELECT prn, sum(refund) AS refund FROM matched WHERE prn IS NOT NULL GROUP BY prn)
            SELECT p.cid, p.ts, p.amount AS original,
                   greatest(p.amount + coalesce(r.refund, 0), 0.0) AS amount
            FROM purchases p LEFT JOIN per_purchase r ON p._rn = r.prn""")
        matched = con.execute(f"""
            WITH purchases AS (SELECT cid, {key.format(rn='_rn')} AS k FROM base WHERE amount >= 0),
                 refunds AS (SELECT cid, {key.format(rn='1099511627775')} AS k FROM base WHERE amount < 0)
            SELECT count(p.k) FROM refunds r ASOF LEFT JOIN purchases p ON r.cid = p.cid AND r.k >= p.k
        """).fetchone()[0]
        kept = f"amount > greatest({REFUND_NEAR_ZERO!r}, {REFUND_RTOL!r} * original)"  # as data._net_refunds
        fully = con.execute(f"SELECT count(*) FROM netted WHERE NOT ({kept})").fetchone()[0]
        stats.update(n_refunds_netted=int(matched), n_refunds_dropped=stats["n_refunds"] - int(matched),
                     n_purchases_fully_refunded=int(fully))
        source = f"SELECT cid, ts, amount FROM netted WHERE {kept}"
    con.execute(f"CREATE VIEW tx AS SELECT cid, ts, amount, {_period_key('ts', resolution)} AS pkey "
                f"FROM ({source})")
    return stats


def _counts(con, observation_end, tz, res: str, cal_end: pd.Timestamp | None):
    """One scan of the cleaned log: the observation end, and the rows after it / up to the
    calibration end (the condition selecting the observed rows is returned too)."""
    n_tx, max_ns = con.execute("SELECT count(*), epoch_ns(max(ts)) FROM tx").fetchone()
    if n_tx == 0:
        raise ClvDataError("No purchases left after handling refunds: the log holds only refunds.")
    end = naive_timestamp(observation_end, tz, "observation_end") if observation_end is not None else pd.Timestamp(max_ns, unit="ns")
    cond = f"pkey <= {period_start_hours(end, res)}"
    cal = f"pkey <= {period_start_hours(cal_end, res)}" if cal_end is not None else "false"
    n_late, n_cal = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT ({cond})), count(*) FILTER (WHERE {cond} AND {cal}) FROM tx").fetchone()
    return end, cond, int(n_tx), int(n_late), int(n_cal)


def _check_late(con, end: pd.Timestamp, cond: str, n_late: int, truncate: bool, timestamp: str) -> None:
    """Transactions after the observation end are an error unless ``truncate``."""
    if n_late and not truncate:
        rows = con.execute(f"SELECT cid AS {CUSTOMER}, ts AS {TIMESTAMP}, amount AS {AMOUNT} FROM tx "
                           f"WHERE NOT ({cond}) LIMIT 5").df()
        raise data_error(f"Transactions after the observation end {end.date()}", column=timestamp,
                         n_rows=int(n_late), rows=rows,
                         fix="Pass truncate=True to ignore them, or a later observation_end.")


def _aggregate(con, cond: str, has_amount: bool, litt: bool = False) -> tuple[dict, pd.Index]:
    """Per-customer first/last period (hours), distinct periods and repeat spend (with ``litt``: the
    sum of the logs of the gaps between consecutive distinct periods, in hours), by customer id.

    Returns the arrays of :func:`clvmodels.rfm.rfm_from_aggregates` and the sorted customer index.
    """
    # the repeat spend sums the periods after the first directly (not total minus first period),
    # in units of 1 / SPEND_SCALE, as rfm._summarise does
    value = f", sum(amount * {SPEND_SCALE!r}) AS v, min(pkey) OVER (PARTITION BY cid) AS first_pkey" if has_amount else ""
    money = ", coalesce(sum(v) FILTER (WHERE pkey > first_pkey), 0.0) AS repeat_value_scaled" if has_amount else ""
    gaps = ", ln(pkey - lag(pkey) OVER (PARTITION BY cid ORDER BY pkey)) AS log_gap" if litt else ""
    log_gaps = ", coalesce(sum(log_gap), 0.0) AS log_gap_hours" if litt else ""
    sql = f"""
        WITH periods AS (SELECT cid, pkey{value} FROM tx WHERE {cond} GROUP BY cid, pkey),
             gaps AS (SELECT *{gaps} FROM periods)
        SELECT cid, min(pkey) AS first, max(pkey) AS last, count(*) AS n_periods{money}{log_gaps}
        FROM gaps GROUP BY cid ORDER BY cid"""
    agg = con.execute(sql).df()
    s = {k: agg[k].to_numpy(dtype=np.int64) for k in ("first", "last", "n_periods")}
    for k in ("repeat_value_scaled",) * has_amount + ("log_gap_hours",) * litt:
        s[k] = agg[k].to_numpy(dtype=float)
    return s, pd.Index(agg["cid"], name=CUSTOMER)  # the ids' dtype as read (text from a CSV)


def _summary_frame(con, cond: str, end: pd.Timestamp, unit: str, res: str, has_amount: bool,
                   litt: bool = False) -> pd.DataFrame:
    s, index = _aggregate(con, cond, has_amount, litt)
    return rfm_from_aggregates(s, period_start_hours(end, res), unit, index, has_amount)


def rfm_summary_duckdb(
    source,
    observation_end=None,
    time_unit: str = "W",
    *,
    resolution: str = "D",
    truncate: bool = False,
    litt: bool = False,
    customer_id: str = "customer_id",
    timestamp: str = "timestamp",
    amount: str | None = "amount",
    date_format: str | None = None,
    refunds: str = "error",
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: str | None = None,
    glob: bool = False,
) -> pd.DataFrame:
    """Per-customer RFM summary of a transaction log, computed out of core by DuckDB.

    Parameters
    ----------
    source
        Path of a Parquet file, a directory of Parquet files, or a CSV file (or a DataFrame). The
        path is read literally: a file named ``sales*.parquet`` is that one file. The id column
        of a CSV is read as text, exactly as written (``007`` and ``7`` are two customers).
    observation_end, time_unit, resolution, truncate, litt
        As for :func:`clvmodels.rfm_summary`.
    customer_id, timestamp, amount, date_format, refunds
        As for :func:`clvmodels.load_transactions` (the column names in ``source``).
    memory_limit
        DuckDB's memory cap (e.g. ``"4GB"``, the default); beyond it DuckDB spills to disk.
    threads
        DuckDB's threads (default: all cores).
    temp_directory
        Where DuckDB spills (default: the system's temporary directory).
    glob
        ``True`` reads ``source`` as a pattern (``*``, ``?``, ``[...]``, ``**`` for any
        subdirectories) matching files of one format with the same columns, e.g.
        ``"sales/2024-*.parquet"``. Invalid ``memory_limit``, ``threads`` or ``temp_directory``
        values raise a :class:`~clvmodels.errors.ClvDataError`.

    Returns
    -------
    The same frame as :func:`clvmodels.rfm_summary`: indexed by customer id (sorted), with
    ``frequency``, ``recency``, ``T``, ``litt`` (when asked for) and ``monetary_value`` (when there
    are amounts).
    """
    return _run(source, observation_end=observation_end, calibration_end=None, time_unit=time_unit,
                resolution=resolution, truncate=truncate, litt=litt, customer_id=customer_id, timestamp=timestamp,
                amount=amount, date_format=date_format, refunds=refunds, memory_limit=memory_limit,
                threads=threads, temp_directory=temp_directory, glob=glob)


def calibration_holdout_duckdb(source, calibration_end, observation_end=None, time_unit: str = "W",
                               **kwargs) -> pd.DataFrame:
    """Calibration summary plus holdout behaviour, as :func:`clvmodels.calibration_holdout`, by DuckDB.

    Takes the keyword arguments of :func:`rfm_summary_duckdb`.
    """
    return _run(source, observation_end=observation_end, calibration_end=calibration_end,
                time_unit=time_unit, **kwargs)


def _run(source, *, observation_end, calibration_end, time_unit, resolution="D", truncate=False, litt=False,
         customer_id="customer_id", timestamp="timestamp", amount="amount", date_format=None,
         refunds="error", memory_limit=None, threads=None, temp_directory=None, glob=False, periods=False):
    """The summary (with ``periods``: and its customers' distinct purchase periods, see :func:`_summaries`)."""
    if refunds not in REFUND_POLICIES:
        raise ClvDataError(f"refunds must be one of {REFUND_POLICIES}, got {refunds!r}.")
    columns = [customer_id, timestamp] + ([amount] if amount is not None else [])
    if len(set(columns)) != len(columns):
        raise ClvDataError(f"The customer id, timestamp and amount columns must differ, got {columns}.")
    unit = normalize_unit(time_unit)
    res = resolve_resolution(resolution)
    with tempfile.TemporaryDirectory(prefix="clvmodels-duckdb-") as workdir:
        if isinstance(source, pd.DataFrame):
            read, tz = _frame_source(source, columns, timestamp)
            parquet = False
        else:
            read, parquet, tz = _source(source, columns, timestamp, glob, Path(workdir))
        con = _connect(memory_limit, threads, temp_directory, tz)
        import duckdb

        try:
            _register_source(con, read, parquet, columns, customer_id, timestamp, date_format)
            return _summaries(con, tz, observation_end=observation_end, calibration_end=calibration_end,
                              unit=unit, res=res, truncate=truncate, litt=litt, customer_id=customer_id,
                              timestamp=timestamp, amount=amount, date_format=date_format, refunds=refunds,
                              periods=periods)
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            if isinstance(source, pd.DataFrame):
                raise
            # a file that does not parse (e.g. a CSV that is not UTF-8, or ragged rows)
            raise ClvDataError(f"DuckDB could not read {str(source)!r}: {str(exc).splitlines()[0]}. Check the "
                               "file (CSV: UTF-8 text with a header row, one value per column).") from None
        finally:
            con.close()


def _summaries(con, tz, *, observation_end, calibration_end, unit, res, truncate, litt, customer_id, timestamp,
               amount, date_format, refunds, periods=False):
    """The summary of the view ``raw``: :func:`rfm_summary_duckdb`'s or :func:`calibration_holdout_duckdb`'s;
    with ``periods`` also its customers' distinct purchase periods of the (calibration) summary (a frame of
    ``cid``, ``pkey``: start in hours since the epoch, ordered by customer and time), what
    :mod:`clvmodels.timevarying` reads."""
    has_amount = amount is not None
    stats = _clean_log(con, customer_id, timestamp, amount, date_format, refunds, res)
    cal_end = naive_timestamp(calibration_end, tz, "calibration_end") if calibration_end is not None else None
    end, cond, n_tx, n_late, n_cal = _counts(con, observation_end, tz, res, cal_end)
    if cal_end is not None and end < cal_end:
        raise ClvDataError(f"observation_end {end} is before calibration_end {cal_end}.")
    _check_late(con, end, cond, n_late, truncate, timestamp)
    if calibration_end is None:
        if n_late == n_tx:
            raise ClvDataError(f"No transactions on or before the observation end {end}.")
        out = _summary_frame(con, cond, end, unit, res, has_amount, litt)
        out.attrs.update(time_unit=unit, resolution=res,
                         observation_end=period_label(end, res), **stats)
        return (out, _periods(con, cond)) if periods else out
    cal_cond = f"pkey <= {period_start_hours(cal_end, res)}"
    if n_cal == 0:
        raise ClvDataError(f"No transactions on or before the calibration end {cal_end}: choose a later one.")
    cal = _summary_frame(con, cal_cond, cal_end, unit, res, has_amount, litt)
    money = ", sum(h.amount) AS value" if has_amount else ""
    hold = con.execute(f"""
        WITH cal AS (SELECT DISTINCT cid FROM tx WHERE {cal_cond}),
             h AS (SELECT cid, pkey, amount FROM tx WHERE ({cond}) AND NOT ({cal_cond}))
        SELECT h.cid, count(DISTINCT h.pkey) AS n_periods{money},
               bool_or(cal.cid IS NOT NULL) AS known
        FROM h LEFT JOIN cal ON h.cid = cal.cid GROUP BY h.cid""").df()
    known = hold[hold["known"]]
    codes = cal.index.get_indexer(pd.Index(known["cid"].to_numpy()))
    n = len(cal)
    cal["frequency_holdout"] = np.bincount(codes, weights=known["n_periods"].to_numpy(dtype=float),
                                           minlength=n).astype(np.int64)
    if has_amount:
        cal["value_holdout"] = np.bincount(codes, weights=known["value"].to_numpy(dtype=float), minlength=n)
        check_finite_spend(cal["value_holdout"], "holdout spend")
    cal["duration_holdout"] = (period_start_hours(end, res) - period_start_hours(cal_end, res)) / 24.0 / unit_days(unit)
    cal.attrs.update(time_unit=unit, resolution=res, calibration_end=period_label(cal_end, res),
                     observation_end=period_label(end, res),
                     n_excluded_new_customers=int((~hold["known"]).sum()), **stats)
    return (cal, _periods(con, cal_cond)) if periods else cal


def _periods(con, cond: str) -> pd.DataFrame:
    """The distinct (customer, purchase period) pairs of the rows meeting ``cond``, by customer and time."""
    return con.execute(f"SELECT cid, pkey FROM tx WHERE {cond} GROUP BY cid, pkey ORDER BY cid, pkey").df()


def duckdb_available() -> bool:
    """Whether the DuckDB engine can be used (the ``duckdb`` package is installed)."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["calibration_holdout_duckdb", "duckdb_available", "rfm_summary_duckdb"]
