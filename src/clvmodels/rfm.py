"""RFM summaries (frequency, recency, age T, mean spend) and calibration/holdout splits.

Definitions follow Fader, Hardie & Lee (2005): purchases within one period of the chosen
``resolution`` (a day by default) count as one transaction whose value is their sum; ``frequency``
is the number of such transactions after the first (repeat purchases); ``recency`` is the time from
the first to the last transaction; ``T`` the time from the first transaction to the end of
observation; ``monetary_value`` the mean value of the repeat transactions (0 when there are none).
Durations are measured between the starts of the periods and expressed in ``time_unit``.

The computation is linear in the number of rows: customers are coded by
:func:`~clvmodels.data.factorize_ids`, rows grouped by customer with a counting sort
(:func:`~clvmodels.data.group_order`), and first/last/distinct periods read off in one pass; no
per-customer Python code and no hashing of (customer, period) pairs.

Chunked logs
------------
A summary depends on each customer's whole history, so summaries of arbitrary row chunks cannot be
added up (one day of a customer may lie in two chunks). Two ways are exact and tested:

* split the log **by customer** (every customer's rows in one chunk): the chunks' summaries, with
  the same ``observation_end``, concatenate into the summary of the whole log
  (``pd.concat(parts).sort_index()``);
* split it **any way**: load each chunk with :func:`~clvmodels.data.load_transactions`,
  concatenate the loaded chunks and summarise once (the summary ignores row order).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .data import AMOUNT, CUSTOMER, TIMESTAMP, as_log, factorize_ids, group_order, naive_timestamp
from .errors import ClvDataError, data_error
from .periods import period_end, period_hours, period_label, period_start_hours, resolve_resolution
from .units import normalize_unit, unit_days

#: Repeat spend is summed in units of 2**32 (each amount times 2**-32, exact in binary floating
#: point): a customer's total cannot overflow, and its mean comes out bit for bit as the plain
#: sum / frequency wherever that sum is finite (amounts below about 1e-298 aside). Every engine
#: sums ``amount * SPEND_SCALE`` into ``repeat_value_scaled``; :func:`rfm_from_aggregates` takes the mean.
SPEND_SCALE = 2.0 ** -32


def _summarise(codes: np.ndarray, hours: np.ndarray, amount: np.ndarray | None, n_customers: int,
               litt: bool = False) -> dict:
    """Per-customer first/last period (hours), number of distinct periods and repeat-purchase spend;
    with ``litt`` also ``log_gap_hours``, the sum of the logs of the gaps (in hours) between her
    consecutive distinct periods.

    ``codes`` are ``0..n_customers-1`` and every customer has at least one row.
    """
    order, counts = group_order(codes, n_customers)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo = int(hours.min())
    span = int(hours.max()) - lo + 1
    # (customer, period) keys, put in customer order by the counting sort; sorting within
    # customers is then cheap (timsort on nearly sorted data)
    key = codes * np.int64(span)
    key += hours
    key -= lo
    key = key[order]
    del order
    key.sort(kind="stable")
    base = np.arange(n_customers, dtype=np.int64) * span - lo
    first = key[starts] - base
    last = key[ends - 1] - base
    new_period = np.empty(len(key), dtype=bool)
    new_period[0] = True
    np.not_equal(key[1:], key[:-1], out=new_period[1:])
    distinct = key[new_period] if litt else None
    del key
    n_periods = np.add.reduceat(new_period.view(np.int8), starts, dtype=np.int64)
    out = {"first": first, "last": last, "n_periods": n_periods}
    if litt:
        owner = distinct // span                     # the customer's code (key = code * span + hours − lo)
        gap = np.diff(distinct)
        same = owner[1:] == owner[:-1]
        out["log_gap_hours"] = np.bincount(owner[1:][same], weights=np.log(gap[same]), minlength=n_customers)
    if amount is not None:
        # summed directly (not total minus first period): exact even beside a huge first purchase
        repeat = hours != first[codes]
        out["repeat_value_scaled"] = np.bincount(codes, weights=np.where(repeat, amount * SPEND_SCALE, 0.0),
                                                 minlength=n_customers)
    return out


def rfm_from_aggregates(s: dict, end_hours: int, unit: str, index: pd.Index, has_amount: bool) -> pd.DataFrame:
    """The RFM frame from per-customer aggregates: the arithmetic every engine shares.

    ``s`` holds arrays aligned with ``index``: ``first`` and ``last`` (start of the first and last
    purchase period, in hours since the epoch), ``n_periods`` (distinct purchase periods) and, when
    ``has_amount``, ``repeat_value_scaled`` (the spend of the periods after the first, times
    :data:`SPEND_SCALE`), as :func:`_summarise`, the DuckDB and the Spark engines compute them.
    ``end_hours``: start of the last observed period. When ``s`` holds ``log_gap_hours`` (the sum of
    the logs of the gaps between consecutive distinct purchase periods, in hours), the frame gets
    ``litt``, the sum of the logs of the inter-purchase times in ``unit`` (Platzer & Reutterer 2016).
    """
    scale = 1.0 / unit_days(unit)
    frequency = s["n_periods"] - 1
    out = pd.DataFrame(
        {
            "frequency": frequency.astype(np.int64),
            "recency": (s["last"] - s["first"]) / 24.0 * scale,
            "T": (end_hours / 24.0 - s["first"] / 24.0) * scale,
        },
        index=index,
    )
    if "log_gap_hours" in s:
        out["litt"] = s["log_gap_hours"] + frequency * np.log(scale / 24.0)
    if has_amount:
        with np.errstate(over="ignore"):  # a mean beyond the float range is reported just below
            out["monetary_value"] = s["repeat_value_scaled"] / np.maximum(frequency, 1) / SPEND_SCALE
        check_finite_spend(out["monetary_value"], "mean repeat-transaction value")
    return out


def check_finite_spend(values: pd.Series, what: str) -> None:
    """Raise a :class:`ClvDataError` naming the customers whose ``values`` (indexed by customer)
    are beyond the largest float: a summary never holds ``inf``."""
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        examples = ", ".join(repr(c) for c in values.index[bad][:5].tolist())
        raise ClvDataError(
            f"{int(bad.sum()):,} customer(s) have a {what} beyond the largest representable number "
            f"(about 1.8e308), e.g. customer(s) {examples}. Amounts this large are usually placeholders "
            "or in the wrong unit: fix or remove these customers' rows, or rescale all amounts "
            "(e.g. to thousands)."
        )


def _observation_end(log: pd.DataFrame, value, name: str) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp(log[TIMESTAMP].to_numpy().max())
    return naive_timestamp(value, log.attrs.get("timezone"), name)


def _drop_late(log: pd.DataFrame, end: pd.Timestamp, res: str, truncate: bool) -> pd.DataFrame:
    """The rows up to the end of the period containing ``end``; later rows are an error unless ``truncate``."""
    late = log[TIMESTAMP].to_numpy() > period_end(end, res)
    if late.any():
        if not truncate:
            raise data_error(
                f"Transactions after the observation end {end}", column=TIMESTAMP,
                rows=log.loc[late], fix="Pass truncate=True to ignore them, or a later observation_end.",
            )
        log = log.loc[~late]
        if len(log) == 0:
            raise ClvDataError(f"No transactions on or before the observation end {end}.")
    return log


def rfm_summary(
    transactions,
    observation_end=None,
    time_unit: str = "W",
    *,
    resolution: str = "D",
    truncate: bool = False,
    covariates: pd.DataFrame | None = None,
    covariate_id: str | None = None,
    missing_covariates: str = "error",
    litt: bool = False,
    **load_kwargs,
) -> pd.DataFrame:
    """Per-customer RFM summary of a transaction log.

    Parameters
    ----------
    transactions
        A log returned by :func:`~clvmodels.data.load_transactions`, or anything it accepts
        (then pass its column arguments here, e.g. ``customer_id="id"``).
    observation_end
        End of observation (inclusive: the whole period containing it is observed). Defaults to
        the last timestamp of the log. A time-zone-aware value is converted to the log's time zone.
    time_unit
        Unit of ``recency`` and ``T``: ``"D"``, ``"W"`` (default, as in the papers), ``"M"``, ...
    resolution
        Purchases within one period of this length count as one transaction (``"D"``: same-day
        repeats are one purchase, as in the papers; ``"h"`` or ``"W"`` (weeks from Monday) also
        possible).
    truncate
        Transactions after ``observation_end`` raise an error unless ``truncate=True``, which
        ignores them.
    covariates, covariate_id, missing_covariates
        A customer-level table of covariates to join by customer id (its index, or its column
        ``covariate_id``); see :func:`join_covariates`.
    litt
        Add ``litt``, the sum of the logs of the inter-purchase times in ``time_unit`` (between the
        customer's distinct purchase periods, as counted in ``frequency``; 0 without repeat purchases):
        the regularity summary of the (M)BG/CNBD-k models (Platzer & Reutterer 2016).

    Returns
    -------
    DataFrame indexed by customer id (sorted; dtype as in the log), with ``frequency`` (int),
    ``recency``, ``T`` (``litt`` when asked for) and, when the log has amounts, ``monetary_value``. ``attrs`` records the
    time unit, resolution and observation end. A mean spend beyond the float range (about
    1.8e308) raises a :class:`~clvmodels.errors.ClvDataError` naming the customers: a summary
    never holds ``inf``.
    """
    log = as_log(transactions, **load_kwargs)
    unit = normalize_unit(time_unit)
    res = resolve_resolution(resolution)
    end = _observation_end(log, observation_end, "observation_end")
    log = _drop_late(log, end, res, truncate)
    codes, uniques = factorize_ids(log[CUSTOMER])
    has_amount = AMOUNT in log.columns
    s = _summarise(codes, period_hours(log[TIMESTAMP].to_numpy(), res),
                   log[AMOUNT].to_numpy(dtype=float) if has_amount else None, len(uniques), litt)
    out = rfm_from_aggregates(s, period_start_hours(end, res), unit, uniques, has_amount)
    out.attrs.update(time_unit=unit, resolution=res, observation_end=period_label(end, res))
    return out if covariates is None else join_covariates(out, covariates, covariate_id, missing_covariates)


def covariate_index(covariates: pd.DataFrame, id_column: str | None = None) -> pd.DataFrame:
    """The customer-level covariate table indexed by its ids as text (its index, or its column
    ``id_column``); a duplicated id is an error."""
    table = covariates if id_column is None else covariates.set_index(id_column)
    keys = pd.Index(table.index.astype(str), name=table.index.name)
    duplicated = keys.duplicated(keep=False)
    if duplicated.any():
        raise data_error("The covariate table has more than one row per customer", column=id_column or "index",
                         rows=table.loc[duplicated].head(), n_rows=int(duplicated.sum()),
                         fix="Keep one row per customer (static covariates).")
    return table.set_axis(keys)


def join_covariates(rfm: pd.DataFrame, covariates: pd.DataFrame, id_column: str | None = None,
                    missing: str = "error") -> pd.DataFrame:
    """``rfm`` with the columns of the customer-level table ``covariates`` joined by customer id.

    Ids are labels: they match by their text (``1`` and ``"1"`` are one customer). The key is the
    column ``id_column`` of ``covariates``, else its column named as ``rfm``'s index (e.g.
    ``customer_id``) where its index is pandas' default row numbers, else its index (both: an error,
    never a join on row numbers); a duplicated id is an error. Customers of
    ``rfm`` without a covariate row are an error naming how many and which (``missing="drop"``
    leaves them out instead, with a warning, counted in ``attrs["n_without_covariates"]``); rows
    of ``covariates`` for customers not in ``rfm`` are counted in ``attrs["n_covariates_unmatched"]``.
    Nothing is dropped silently.
    """
    if missing not in ("error", "drop"):
        raise ClvDataError(f"missing_covariates must be 'error' or 'drop', got {missing!r}.")
    name = rfm.index.name
    if id_column is None and name is not None and name in covariates.columns:
        # the ids are a column, as in a table read from a file: its default row numbers are no ids
        if not (isinstance(covariates.index, pd.RangeIndex) and covariates.index.name is None):
            raise ClvDataError(f"The covariate table has both an index ({covariates.index.name or 'unnamed'}) and a "
                               f"column {name!r}: say which holds the customer ids, covariate_id={name!r} or its "
                               "index without that column.")
        id_column = name
    table = covariate_index(covariates, id_column)
    keys = table.index
    clash = [c for c in table.columns if c in rfm.columns]
    if clash:
        raise ClvDataError(f"Covariate columns {clash} are also columns of the RFM summary: rename them.")
    ids = pd.Index(rfm.index.astype(str))
    position = keys.get_indexer(ids)
    lacking = position < 0
    n_unmatched = int(len(keys) - keys.isin(ids).sum())
    if lacking.any() and missing == "error":
        raise data_error("Customers of the RFM summary have no row in the covariate table", n_rows=int(lacking.sum()),
                         rows=rfm.loc[lacking].head(), fix="Add their covariates, or pass missing_covariates='drop' to "
                         "leave them out of the summary (counted in attrs['n_without_covariates']).")
    out = rfm.loc[~lacking].copy() if lacking.any() else rfm.copy()
    joined = table.iloc[position[~lacking]]
    for c in table.columns:
        out[c] = joined[c].to_numpy()
    out.attrs.update(rfm.attrs, n_without_covariates=int(lacking.sum()), n_covariates_unmatched=n_unmatched)
    if lacking.any():
        warnings.warn(f"{int(lacking.sum()):,} customers have no covariates and are left out of the summary "
                      f"(attrs['n_without_covariates']); {n_unmatched:,} covariate rows match no customer.",
                      UserWarning, stacklevel=3)
    return out


def calibration_holdout(
    transactions,
    calibration_end,
    observation_end=None,
    time_unit: str = "W",
    *,
    resolution: str = "D",
    truncate: bool = False,
    covariates: pd.DataFrame | None = None,
    covariate_id: str | None = None,
    missing_covariates: str = "error",
    litt: bool = False,
    **load_kwargs,
) -> pd.DataFrame:
    """Calibration-period RFM summary plus each customer's actual holdout behaviour.

    The calibration period runs to the end of the period containing ``calibration_end``; the holdout
    from there to the end of the period containing ``observation_end`` (default: the last timestamp
    of the log).

    Returns
    -------
    DataFrame indexed by customer id with the calibration columns of :func:`rfm_summary` (with
    ``litt=True`` its ``litt``, over the calibration period), plus
    ``frequency_holdout`` (number of distinct purchase periods in the holdout), ``value_holdout``
    (the customer's actual spend in the holdout: the sum of its amounts, when the log has amounts)
    and ``duration_holdout`` (holdout length in ``time_unit``, between period starts). Customers
    whose first purchase falls after the calibration end cannot be scored from calibration data:
    they are excluded and counted in ``attrs["n_excluded_new_customers"]``. ``covariates``: a
    customer-level table joined by id (see :func:`join_covariates`).
    """
    log = as_log(transactions, **load_kwargs)
    res = resolve_resolution(resolution)
    unit = normalize_unit(time_unit)
    cal_end = naive_timestamp(calibration_end, log.attrs.get("timezone"), "calibration_end")
    obs_end = _observation_end(log, observation_end, "observation_end")
    if obs_end < cal_end:
        raise ClvDataError(f"observation_end {obs_end} is before calibration_end {cal_end}.")
    log = _drop_late(log, obs_end, res, truncate)
    ts = log[TIMESTAMP].to_numpy()
    in_cal = ts <= period_end(cal_end, res)
    if not in_cal.any():
        raise ClvDataError(f"No transactions on or before the calibration end {cal_end}: choose a later one.")
    codes, uniques = factorize_ids(log[CUSTOMER])
    hours = period_hours(ts, res)
    has_amount = AMOUNT in log.columns
    amount = log[AMOUNT].to_numpy(dtype=float) if has_amount else None

    # customers seen in the calibration period, coded 0..n_cal-1 in id order
    known = np.bincount(codes[in_cal], minlength=len(uniques)) > 0
    cal_code = np.cumsum(known) - 1
    n_cal = int(known.sum())
    c_cal = cal_code[codes[in_cal]]
    s = _summarise(c_cal, hours[in_cal], amount[in_cal] if has_amount else None, n_cal, litt)
    out = rfm_from_aggregates(s, period_start_hours(cal_end, res), unit, uniques[known], has_amount)

    hold = ~in_cal
    n_new = int(np.count_nonzero(np.bincount(codes[hold], minlength=len(uniques))[~known]))
    hold &= known[codes]
    c_hold = cal_code[codes[hold]]
    freq_h = np.zeros(n_cal, dtype=np.int64)
    if len(c_hold):
        # distinct holdout periods: _summarise over the customers with holdout rows
        with_rows = np.bincount(c_hold, minlength=n_cal) > 0
        rank = np.cumsum(with_rows) - 1
        freq_h[with_rows] = _summarise(rank[c_hold], hours[hold], None, int(with_rows.sum()))["n_periods"]
    out["frequency_holdout"] = freq_h
    if has_amount:
        out["value_holdout"] = np.bincount(c_hold, weights=amount[hold], minlength=n_cal)
        check_finite_spend(out["value_holdout"], "holdout spend")
    out["duration_holdout"] = (period_start_hours(obs_end, res) - period_start_hours(cal_end, res)) / 24.0 / unit_days(unit)
    out.attrs.update(time_unit=unit, resolution=res, calibration_end=period_label(cal_end, res),
                     observation_end=period_label(obs_end, res), n_excluded_new_customers=n_new)
    return out if covariates is None else join_covariates(out, covariates, covariate_id, missing_covariates)


# ---------------------------------------------------------------------------- discrete opportunities
def bgbb_summary(transactions, period: str = "Y", observation_end=None, **load_kwargs) -> pd.DataFrame:
    """Discrete-time summary of a transaction log for BG/BB: one opportunity per calendar period.

    A customer's first period (her first transaction) is opportunity 0; each later period up to
    the one containing ``observation_end`` is an opportunity. Several transactions in one period
    count as one.

    Parameters
    ----------
    transactions
        A log from :func:`clvmodels.load_transactions`, or anything it accepts (then pass its
        column arguments here, e.g. ``customer_id="id"``).
    period
        pandas period alias of an opportunity: ``"Y"`` (default), ``"Q"``, ``"M"``, ``"W"``, ``"D"``.
    observation_end
        Last observed date (default: the log's last timestamp); later transactions are an error.

    Returns
    -------
    DataFrame indexed by customer id with ``frequency`` (periods with a transaction after the
    first), ``recency`` (opportunity of the last one, 0 if none) and ``n_periods`` (opportunities
    observed); ``attrs["period"]`` records the period.
    """
    log = as_log(transactions, **load_kwargs)
    ts = pd.DatetimeIndex(log[TIMESTAMP])
    try:
        ordinal = pd.PeriodIndex(ts, freq=period).asi8
        end = (pd.Timestamp(observation_end) if observation_end is not None else ts.max()).to_period(period).ordinal
    except (ValueError, TypeError) as exc:
        raise ClvDataError(f"period must be a pandas period alias such as 'Y', 'Q', 'M', 'W' or 'D', "
                           f"got {period!r} ({exc}).") from exc
    late = ordinal > end
    if late.any():
        raise data_error(f"Transactions after the observation end {observation_end}", column=TIMESTAMP,
                         rows=log.loc[late], fix="Pass a later observation_end or drop them.")
    codes, customers = pd.factorize(log[CUSTOMER], sort=True)
    first = pd.Series(ordinal).groupby(codes).min().to_numpy()
    pairs = pd.unique(pd.Series(codes.astype(np.int64) * (end - ordinal.min() + 1) + (ordinal - ordinal.min())))
    code_of_pair = pairs // (end - ordinal.min() + 1)
    period_of_pair = pairs % (end - ordinal.min() + 1) + ordinal.min()
    frequency = np.bincount(code_of_pair, minlength=len(customers)) - 1
    last = pd.Series(period_of_pair).groupby(code_of_pair).max().reindex(range(len(customers))).to_numpy()
    out = pd.DataFrame({
        "frequency": frequency.astype(np.int64),
        "recency": np.where(frequency > 0, last - first, 0).astype(np.int64),
        "n_periods": (end - first).astype(np.int64),
    }, index=pd.Index(customers, name=CUSTOMER))
    out.attrs.update(period=period, observation_end=str(pd.Period(ordinal=end, freq=period)))
    return out
