"""Files in and out: atomic writes and chunked readers and writers of CSV/Parquet tables.

Every output of clvmodels is written to a temporary file (or directory) next to its destination
and renamed into place only once complete, so a crash or a kill leaves either the previous
version or the complete new one, never a partial file. Large tables are read and written in
chunks (pyarrow's ``ParquetFile.iter_batches`` and ``ParquetWriter``; streaming CSV), so memory
stays bounded by the chunk size, not by the number of rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .errors import ClvDataError

#: Rows per chunk of the chunked readers unless told otherwise.
DEFAULT_CHUNK_ROWS = 250_000

_PARQUET = (".parquet", ".pq", ".parq")
_CSV = (".csv", ".csv.gz", ".txt", ".tsv", ".csv.zip", ".csv.bz2")


def table_format(path: str | os.PathLike) -> str:
    """``"parquet"`` or ``"csv"`` from a file name (a directory is a Parquet dataset)."""
    p = Path(path)
    suffixes = "".join(p.suffixes).lower()
    if p.is_dir() or suffixes.endswith(_PARQUET):
        return "parquet"
    if suffixes.endswith(_CSV):
        return "csv"
    raise ClvDataError(f"Unsupported file type for {str(p)!r}: use .csv (optionally compressed) or .parquet.")


def _fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry) to disk; best effort where the OS does not allow it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_default(path: Path, directory: bool = False) -> None:
    """Give a temporary file (0600) or directory (0700) the permissions a normal one would get."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise ClvDataError(f"Cannot write the file {str(path)!r}: a directory of that name exists.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _fsync_path(tmp)
        _chmod_default(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, marker_files: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; on success it replaces ``path``.

    An existing ``path`` is moved aside, the new directory renamed into place, and the old one
    removed. ``marker_files``: an existing non-empty directory is only replaced if it contains one
    of these files (so a user's unrelated directory is never deleted).
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise ClvDataError(f"Cannot write the directory {str(path)!r}: a file of that name exists.")
    if path.is_dir() and marker_files and any(path.iterdir()) \
            and not any((path / m).exists() for m in marker_files):
        raise ClvDataError(
            f"Refusing to overwrite {str(path)!r}: it is a non-empty directory that is not a saved "
            "clvmodels model. Choose another path or remove it first."
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_path(f)
        _chmod_default(tmp, directory=True)
        if path.exists():
            old = parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_path(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def leftover_versions(path: str | os.PathLike) -> list[Path]:
    """Previous versions of ``path`` moved aside by an interrupted :func:`atomic_directory`."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}.old-*"))


# ---------------------------------------------------------------------------- reading
@contextlib.contextmanager
def unreadable_as_data_error(path) -> Iterator[None]:
    """Turn the readers' errors for a file that is not what its name says (empty, binary, not
    UTF-8, not Parquet) into a :class:`ClvDataError` naming the file."""
    import pyarrow as pa

    try:
        yield
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, pa.ArrowException) as exc:
        p = Path(path)
        fmt = table_format(p)
        what = "a Parquet file or dataset" if fmt == "parquet" else "UTF-8 CSV text with a header row"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClvDataError(f"Could not read {str(p)!r}: it is not {what} ({reason}). "
                           "Check the file, or convert it (e.g. re-save the CSV as UTF-8).") from None


def table_columns(path: str | os.PathLike) -> list[str]:
    """Column names of a CSV or Parquet table as written (a repeated name comes back repeated),
    without reading its rows."""
    p = _existing(path)
    with unreadable_as_data_error(p):
        if table_format(p) == "parquet":
            import pyarrow.dataset as ds

            return list(ds.dataset(p, format="parquet").schema.names)
        header = pd.read_csv(p, nrows=1, header=None, dtype=str, keep_default_na=False, sep=_csv_sep(p))
    return header.iloc[0].tolist() if len(header) else []


def check_unique_columns(available: list[str], columns, path) -> None:
    """Raise a :class:`ClvDataError` if one of ``columns`` occurs more than once in ``available``.

    A CSV reader keeps only one of two columns with the same name (pandas renames the second
    ``x.1``, DuckDB ``x_1``): which one holds the data the user meant cannot be known.
    """
    repeated = [c for c in dict.fromkeys(columns) if available.count(c) > 1]
    if repeated:
        counts = ", ".join(f"{c!r} ({available.count(c)} times)" for c in repeated)
        raise ClvDataError(
            f"Column name(s) {counts} occur more than once in the header of {str(path)!r}: "
            "rename the columns so that each name is unique, then run again."
        )


def _csv_sep(p: Path) -> str:
    return "\t" if ".tsv" in p.name.lower() else ","


def _csv_options(p: Path, columns: list[str] | None, text_columns) -> dict:
    """``pd.read_csv`` options: ``text_columns`` are read as text exactly as written (only an empty
    field is missing: ids such as ``007``, ``1.0`` or ``NA`` are labels); the other columns get
    pandas' usual types and missing-value markers."""
    text = [c for c in text_columns if columns is None or c in columns]
    if not text:
        return {}
    from pandas._libs.parsers import STR_NA_VALUES

    others = [c for c in (columns if columns is not None else table_columns(p)) if c not in text]
    return {"dtype": {c: str for c in text}, "keep_default_na": False,
            "na_values": {c: sorted(STR_NA_VALUES) for c in others}}


def _checked_columns(p: Path, columns: list[str] | None) -> None:
    """Every requested column is present, once."""
    if columns is None:
        return
    available = table_columns(p)
    missing = [c for c in columns if c not in available]
    if missing:
        raise ClvDataError(
            f"{str(p)!r} lacks column(s) {missing} (it has {available}). "
            "Pass the right column names or rebuild the table."
        )
    check_unique_columns(available, columns, p)


def count_rows(path: str | os.PathLike) -> int | None:
    """Number of rows of a Parquet table from its metadata (None for CSV: unknown without reading)."""
    p = _existing(path)
    if table_format(p) != "parquet":
        return None
    import pyarrow.dataset as ds

    return int(ds.dataset(p, format="parquet").count_rows())


def iter_table(path: str | os.PathLike, columns: list[str] | None = None,
               chunk_rows: int = DEFAULT_CHUNK_ROWS, text_columns: tuple[str, ...] = ()) -> Iterator[pd.DataFrame]:
    """Read a CSV or Parquet table in chunks of at most ``chunk_rows`` rows (pandas frames).

    Memory is bounded by the chunk size. Missing or repeated columns raise a :class:`ClvDataError`.
    ``text_columns`` of a CSV are read as text, exactly as written (so that every chunk gets the
    same type and ids such as ``007`` stay labels).
    """
    p = _existing(path)
    _checked_columns(p, columns)
    with unreadable_as_data_error(p):
        if table_format(p) == "parquet":
            import pyarrow.dataset as ds

            dataset = ds.dataset(p, format="parquet")
            for batch in dataset.to_batches(columns=columns, batch_size=chunk_rows):
                if batch.num_rows:
                    yield batch.to_pandas(ignore_metadata=True)
            return
        options = _csv_options(p, columns, text_columns)
        with pd.read_csv(p, usecols=columns, sep=_csv_sep(p), chunksize=chunk_rows, **options) as reader:
            for chunk in reader:
                yield chunk.reset_index(drop=True)


def read_columns(path: str | os.PathLike, columns: list[str] | None = None,
                 text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``columns`` (default: all) of a whole CSV or Parquet table (a directory is a Parquet
    dataset; Parquet reads only those columns). Missing or repeated columns raise a
    :class:`ClvDataError`; ``text_columns`` of a CSV are read as text, as by :func:`iter_table`.
    """
    p = _existing(path)
    _checked_columns(p, columns)
    with unreadable_as_data_error(p):
        if table_format(p) == "parquet":
            import pyarrow.dataset as ds

            return ds.dataset(p, format="parquet").to_table(columns=columns).to_pandas(ignore_metadata=True)
        return pd.read_csv(p, usecols=columns, sep=_csv_sep(p), **_csv_options(p, columns, text_columns))


def _existing(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ClvDataError(f"File not found: {str(p)!r}. Check the path.")
    return p


# ---------------------------------------------------------------------------- writing
class ChunkedTableWriter:
    """Write pandas frames chunk by chunk to a Parquet or CSV file, atomically.

    Use as a context manager: the rows go to a temporary file that is renamed to ``path`` only
    when the block ends without an exception. All chunks must have the same columns.

    Parameters
    ----------
    path
        Destination.
    fmt
        ``"parquet"`` or ``"csv"``; default from the file name (Parquet unless it ends in .csv).
    schema
        Optional pyarrow schema for Parquet (otherwise taken from the first chunk).
    """

    def __init__(self, path: str | os.PathLike, fmt: str | None = None, schema=None):
        self.path = Path(path)
        if fmt is None:
            fmt = "csv" if "".join(self.path.suffixes).lower().endswith(".csv") else "parquet"
        if fmt not in ("parquet", "csv"):
            raise ClvDataError(f"Output format must be 'parquet' or 'csv', got {fmt!r}.")
        self.fmt = fmt
        self.schema = schema
        self.rows = 0
        self._writer = None
        self._ctx = None
        self._tmp: Path | None = None

    def __enter__(self) -> "ChunkedTableWriter":
        self._ctx = atomic_file(self.path)
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame``."""
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            if self._writer is None:
                self.schema = table.schema
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            self._writer.write_table(table)
        else:
            frame.to_csv(self._tmp, mode="a", header=self.rows == 0 and self._writer is None, index=False)
            self._writer = True
        self.rows += len(frame)

    def _finish_empty(self) -> None:
        """A file with no rows still gets its header/schema."""
        if self.fmt == "csv" and self.schema is not None:
            pd.DataFrame(columns=self.schema.names).to_csv(self._tmp, index=False)
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([], schema=self.schema) if self.schema is not None
                           else pa.table({}), self._tmp)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                if self._writer is None:
                    self._finish_empty()
                elif self.fmt == "parquet":
                    self._writer.close()
            elif self.fmt == "parquet" and self._writer not in (None, True):
                self._writer.close()
        finally:
            self._ctx.__exit__(exc_type, exc, tb)
        return False


def write_table(frame: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None,
                index: bool = True) -> None:
    """Write a whole frame to Parquet or CSV atomically (the index becomes a column when named)."""
    path = Path(path)
    if fmt is None:
        fmt = "csv" if "".join(path.suffixes).lower().endswith(".csv") else "parquet"
    with atomic_file(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=index)
        else:
            frame.to_parquet(tmp, index=index)
