"""Beyond one machine: RFM summaries, fitting and scoring on Spark.

Three steps, each the one-machine computation distributed:

1. :func:`rfm_summary_spark` reduces a Spark DataFrame of transactions to one row per customer with
   Spark SQL (purchases in the same period count once; per customer the first and last period,
   the number of distinct periods and the repeat spend), and turns those aggregates into
   ``frequency``, ``recency``, ``T`` and ``monetary_value`` with the pandas path's own function
   (:func:`clvmodels.rfm.rfm_from_aggregates`, applied per partition), so the summary is the one :func:`clvmodels.rfm_summary`
   gives.
2. :func:`fit_spark` fits the models on the driver: the likelihood depends on the data only through
   the distinct histories and how many customers share each, so only that small table is
   collected (``fit(rfm, weights=...)``); the spend model needs each repeat buyer's
   (frequency, mean spend) pair, collected likewise with counts. A model's covariate columns are
   part of the distinct rows (as in the one-machine fit's compression).
3. :func:`score_spark` applies a saved model to every partition with ``mapInPandas``: the model
   directory's files travel with the task (no shared file system needed) and each partition is
   scored by :func:`clvmodels.scoring.score_frame`, with the same parameter draws everywhere (fixed
   seed), so the scores are those of one-machine scoring. Rows that cannot be scored are kept with
   a ``reject_reason``.

A Spark timestamp is an instant: its calendar day (and hour, week) is taken in the Spark session's
time zone (``spark.sql.session.timeZone``), so set that to the zone whose days should count. (Naive
pandas timestamps given to ``createDataFrame`` are instants in the Python process's local zone.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .data import BLANK_ID, naive_timestamp
from .errors import ClvDataError
from .units import normalize_unit

_MICROS_PER_HOUR = 3_600_000_000
_MICROS_PER_DAY = 86_400_000_000


def _functions():
    try:
        from pyspark.sql import functions as F
    except ImportError:  # pragma: no cover - pyspark is the 'spark' extra
        raise ClvDataError("clvmodels.spark needs pyspark: pip install 'clvmodels[spark]' (and Java 17+).") from None
    return F


def _wall_micros(df, timestamp: str, date_format: str | None):
    """Microseconds since the epoch of each timestamp's wall-clock time in the session time zone."""
    F = _functions()
    from pyspark.sql import types as T

    col = F.col(timestamp)
    kind = df.schema[timestamp].dataType
    if isinstance(kind, T.StringType):
        ts = F.to_timestamp(col, _java_format(date_format)) if date_format else F.to_timestamp(col)
    elif isinstance(kind, (T.IntegerType, T.LongType)):
        ts = F.to_timestamp(col.cast("string"), _java_format(date_format or "%Y%m%d"))
    else:
        ts = col.cast("timestamp")
    tz = df.sparkSession.conf.get("spark.sql.session.timeZone")
    return F.unix_micros(F.from_utc_timestamp(ts, tz))


def _java_format(fmt: str) -> str:
    """The common strftime codes as a Java (Spark) datetime pattern."""
    table = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss", "%y": "yy",
             "%b": "MMM", "%f": "SSSSSS", "%%": "%"}
    out, i = "", 0
    while i < len(fmt):
        code = fmt[i:i + 2]
        if code in table:
            out += table[code]
            i += 2
        elif fmt[i] == "%":
            raise ClvDataError(f"date_format {fmt!r}: {code} has no Spark equivalent here; use %Y %m %d %H %M %S.")
        else:
            out += f"'{fmt[i]}'" if fmt[i].isalpha() else fmt[i]
            i += 1
    return out


def _period_key(micros, res: str):
    """Start of the period, in hours since the epoch (:func:`clvmodels.periods.period_hours`), with floor division."""
    F = _functions()

    def floor_div(x, d):
        return ((x - F.pmod(x, F.lit(d))) / F.lit(d)).cast("long")

    if res == "h":
        return floor_div(micros, _MICROS_PER_HOUR)
    days = floor_div(micros, _MICROS_PER_DAY)
    if res == "W":  # weeks start on Monday; 1970-01-01 was a Thursday
        days = days - F.pmod(days + F.lit(3), F.lit(7))
    return days * F.lit(24)


def _clean(df, customer_id, timestamp, amount, date_format, refunds, res):
    """Validated rows ``(cid, pkey, amount)``; errors as :func:`clvmodels.load_transactions`."""
    F = _functions()
    missing = [c for c in [customer_id, timestamp] + ([amount] if amount else []) if c not in df.columns]
    if missing:
        raise ClvDataError(f"Missing column(s) {missing} in the transaction log; it has {df.columns}. "
                           "Pass the right names with customer_id=..., timestamp=..., amount=...")
    if refunds not in ("error", "drop"):
        raise ClvDataError(f"refunds={refunds!r} is not available on Spark (only 'error' and 'drop'): net "
                           "refunds against purchases before summarising, or drop them.")
    micros = _wall_micros(df, timestamp, date_format)
    cols = [F.col(customer_id).alias("cid"), micros.alias("micros")]
    if amount:
        cols.append(F.col(amount).cast("double").alias("amount"))
    t = df.select(*cols)
    checks = {
        "Missing customer ids": F.col("cid").isNull() | F.col("cid").cast("string").rlike(f"^{BLANK_ID}$"),
        "Missing or unparseable timestamps": F.col("micros").isNull(),
    }
    if amount:
        checks["Missing (NaN), non-numeric or infinite amounts"] = (
            F.col("amount").isNull() | F.isnan("amount") | (F.abs(F.col("amount")) == float("inf")))
        if refunds == "error":
            checks["Negative amounts (refunds)"] = F.col("amount") < 0
    counts = t.agg(*[F.sum(c.cast("int")).alias(f"c{i}") for i, c in enumerate(checks.values())]).first()
    for i, problem in enumerate(checks):
        n = counts[f"c{i}"] or 0
        if n:
            column = {0: customer_id, 1: timestamp}.get(i, amount)
            fix = ("Pass refunds='drop' to ignore refunds." if problem.startswith("Negative")
                   else "Fix or remove these rows.")
            raise ClvDataError(f"{problem} in column {column!r} ({n:,} rows). {fix}")
    if amount and refunds == "drop":
        t = t.where(F.col("amount") >= 0)
    return t.withColumn("pkey", _period_key(F.col("micros"), res))


def _aggregates(t, cond, has_amount: bool, litt: bool = False):
    F = _functions()
    from pyspark.sql import Window

    from .rfm import SPEND_SCALE

    periods = t.where(cond).groupBy("cid", "pkey").agg(
        *([F.sum(F.col("amount") * F.lit(SPEND_SCALE)).alias("v")] if has_amount else [F.count(F.lit(1)).alias("n")]))
    aggs = [F.min("pkey").alias("first"), F.max("pkey").alias("last"), F.count(F.lit(1)).alias("n_periods")]
    if has_amount:
        # the periods after the first, summed directly (as rfm._summarise), in units of 1 / SPEND_SCALE
        periods = periods.withColumn("first_pkey", F.min("pkey").over(Window.partitionBy("cid")))
        repeat = F.when(F.col("pkey") > F.col("first_pkey"), F.col("v")).otherwise(F.lit(0.0))
        aggs.append(F.sum(repeat).alias("repeat_value_scaled"))
    if litt:
        # the logs of the gaps between consecutive distinct periods (hours), as rfm._summarise
        gap = F.col("pkey") - F.lag("pkey").over(Window.partitionBy("cid").orderBy("pkey"))
        periods = periods.withColumn("log_gap", F.log(gap))
        aggs.append(F.coalesce(F.sum("log_gap"), F.lit(0.0)).alias("log_gap_hours"))
    return periods.groupBy("cid").agg(*aggs)


def _frames_from_aggregates(agg, end_hours: int, unit: str, has_amount: bool, id_type, litt: bool = False):
    """:func:`clvmodels.rfm.rfm_from_aggregates` on every partition of the aggregates: the pandas path's arithmetic."""
    from pyspark.sql import types as T

    from .rfm import rfm_from_aggregates

    fields = [T.StructField("customer_id", id_type), T.StructField("frequency", T.LongType()),
              T.StructField("recency", T.DoubleType()), T.StructField("T", T.DoubleType())]
    if litt:
        fields.append(T.StructField("litt", T.DoubleType()))
    if has_amount:
        fields.append(T.StructField("monetary_value", T.DoubleType()))

    def to_rfm(batches):
        for pdf in batches:
            s = {k: pdf[k].to_numpy(dtype=np.int64) for k in ("first", "last", "n_periods")}
            for k in ("repeat_value_scaled",) * has_amount + ("log_gap_hours",) * litt:
                s[k] = pdf[k].to_numpy(dtype=float)
            index = pd.Index(pdf["cid"].to_numpy(), name="customer_id")
            yield rfm_from_aggregates(s, end_hours, unit, index, has_amount).reset_index()

    return agg.mapInPandas(to_rfm, T.StructType(fields))


def rfm_summary_spark(
    transactions,
    observation_end=None,
    time_unit: str = "W",
    *,
    calibration_end=None,
    resolution: str = "D",
    truncate: bool = False,
    litt: bool = False,
    customer_id: str = "customer_id",
    timestamp: str = "timestamp",
    amount: str | None = "amount",
    date_format: str | None = None,
    refunds: str = "error",
):
    """Per-customer RFM summary of a Spark DataFrame of transactions (a Spark DataFrame).

    Parameters
    ----------
    transactions
        Spark DataFrame with a customer id, a timestamp (timestamp, date, string or YYYYMMDD
        integer column) and optionally an amount.
    observation_end, time_unit, resolution, truncate, litt
        As for :func:`clvmodels.rfm_summary`.
    calibration_end
        If given, the result is :func:`clvmodels.calibration_holdout`'s: the calibration summary
        plus ``frequency_holdout``, ``value_holdout`` and ``duration_holdout``.
    customer_id, timestamp, amount, date_format
        As for :func:`clvmodels.load_transactions` (``date_format`` in strftime codes).
    refunds
        ``"error"`` or ``"drop"`` (``"net"`` is only on the pandas and DuckDB paths).

    Returns
    -------
    Spark DataFrame with ``customer_id``, ``frequency``, ``recency``, ``T`` (and
    ``monetary_value``; and the holdout columns), one row per customer, in no particular order.
    """
    F = _functions()
    from .periods import period_start_hours, resolve_resolution
    from .units import unit_days

    unit = normalize_unit(time_unit)
    res = resolve_resolution(resolution)
    has_amount = amount is not None
    t = _clean(transactions, customer_id, timestamp, amount, date_format, refunds, res)
    tz = transactions.sparkSession.conf.get("spark.sql.session.timeZone")
    if observation_end is None:
        end = pd.Timestamp(t.agg(F.max("micros")).first()[0], unit="us")
    else:
        end = naive_timestamp(observation_end, tz, "observation_end")
    end_h = period_start_hours(end, res)
    late = F.col("pkey") > F.lit(end_h)
    if not truncate and t.where(late).limit(1).count():
        n = t.where(late).count()
        raise ClvDataError(f"Transactions after the observation end {end.date()} in column {timestamp!r} "
                           f"({n:,} rows). Pass truncate=True to ignore them, or a later observation_end.")
    t = t.where(~late)
    id_type = transactions.schema[customer_id].dataType
    if calibration_end is None:
        agg = _aggregates(t, F.lit(True), has_amount, litt)
        return _frames_from_aggregates(agg, end_h, unit, has_amount, id_type, litt)
    cal_end = naive_timestamp(calibration_end, tz, "calibration_end")
    if end < cal_end:
        raise ClvDataError(f"observation_end {end} is before calibration_end {cal_end}.")
    cal_h = period_start_hours(cal_end, res)
    in_cal = F.col("pkey") <= F.lit(cal_h)
    cal = _frames_from_aggregates(_aggregates(t, in_cal, has_amount, litt), cal_h, unit, has_amount, id_type, litt)
    hold_aggs = [F.countDistinct("pkey").alias("frequency_holdout")]
    if has_amount:
        hold_aggs.append(F.sum("amount").alias("value_holdout"))
    hold = t.where(~in_cal).groupBy(F.col("cid").alias("customer_id")).agg(*hold_aggs)
    out = cal.join(hold, on="customer_id", how="left")
    out = out.withColumn("frequency_holdout", F.coalesce(F.col("frequency_holdout"), F.lit(0)).cast("long"))
    if has_amount:
        out = out.withColumn("value_holdout", F.coalesce(F.col("value_holdout"), F.lit(0.0)))
    duration = (end_h - cal_h) / 24.0 / unit_days(unit)
    return out.withColumn("duration_holdout", F.lit(float(duration)))


def fit_spark(rfm, purchase_model, spend_model=None, *, time_unit: str = "W", **fit_kwargs):
    """Fit models on the driver from a Spark RFM DataFrame, collecting only distinct histories.

    Parameters
    ----------
    rfm
        Spark DataFrame from :func:`rfm_summary_spark` (``frequency``, ``recency``, ``T``, and
        ``monetary_value`` for the spend model), with the covariate columns of models with
        covariates (join the customer-level covariate DataFrame to it by customer id first).
    purchase_model, spend_model
        Unfitted models (e.g. ``BetaGeoModel()``, ``GammaGammaModel()``, or with covariates
        ``BetaGeoModel(purchase_covariates=["channel"], one_hot=["channel"])``); fitted in place.
        Covariates are part of each distinct row (customers sharing a history and a covariate
        profile are one weighted row), so with continuous covariates nearly every customer is
        collected.
    time_unit
        The unit of ``recency`` and ``T`` (recorded on the models as ``time_unit_``).
    **fit_kwargs
        Passed to both ``fit`` calls (e.g. ``method="map"``).

    Returns
    -------
    ``(purchase_model, spend_model)``, fitted. The spend model is fitted on the repeat buyers with
    positive spend (``n_excluded_`` counts the others), each distinct (frequency, spend) pair
    weighted by its number of customers.
    """
    unit = normalize_unit(time_unit)
    cols = list(purchase_model.data_columns) + list(getattr(purchase_model, "fit_columns", ()))  # CNBD-k: litt
    cols += _covariates_of(purchase_model, rfm.columns, cols)
    hist = rfm.groupBy(*cols).count().toPandas()
    hist.attrs["time_unit"] = unit
    purchase_model.fit(hist[cols], weights=hist["count"].to_numpy(dtype=float), **fit_kwargs)
    if spend_model is None:
        return purchase_model, None
    scols = list(spend_model.data_columns)
    scols += _covariates_of(spend_model, rfm.columns, scols)
    spend = rfm.groupBy(*scols).count().toPandas()
    counts = spend["count"].to_numpy(dtype=float)
    learn = spend_model.fit_mask({c: spend[c].to_numpy(dtype=float) for c in scols})
    fit_rows = spend.loc[learn, scols].reset_index(drop=True)
    fit_rows.attrs["time_unit"] = unit
    spend_model.fit(fit_rows, weights=counts[learn], **fit_kwargs)
    spend_model.n_excluded_ = int(counts[~learn].sum())  # customers left out, as with exclude_invalid=True
    return purchase_model, spend_model


def _covariates_of(model, available, columns) -> list[str]:
    """The covariate columns ``model`` names (not already in ``columns``), refused when the DataFrame lacks one."""
    sources = [c for c in model.covariate_sources() if c not in columns]
    missing = [c for c in sources if c not in available]
    if missing:
        raise ClvDataError(f"{type(model).__name__} names the covariate column(s) {missing}, which the RFM DataFrame "
                           f"does not have (columns: {list(available)[:20]}): join the customer-level covariate "
                           "DataFrame to it by customer id first.")
    return sources


def _model_files(models) -> tuple[dict[str, bytes], dict]:
    """The files of a saved model bundle (a path, or ``{"purchase": m, "spend": m}`` saved now), and
    the bundle's models as loaded on the driver."""
    from .models.persistence import save_models

    if isinstance(models, dict):
        with tempfile.TemporaryDirectory() as d:
            save_models({k: v for k, v in models.items() if v is not None}, Path(d) / "bundle")
            return _model_files(Path(d) / "bundle")
    root = Path(models)
    if not (root / "bundle.json").exists():
        raise ClvDataError(f"{str(root)!r} is not a saved model bundle (clvmodels fit / save_models).")
    from .models.persistence import load_models

    loaded, _ = load_models(root)  # a damaged or tampered bundle is refused here, on the driver, with its reason
    # regular files only: a link (never part of a bundle) could point to any file of the driver
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    return files, loaded


def score_spark(rfm, models, settings=None, *, time_unit: str | None = None, id_column: str = "customer_id"):
    """Score every customer of a Spark RFM DataFrame with ``mapInPandas``.

    Parameters
    ----------
    rfm
        Spark DataFrame with ``id_column``, ``frequency``, ``recency``, ``T`` (and
        ``monetary_value`` when there is a spend model); for models with covariates also their
        covariate columns, passed through to the scoring of each batch (transformed as at fit; a
        customer with a missing, non-finite or unseen covariate value is rejected with the reason).
    models
        A model bundle directory (``clvmodels fit --out DIR`` or :func:`clvmodels.save_models`), or
        ``{"purchase": model, "spend": model}``.
    settings
        :class:`clvmodels.scoring.ScoreSettings` (horizon, discounting, interval, draws, seed). With
        an interval the CLV's is predictive by default (``clv_lower``/``clv_upper``: the customer's
        realised discounted value, simulated per Arrow batch with a seed from its customer ids),
        the other scores' are intervals of expected values (``<score>_mean_lower``/``_mean_upper``);
        ``ScoreSettings(clv_interval="expected")`` gives ``clv_mean_lower``/``clv_mean_upper``.
    time_unit
        The unit of ``recency`` and ``T`` (as given to :func:`rfm_summary_spark`): a Spark DataFrame
        does not record it, so pass it to have a mismatch with the model's unit refused before any
        work (a table in days scored by a model fitted in weeks would be 7x off).

    Returns
    -------
    Spark DataFrame: the input columns (covariates included), the score columns of
    :func:`clvmodels.scoring.score_columns` and ``reject_reason`` (null for scored customers; for
    the others the reason, and null scores).
    """
    from pyspark.sql import types as T

    from .scoring import ScoreSettings, covariate_columns, input_columns, require_covariates, score_columns
    from .validation import check_time_unit, require_columns

    settings = settings or ScoreSettings()
    files, loaded = _model_files(models)
    if time_unit is not None:
        check_time_unit(loaded["purchase"], {"time_unit": time_unit})
    has_spend = loaded.get("spend") is not None
    columns = input_columns(loaded["purchase"], loaded.get("spend"))
    require_columns(rfm, [id_column] + columns, what="The RFM DataFrame", fix="Build it with rfm_summary_spark(...).")
    covariates = covariate_columns(loaded["purchase"], loaded.get("spend"))
    require_covariates(rfm.columns, loaded["purchase"], loaded.get("spend"), source="the RFM DataFrame",
                       fix="join the customer-level covariate DataFrame to it by customer id first")
    scores = score_columns(has_spend, settings.interval is not None, settings.clv_interval)
    fields = [rfm.schema[id_column], T.StructField("frequency", T.LongType())]
    fields += [T.StructField(c, T.DoubleType()) for c in columns[1:]] + [rfm.schema[c] for c in covariates]
    fields += [T.StructField(c, T.DoubleType()) for c in scores] + [T.StructField("reject_reason", T.StringType())]
    schema = T.StructType(fields)

    def score_partition(batches):
        from .models.persistence import load_models
        from .scoring import covariate_problems, score_frame
        from .validation import problems

        with tempfile.TemporaryDirectory() as d:
            for name, data in files.items():
                target = Path(d) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            loaded, _ = load_models(d)
        purchase, spend = loaded["purchase"], loaded.get("spend")
        for pdf in batches:
            pdf = pdf[[id_column] + columns + covariates].reset_index(drop=True)
            reason = problems(pdf, columns, id_column)
            if covariates:  # a customer with a missing or unseen covariate is rejected alone, as in the CLI
                reason = reason.where(reason != "", covariate_problems(purchase, spend, pdf))
            good = (reason == "").to_numpy().copy()
            out = pdf.copy()
            for c in columns:
                out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
            for c in scores:
                out[c] = np.nan
            if good.any():  # customers whose results overflow are rejected one by one, as in the CLI
                rows = out.loc[good].set_index(id_column)
                values = score_frame(purchase, spend, rows, settings, reasons=True)
                failed = np.flatnonzero(good)[(values["reason"] != "").to_numpy()]
                out.loc[good, scores] = values[scores].to_numpy()
                reason.iloc[failed] = values["reason"].to_numpy()[(values["reason"] != "").to_numpy()]
                out.loc[failed, scores] = np.nan
                good[failed] = False
            f = out["frequency"].to_numpy()
            whole = np.isfinite(f) & (f == np.round(f))
            out["frequency"] = pd.array(np.where(whole, f, 0).astype(np.int64), dtype="Int64")
            out.loc[~whole, "frequency"] = pd.NA  # a rejected non-integer frequency is shown as null
            out["reject_reason"] = pd.Series(reason.to_numpy(dtype=object)).where(~good, None)
            yield out

    return rfm.select(id_column, *columns, *covariates).mapInPandas(score_partition, schema)
