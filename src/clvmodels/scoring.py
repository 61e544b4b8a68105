"""Batch scoring: per-customer expected purchases, P(alive), expected spend and CLV, in chunks.

:func:`score_frame` scores the customers of one RFM frame with a fitted purchase model (and
optionally a spend model). :func:`score_table` streams a whole RFM table (Parquet or CSV, or a
frame) through it chunk by chunk and writes the scores atomically, so memory stays bounded by the
chunk size and nothing is lost: every input row ends up exactly once either in the scores or in the
rejects file with the reason it could not be scored (missing or invalid values, duplicate customer
id, or scores that are not finite or out of range because of extreme inputs: one such customer
never aborts the batch). The table's recorded time unit must be the purchase model's
(:func:`clvmodels.validation.check_time_unit`).

With ``interval`` (e.g. 0.9) the scores get intervals, named after what they describe:

* ``clv_lower``/``clv_upper`` (default, ``clv_interval="predictive"``): the predictive interval of
  each customer's realised discounted value, process and parameter uncertainty
  (:func:`clvmodels.clv.predictive_clv`, ``n_samples`` simulated futures seeded by ``seed`` and the
  chunk's customer ids: the same input and chunk size give the same numbers);
* ``<score>_mean_lower``/``<score>_mean_upper``: intervals of *expected* values over parameter draws
  (the posterior of a Bayesian fit, or the MLE's asymptotic normal): expected purchases, P(alive),
  expected spend, and the CLV with ``clv_interval="expected"`` (``clv_mean_lower``/``clv_mean_upper``).
  They do not contain what a customer will do. The draws are the same for every chunk (fixed
  ``seed``), so chunked and one-shot scoring give the same numbers.
"""

from __future__ import annotations

import collections
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import InitVar, dataclass, field

import numpy as np
import pandas as pd

from .clv import KINDS, check_discounting, predictive_clv, value_customers
from .models.covariates import CovariateDesign
from .models.draws import EXPECTED, PREDICTIVE, check_interval, interval_names
from .errors import ClvDataError, data_error
from .rfm import covariate_index
from .io import (DEFAULT_CHUNK_ROWS, ChunkedTableWriter, check_outputs, iter_table, table_attrs,
                 table_columns, table_format)
from . import units
from .units import normalize_unit
from .validation import check_time_unit, problems, require_columns, validate_columns

SCORE_NAMES = ("expected_purchases", "probability_alive", "expected_spend", "clv")
REJECT_COLUMNS = ["customer_id", "reason"]


@dataclass
class ScoreSettings:
    """What to score: the horizon, the discounting and the uncertainty.

    Parameters
    ----------
    horizon
        Number of periods ahead (expected purchases over the whole horizon; CLV discounted period
        by period).
    period
        Length of one discounting period (``"M"``: months). Not the time unit of the data, which
        is the model's. ``time_unit=`` is a deprecated alias.
    discount_rate
        Per-period discount rate of the CLV.
    interval
        Width of the per-customer intervals (e.g. 0.9), or None for point scores only.
    clv_interval
        What the CLV's interval describes: ``"predictive"`` (default: the customer's realised
        discounted value, columns ``clv_lower``/``clv_upper``) or ``"expected"`` (the expected
        value's parameter uncertainty, ``clv_mean_lower``/``clv_mean_upper``).
    n_draws
        Parameter draws used for the expected-value intervals (and for the posterior means of
        Bayesian fits).
    n_samples
        Simulated futures per customer for the predictive CLV interval.
    seed
        Seed of the parameter draws: the same draws for every chunk and every run.
    period_length
        Length of one period in the models' time unit; by default from ``period`` and the unit
        the purchase model was fitted in.
    """

    horizon: int = 12
    period: str = "M"
    discount_rate: float = 0.01
    interval: float | None = None
    n_draws: int = 200
    seed: int = 0
    period_length: float | None = None
    time_unit: InitVar[str | None] = None
    clv_interval: str = "predictive"
    n_samples: int = 1000

    def __post_init__(self, time_unit):
        if time_unit is not None:
            warnings.warn(_TIME_UNIT_RENAMED, DeprecationWarning, stacklevel=3)
            self.period = time_unit
        check_discounting(self.horizon, self.discount_rate)
        self.period = normalize_unit(self.period)
        if self.period_length is not None:
            units.check_period_length(self.period_length)
        if self.interval is not None:
            check_interval(self.interval)
        if int(self.n_draws) != self.n_draws or self.n_draws < 2:
            raise ClvDataError(f"n_draws must be an integer >= 2, got {self.n_draws!r}.")
        if self.clv_interval not in KINDS:
            raise ClvDataError(f"clv_interval must be one of {KINDS}, got {self.clv_interval!r}.")
        if int(self.n_samples) != self.n_samples or self.n_samples < 2:
            raise ClvDataError(f"n_samples must be an integer >= 2, got {self.n_samples!r}.")


_TIME_UNIT_RENAMED = "ScoreSettings(time_unit=...) is deprecated: it is the discounting period, now called period=..."


def _time_unit(self) -> str:
    warnings.warn(_TIME_UNIT_RENAMED, DeprecationWarning, stacklevel=2)
    return self.period


ScoreSettings.time_unit = property(_time_unit, doc="Deprecated name of :attr:`period`.")


def interval_kind(name: str, clv_interval: str = "predictive") -> str:
    """What the interval of score ``name`` describes: :data:`PREDICTIVE` for the CLV by default,
    else :data:`EXPECTED` (an expected value's parameter uncertainty)."""
    return PREDICTIVE if name == "clv" and clv_interval == "predictive" else EXPECTED


def score_columns(has_spend: bool, interval: bool, clv_interval: str = "predictive") -> list[str]:
    """Names of the score columns, in order: each score, then with ``interval`` its interval's ends,
    named after what they describe (:func:`clvmodels.models.draws.interval_names`): ``clv_lower``,
    ``clv_upper`` for the predictive CLV, ``<score>_mean_lower``, ``<score>_mean_upper`` for
    expected values."""
    names = [n for n in SCORE_NAMES if has_spend or n in ("expected_purchases", "probability_alive")]
    if not interval:
        return names
    return [c for n in names for c in (n, *(f"{n}_{interval_names(interval_kind(n, clv_interval))[end]}"
                                           for end in ("lower", "upper")))]


def _chunk_seed(seed: int, ids) -> np.random.SeedSequence:
    """The seed of a chunk's simulation: ``seed`` and the chunk's customer ids, so that the same rows
    get the same futures whichever process scores them."""
    hashes = _hash_ids(pd.Series(np.asarray(ids)))
    return np.random.SeedSequence([int(seed), int(np.bitwise_xor.reduce(hashes, initial=np.uint64(0))),
                                   len(hashes)])


def input_columns(purchase_model, spend_model=None) -> list[str]:
    """The columns scoring reads: the purchase model's, then the spend model's (each once)."""
    spend_columns = spend_model.data_columns if spend_model is not None else ()
    return list(dict.fromkeys(purchase_model.data_columns + spend_columns))


def covariate_columns(purchase_model, spend_model=None) -> list[str]:
    """The covariate columns of the customer table that the fitted models read (each once; none for
    models without covariates): the columns named at fit, whose encoding and scaling the models keep."""
    models = [m for m in (purchase_model, spend_model) if m is not None and m.has_covariates]
    return list(dict.fromkeys(c for m in models for c in CovariateDesign.from_dict(m.covariates_).sources()))


def covariate_problems(purchase_model, spend_model, frame: pd.DataFrame) -> pd.Series:
    """Why each customer of ``frame`` cannot be scored for its covariates (empty string when it can:
    :meth:`~clvmodels.models.covariates.CovariateDesign.problems` of each model with covariates)."""
    reason = pd.Series("", index=frame.index, name="reason", dtype=object)
    for model in (purchase_model, spend_model):
        if model is not None and model.has_covariates:
            more = CovariateDesign.from_dict(model.covariates_).problems(frame)
            reason = reason.where(reason != "", more)
    return reason


def require_covariates(frame_columns, purchase_model, spend_model=None, *, source: str = "the table",
                       fix: str = "join the customer-level covariate table by id with covariates=... (clvmodels "
                                  "score --covariates FILE), or score a table that has them") -> None:
    """Refuse a table without the models' covariate columns, naming them and what to do (``fix``)."""
    missing = [c for c in covariate_columns(purchase_model, spend_model) if c not in frame_columns]
    if missing:
        raise ClvDataError(f"The model has covariates, and {source} has no column(s) {missing} (a missing covariate "
                           f"is never taken as 0): {fix}.")


def period_length(purchase_model, settings: ScoreSettings) -> float:
    """Length of one scoring period in the purchase model's time unit (see :func:`clvmodels.units.period_length`)."""
    return units.period_length(settings.period, purchase_model.time_unit_, settings.period_length)


def score_frame(purchase_model, spend_model, rfm: pd.DataFrame, settings: ScoreSettings, *,
                reasons: bool = False, time_varying=None) -> pd.DataFrame:
    """Scores of the customers of ``rfm`` (valid rows only; see :func:`clvmodels.validation.problems`).

    All scores come from one set of parameter draws of each model (:func:`clvmodels.clv.value_customers`):
    the same values as the models' methods with ``seed`` for the purchase model and ``seed + 1`` for
    the spend model. Returns a frame with the same index and the columns of :func:`score_columns`.

    Scores that are not finite or out of range (extreme but finite inputs, e.g. a mean spend of
    1e308, overflow) are checked per customer: they raise a :class:`ClvDataError` naming those
    customers, or with ``reasons=True`` are returned as they are with the reason in an extra
    ``reason`` column (empty for the customers scored), so that a batch rejects them one by one.
    A table whose recorded time unit differs from the purchase model's is refused.

    A purchase model with time-varying covariates reads them from ``time_varying``, a
    :class:`~clvmodels.timevarying.CovariatePath` covering each customer from her first purchase to the
    end of the horizon (:func:`time_varying_paths`; ``rfm`` records its end of observation).
    """
    s = settings
    check_time_unit(purchase_model, rfm)
    purchase_model._check_fitted()
    models = [purchase_model] + ([spend_model] if spend_model is not None else [])
    for model in models[1:]:
        model._check_fitted()
    columns = tuple(dict.fromkeys(c for m in models for c in m.data_columns))
    what = SCORE_NAMES if spend_model is not None else SCORE_NAMES[:2]
    paths = time_varying_paths(purchase_model, rfm, s, time_varying) if purchase_model.has_time_varying else {}
    with np.errstate(all="ignore"):  # overflow is checked per customer below
        values = value_customers(purchase_model, spend_model, validate_columns(rfm, columns), horizon=int(s.horizon),
                                 period_length=period_length(purchase_model, s), discount_rate=s.discount_rate,
                                 interval=s.interval, n_draws=s.n_draws, seed=s.seed, what=what, finite=False,
                                 rfm=rfm, **paths)
    out = {}
    for name in what:
        out[name] = values[name]["mean"]
        if s.interval is not None:
            names = interval_names(interval_kind(name, s.clv_interval))
            out[f"{name}_{names['lower']}"] = values[name]["lower"]
            out[f"{name}_{names['upper']}"] = values[name]["upper"]
    columns_out = score_columns(spend_model is not None, s.interval is not None, s.clv_interval)
    if "clv_lower" in columns_out:
        out["clv_lower"], out["clv_upper"] = _predictive_clv_interval(purchase_model, spend_model, rfm, s, out,
                                                                      time_varying)
    scores = pd.DataFrame(out, index=rfm.index)[columns_out]
    reason = result_problems(scores)
    if reasons:
        return scores.assign(reason=reason)
    bad = (reason != "").to_numpy()
    if bad.any():
        raise data_error("Scores not finite or out of range (extreme input values)", n_rows=int(bad.sum()),
                         rows=rfm.loc[bad, list(columns)].assign(reason=reason[bad]),
                         fix="Check these customers' values; score_table (clvmodels score) rejects them one "
                             "by one and scores the others.")
    return scores


def time_varying_paths(purchase_model, rfm: pd.DataFrame, s: ScoreSettings, path) -> dict:
    """``{"time_varying": summary, "future": pieces}`` of the customers of ``rfm`` (which records its end of
    observation) along the covariate ``path``: their calibration pieces
    (:func:`~clvmodels.timevarying.forecast_summary`) and the horizon's (:func:`~clvmodels.timevarying.future_exposure`)."""
    from .timevarying import forecast_summary, future_exposure

    if path is None:
        raise ClvDataError("The purchase model has time-varying covariates: pass the customers' covariate path "
                           "(time_varying=covariate_calendar(...) or covariate_panel(...); clvmodels score --calendar "
                           "FILE or --covariate-panel FILE) covering each customer to the end of the horizon.")
    window = s.horizon * period_length(purchase_model, s)
    return {"time_varying": forecast_summary(rfm, path), "future": future_exposure(rfm, path, window)}


def _predictive_clv_interval(purchase_model, spend_model, rfm, s: ScoreSettings, expected: dict, time_varying=None):
    """The predictive CLV interval of the customers whose expected scores are valid (the others,
    rejected anyway, get NaN), simulated with the chunk's seed (:func:`_chunk_seed`); with time-varying
    covariates along the customers' ``time_varying`` path (:func:`time_varying_paths`)."""
    lower, upper = np.full(len(rfm), np.nan), np.full(len(rfm), np.nan)
    ok = np.all([np.isfinite(v) for v in expected.values()], axis=0)
    if ok.any():
        scored = rfm.loc[ok]
        paths = time_varying_paths(purchase_model, scored, s, time_varying) if purchase_model.has_time_varying else {}
        pred = predictive_clv(purchase_model, spend_model, scored, horizon=int(s.horizon),
                              period_length=period_length(purchase_model, s), discount_rate=s.discount_rate,
                              interval=s.interval, n_samples=int(s.n_samples),
                              seed=_chunk_seed(s.seed, rfm.index[ok]), jobs=1,  # scoring runs --jobs processes
                              **paths)
        lower[ok], upper[ok] = pred["lower"].to_numpy(), pred["upper"].to_numpy()
    return lower, upper


#: Tolerance of the range checks of scores (rounding of sums of probabilities).
SCORE_TOLERANCE = 1e-9


def result_problems(scores: pd.DataFrame) -> pd.Series:
    """Why each row of ``scores`` is not a valid result (empty string when it is).

    Every score must be finite, ``probability_alive`` (and its interval) in [0, 1] and the other
    scores not negative (up to :data:`SCORE_TOLERANCE`).
    """
    values = scores.to_numpy(dtype=float)
    finite = np.isfinite(values)
    low = np.where(finite, values, 0.0) < -SCORE_TOLERANCE
    high = np.zeros_like(low)
    alive = [i for i, c in enumerate(scores.columns) if c.startswith("probability_alive")]
    high[:, alive] = np.where(finite[:, alive], values[:, alive], 0.0) > 1 + SCORE_TOLERANCE
    reason = np.full(len(scores), "", dtype=object)
    names = np.array([c.removesuffix("_lower").removesuffix("_upper").removesuffix("_mean") for c in scores.columns])
    for flags, what in ((~finite, "not finite"), (low | high, "out of range")):
        for i in np.flatnonzero(flags.any(axis=1) & (reason == "")):
            reason[i] = f"{', '.join(dict.fromkeys(names[flags[i]]))} {what} (extreme input values)"
    return pd.Series(reason, index=scores.index, name="reason")


# ---------------------------------------------------------------------------- streaming
@dataclass
class ScoreCounts:
    """Counts of a scoring run: every input row is either scored or rejected."""

    read: int = 0
    scored: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: The time unit the table records (None: it records none, so it could not be checked).
    time_unit: str | None = None

    def add_rejects(self, reasons: pd.Series) -> None:
        for text, count in reasons.value_counts().items():
            self.reasons[text] = self.reasons.get(text, 0) + int(count)


def _hash_ids(ids: pd.Series) -> np.ndarray:
    return pd.util.hash_array(ids.astype(str).to_numpy(dtype=object) if ids.dtype == object else ids.to_numpy())


_WORKER: tuple | None = None  # (purchase model, spend model, settings) of a scoring worker process


def _init_worker(model_dir: str, settings: ScoreSettings, parent_pid: int, directory: str, time_varying=None) -> None:
    """Load the models in a fresh worker process (from files: nothing is shared but data); the
    worker exits, removing the parent's temporaries in ``directory``, if the parent dies."""
    global _WORKER
    from .models.persistence import load_models
    from .workers import exit_with_parent

    exit_with_parent(parent_pid, directory)
    models, _ = load_models(model_dir)
    _WORKER = (models["purchase"], models.get("spend"), settings, time_varying)


def _score_chunk(purchase_model, spend_model, settings: ScoreSettings, time_varying, rfm: pd.DataFrame) -> pd.DataFrame:
    """The chunk's rows, their scores and the ``reason`` of those whose scores are invalid."""
    return pd.concat([rfm, score_frame(purchase_model, spend_model, rfm, settings, reasons=True,
                                       time_varying=time_varying)], axis=1).reset_index()


def _score_in_worker(rfm: pd.DataFrame) -> pd.DataFrame:
    return _score_chunk(*_WORKER, rfm)


class _Scorer:
    """Scores chunks in this process (``jobs=1``) or in a pool of worker processes.

    Workers are started fresh ("spawn") and load the models from a temporary saved copy next to
    the output ``out`` (which predicts identically, see :mod:`clvmodels.models.persistence`); they
    die with this process (:mod:`clvmodels.workers`), and on any exception (Ctrl-C, SIGTERM in the
    ``clvmodels`` command) are stopped at once.
    """

    def __init__(self, purchase_model, spend_model, settings: ScoreSettings, jobs: int, out: str, time_varying=None):
        self.models = (purchase_model, spend_model, settings, time_varying)
        self.jobs = max(1, int(jobs))
        self.out = out
        self.pool = None
        self._scratch = None

    def __enter__(self) -> "_Scorer":
        if self.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from .io import scratch_directory
            from .models.persistence import save_models

            purchase_model, spend_model, settings, time_varying = self.models
            self._scratch = scratch_directory(self.out)
            model_dir = os.path.join(self._scratch.__enter__(), "models")
            try:
                save_models({"purchase": purchase_model, **({"spend": spend_model} if spend_model else {})},
                            model_dir)
                self.pool = ProcessPoolExecutor(
                    self.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                    initargs=(model_dir, settings, os.getpid(), os.path.dirname(os.path.abspath(self.out)), time_varying))
            except BaseException:
                self._scratch.__exit__(None, None, None)
                raise
        return self

    def submit(self, rfm: pd.DataFrame):
        if self.pool is None:
            return _score_chunk(*self.models, rfm)
        return self.pool.submit(_score_in_worker, rfm)

    def result(self, handle) -> pd.DataFrame:
        return handle if self.pool is None else handle.result()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.pool is not None:
            from .workers import terminate_pool

            try:
                if exc_type is None:
                    self.pool.shutdown(wait=True)
                else:
                    terminate_pool(self.pool)
            finally:
                self._scratch.__exit__(None, None, None)
        return False


def _duplicate_hashes(chunks: Iterable[pd.Series]) -> set[int]:
    """Hashes of customer ids that occur more than once (a pass over the id column only)."""
    hashes = [_hash_ids(c) for c in chunks]
    if not hashes:
        return set()
    all_h = np.concatenate(hashes)
    all_h.sort()
    dup = all_h[1:][all_h[1:] == all_h[:-1]]
    return set(np.unique(dup).tolist())


class _DuplicateFilter:
    """Flags the second and later occurrences of a customer id (the first one is scored)."""

    def __init__(self, dup_hashes: set[int]):
        self.dup_hashes = dup_hashes
        self.seen: set = set()

    def __call__(self, ids: pd.Series) -> np.ndarray:
        repeat = np.zeros(len(ids), dtype=bool)
        if not self.dup_hashes:
            return repeat
        candidates = np.flatnonzero(np.isin(_hash_ids(ids), np.fromiter(self.dup_hashes, dtype=np.uint64)))
        values = ids.to_numpy(dtype=object)
        for i in candidates:
            key = values[i]
            if key in self.seen:
                repeat[i] = True
            else:
                self.seen.add(key)
        return repeat


def iter_frame(frame: pd.DataFrame, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Slices of ``frame`` of at most ``chunk_rows`` rows."""
    for start in range(0, len(frame), chunk_rows):
        yield frame.iloc[start:start + chunk_rows]


def score_table(
    purchase_model,
    spend_model,
    source,
    out: str | os.PathLike,
    *,
    settings: ScoreSettings,
    rejects: str | os.PathLike | None = None,
    fmt: str | None = None,
    id_column: str = "customer_id",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    escape: bool = True,
    prior_rejects: pd.DataFrame | None = None,
    covariates: pd.DataFrame | None = None,
    time_varying=None,
) -> ScoreCounts:
    """Score every customer of an RFM table and write the scores (and rejects) atomically.

    Parameters
    ----------
    purchase_model, spend_model
        Fitted models (``spend_model`` may be None: no spend or CLV columns).
    source
        Path of an RFM table (Parquet or CSV, with an id column and the models' columns), or a
        frame indexed by customer id (as :func:`clvmodels.rfm_summary` returns).
    out
        Scores file: one row per scored customer, its id, its RFM columns and the scores.
    settings
        Horizon, discounting, interval and draws (:class:`ScoreSettings`).
    rejects
        Rejects file (default: next to ``out``, ``<stem>.rejects.<ext>``): id, reason and the
        row's values as text. Always written (empty when nothing was rejected).
    fmt
        ``"parquet"`` or ``"csv"`` for both outputs (default: from the name of ``out``).
    id_column
        Name of the customer id column of a table source.
    chunk_rows
        Rows per chunk.
    progress
        Called with the number of rows of each chunk once it is done.
    jobs
        Worker processes scoring chunks in parallel (each loads a saved copy of the models); the
        output keeps the input's order and at most ``jobs`` chunks are in flight. They die with
        this process (:mod:`clvmodels.workers`).
    escape
        CSV outputs: escape formula-like text cells (:func:`clvmodels.io.escape_formulas`).
    prior_rejects
        Customers rejected before the table was made (e.g. by
        :func:`clvmodels.log_screening.screen_log`): a frame with ``customer_id``, ``reason`` and
        any other columns, written first to the rejects file and counted as read and rejected.
    covariates
        Models with covariates read their covariate columns from the table, or from this
        customer-level table (indexed by customer id; ids match as text), joined to each chunk by id.
        A covariate column in neither is an error before any row is read; a customer without a
        covariate row, or with a missing, non-finite or unseen covariate value, is rejected with the
        reason. The scores file keeps the covariate columns.
    time_varying
        A purchase model with time-varying covariates: their path, a
        :class:`~clvmodels.timevarying.CovariatePath` (the future calendar, or a panel) with the model's
        columns. The table must record its end of observation (a Parquet table from ``rfm_summary``, or
        a frame with its ``attrs``); a customer it does not cover from her first purchase to the end of
        the horizon (or, for a panel, without rows) is rejected with the reason.

    Returns
    -------
    :class:`ScoreCounts`: rows read, scored and rejected (with the reasons), and the table's
    recorded time unit (None when it records none and could not be checked).

    Raises :class:`ClvDataError` before reading any row if an output is the input or the other
    output, if the table's recorded time unit is not the purchase model's
    (:func:`clvmodels.validation.check_time_unit`), or if the model's unit is unknown.
    """
    if int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise ClvDataError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    if int(jobs) != jobs or jobs < 1:
        raise ClvDataError(f"jobs must be a positive integer, got {jobs!r}.")
    columns = input_columns(purchase_model, spend_model)
    needed = covariate_columns(purchase_model, spend_model)
    if covariates is not None and not needed:
        warnings.warn("The models have no covariates: the covariate table is not used.", UserWarning, stacklevel=2)
        covariates = None
    if covariates is not None:
        covariates = covariate_index(covariates)[[c for c in needed if c in covariates.columns]]
    joined = [] if covariates is None else list(covariates.columns)
    from_table = [c for c in needed if c not in joined]
    out = os.fspath(out)
    if fmt is None:
        fmt = "csv" if out.lower().endswith(".csv") else "parquet"
    if rejects is None:
        rejects = default_rejects_path(out, fmt)
    check_outputs([] if isinstance(source, pd.DataFrame) else [source], {"out": out, "rejects": rejects})
    period_length(purchase_model, settings)  # fail before reading anything if the unit is unknown
    attrs = source.attrs if isinstance(source, pd.DataFrame) else table_attrs(source)
    counts = ScoreCounts(time_unit=check_time_unit(purchase_model, attrs))
    path_attrs = _time_varying_attrs(purchase_model, time_varying, attrs, source)

    if isinstance(source, pd.DataFrame):
        frame = source.reset_index()
        id_column = frame.columns[0] if source.index.name is None else source.index.name
        require_columns(frame, columns)
        _check_covariate_sources(list(frame.columns), joined, purchase_model, spend_model, "the table")
        dup = _duplicate_hashes([frame[id_column]])
        chunks = iter_frame(frame[[id_column] + columns + from_table], chunk_rows)
    else:
        available = table_columns(source)
        if id_column not in available:
            raise ClvDataError(
                f"{os.fspath(source)!r} has no customer id column {id_column!r} (it has {available}): "
                "pass its name with --id-column / id_column=...")
        _check_covariate_sources(available, joined, purchase_model, spend_model, repr(os.fspath(source)))
        # CSV ids are read as text: chunks of a CSV could otherwise get different id types
        text = (id_column,) if table_format(source) == "csv" else ()
        dup = _duplicate_hashes(c[id_column] for c in iter_table(source, [id_column], chunk_rows, text))
        chunks = iter_table(source, [id_column] + columns + from_table, chunk_rows, text)
    repeats = _DuplicateFilter(dup)
    kept = columns + needed  # the rejects file's values
    extra = [] if prior_rejects is None else [c for c in prior_rejects.columns if c not in REJECT_COLUMNS]
    with ChunkedTableWriter(out, fmt, escape=escape) as scores_out, \
            ChunkedTableWriter(rejects, fmt, escape=escape) as rejects_out, \
            _Scorer(purchase_model, spend_model, settings, jobs, out, time_varying) as scorer:
        pending: collections.deque = collections.deque()  # (scores in progress, rows of the chunk)
        import pyarrow as pa

        rejects_out.schema = pa.schema([(c, pa.string()) for c in REJECT_COLUMNS + kept + extra])

        def reject(rows: pd.DataFrame, reason: pd.Series) -> None:
            rej = rows[[id_column] + kept].astype(str).assign(reason=reason.to_numpy(), **dict.fromkeys(extra, ""))
            rej = rej.rename(columns={id_column: "customer_id"}) if id_column != "customer_id" else rej
            rejects_out.write(rej[REJECT_COLUMNS + [c for c in rej.columns if c not in REJECT_COLUMNS]])
            counts.rejected += len(rej)
            counts.add_rejects(reason)

        if prior_rejects is not None and len(prior_rejects):
            prior = prior_rejects.astype(object).where(prior_rejects.notna(), None)
            prior = prior.assign(customer_id=[None if v is None else str(v) for v in prior["customer_id"]],
                                 **{c: None for c in kept if c not in prior.columns})
            rejects_out.write(prior[REJECT_COLUMNS + kept + extra].astype(
                {c: object for c in REJECT_COLUMNS + kept + extra}))
            counts.read += len(prior)
            counts.rejected += len(prior)
            counts.add_rejects(prior["reason"])

        def write_next():
            result, n_rows = pending.popleft()
            if result is not None:
                frame = scorer.result(result)
                bad = (frame["reason"] != "").to_numpy()
                if bad.any():
                    reject(frame.loc[bad], frame.loc[bad, "reason"])
                scores_out.write(frame.loc[~bad].drop(columns="reason"))
                counts.scored += int((~bad).sum())
            if progress is not None:
                progress(n_rows)

        for chunk in chunks:
            chunk = chunk.reset_index(drop=True)
            counts.read += len(chunk)
            reason = problems(chunk, columns, id_column)
            if covariates is not None:
                lookup = covariates.reindex(pd.Index(chunk[id_column].astype(str)))
                chunk = chunk.assign(**{c: lookup[c].to_numpy() for c in joined})
                lacking = ~lookup.index.isin(covariates.index)
                reason[lacking & (reason == "").to_numpy()] = "no row in the covariate table"
            if needed:
                reason = reason.where(reason != "", covariate_problems(purchase_model, spend_model, chunk))
            if path_attrs is not None:
                reason = _coverage(chunk, reason, id_column, time_varying, path_attrs,
                                   settings.horizon * period_length(purchase_model, settings))
            repeat = repeats(chunk[id_column]) & (reason == "").to_numpy()
            reason[repeat] = f"duplicate {id_column} (an earlier row was scored)"
            bad = (reason != "").to_numpy()
            if bad.any():
                reject(chunk.loc[bad], reason[bad])
            good = chunk.loc[~bad]
            rfm = None
            if len(good):
                rfm = good.set_index(id_column)
                rfm = rfm.astype({c: float for c in columns}).astype({"frequency": np.int64})
                rfm.attrs.update(path_attrs or {})
            pending.append((scorer.submit(rfm) if rfm is not None else None, len(chunk)))
            while len(pending) > scorer.jobs:  # bounded: at most `jobs` chunks in flight
                write_next()
        while pending:
            write_next()
    return counts


def _time_varying_attrs(purchase_model, path, attrs: dict, source) -> dict | None:
    """The table's ``attrs`` that place its customers on the calendar (time unit, resolution, end of
    observation) when the purchase model has time-varying covariates (None otherwise); errors before
    any row is read when the path is missing, lacks the model's columns, or the table records no end."""
    from .models.timevarying import design_of
    from .timevarying import CovariatePath

    if not purchase_model.has_time_varying:
        if path is not None:
            raise ClvDataError("The purchase model has no time-varying covariates: the covariate path is not used; "
                               "leave it out.")
        return None
    if not isinstance(path, CovariatePath):
        raise ClvDataError("The purchase model has time-varying covariates: pass their path covering the horizon, "
                           "time_varying=covariate_calendar(...) or covariate_panel(...) (clvmodels score --calendar "
                           "FILE or --covariate-panel FILE).")
    missing = [c for c in design_of(purchase_model).columns if c not in path.columns]
    if missing:
        raise ClvDataError(f"The covariate path has no column(s) {missing} of the model's time-varying covariates "
                           f"(it has {list(path.columns)}).")
    keep = {k: attrs[k] for k in ("time_unit", "resolution", "observation_end", "calibration_end") if k in attrs}
    lacking = [k for k in ("resolution", "observation_end") if k not in keep]
    if lacking:
        where = "the table" if isinstance(source, pd.DataFrame) else repr(os.fspath(source))
        raise ClvDataError(f"{where} does not record its {' and '.join(lacking)} (CSV tables cannot), which place its "
                           "customers on the calendar: score the transaction log, or a Parquet table from "
                           "clvmodels summarize.")
    keep.setdefault("time_unit", purchase_model.time_unit_)
    return keep


def _coverage(chunk: pd.DataFrame, reason: pd.Series, id_column: str, path, attrs: dict, window: float) -> pd.Series:
    """``reason`` with the customers still valid whom ``path`` does not cover over their calibration
    window and the horizon's ``window`` (:func:`~clvmodels.timevarying.coverage_problems`)."""
    from .timevarying import coverage_problems

    ok = (reason == "").to_numpy()
    if ok.any():
        rows = chunk.loc[ok].set_index(id_column).astype({"T": float, "recency": float})
        rows.attrs.update(attrs)
        reason = reason.copy()
        reason[ok] = coverage_problems(rows, path, window).to_numpy()
    return reason


def _check_covariate_sources(available: list[str], joined: list[str], purchase_model, spend_model,
                             source: str) -> None:
    """The models' covariate columns are in the table or the joined covariate table, not in both."""
    clash = [c for c in joined if c in available]
    if clash:
        raise ClvDataError(f"Covariate column(s) {clash} are in both {source} and the covariate table: drop or "
                           "rename them in one.")
    require_covariates(available + joined, purchase_model, spend_model, source=source)


def default_rejects_path(out: str | os.PathLike, fmt: str) -> str:
    """``scores.parquet`` -> ``scores.rejects.parquet`` (``.csv`` likewise)."""
    return companion_path(out, fmt, "rejects")


def companion_path(out: str | os.PathLike, fmt: str, what: str) -> str:
    """``scores.parquet`` -> ``scores.<what>.parquet`` (``.csv`` likewise): a table written next to ``out``."""
    base, ext = os.path.splitext(os.fspath(out))
    return f"{base}.{what}{ext or ('.csv' if fmt == 'csv' else '.parquet')}"


def segment_summary(scores: pd.DataFrame, segments: pd.Series) -> pd.DataFrame:
    """Per segment of the scored customers: how many, their mean P(alive), and the sums (and means)
    of their expected purchases and CLV.

    ``scores``: the per-customer scores (``expected_purchases``, ``probability_alive``, ``clv`` when
    there is a spend model), indexed by customer id; ``segments``: each customer's segment, indexed
    by id (customers without one are the segment ``"(none)"``). Sums of expected values are
    expected totals; the interval of a segment's total is not the sum of its customers' intervals
    (in Python, :func:`clvmodels.total_value` with ``segments=`` simulates it).
    """
    segment = segments.reindex(scores.index).astype(object).where(lambda v: v.notna(), "(none)").astype(str)
    grouped = scores.groupby(segment.rename("segment"), sort=True)
    out = pd.DataFrame({"customers": grouped.size()})
    if "probability_alive" in scores:
        out["mean_probability_alive"] = grouped["probability_alive"].mean()
    for column in ("expected_purchases", "clv"):
        if column in scores:
            out[f"{column}_sum"] = grouped[column].sum()
            out[f"{column}_mean"] = grouped[column].mean()
    return out
