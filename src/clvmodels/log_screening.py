"""Per-customer rejects for a raw transaction log: screen it row by row before summarising it.

:func:`clvmodels.load_transactions` refuses a whole log for one bad row, as a library call should.
A batch job scoring a log (``clvmodels score MODEL LOG``) must instead reject the customers whose
rows are bad and score the others. :func:`screen_log` reads the log in chunks, flags every bad row
with :func:`transaction_problems` (all kinds, counted, with their row numbers), rejects the
customers who own one (a customer with a bad row cannot be summarised correctly; a row without an
id is rejected on its own), and writes the rows of the other customers, unchanged, to a clean
copy that the normal summary reads. Nothing is lost: customers in the log = customers summarised
+ customers rejected (+ rows without an id, each rejected).

CSV logs are read as text and copied as text, so the clean copy is read exactly as the original
would be; Parquet logs keep their types. Row numbers count data rows from 1 (a CSV's header line
is not counted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import naive_timestamp, parse_datetimes  # the loader's parser: one definition
from .io import DEFAULT_CHUNK_ROWS, ChunkedTableWriter, require_columns, table_format

#: Row numbers kept as examples per kind of problem.
N_EXAMPLES = 5
#: Columns of :attr:`LogScreen.rejects`.
REJECT_COLUMNS = ["customer_id", "reason", "log_rows"]


def _blank(values: pd.Series) -> np.ndarray:
    missing = values.isna().to_numpy(copy=True)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        missing |= values.astype(str).str.strip().eq("").to_numpy() & ~missing
    return missing


def _timestamps(values: pd.Series, date_format: str | None) -> np.ndarray:
    """Naive datetime64 values (NaT where unparseable or out of pandas' range), parsed as the loader
    parses them (:func:`clvmodels.data.load_transactions`: numbers are YYYYMMDD dates)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        ts = values
    else:
        if date_format is None:
            text = values.astype("string").str.strip()
            numbers = pd.to_numeric(text, errors="coerce")
            if numbers.notna().sum() == text.notna().sum():  # a column of numbers, as a CSV reader types it
                whole = numbers.notna() & (numbers == numbers.round())
                values = numbers.round().astype("Int64").astype("string").where(whole)
                date_format = "%Y%m%d"
        ts, _ = parse_datetimes(values.astype("string"), date_format)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    ts = ts.where((ts >= pd.Timestamp.min) & (ts <= pd.Timestamp.max))  # e.g. 2300: beyond nanoseconds
    return ts.to_numpy(dtype="datetime64[ns]")


def transaction_problems(frame: pd.DataFrame, customer_id: str = "customer_id", timestamp: str = "timestamp",
                         amount: str | None = "amount", *, date_format: str | None = None,
                         refunds: str = "error", observation_end=None) -> pd.Series:
    """Why each row of a transaction log cannot be used (empty string when it can).

    The kinds: ``missing customer_id``; ``missing timestamp``; ``unparseable or out-of-range
    timestamp``; ``timestamp after the observation end`` (with ``observation_end``);
    ``non-numeric amount``; ``missing amount``; ``infinite amount``; ``negative amount (refund)``
    with ``refunds="error"``. A row gets the first that applies.
    """
    reason = np.full(len(frame), "", dtype=object)

    def flag(mask, text):
        reason[np.asarray(mask, dtype=bool) & (reason == "")] = text

    flag(_blank(frame[customer_id]), f"missing {customer_id}")
    missing_ts = _blank(frame[timestamp])
    flag(missing_ts, f"missing {timestamp}")
    ts = _timestamps(frame[timestamp].where(~missing_ts), date_format)
    flag(np.isnat(ts), f"unparseable or out-of-range {timestamp}")
    if observation_end is not None:
        end = naive_timestamp(observation_end, name="observation_end")
        if end == end.normalize():  # a date covers that whole day
            end = end + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        flag(~np.isnat(ts) & (ts > end.to_datetime64()), f"{timestamp} after the observation end")
    if amount is not None:
        col = frame[amount]
        missing = _blank(col)
        values = pd.to_numeric(col.where(~missing), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        flag(np.isnan(values) & ~missing, f"non-numeric {amount}")
        flag(missing, f"missing {amount}")
        flag(np.isinf(values), f"infinite {amount}")
        if refunds == "error":
            flag(values < 0, f"negative {amount} (refund)")
    return pd.Series(reason, index=frame.index, name="reason")


@dataclass
class LogScreen:
    """What :func:`screen_log` found: the clean log to summarise and the rejected customers."""

    #: The log to summarise: the original (nothing rejected) or the clean copy; None when no row is left.
    path: str | None
    n_rows: int = 0
    #: One row per rejected customer (and per row without an id): ``customer_id``, ``reason`` (the
    #: kind of its first bad row) and ``log_rows`` (the numbers of its bad rows, ``;``-separated).
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    #: Per kind of problem: number of rows, and up to N_EXAMPLES ``(row, id)`` examples.
    kinds: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """One line per kind of problem: how many rows, and example row numbers with their ids."""
        lines = []
        for kind, info in sorted(self.kinds.items(), key=lambda kv: -kv[1]["rows"]):
            examples = ", ".join(f"row {row:,} (id {cid!r})" for row, cid in info["examples"])
            lines.append(f"{info['rows']:,} log row(s) with {kind}, e.g. {examples}")
        return lines


def _read_chunks(path: Path, columns: list[str], chunk_rows: int):
    if table_format(path) == "parquet":
        import pyarrow.dataset as ds

        for batch in ds.dataset(path, format="parquet").to_batches(columns=columns, batch_size=chunk_rows):
            if batch.num_rows:
                yield batch.to_pandas(ignore_metadata=True)
        return
    sep = "\t" if ".tsv" in path.name.lower() else ","
    with pd.read_csv(path, usecols=columns, sep=sep, dtype=str, keep_default_na=False,
                     chunksize=chunk_rows) as reader:
        for chunk in reader:
            yield chunk[columns]


def screen_log(path: str | os.PathLike, scratch: str | os.PathLike, *, customer_id: str = "customer_id",
               timestamp: str = "timestamp", amount: str | None = "amount", date_format: str | None = None,
               refunds: str = "error", observation_end=None, truncate: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> LogScreen:
    """Flag the bad rows of the log at ``path`` and copy the rows of the other customers to a clean
    log in the directory ``scratch`` (two passes over the file; memory bounded by the chunk size
    and the number of rejected customers). Timestamps after ``observation_end`` are a problem
    unless ``truncate`` (they are then left to the summary, which ignores them)."""
    path = Path(path)
    columns = [customer_id, timestamp] + ([amount] if amount is not None else [])
    require_columns(path, columns, what="the transaction log",
                    fix="Pass the right names with --customer-id, --timestamp, --amount (--no-amount for a "
                        "log without values).")
    end = None if truncate else observation_end
    screen = LogScreen(path=os.fspath(path))
    bad_ids: dict = {}  # id -> [first reason, row numbers]
    idless = []
    for chunk in _read_chunks(path, columns, chunk_rows):
        reason = transaction_problems(chunk, customer_id, timestamp, amount, date_format=date_format,
                                      refunds=refunds, observation_end=end).to_numpy()
        rows = np.arange(screen.n_rows + 1, screen.n_rows + len(chunk) + 1)
        screen.n_rows += len(chunk)
        for i in np.flatnonzero(reason != ""):
            cid = chunk[customer_id].iat[i]
            info = screen.kinds.setdefault(reason[i], {"rows": 0, "examples": []})
            info["rows"] += 1
            if len(info["examples"]) < N_EXAMPLES:
                info["examples"].append((int(rows[i]), None if _blank(pd.Series([cid]))[0] else cid))
            if reason[i] == f"missing {customer_id}":
                idless.append((None, f"log: {reason[i]}", str(rows[i])))
            else:
                bad_ids.setdefault(cid, [reason[i], []])[1].append(int(rows[i]))
    if not screen.kinds:
        return screen
    records = idless + [(cid, f"log: {reason}", ";".join(map(str, rows))) for cid, (reason, rows) in bad_ids.items()]
    screen.rejects = pd.DataFrame(records, columns=REJECT_COLUMNS)
    clean = Path(scratch) / ("clean.csv" if table_format(path) == "csv" else "clean.parquet")
    kept = 0
    rejected = pd.Index(list(bad_ids), dtype=object)
    with ChunkedTableWriter(clean, "csv" if table_format(path) == "csv" else "parquet", escape=False) as writer:
        for chunk in _read_chunks(path, columns, chunk_rows):
            keep = ~(chunk[customer_id].isin(rejected).to_numpy() | _blank(chunk[customer_id]))
            if keep.any():
                writer.write(chunk.loc[keep])
                kept += int(keep.sum())
    screen.path = os.fspath(clean) if kept else None
    return screen
