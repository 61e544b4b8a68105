"""Time-varying covariates: panels and calendars on a regular grid, and the summaries a fit reads.

A time-varying covariate multiplies a customer's purchase (or drop-out) rate by ``exp(γ · z_i(t))``,
piecewise constant on a regular calendar grid (Bachmann, Meierer & Näf 2021, Marketing Science 40(4),
CLVTools' "dyncov"). Two kinds of table give ``z``:

* a **panel** (:func:`covariate_panel`): one row per customer and grid period (customer id, period
  start, covariate columns), each customer's rows covering a run of consecutive periods;
* a **calendar** (:func:`covariate_calendar`): one row per grid period, shared by all customers (a
  holiday calendar, seasonal terms). It is never expanded to customers x periods: a customer's
  value at a period is looked up in the calendar's own rows. Helpers build common calendars:
  :func:`seasonal_dummies`, :func:`fourier_terms`, :func:`holiday_windows`.

Both become a :class:`CovariatePath` (validated values on a grid of period boundaries). From a
transaction log and a path, :func:`timevarying_summary` (and :func:`timevarying_holdout` for a
calibration/holdout split) builds the RFM table and the :class:`~clvmodels.exposure.TimeVaryingSummary`
the likelihood reads; :func:`future_exposure` and :func:`new_customer_exposure` the
:class:`~clvmodels.exposure.ExposurePieces` of a future window, which forecasts read.

Times: a purchase counts at the start of its period of the ``resolution`` (as in
:mod:`clvmodels.rfm`), the calibration window of a customer runs from the start of her first purchase
period to the start of the last observed period (``T``), and the pieces are given on her own clock (0 =
the first purchase) in the RFM table's unit. ``z`` at a time is the value of the grid period containing
it (periods are ``[start, next start)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import CUSTOMER, TIMESTAMP, as_log, factorize_ids
from .errors import ClvDataError, data_error
from .exposure import ExposurePieces, TimeVaryingSummary
from .periods import NS_PER_DAY, NS_PER_HOUR, period_end, period_hours, period_start_hours, resolve_resolution
from .rfm import calibration_holdout, rfm_summary
from .units import normalize_unit, unit_days

#: Default grid: periods of seven days from the table's first period start (any weekday).
DEFAULT_FREQ = "7D"
#: Default name of the period-start column of panels and calendars.
PERIOD = "period"



@dataclass(frozen=True)
class CovariatePath:
    """Validated time-varying covariates on a regular grid: a panel (per customer) or a calendar.

    Attributes
    ----------
    columns
        The covariate names (``K``), in the order of ``values``' columns.
    edges
        ``(G+1,)`` int64: the grid's period boundaries in nanoseconds since 1970-01-01 (naive
        wall-clock time); period ``j`` covers ``[edges[j], edges[j+1])``.
    values
        ``(M, K)`` float: the covariate rows, each customer's (a panel) or the calendar's, in period order.
    customers
        A panel's customer ids as text (ids are labels: ``1`` and ``"1"`` are one customer),
        or ``None`` for a calendar (every customer reads the same rows).
    offset, first, count
        Per customer of ``customers`` (a calendar: one entry for all): the row of ``values`` holding
        her first period, that period's index on the grid, and her number of consecutive periods.
    freq
        The grid's pandas frequency.
    """

    columns: tuple[str, ...]
    edges: np.ndarray
    values: np.ndarray
    customers: pd.Index | None
    offset: np.ndarray
    first: np.ndarray
    count: np.ndarray
    freq: str

    @property
    def periods(self) -> pd.DatetimeIndex:
        """The grid's period starts."""
        return pd.DatetimeIndex(self.edges[:-1].astype("datetime64[ns]"), name=PERIOD)

    def entries(self, ids: pd.Index) -> np.ndarray:
        """The entry of ``offset``/``first``/``count`` of each customer of ``ids`` (a calendar: all 0;
        −1 for a customer missing from a panel)."""
        if self.customers is None:
            return np.zeros(len(ids), dtype=np.int64)
        return self.customers.get_indexer(pd.Index(ids.astype(str))).astype(np.int64)

    def rows_of(self, ids: pd.Index) -> np.ndarray:
        """:meth:`entries`, where a customer missing from a panel is an error naming how many and which."""
        rows = self.entries(ids)
        lacking = rows < 0
        if lacking.any():
            raise ClvDataError(
                f"{int(lacking.sum()):,} customer(s) of the summary have no row in the covariate panel, e.g. "
                f"{', '.join(repr(str(c)) for c in ids[lacking][:5])}. Add their covariate path (from their first "
                "purchase to the end of the window), or leave them out of the log.")
        return rows


# ---------------------------------------------------------------------------- panels and calendars
def covariate_panel(table: pd.DataFrame, id_column: str = CUSTOMER, period: str = PERIOD,
                    columns=None, freq: str = DEFAULT_FREQ) -> CovariatePath:
    """Validate a panel of time-varying covariates: one row per customer and grid period.

    Parameters
    ----------
    table
        Columns ``id_column`` (customer ids; read as text labels, as :func:`~clvmodels.rfm.join_covariates`
        reads them), ``period`` (the period's start date) and the covariates.
    columns
        The covariate columns (default: every other column).
    freq
        The grid's pandas frequency (default ``"7D"``: weeks from the table's first period start;
        anchored ones such as ``"W-MON"``, ``"MS"``, ``"QS"`` or ``"D"`` too).

    Every period start must lie on the grid, each customer's periods must be consecutive (no gaps, no
    duplicates) and the values finite numbers; errors name the customer, period and column, and how
    many rows are affected. Whether a customer is covered from her first purchase to the end of the
    window needed is checked when a summary is built (:func:`timevarying_summary`, :func:`future_exposure`).
    """
    _require(table, [id_column, period], "panel")
    ids = table[id_column]
    missing = ids.isna().to_numpy()
    if missing.any():
        raise data_error("Missing customer ids in the covariate panel", column=id_column, rows=table.loc[missing],
                         fix="Every row needs a customer id: remove or fill these rows.")
    columns = _columns(table, [id_column, period], columns)
    starts = _period_starts(table, period)
    edges, position = _grid(starts, freq, table, period)
    values = _values(table, columns)
    # ids as text labels: the distinct values converted, not every row; customers in order of appearance
    codes, raw = pd.factorize(ids)
    customers = pd.Index(pd.Index(raw).astype(str), dtype=object)
    if customers.has_duplicates:   # e.g. 1 and "1" in one column: one customer
        text_codes, customers = factorize_ids(pd.Series(customers, dtype=object))
        codes = text_codes[codes]
    key = codes.astype(np.int64) * (len(edges) - 1) + position
    if np.all(key[1:] > key[:-1]):   # the usual layout: by customer, then period
        order = np.arange(len(key))
    else:
        order = np.argsort(key, kind="stable")
        codes, position = codes[order], position[order]
    same = codes[1:] == codes[:-1]
    step = np.diff(position)
    duplicated = np.flatnonzero(same & (step == 0))
    if len(duplicated):
        rows = table.iloc[np.unique(np.concatenate([order[duplicated], order[duplicated + 1]]))]
        raise data_error("The covariate panel has more than one row for a customer and period",
                         rows=rows[[id_column, period]], n_rows=len(rows),
                         fix="Keep one row per customer and period.")
    gaps = np.flatnonzero(same & (step > 1))
    if len(gaps):
        period_starts = edges[:-1].astype("datetime64[ns]")
        examples = pd.DataFrame({id_column: customers[codes[gaps]],
                                 "missing_from": period_starts[position[gaps] + 1],
                                 "missing_periods": step[gaps] - 1}).head()
        raise ClvDataError(
            f"The covariate panel has gaps: {len(gaps):,} run(s) of missing periods for "
            f"{len(np.unique(codes[gaps])):,} customer(s) (grid {freq!r}). Give every period from a "
            f"customer's first to her last row.\nExamples:\n{examples.to_string(index=False)}")
    starts_of = np.flatnonzero(np.r_[True, ~same])
    return CovariatePath(columns=tuple(columns), edges=edges, values=values[order], customers=customers,
                         offset=starts_of.astype(np.int64), first=position[starts_of].astype(np.int64),
                         count=np.diff(np.r_[starts_of, len(codes)]).astype(np.int64), freq=freq)


def covariate_calendar(table: pd.DataFrame, period: str | None = None, columns=None,
                       freq: str | None = None) -> CovariatePath:
    """Validate a calendar: time-varying covariates shared by all customers, one row per grid period.

    ``table`` holds the period starts in its column ``period`` or, with ``period=None``, in its index
    (as the helpers :func:`seasonal_dummies`, :func:`fourier_terms` and :func:`holiday_windows` return
    them; combine several with ``pd.concat([...], axis=1)``). ``freq``: the grid's pandas frequency
    (default: the index's own ``freq`` or the one it follows, else ``"7D"``). The periods must be consecutive (no gap, no
    duplicate) and the values finite numbers.
    """
    if period is None:
        frame = table.reset_index(names=PERIOD) if PERIOD not in table.columns else table.reset_index(drop=True)
        period = PERIOD
        index = table.index
        if freq is None and isinstance(index, pd.DatetimeIndex):
            freq = index.freqstr or pd.DatetimeIndex(index.sort_values(), freq="infer").freqstr
    else:
        _require(table, [period], "calendar")
        frame = table
    freq = freq or DEFAULT_FREQ
    columns = _columns(frame, [period], columns)
    starts = _period_starts(frame, period)
    edges, position = _grid(starts, freq, frame, period)
    order = np.argsort(position, kind="stable")
    position = position[order]
    if len(position) > 1 and (np.diff(position) == 0).any():
        dup = np.isin(position, position[1:][np.diff(position) == 0])
        raise data_error("The calendar has more than one row for a period", column=period,
                         rows=frame.iloc[order[dup]][[period]], fix="Keep one row per period.")
    if len(position) != len(edges) - 1:
        absent = np.setdiff1d(np.arange(len(edges) - 1), position)
        raise ClvDataError(f"The calendar has gaps: {len(absent):,} period(s) of the grid {freq!r} between its "
                           f"first and last rows are missing, e.g. {_dates(edges[absent[:5]])}. Give every period.")
    values = _values(frame, columns)[order]
    one = np.zeros(1, dtype=np.int64)
    return CovariatePath(columns=tuple(columns), edges=edges, values=values, customers=None, offset=one,
                         first=one, count=np.array([len(values)], dtype=np.int64), freq=freq)


def _require(table, names, what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ClvDataError(f"The covariate {what} must be a DataFrame, got {type(table).__name__}.")
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise ClvDataError(f"Column(s) {missing} not found in the covariate {what} (columns: "
                           f"{list(map(str, table.columns))[:20]}). Name them with id_column=... and period=....")


def _columns(table: pd.DataFrame, keys, columns) -> list[str]:
    columns = [c for c in table.columns if c not in keys] if columns is None else list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ClvDataError(f"Covariate column(s) {missing} not found (columns: {list(map(str, table.columns))[:20]}).")
    if not columns:
        raise ClvDataError("The covariate table has no covariate column besides the customer id and period.")
    return [str(c) for c in columns]


def _period_starts(table: pd.DataFrame, period: str) -> np.ndarray:
    """The period column as naive datetime64[ns] (time-zone-aware values keep their wall-clock time)."""
    raw = table[period]
    parsed = pd.to_datetime(raw, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise data_error("Missing or unparseable period starts", column=period, rows=table.loc[bad],
                         fix="Give each row the start date of its period, e.g. '2024-01-01'.")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]")


def _grid(starts: np.ndarray, freq: str, table: pd.DataFrame, period: str) -> tuple[np.ndarray, np.ndarray]:
    """The grid's boundaries (ns) from the earliest to the end of the latest start, and each start's period."""
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        grid = pd.date_range(starts.min(), starts.max(), freq=offset)
    except (ValueError, TypeError) as exc:
        raise ClvDataError(f"freq must be a pandas frequency such as '7D', 'W-MON', 'D' or 'MS', got {freq!r} "
                           f"({exc}).") from None
    edges = np.append(_ns(grid), (grid[-1] + offset).value) if len(grid) else np.zeros(1, dtype=np.int64)
    ns = starts.view(np.int64)
    try:   # a fixed step (days, hours): arithmetic; else (months, ...) a search of the boundaries
        step = offset.nanos
        position, rest = np.divmod(ns - edges[0], step)
        off = (rest != 0) | (position >= len(edges) - 1) | (position < 0)
    except ValueError:
        position = np.searchsorted(edges[:-1], ns)
        off = position >= len(edges) - 1
        off[~off] = edges[position[~off]] != ns[~off]
    if off.any():
        raise data_error(f"Period starts off the grid {freq!r} (anchored at {_dates(starts.view(np.int64)[:1])[0]})",
                         column=period, rows=table.loc[off],
                         fix="Give each period's start date on one regular grid, or pass the grid's freq=...")
    return edges.astype(np.int64), position.astype(np.int64)


def _values(table: pd.DataFrame, columns) -> np.ndarray:
    out = np.empty((len(table), len(columns)))
    for k, c in enumerate(columns):
        col = table[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            numeric = pd.to_numeric(col, errors="coerce")
            bad = numeric.isna().to_numpy() & col.notna().to_numpy()
            if bad.any():
                raise data_error("Non-numeric time-varying covariate values", column=c,
                                 rows=table.loc[bad], fix="Covariates must be numbers (encode categories as "
                                 "indicator columns, e.g. with seasonal_dummies).")
            col = numeric
        out[:, k] = col.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isfinite(out[:, k])
        if bad.any():
            raise data_error("Missing or infinite time-varying covariate values", column=c, rows=table.loc[bad],
                             fix="Fill them (a covariate path is never taken as 0) or leave these periods out.")
    return out


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch (int64), whatever the index's resolution (pandas 3 defaults to µs)."""
    return index.as_unit("ns").asi8


def _dates(ns) -> list[str]:
    return [str(pd.Timestamp(int(v))) for v in np.asarray(ns)]


# ---------------------------------------------------------------------------- calendar helpers
def _calendar_periods(periods) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Period starts (a DatetimeIndex with a freq, e.g. ``pd.date_range(..., freq="7D")``) and the
    boundaries ``(G+1,)`` in ns."""
    index = pd.DatetimeIndex(periods, name=PERIOD)
    freq = index.freq or pd.DatetimeIndex(index, freq="infer").freq
    if freq is None:
        raise ClvDataError("periods must be a regular grid of period starts with a frequency, e.g. "
                           "pd.date_range('2024-01-01', '2025-12-29', freq='7D').")
    offset = pd.tseries.frequencies.to_offset(freq)
    index = pd.DatetimeIndex(index, freq=offset, name=PERIOD)
    return index, np.append(_ns(index), (index[-1] + offset).value)


def seasonal_dummies(periods, season: str = "month", drop=1) -> pd.DataFrame:
    """Indicators of the month (``season="month"``) or quarter (``"quarter"``) of each period's start.

    One level is dropped (the reference; ``drop``, January / the first quarter by default) and named in
    ``attrs["dropped"]``. Columns are ``month[2]`` ... ``month[12]`` (``quarter[2]`` ...). A period that
    straddles two seasons takes its start's. Returns a calendar table indexed by the period starts.
    """
    index, _ = _calendar_periods(periods)
    levels = {"month": range(1, 13), "quarter": range(1, 5)}.get(season)
    if levels is None:
        raise ClvDataError(f"season must be 'month' or 'quarter', got {season!r}.")
    if drop not in levels:
        raise ClvDataError(f"drop must be one of the levels {list(levels)}, got {drop!r}.")
    of = index.month if season == "month" else index.quarter
    out = pd.DataFrame({f"{season}[{v}]": (of == v).astype(float) for v in levels if v != drop}, index=index)
    out.attrs["dropped"] = f"{season}[{drop}]"
    return out


def fourier_terms(periods, period: float = 365.25, order: int = 1, name: str = "fourier") -> pd.DataFrame:
    """Fourier terms of a cycle of ``period`` days: ``sin(2πk u/period)`` and ``cos(...)`` for ``k = 1..order``.

    ``u`` is the time in days since 1970-01-01; each grid period holds the term's mean over the period
    (exactly: ``(cos ω u₀ − cos ω u₁) / (ω (u₁ − u₀))`` for the sine), so a grid period as long as the
    cycle averages to 0. Columns ``{name}_sin{k}``, ``{name}_cos{k}``; a calendar table indexed by the
    period starts.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ClvDataError(f"order must be a whole number of at least 1, got {order!r}.")
    if not np.isfinite(period) or period <= 0:
        raise ClvDataError(f"period must be a positive number of days, got {period!r}.")
    index, edges = _calendar_periods(periods)
    u0, u1 = edges[:-1] / NS_PER_DAY, edges[1:] / NS_PER_DAY
    out = {}
    for k in range(1, int(order) + 1):
        w = 2 * np.pi * k / period
        out[f"{name}_sin{k}"] = (np.cos(w * u0) - np.cos(w * u1)) / (w * (u1 - u0))
        out[f"{name}_cos{k}"] = (np.sin(w * u1) - np.sin(w * u0)) / (w * (u1 - u0))
    return pd.DataFrame(out, index=index)


def holiday_windows(periods, dates, before: float = 0, after: float = 0, name: str = "holiday") -> pd.DataFrame:
    """Indicator of the periods overlapping a window ``[date − before, date + after]`` (days) round any
    of ``dates`` (each date a whole day). One column ``name``; a calendar table indexed by the period starts.
    """
    if before < 0 or after < 0:
        raise ClvDataError(f"before and after are days (at least 0), got before={before!r}, after={after!r}.")
    index, edges = _calendar_periods(periods)
    days = pd.to_datetime(pd.Index(dates), errors="coerce")
    if days.isna().any():
        raise ClvDataError(f"holiday dates must be dates, got {list(pd.Index(dates)[days.isna()][:5])}.")
    lo = _ns(days.normalize()) - int(round(before * NS_PER_DAY))
    hi = _ns(days.normalize()) + int(round((after + 1) * NS_PER_DAY))  # the window's days, half-open
    overlap = (lo[None, :] < edges[1:, None]) & (hi[None, :] > edges[:-1, None])
    return pd.DataFrame({name: overlap.any(axis=1).astype(float)}, index=index)


# ---------------------------------------------------------------------------- pieces
def _period_of(edges: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """The grid period containing each time (−1 before the grid, ``G`` from its end on)."""
    return np.searchsorted(edges, ns, side="right") - 1


def _uncovered(path: CovariatePath, rows, lo, hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whether each customer's grid periods ``lo..hi`` (inclusive) reach outside the periods her rows of
    ``path`` give; and those rows' first and last periods."""
    first = path.first[rows]
    last = first + path.count[rows] - 1
    return (lo < first) | (hi > last), first, last


def _check_covered(path: CovariatePath, rows, lo, hi, ids: pd.Index, what: str, a, b) -> None:
    """Each customer's grid periods ``lo..hi`` (inclusive; her window ``[a, b]``, ns) are given; else an
    error naming the customers, their windows and the first period missing."""
    short, first, last = _uncovered(path, rows, lo, hi)
    if not short.any():
        return
    bad = np.flatnonzero(short)[:5]
    need = np.where(lo[bad] < first[bad], lo[bad], np.maximum(last[bad] + 1, lo[bad]))
    n_grid = len(path.edges) - 1
    period = [("before the grid" if j < 0 else "after the grid") if not 0 <= j < n_grid
              else _dates(path.edges[j:j + 1])[0] for j in need]
    examples = pd.DataFrame({"customer": ids[bad], "window_from": _dates(a[bad]), "window_to": _dates(b[bad]),
                             "first_period_missing": period})
    whose = "the calendar" if path.customers is None else "their panel rows"
    raise ClvDataError(
        f"{int(short.sum()):,} customer(s) are not covered by {whose} over {what} (grid {path.freq!r} from "
        f"{_dates(path.edges[:1])[0]} to {_dates(path.edges[-1:])[0]}): give every period from the customer's "
        f"first purchase to the end of the window.\nExamples:\n{examples.to_string(index=False)}")


def _pieces(path: CovariatePath, rows, a: np.ndarray, b: np.ndarray, cut: np.ndarray | None,
            origin: np.ndarray, unit_ns: float, ids: pd.Index, what: str, closed: bool = False) -> ExposurePieces:
    """The pieces of each customer's window ``[a, b)`` (ns) cut at the grid's boundaries (and at ``cut``
    when it lies inside), on her clock ``(t − origin) / unit_ns``. ``closed``: the period containing
    ``b`` must be given too (a purchase at the end of the window reads it)."""
    n = len(a)
    ja = _period_of(path.edges, a)
    jb = _period_of(path.edges, b - 1)
    empty = b <= a
    need = ~empty | closed
    if need.any():
        hi = _period_of(path.edges, b) if closed else jb
        _check_covered(path, rows[need], ja[need], hi[need], ids[need], what, a[need], b[need])
    count = np.where(empty, 0, jb - ja + 1)
    if cut is not None:   # a cut inside the window, off the grid's boundaries, adds a piece
        jc = _period_of(path.edges, cut)
        inside = (cut > a) & (cut < b) & (path.edges[np.clip(jc, 0, None)] != cut)
        count += inside
    m = int(count.sum())
    customer = np.repeat(np.arange(n, dtype=np.int64), count)
    first_piece = np.cumsum(count) - count
    # each piece's grid period; the inner boundaries are the grid's, the outer ones the window's
    j = np.arange(m, dtype=np.int64)
    j -= np.repeat(first_piece - ja, count)
    if cut is not None and inside.any():
        at_cut = (first_piece + jc - ja)[inside]          # the piece ending at the cut
        later = np.zeros(m + 1, dtype=np.int64)           # the customer's pieces after it: one period less
        later[at_cut + 1] += 1
        later[(first_piece + count)[inside]] -= 1
        j -= np.cumsum(later[:-1])
    s = path.edges[j]
    e = path.edges[1:][j]
    some = count > 0
    s[first_piece[some]] = a[some]
    e[(first_piece + count - 1)[some]] = b[some]
    if cut is not None and inside.any():
        e[at_cut] = cut[inside]
        s[at_cut + 1] = cut[inside]
    if path.customers is not None:   # a panel: the customer's rows; a calendar's row is the period
        j += np.repeat((path.offset - path.first)[rows], count)
    z = path.values[j]
    del j                            # (the temporaries go as soon as used: 10M pieces are 80 MB an array)
    e -= s
    length = e / unit_ns
    del e
    s -= np.repeat(origin, count)
    return ExposurePieces(columns=path.columns, customer=customer, start=s / unit_ns, length=length, z=z,
                          n_customers=n)


# ---------------------------------------------------------------------------- summaries
def _purchase_periods(log: pd.DataFrame, res: str, customers: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """The distinct purchase periods (as counted in ``frequency``) of the customers of ``customers`` (an
    RFM table's index): each one's row in the table and start (ns), sorted by row and time."""
    codes, uniques = factorize_ids(log[CUSTOMER])
    hours = period_hours(log[TIMESTAMP].to_numpy(), res)
    lo = int(hours.min())
    span = int(hours.max()) - lo + 1
    key = np.unique(codes.astype(np.int64) * span + (hours - lo))
    owner = key // span
    row = customers.get_indexer(uniques)[owner]     # -1: not in the table (a join may drop customers)
    kept = row >= 0
    return row[kept], ((key - owner * span + lo) * NS_PER_HOUR)[kept]


def _summary_from_periods(rfm: pd.DataFrame, path: CovariatePath, row: np.ndarray, when: np.ndarray,
                          end_hours: int) -> TimeVaryingSummary:
    """The :class:`TimeVaryingSummary` of ``rfm``'s customers from their distinct purchase periods (``row``
    in ``rfm``, start ``when`` in ns; all before the period starting at ``end_hours``)."""
    if np.any(np.diff(row) < 0) or np.any((np.diff(row) == 0) & (np.diff(when) <= 0)):
        order = np.lexsort((when, row))
        row, when = row[order], when[order]
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    if not np.array_equal(row[first], np.arange(len(rfm))):   # pragma: no cover - the summaries' own invariant
        raise ClvDataError("Internal error: every customer of the RFM table needs her purchase periods.")
    first_ns = when[first]
    last_ns = when[np.r_[first[1:], len(when)] - 1]
    end_ns = np.full(len(rfm), end_hours * NS_PER_HOUR, dtype=np.int64)
    rows = path.rows_of(rfm.index)
    pieces = _pieces(path, rows, first_ns, end_ns, last_ns, first_ns, unit_days(rfm.attrs["time_unit"]) * NS_PER_DAY,
                     rfm.index, "the calibration window", closed=True)
    # z at each repeat purchase (a customer's distinct periods after her first), summed per customer
    repeat = np.ones(len(when), dtype=bool)
    repeat[first] = False
    who = row[repeat]
    z = path.values[path.offset[rows][who] + _period_of(path.edges, when[repeat]) - path.first[rows][who]]
    purchase_z = np.zeros((len(rfm), len(path.columns)))
    for k in range(len(path.columns)):
        purchase_z[:, k] = np.bincount(who, weights=z[:, k], minlength=len(rfm))
    return TimeVaryingSummary(pieces=pieces, purchase_z=purchase_z)


def _require_path(covariates) -> None:
    """A :class:`CovariatePath`, or an error saying how to build one."""
    if not isinstance(covariates, CovariatePath):
        raise ClvDataError("covariates must be a CovariatePath: build it with covariate_panel(table) or "
                           "covariate_calendar(table).")


def timevarying_summary(transactions, covariates: CovariatePath, observation_end=None, time_unit: str = "W", *,
                        resolution: str = "D", truncate: bool = False, **kwargs) -> tuple[pd.DataFrame, TimeVaryingSummary]:
    """The RFM table of a transaction log and its :class:`~clvmodels.exposure.TimeVaryingSummary`.

    Parameters
    ----------
    transactions, observation_end, time_unit, resolution, truncate
        As for :func:`~clvmodels.rfm.rfm_summary` (purchases in one period of ``resolution`` count once).
    covariates
        A :class:`CovariatePath` (:func:`covariate_panel` or :func:`covariate_calendar`) that covers
        every customer from her first purchase to the observation end.
    kwargs
        Further arguments of :func:`~clvmodels.rfm.rfm_summary` (static ``covariates`` are passed as
        ``static_covariates=``, with ``covariate_id``, ``missing_covariates``) and of
        :func:`~clvmodels.data.load_transactions` (column names).

    Returns
    -------
    ``(rfm, summary)``: the table :func:`~clvmodels.rfm.rfm_summary` returns, and the pieces of each
    customer's window ``[0, T]`` cut at the grid's boundaries and at ``recency`` with ``purchase_z``, the
    sum of ``z`` at her repeat purchases (after the merging that defines ``frequency``), rows in the
    table's order.
    """
    _require_path(covariates)
    rfm_args, load_args = _split_kwargs(kwargs)
    log = as_log(transactions, **load_args)
    rfm = rfm_summary(log, observation_end, time_unit, resolution=resolution, truncate=truncate, **rfm_args)
    res = resolve_resolution(resolution)
    end = pd.Timestamp(rfm.attrs["observation_end"])
    observed = log[TIMESTAMP].to_numpy() <= period_end(end, res)
    row, when = _purchase_periods(log.loc[observed] if not observed.all() else log, res, rfm.index)
    return rfm, _summary_from_periods(rfm, covariates, row, when, period_start_hours(end, res))


def timevarying_holdout(transactions, covariates: CovariatePath, calibration_end, observation_end=None,
                        time_unit: str = "W", *, resolution: str = "D", truncate: bool = False,
                        **kwargs) -> tuple[pd.DataFrame, TimeVaryingSummary]:
    """:func:`~clvmodels.rfm.calibration_holdout`'s table and the calibration period's
    :class:`~clvmodels.exposure.TimeVaryingSummary` (rows in the table's order).

    The covariates must cover every customer from her first purchase to the calibration end; the
    holdout window's pieces are :func:`future_exposure` ``(table, covariates, table["duration_holdout"])``.
    """
    _require_path(covariates)
    rfm_args, load_args = _split_kwargs(kwargs)
    log = as_log(transactions, **load_args)
    table = calibration_holdout(log, calibration_end, observation_end, time_unit, resolution=resolution,
                                truncate=truncate, **rfm_args)
    res = resolve_resolution(resolution)
    end = pd.Timestamp(table.attrs["calibration_end"])
    in_cal = log[TIMESTAMP].to_numpy() <= period_end(end, res)
    row, when = _purchase_periods(log.loc[in_cal], res, table.index)
    return table, _summary_from_periods(table, covariates, row, when, period_start_hours(end, res))


def timevarying_summary_duckdb(source, covariates: CovariatePath, observation_end=None, time_unit: str = "W", *,
                               calibration_end=None, **kwargs) -> tuple[pd.DataFrame, TimeVaryingSummary]:
    """:func:`timevarying_summary` (or, with ``calibration_end``, :func:`timevarying_holdout`) of a large log
    read by DuckDB out of core (:func:`~clvmodels.scale.rfm_summary_duckdb`: Parquet or CSV files, same
    definitions, the same keyword arguments). DuckDB reduces the log to the customers' distinct purchase
    periods; the pieces are then built as on the pandas path, so both give the same summaries."""
    from .scale import _run

    _require_path(covariates)
    table, periods = _run(source, observation_end=observation_end, calibration_end=calibration_end,
                          time_unit=time_unit, periods=True, **kwargs)
    row = table.index.get_indexer(pd.Index(periods["cid"].to_numpy()))
    when = periods["pkey"].to_numpy(dtype=np.int64) * NS_PER_HOUR
    return table, _summary_from_periods(table, covariates, row, when, _end_hours(table))


def _split_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """The summary's own arguments (static covariates renamed from ``static_covariates``) and the loader's."""
    rfm_args = {k: kwargs.pop(k) for k in ("covariate_id", "missing_covariates", "litt") if k in kwargs}
    if "static_covariates" in kwargs:
        rfm_args["covariates"] = kwargs.pop("static_covariates")
    return rfm_args, kwargs


def first_purchase(rfm: pd.DataFrame) -> np.ndarray:
    """Each customer's first purchase period start (datetime64[ns]) from an RFM table's ``T`` and its end
    of observation (``attrs["calibration_end"]``, else ``attrs["observation_end"]``, at ``attrs["resolution"]``)."""
    missing = [k for k in ("time_unit", "resolution", "observation_end") if k not in rfm.attrs]
    if missing or "T" not in rfm.columns:
        raise ClvDataError(f"The RFM table lacks {missing or ['its column T']}: build it with rfm_summary or "
                           "calibration_holdout, which record the time unit, resolution and end of observation.")
    hours = _end_hours(rfm) - np.rint(rfm["T"].to_numpy(dtype=float) * unit_days(rfm.attrs["time_unit"]) * 24.0)
    return (hours.astype(np.int64) * NS_PER_HOUR).astype("datetime64[ns]")


def _end_hours(rfm: pd.DataFrame) -> int:
    """Start of the RFM table's last observed period (its calibration end, if any), in hours since the epoch."""
    end = pd.Timestamp(rfm.attrs.get("calibration_end", rfm.attrs["observation_end"]))
    return period_start_hours(end, resolve_resolution(rfm.attrs["resolution"]))


def _duration_ns(t: np.ndarray, unit: str) -> np.ndarray:
    """Lengths ``t`` in ``unit`` as nanoseconds, rounded to the second (so that whole days stay exact)."""
    return np.rint(np.asarray(t, dtype=float) * (unit_days(unit) * 86_400.0)).astype(np.int64) * 10**9


def future_exposure(rfm: pd.DataFrame, covariates: CovariatePath, t) -> ExposurePieces:
    """The pieces of each customer's future window ``(T_i, T_i + t]`` (rows of ``rfm``, in its unit),
    cut at the grid's boundaries, on her own clock (0 = first purchase): what forecasts read.

    ``t``: a length in the table's unit, one for all customers or one per row. The covariates must cover
    every customer over the window (errors name customers and periods).
    """
    t = np.broadcast_to(np.asarray(t, dtype=float), (len(rfm),))
    if not np.all(np.isfinite(t)) or (t < 0).any():
        raise ClvDataError("The prediction window t must be finite lengths of at least 0.")
    origin = first_purchase(rfm).view(np.int64)
    unit = normalize_unit(rfm.attrs["time_unit"])
    a = np.full(len(rfm), _end_hours(rfm) * NS_PER_HOUR, dtype=np.int64)   # T_i after each first purchase
    b = a + _duration_ns(t, unit)
    unit_ns = unit_days(unit) * NS_PER_DAY
    return _pieces(covariates, covariates.rows_of(rfm.index), a, b, None, origin, unit_ns, rfm.index,
                   "the prediction window")


def forecast_summary(rfm: pd.DataFrame, covariates: CovariatePath) -> TimeVaryingSummary:
    """The calibration pieces of an RFM table's customers, built from the table alone (each one's window
    ``[0, T]`` from her first purchase, :func:`first_purchase`, cut at ``recency``): what forecasts read
    (P(alive) and the expectations depend on the history through the integrals over these pieces).
    ``purchase_z`` is ``None``: a fit refuses the summary (it needs :func:`timevarying_summary` of the log).
    The covariates must cover every customer from her first purchase to ``T`` (errors name them)."""
    origin = first_purchase(rfm).view(np.int64)
    unit_ns = unit_days(rfm.attrs["time_unit"]) * NS_PER_DAY
    end = np.full(len(rfm), _end_hours(rfm) * NS_PER_HOUR, dtype=np.int64)
    cut = origin + _duration_ns(rfm["recency"].to_numpy(dtype=float), rfm.attrs["time_unit"])
    pieces = _pieces(covariates, covariates.rows_of(rfm.index), origin, end, cut, origin, unit_ns, rfm.index,
                     "the calibration window", closed=True)
    return TimeVaryingSummary(pieces=pieces, purchase_z=None)


def coverage_problems(rfm: pd.DataFrame, covariates: CovariatePath, t) -> pd.Series:
    """Why each customer of ``rfm`` cannot be forecast over ``(T, T + t]`` with ``covariates`` (empty
    string when she can): no row in the panel, or periods missing between her first purchase and the
    end of the window, as :func:`forecast_summary` and :func:`future_exposure` need them."""
    origin = first_purchase(rfm).view(np.int64)
    observed = _end_hours(rfm) * NS_PER_HOUR          # T: its period is read too (as the summaries do)
    end = observed + _duration_ns(np.broadcast_to(np.asarray(t, dtype=float), (len(rfm),)), rfm.attrs["time_unit"])
    lo = _period_of(covariates.edges, origin)
    hi = np.maximum(_period_of(covariates.edges, end - 1), _period_of(covariates.edges, np.full(len(rfm), observed)))
    reason = np.full(len(rfm), "", dtype=object)
    rows = covariates.entries(rfm.index)
    reason[rows < 0] = "no row in the covariate panel"
    short = (rows >= 0) & _uncovered(covariates, np.maximum(rows, 0), lo, hi)[0]
    if covariates.customers is None:
        whose = f"the calendar ({_dates(covariates.edges[:1])[0]} to {_dates(covariates.edges[-1:])[0]})"
    else:
        whose = "her panel rows"
    reason[short] = f"not covered by {whose} from her first purchase to the end of the window"
    return pd.Series(reason, index=rfm.index, name="reason")


def new_customer_exposure(covariates: CovariatePath, born, t, time_unit: str = "W", *,
                          customers=None) -> ExposurePieces:
    """The pieces of the window ``[0, t]`` of new customers whose first purchase is at ``born`` (dates,
    one per customer), from a calendar, in ``time_unit``: what the expected purchases of a new customer
    read. From a panel, ``customers`` names whose rows each window reads (one id per ``born``)."""
    if covariates.customers is not None and customers is None:
        raise ClvDataError("A new customer has no panel rows: pass a calendar (covariate_calendar), or the ids "
                           "of the panel's customers whose paths to read (customers=).")
    born = pd.DatetimeIndex(pd.to_datetime(np.atleast_1d(born)))
    unit = normalize_unit(time_unit)
    t = np.broadcast_to(np.asarray(t, dtype=float), (len(born),))
    if not np.all(np.isfinite(t)) or (t < 0).any():
        raise ClvDataError("The window t must be finite lengths of at least 0.")
    a = _ns(born)
    b = a + _duration_ns(t, unit)
    unit_ns = unit_days(unit) * NS_PER_DAY
    ids = pd.Index(born.astype(str)) if customers is None else pd.Index(customers)
    if len(ids) != len(a):
        raise ClvDataError(f"customers= names {len(ids):,} customers for {len(a):,} first purchases (born).")
    return _pieces(covariates, covariates.rows_of(ids), a, b, None, a, unit_ns, ids, "the window")


__all__ = ["CovariatePath", "covariate_calendar", "covariate_panel", "coverage_problems", "first_purchase",
           "forecast_summary", "fourier_terms", "future_exposure", "holiday_windows", "new_customer_exposure", "seasonal_dummies",
           "timevarying_holdout", "timevarying_summary", "timevarying_summary_duckdb"]
