"""Files in and out: atomic writes and chunked readers and writers of CSV/Parquet tables.

Every output of clvmodels is written to a temporary file (or directory) next to its destination
and renamed into place only once complete, so a crash or a kill leaves either the previous
version or the complete new one, never a partial file. Large tables are read and written in
chunks (pyarrow's ``ParquetFile.iter_batches`` and ``ParquetWriter``; streaming CSV), so memory
stays bounded by the chunk size, not by the number of rows.

Temporary files and directories are named ``.<name>.tmp-<pid>@<host>-<random>`` after the process
that owns them; every write first removes those of processes of this host that no longer exist
(:func:`remove_temporaries`), so a run killed with SIGKILL leaves its partial files only until the
next write into the same directory (its scoring workers remove them as soon as they see it gone).

CSV outputs escape formula-like text cells (OWASP's rule against CSV injection: a text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, unless it
is a plain number such as ``-1.5``), so that a spreadsheet opening them runs nothing;
``escape_formulas=False`` (``clvmodels ... --csv-raw``) writes them verbatim.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .errors import ClvDataError

#: Rows per chunk of the chunked readers unless told otherwise.
DEFAULT_CHUNK_ROWS = 250_000

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv", ".csv.zip", ".csv.bz2")


def table_format(path: str | os.PathLike) -> str:
    """``"parquet"`` or ``"csv"`` from a file name (a directory is a Parquet dataset)."""
    p = Path(path)
    suffixes = "".join(p.suffixes).lower()
    if p.is_dir() or suffixes.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if suffixes.endswith(CSV_SUFFIXES):
        return "csv"
    raise ClvDataError(f"Unsupported file type for {str(p)!r}: use .csv (optionally compressed) or .parquet.")


_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)@([A-Za-z0-9]*)-[^/]+$")


def _host() -> str:
    """This machine's name, letters and digits only: a pid is only meaningful on its own host
    (a directory shared between machines or containers never loses another one's temporaries)."""
    import socket

    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{os.getpid()}@{_host()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_temporaries(directory: str | os.PathLike, pid: int | None = None) -> list[Path]:
    """Remove the temporary files and directories of clvmodels writes in ``directory`` that belong
    to process ``pid``, or (``pid=None``) to any process that no longer exists; returns them.

    Previous versions moved aside by :func:`atomic_directory` (``.<name>.old-*``) are kept.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(directory).iterdir():
            match = _TEMPORARY.match(entry.name)
            if match is None:
                continue
            owner = int(match.group(1))
            if match.group(2) != _host():
                continue
            if (owner == pid) if pid is not None else (owner != os.getpid() and not _alive(owner)):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
                removed.append(entry)
    return removed


@contextlib.contextmanager
def scratch_directory(next_to: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory next to ``next_to`` (named as the owner's temporaries), removed on exit."""
    path = Path(next_to)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    remove_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), dir=path.parent)
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
    remove_temporaries(parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), dir=parent))
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


def require_columns(p: Path, columns: list[str] | None, *, what: str | None = None,
                    fix: str = "Pass the right column names or rebuild the table.") -> None:
    """Every requested column of the table at ``p`` is present, once; else a :class:`ClvDataError`
    naming ``what`` the table is (default: its path), the missing columns, those it has, and ``fix``."""
    if columns is None:
        return
    available = table_columns(p)
    missing = [c for c in columns if c not in available]
    if missing:
        raise ClvDataError(f"Missing column(s) {missing} in {what or repr(str(p))}; it has {available}. {fix}")
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
    require_columns(p, columns)
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


def table_attrs(path: str | os.PathLike) -> dict:
    """The ``attrs`` pandas recorded in a Parquet table (e.g. ``time_unit``, ``resolution`` of an RFM
    summary); empty for CSV, a dataset directory, or a file without them. A path that does not exist
    is an error (before any complaint about what the table lacks)."""
    p = _existing(path)
    if not p.is_file() or table_format(p) != "parquet":
        return {}
    import json

    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(p).metadata or {}
        attrs = json.loads(meta.get(b"PANDAS_ATTRS", b"{}"))
    except (OSError, ValueError):
        return {}
    return attrs if isinstance(attrs, dict) else {}


def read_columns(path: str | os.PathLike, columns: list[str] | None = None,
                 text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``columns`` (default: all) of a whole CSV or Parquet table (a directory is a Parquet
    dataset; Parquet reads only those columns). Missing or repeated columns raise a
    :class:`ClvDataError`; ``text_columns`` of a CSV are read as text, as by :func:`iter_table`.
    """
    p = _existing(path)
    require_columns(p, columns)
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
def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)  # hard links
    return False


def _inside(path: Path, directory: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(directory)
    return real != top and os.path.commonpath([real, top]) == top


def check_outputs(inputs, files: dict, directories: dict | None = None) -> None:
    """Refuse, before anything is read or written, outputs that would destroy an input or each other.

    ``inputs``: the paths read (a list, or a dict label -> path); ``files`` and ``directories``:
    the outputs, label -> path (labels such as ``"--out"`` name them in the message; None paths
    are skipped). Paths are compared after resolving symbolic links and relative parts, and hard
    links to the same file count as the same. Refused: an output that is an input or another
    output; an input inside an output directory (replacing the directory would delete it); a file
    output that is an existing directory, a directory output that is an existing file; an output
    whose parent is a file. Raises :class:`ClvDataError`.
    """
    if not isinstance(inputs, dict):
        inputs = {f"the input {os.fspath(p)!r}": p for p in inputs}
    inputs = {k: Path(v) for k, v in inputs.items() if v is not None}
    outputs = {**{k: (Path(v), False) for k, v in files.items() if v is not None},
               **{k: (Path(v), True) for k, v in (directories or {}).items() if v is not None}}
    seen: list[tuple[str, Path]] = []
    for label, (path, is_dir) in outputs.items():
        where = f"{label} {os.fspath(path)!r}"
        for other, inp in inputs.items():
            if _same(path, inp):
                raise ClvDataError(f"{where} is the same file as {other}: an output never overwrites an "
                                   "input. Choose another output path.")
            if is_dir and _inside(inp, path):
                raise ClvDataError(f"{other} lies inside the output directory {where}, which would be "
                                   "replaced. Choose another output directory.")
        for other, prev in seen:
            if _same(path, prev):
                raise ClvDataError(f"{where} is the same path as {other}: each output needs its own path.")
        seen.append((where, path))
        if is_dir and path.exists() and not path.is_dir():
            raise ClvDataError(f"{where} is an existing file, but a directory is written there: choose "
                               "another path or remove the file.")
        if not is_dir and path.is_dir():
            raise ClvDataError(f"{where} is an existing directory, but a file is written there: give a "
                               "file name.")
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ClvDataError(f"Cannot write {where}: {os.fspath(parent)!r} is a file, not a directory.")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def _escape_text(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def escape_formulas(frame: pd.DataFrame, index: bool = False) -> pd.DataFrame:
    """A copy of ``frame`` whose formula-like text cells (and index labels, with ``index``) start
    with ``'`` (OWASP's CSV-injection rule; plain numbers such as ``-1.5`` are left alone)."""
    out = frame.copy(deep=False)
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c].dtype):
            out[c] = out[c].map(_escape_text)
    if index and (out.index.dtype == object or pd.api.types.is_string_dtype(out.index.dtype)):
        out.index = out.index.map(_escape_text)
    return out


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
    escape
        CSV only: escape formula-like text cells (:func:`escape_formulas`; default True).
    """

    def __init__(self, path: str | os.PathLike, fmt: str | None = None, schema=None, escape: bool = True):
        self.path = Path(path)
        if fmt is None:
            fmt = "csv" if "".join(self.path.suffixes).lower().endswith(".csv") else "parquet"
        if fmt not in ("parquet", "csv"):
            raise ClvDataError(f"Output format must be 'parquet' or 'csv', got {fmt!r}.")
        self.fmt = fmt
        self.schema = schema
        self.escape = escape
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
            frame = escape_formulas(frame) if self.escape else frame
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
                index: bool = True, escape: bool = True) -> None:
    """Write a whole frame to Parquet or CSV atomically (the index becomes a column when named).

    ``escape``: CSV only, escape formula-like text cells (:func:`escape_formulas`)."""
    path = Path(path)
    if fmt is None:
        fmt = "csv" if "".join(path.suffixes).lower().endswith(".csv") else "parquet"
    with atomic_file(path) as tmp:
        if fmt == "csv":
            (escape_formulas(frame, index) if escape else frame).to_csv(tmp, index=index)
        else:
            frame.to_parquet(tmp, index=index)
