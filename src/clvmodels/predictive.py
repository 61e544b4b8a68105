"""Predictive distributions of what customers will actually do in a future window.

The expectations of the models (``expected_purchases``, ``clv``, ...) carry parameter uncertainty
only. The functions here add process randomness: each customer's number of purchases and total
spend over the next ``t`` periods, averaged over parameter draws (the posterior of a Bayesian fit,
the asymptotic normal of the log-parameters of an MLE when ``n_draws`` is given, else the point
estimate).

* Purchases use the closed-form predictive pmf of the purchase model's protocol
  (:class:`~clvmodels.models.purchase.PurchaseModel`; BG/NBD: FHL 2005 eq. 8 at the
  individual-level posterior), so quantiles and the randomised PIT are exact.
* Spend uses exact simulation from each customer's individual-level posterior (the purchase
  model's ``simulate_purchases_formula`` and the spend model's ``simulate_spend_formula``), with a fresh
  draw of the population parameters for every sample. It streams over customers in chunks (each
  with its own random stream, simulated by one thread per CPU), so memory stays bounded for
  millions of customers; results are reproducible for a given ``seed``, whatever the threads.
  Given period boundaries instead of one window, the same simulation gives the purchases and spend
  of every period, from which :mod:`clvmodels.clv` builds the predictive distribution of discounted
  CLV (:func:`clvmodels.clv.predictive_clv`).

Purchase distributions average over at most :data:`~clvmodels.models.draws.PREDICTIVE_DRAWS`
(500) posterior draws unless ``n_draws`` says otherwise (a larger posterior is subsampled, seeded by
``seed``), and :func:`predictive_purchases` reports the Monte Carlo error of that choice in
``frame.attrs["draws"]``.

Quantile columns are named ``q5``, ``q50``, ``q95`` (the percentage).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import pandas as pd

from . import metrics as M
from .errors import ClvDataError
from .models.base import check_kind
from .models.covariates import KEY_PREFIX, profile_groups
from .validation import validate_columns
from .workers import available_cores
from .models.draws import (CHUNK_ELEMENTS, PREDICTIVE, SIMULATION_DRAWS, check_finite, check_interval, sample_frame,
                           interval_frame, parameter_draws, predictive_draws)
from .models.purchase import PurchaseModel, period_boundaries
from .models.rows import unique_rows
from .models.spend import SpendModel
from .progress import progress

#: Largest predictive-pmf support tried by :func:`predictive_purchases` before giving up.
MAX_SUPPORT = 4096


# ---------------------------------------------------------------------------- helpers
def _window(model, t) -> float:
    """The prediction window as a float: valid for the model (:meth:`PurchaseModel.check_window`:
    finite, and whole for discrete models) and positive (a distribution over no time is a point mass)."""
    model.check_window(t)
    if float(t) <= 0:
        raise ClvDataError(f"The prediction window t must be finite and positive, got {t!r}.")
    return float(t)


def _without_time_varying(model, what: str) -> None:
    """Closed forms of the static model do not hold along a covariate path: refuse, never answer silently."""
    if getattr(model, "has_time_varying", False):
        raise ClvDataError(f"{what} has no closed form for a model with time-varying covariates: use "
                           "predictive_purchases(..., time_varying=, future=) (simulated along the paths), or "
                           "probability_alive / expected_purchases with future=.")


def _check_quantiles(quantiles) -> np.ndarray:
    qs = np.asarray(quantiles, dtype=float).ravel()
    if qs.size == 0 or np.any((qs <= 0) | (qs >= 1)):
        raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}.")
    return qs


def quantile_name(q: float) -> str:
    """Column name of a quantile: ``0.05 -> "q5"``, ``0.975 -> "q97.5"``."""
    return f"q{100 * q:.10g}"


def _quantile_columns(interval, quantiles) -> tuple[np.ndarray, list[str]]:
    """The quantiles to compute and their column names: an interval's ``median``, ``lower`` and
    ``upper``, or ``q5``-style names of explicit ``quantiles`` (by default 0.05, 0.5, 0.95)."""
    if interval is not None and quantiles is not None:
        raise ValueError("Pass either interval (e.g. 0.9) or quantiles, not both.")
    if interval is not None:
        check_interval(interval)
        return np.array([0.5, (1 - interval) / 2, (1 + interval) / 2]), ["median", "lower", "upper"]
    qs = _check_quantiles((0.05, 0.5, 0.95) if quantiles is None else quantiles)
    return qs, [quantile_name(q) for q in qs]


def _summary_frame(columns: dict, index, interval) -> pd.DataFrame:
    """Predictive summaries: the interval schema (marked predictive) with ``interval``, else a plain frame."""
    if interval is None:
        return pd.DataFrame(columns, index=index)
    order = ["mean", "median", "lower", "upper"]
    return interval_frame({k: columns[k] for k in order + [c for c in columns if c not in order]}, index,
                          interval, PREDICTIVE)


def _n(draws) -> int:
    return len(next(iter(draws.values())))


def _pmf_moments(model, draws, data, t: float, n_max: int, *, mean: bool = False) -> dict[str, np.ndarray]:
    """Averages over draws, per row of ``data`` (distinct histories): ``pmf`` (the mean pmf table,
    shape ``(rows, n_max + 1)``), ``cdf_var`` (the variance over draws of the cdf at ``0 .. n_max−1``,
    for its Monte Carlo error) and, with ``mean``, ``mean`` and ``mean_var`` (of ``E[Y(t) | θ]``).

    A model with a ``future_pmf_formula`` is averaged per distinct ``(frequency, age)`` pair: with
    ``P(alive)`` per draw and history (``p``, shape ``(draws, rows)``) and the alive customers' table
    per draw (``L``), the mean pmf of the pair's histories is the matrix product ``pᵀ L / n_draws``
    (plus the dead mass at 0), the cdf's variance comes from ``pᵀ S`` and ``(p²)ᵀ S²`` with ``S = 1 −``
    the alive customers' cdf (``F = 1 − p S``), and the mean from ``pᵀ E[Y(t) | alive]``: no table of
    draws x histories x counts, and ``P(alive)`` evaluated once. With covariates the same holds per
    covariate profile, at the parameters its customers share (rows sorted by profile,
    :func:`~clvmodels.models.covariates.profile_groups`); where profiles are nearly all distinct, and
    for other models, the ``purchase_pmf_formula`` (and ``expected_purchases_formula``) are evaluated
    per history. Chunks of bounded memory.
    """
    names = list(model.data_columns)
    covariates = [k for k in data if k.startswith(KEY_PREFIX)]
    rows = len(next(iter(data.values())))
    n_draws = _n(draws)
    params = {k: v[:, None] for k, v in draws.items()}
    # rows in (covariate profile, frequency, age, the rest) order: a pair's histories are contiguous
    order = np.lexsort([data[k] for k in reversed([*covariates, names[0], names[-1], *names[1:-1]])])
    data = {k: v[order] for k, v in data.items()}
    out = {"pmf": np.empty((rows, n_max + 1)), "cdf_var": np.empty((rows, n_max))}
    if mean:
        out.update(mean=np.empty(rows), mean_var=np.empty(rows))
    chunk = max(1, CHUNK_ELEMENTS // (n_draws * (n_max + 1)))
    link = model._covariate_link()
    with progress(rows, "predictive distributions", "histories") as advance:
        for start in range(0, rows, chunk):
            sl = slice(start, min(start + chunk, rows))
            part = {k: v[sl] for k, v in data.items()}
            # per (frequency, age) pair where customers of a pair share their parameters: per
            # covariate profile, at its parameters (contiguous rows, sorted by profile)
            groups = profile_groups({k: part.pop(k) for k in covariates}) if covariates else [({}, slice(None))]
            if type(model).future_pmf_formula is None or groups is None:
                _moments_per_history(model, params, {**part, **{k: data[k][sl] for k in covariates}},
                                     t, n_max, out, sl, mean)
            else:
                for profile, group in groups:
                    group = range(sl.stop - sl.start)[group]
                    _moments_per_pair(model, link.individual(params, profile) if profile else params,
                                      {k: v[group.start:group.stop] for k, v in part.items()}, t, n_max, out,
                                      slice(start + group.start, start + group.stop), mean)
            advance(sl.stop - sl.start)
    unsorted = np.empty_like(order)
    unsorted[order] = np.arange(rows)
    out = {k: v[unsorted] for k, v in out.items()}
    out["pmf"] = np.clip(out["pmf"], 0.0, 1.0)
    return out


def _moments_per_pair(model, params, part, t, n_max, out, sl, mean):
    """:func:`_pmf_moments` of one chunk of histories, by matrix products per ``(frequency, age)`` pair."""
    cls, names = type(model), list(model.data_columns)
    x, age = part[names[0]], part[names[-1]]
    alive = np.broadcast_to(cls.probability_alive_formula(params, **part), (_n(params), len(x)))
    check_finite(alive, "probability_alive")
    pairs, pair_of = unique_rows({"x": x, "age": age})      # first-appearance order: sorted, as the rows
    table = cls.future_pmf_formula(params, pairs["x"], pairs["age"], t=t, n_max=n_max)
    table = np.broadcast_to(table, (_n(params),) + table.shape[-2:])
    check_finite(table, "future_pmf")
    survival = 1.0 - np.cumsum(table[..., :-1], axis=-1)      # S = P(Y > k | alive), k < n_max
    if mean:
        future = np.broadcast_to(cls.future_purchases_formula(params, pairs["x"], pairs["age"], t=t),
                                 (_n(params), len(pairs["x"])))
        check_finite(future, "future_purchases")
    bounds = np.flatnonzero(np.diff(pair_of, prepend=-1, append=len(pairs["x"])))
    n_draws = _n(params)
    base = sl.start
    for j, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        p = alive[:, lo:hi]
        p2 = np.square(p)
        rows = slice(base + lo, base + hi)
        pmf = p.T @ table[:, j, :] / n_draws
        pmf[:, 0] += 1.0 - p.mean(axis=0)
        out["pmf"][rows] = pmf
        m1 = p.T @ survival[:, j, :] / n_draws
        out["cdf_var"][rows] = p2.T @ np.square(survival[:, j, :]) / n_draws - np.square(m1)
        if mean:
            e1 = p.T @ future[:, j] / n_draws
            out["mean"][rows] = e1
            out["mean_var"][rows] = p2.T @ np.square(future[:, j]) / n_draws - np.square(e1)


def _moments_per_history(model, params, part, t, n_max, out, sl, mean):
    """:func:`_pmf_moments` of one chunk of histories from the model's ``purchase_pmf_formula``."""
    formula = model.formula("purchase_pmf_formula")
    n_draws = _n(params)
    table = formula(params, **part, t=t, n_max=n_max)
    check_finite(table, "purchase_pmf")
    table = np.broadcast_to(table, (n_draws,) + table.shape[-2:])
    out["pmf"][sl] = table.mean(axis=0)
    cdf = np.cumsum(table[..., :-1], axis=-1)
    out["cdf_var"][sl] = cdf.var(axis=0)
    if mean:
        values = np.broadcast_to(model.formula("expected_purchases_formula")(params, **part, t=t),
                                 (n_draws, len(next(iter(part.values())))))
        check_finite(values, "expected_purchases")
        out["mean"][sl] = values.mean(axis=0)
        out["mean_var"][sl] = values.var(axis=0)


def _actual_counts(actual, rfm: pd.DataFrame) -> np.ndarray:
    if isinstance(actual, pd.Series):
        missing = rfm.index.difference(actual.index)
        if len(missing):
            raise ClvDataError(f"actual lacks {len(missing):,} of the customers to score (e.g. {list(missing[:3])}).")
        actual = actual.reindex(rfm.index)
    y = np.asarray(actual, dtype=float)
    if y.shape != (len(rfm),):
        raise ClvDataError(f"actual must hold one count per customer ({len(rfm):,}), got shape {y.shape}.")
    bad = ~np.isfinite(y) | (y < 0) | (y != np.round(y))
    if bad.any():
        raise ClvDataError(f"actual purchases must be non-negative integers ({int(bad.sum()):,} are not).")
    return y.astype(np.int64)


# ---------------------------------------------------------------------------- purchases
def purchase_pmf(model, t: float, n_max: int, rfm: pd.DataFrame | None = None, *, n_draws: int | None = None,
                 seed: int | None = None) -> np.ndarray:
    """Predictive distribution of each customer's number of purchases in the next ``t`` periods.

    Parameters
    ----------
    model
        A fitted purchase model with a ``purchase_pmf_formula`` (e.g. :class:`~clvmodels.BetaGeoModel`).
    t
        Length of the future window, in the model's time unit.
    n_max
        Columns ``0 .. n_max-1`` hold ``P(Y(t) = k)``; the last column holds ``P(Y(t) >= n_max)``.
    rfm
        Customers to score (default: the training data).
    n_draws, seed
        Parameter draws averaged over (parameter + process uncertainty): by default
        :data:`~clvmodels.models.draws.PREDICTIVE_DRAWS` (500) posterior draws chosen at random with
        ``seed`` (all of a smaller posterior), or ``n_draws`` of them; for an MLE the point
        estimate, or ``n_draws`` draws from the asymptotic normal.

    Returns
    -------
    Array of shape ``(n_customers, n_max + 1)``; each row sums to 1. Evaluated once per distinct
    history.
    """
    check_kind(model, PurchaseModel, "purchase_pmf")
    _without_time_varying(model, "purchase_pmf (and randomized_pit)")
    model.require_formula("purchase_pmf_formula", "purchase_pmf")
    t = _window(model, t)
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    rfm = model._rfm_or_fitted(rfm)
    data = {**validate_columns(rfm, model.data_columns), **model.covariate_data(rfm)}
    draws, _ = predictive_draws(model, n_draws, np.random.default_rng(seed))
    uniq, inverse = unique_rows(data)
    return _pmf_moments(model, draws, uniq, t, int(n_max))["pmf"][inverse]


def predictive_purchases(model, t: float, rfm: pd.DataFrame | None = None, *, interval: float | None = None,
                         quantiles=None, n_draws: int | None = None, seed: int | None = None, time_varying=None,
                         future=None, n_samples: int = 1000) -> pd.DataFrame:
    """Per-customer mean and predictive interval (or quantiles) of the number of purchases in the
    next ``t`` periods.

    The mean is the expected count (the model's ``expected_purchases_formula``, averaged over the
    same draws); a quantile ``q`` is the smallest ``k`` with ``P(Y(t) <= k) >= q`` under
    :func:`purchase_pmf`. The pmf is evaluated once per distinct history, on a support of 16
    counts widened (x4) only for the histories whose tail mass beyond it still exceeds
    ``1 − max(q)`` (early stopping: a few heavy buyers do not widen everyone's support).

    Parameter draws are as for :func:`purchase_pmf`: a posterior larger than
    :data:`~clvmodels.models.draws.PREDICTIVE_DRAWS` is subsampled to that many draws (seeded with
    ``seed``) unless ``n_draws`` is given.

    Returns
    -------
    DataFrame indexed like ``rfm`` with ``mean``, ``p_zero`` (P(no purchase)) and, with ``interval``
    (e.g. 0.9), ``median``, ``lower`` and ``upper`` (the interval schema of
    :func:`~clvmodels.models.draws.interval_frame`, marked predictive), or one column per quantile
    of ``quantiles`` (``q5``, ``q50``, ``q95`` when neither is given). ``frame.attrs["draws"]``
    says which draws were averaged over (``n_draws``, ``posterior_draws``, ``subsampled``) and their
    Monte Carlo error: ``mc_se_mean`` (largest over customers of the standard error of the mean,
    ``sd over draws of E[Y(t) | θ] / √n_draws``) and ``mc_se_cdf`` (largest standard error of the
    predictive cdf at the reported quantiles); both are 0 for a single point estimate.

    A model with time-varying covariates has no closed-form pmf along a covariate path: its
    distribution is simulated exactly (:func:`_simulated_purchases`, ``n_samples`` futures over the
    customers' ``time_varying`` summary and ``future`` pieces).
    """
    check_kind(model, PurchaseModel, "predictive_purchases")
    if model.has_time_varying:
        return _simulated_purchases(model, t, rfm, interval=interval, quantiles=quantiles, n_draws=n_draws, seed=seed,
                                    n_samples=n_samples, time_varying=time_varying, future=future)
    model.require_formula("purchase_pmf_formula", "predictive_purchases")
    t = _window(model, t)
    qs, names = _quantile_columns(interval, quantiles)
    rfm = model._rfm_or_fitted(rfm)
    data = {**validate_columns(rfm, model.data_columns), **model.covariate_data(rfm)}
    draws, info = predictive_draws(model, n_draws, np.random.default_rng(seed))
    n_draws = info["n_draws"]
    uniq, inverse = unique_rows(data)
    n_uniq = len(next(iter(uniq.values())))
    out = {"mean": np.empty(n_uniq), "p_zero": np.empty(n_uniq)}
    out.update({name: np.full(n_uniq, np.nan) for name in names})
    cdf_se, mean_se = np.zeros(n_uniq), np.zeros(n_uniq)
    rows, n_max = np.arange(n_uniq), 16
    while len(rows):
        first = n_max == 16                    # every history: the mean and its MC error too
        m = _pmf_moments(model, draws, {k: v[rows] for k, v in uniq.items()}, t, n_max, mean=first)
        if first:
            out["mean"] = m["mean"]
            mean_se = np.sqrt(np.maximum(m["mean_var"], 0.0) / max(n_draws - 1, 1))   # sd (ddof 1) / √n
        pmf = m["pmf"]
        done = (pmf[:, -1] < 1.0 - qs.max()) | (n_max >= MAX_SUPPORT)
        cdf = np.cumsum(pmf[done, :-1], axis=1)
        out["p_zero"][rows[done]] = pmf[done, 0]
        for q, name in zip(qs, names):
            # cdf rounding: a tolerance so that a cdf of 0.95 - 1e-16 counts as reaching 0.95
            k = (cdf < q - 1e-12).sum(axis=1)
            inside = k < n_max                 # else beyond the support tried (MAX_SUPPORT reached)
            out[name][rows[done][inside]] = k[inside]
            var = np.take_along_axis(m["cdf_var"][done], np.minimum(k, n_max - 1)[:, None], 1)[:, 0]
            cdf_se[rows[done]] = np.maximum(cdf_se[rows[done]], np.sqrt(np.maximum(var, 0.0) / n_draws))
        rows, n_max = rows[~done], n_max * 4
    frame = _summary_frame({k: v[inverse] for k, v in out.items()}, rfm.index, interval)
    if frame.isna().any().any():
        raise FloatingPointError(f"Some customers' predictive quantiles exceed {MAX_SUPPORT:,} purchases: "
                                 "check the time unit of t and of the model.")
    single = n_draws == 1                      # a point estimate: no Monte Carlo (not rounding noise)
    frame.attrs["draws"] = dict(info, mc_se_mean=0.0 if single else float(mean_se.max(initial=0.0)),
                                mc_se_cdf=0.0 if single else float(cdf_se.max(initial=0.0)))
    return frame


def _simulated_purchases(model, t: float, rfm, *, interval, quantiles, n_draws, seed, n_samples, time_varying,
                         future) -> pd.DataFrame:
    """:func:`predictive_purchases` of a model with time-varying covariates, by exact simulation
    (:class:`SimulatedCounts`); the mean and ``p_zero`` are Monte Carlo averages
    (``attrs["draws"]["mc_se_mean"]``: their largest standard error), a quantile ``q`` the smallest
    count whose empirical cdf reaches ``q``."""
    qs, names = _quantile_columns(interval, quantiles)
    rfm = model._rfm_or_fitted(rfm)
    n = len(rfm)
    out = {name: np.empty(n) for name in ["mean", "p_zero", *names]}
    se = np.zeros(n)
    chunks = SimulatedCounts(model, t, rfm, n_samples=n_samples, n_draws=n_draws, seed=seed,
                              time_varying=time_varying, future=future)
    for sl, counts in chunks:
        out["mean"][sl], out["p_zero"][sl] = counts.mean(axis=0), (counts == 0).mean(axis=0)
        se[sl] = counts.std(axis=0, ddof=1) / np.sqrt(len(counts))
        for q, name in zip(qs, names):
            out[name][sl] = np.quantile(counts, q, axis=0, method="inverted_cdf")
    frame = _summary_frame(out, rfm.index, interval)
    frame.attrs["draws"] = {"n_draws": chunks.n_draws, "n_samples": chunks.n_samples, "simulated": True,
                            "mc_se_mean": float(se.max(initial=0.0))}
    return frame


def future_draws(n_samples: int, n_draws) -> tuple[int, np.ndarray]:
    """``(n_draws, draw of each future)``: ``n_draws`` parameter draws (default :data:`SIMULATION_DRAWS`,
    at most ``n_samples``), future ``i`` at draw ``i mod n_draws``."""
    n_draws = min(n_samples, SIMULATION_DRAWS if n_draws is None else int(n_draws))
    if n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}.")
    return n_draws, np.arange(n_samples) % n_draws


class SimulatedCounts:
    """``(customer positions, purchases (n_samples, chunk))`` per chunk of the customers of ``rfm``:
    each customer's purchases in ``(T, T + t]`` simulated exactly along her covariate path
    (:func:`clvmodels.models.timevarying.purchase_simulator`, the ``time_varying`` summary and
    ``future`` pieces) in ``n_samples`` futures; future ``i`` at parameter draw ``i mod n_draws`` of
    ``n_draws`` draws (default :data:`SIMULATION_DRAWS`, at most ``n_samples``) shared by all
    customers, so that a future summed over customers is a draw of their total. Chunks of at most
    :data:`CHUNK_ELEMENTS` counts, each with its own random stream spawned from ``seed``."""

    def __init__(self, model, t: float, rfm, *, n_samples: int, n_draws=None, seed=None, time_varying=None,
                 future=None):
        from .models.timevarying import purchase_simulator

        t = _window(model, t)
        if int(n_samples) != n_samples or n_samples < 2:
            raise ValueError(f"n_samples must be an integer of at least 2, got {n_samples!r}.")
        self.n_samples = int(n_samples)
        self.n_draws, self._future_draw = future_draws(self.n_samples, n_draws)
        draw_seed, self._chunk_seed = _seed_sequence(seed).spawn(2)
        self._draws = parameter_draws(model, self.n_draws, np.random.default_rng(draw_seed), replace=True)
        self._along = purchase_simulator(model, rfm, [t], time_varying=time_varying, future=future)
        self._n = len(rfm)

    def __iter__(self):
        future_draw = self._future_draw
        chunk = max(1, CHUNK_ELEMENTS // self.n_samples)
        starts = range(0, self._n, chunk)
        for start, stream in zip(starts, self._chunk_seed.spawn(len(starts))):
            sl = np.arange(start, min(self._n, start + chunk))
            yield sl, self._along(self._draws, future_draw, sl, np.random.default_rng(stream))[..., 0]


def simulated_pmf(model, t: float, n_max: int, rfm, **simulation) -> tuple[np.ndarray, np.ndarray]:
    """The predictive pmf of each customer's purchases in ``(T, T + t]`` of a model with time-varying
    covariates, from :class:`SimulatedCounts` (``simulation``: its arguments): the share of the
    simulated futures with ``k`` purchases in column ``k < n_max``, with ``n_max`` or more in the last
    column (:func:`clvmodels.metrics.sample_pmf`, the layout of :func:`purchase_pmf`); and the simulated
    futures' totals over customers."""
    rfm = model._rfm_or_fitted(rfm)
    pmf = np.zeros((len(rfm), int(n_max) + 1))
    totals = 0.0
    for sl, counts in SimulatedCounts(model, t, rfm, **simulation):
        pmf[sl] = M.sample_pmf(counts, n_max)
        totals = totals + counts.sum(axis=1, dtype=np.int64)
    return pmf, np.asarray(totals, dtype=float)


def randomized_pit(model, t: float, actual, rfm: pd.DataFrame | None = None, *, n_draws: int | None = None,
                   seed: int | None = None) -> np.ndarray:
    """Randomised probability integral transform of actual counts (Czado, Gneiting & Held 2009).

    ``u = F(y−1) + V (F(y) − F(y−1))`` with ``F`` each customer's predictive cdf of purchases in the
    window (:func:`purchase_pmf`) and ``V ~ U(0, 1)``. Under a calibrated model the ``u`` are uniform
    on (0, 1): e.g. 90% of them lie in [0.05, 0.95].

    Parameters
    ----------
    actual
        Each customer's actual number of purchases in the window (array in the order of ``rfm``, or
        a Series indexed by customer id).
    n_draws, seed
        As for :func:`purchase_pmf` (by default at most
        :data:`~clvmodels.models.draws.PREDICTIVE_DRAWS` posterior draws); ``seed`` seeds both the
        choice of draws and ``V``.
    """
    rfm = model._rfm_or_fitted(rfm)
    y = _actual_counts(actual, rfm)
    rng = np.random.default_rng(seed)
    pmf = purchase_pmf(model, t, int(y.max()) + 1, rfm, n_draws=n_draws,
                       seed=int(rng.integers(2**63)))
    return M.randomized_pit(pmf, y, seed=rng)


# ---------------------------------------------------------------------------- value
def _seed_sequence(seed) -> np.random.SeedSequence:
    """A :class:`numpy.random.SeedSequence` from an int, None, a SeedSequence or a Generator."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2**63)))
    return np.random.SeedSequence(seed)




def _simulate_chunks(purchase_model, spend_model, t, rfm: pd.DataFrame, n_samples: int,
                     seed, *, jobs: int | None = None, n_draws: int | None = None,
                     progressbar: bool | None = None, time_varying=None,
                     future=None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(customer positions, purchases, spend)`` arrays of shape ``(n_samples, chunk)``, or
    with increasing period boundaries ``t = [t_1, ..., t_H]`` the counts and spend per period
    ``(n_samples, chunk, H)``, the chunk's customers at ``positions`` of ``rfm``. Chunks hold at most
    :data:`CHUNK_ELEMENTS` values per array, and customers of equal histories together (ordered by
    their purchase-model columns), so that formulas evaluated once per distinct history
    (:func:`~clvmodels.models.purchase.per_distinct_draw`) find them in one chunk.

    Future ``i`` uses parameter draw ``i mod n_draws`` of ``n_draws`` draws of both models (default
    :data:`SIMULATION_DRAWS`, at most ``n_samples``; posterior draws resampled, or the MLE's
    asymptotic normal), seeded by ``seed``; every chunk of customers has its own random stream
    (spawned from ``seed``), so the result is the same whether ``jobs`` threads simulate the chunks
    (numpy's random draws release the GIL; default: :func:`~clvmodels.workers.available_cores`) or one does. At most
    ``jobs + 1`` chunks are in memory at once. A progress bar counts the customers simulated
    (:mod:`clvmodels.progress`; ``progressbar``).

    A purchase model with time-varying covariates simulates along the customers' paths: their
    calibration summary ``time_varying`` (default the training one) and ``future`` pieces from ``T``
    (:func:`clvmodels.models.timevarying.purchase_simulator`), the rest as above."""
    check_kind(purchase_model, PurchaseModel, "simulate_value (the purchase model)")
    check_kind(spend_model, SpendModel, "simulate_value (the spend model)")
    purchase_model.require_formula("simulate_purchases_formula", "simulate_value")
    sim_purchases = purchase_model.formula("simulate_purchases_formula")
    sim_spend = spend_model.formula("simulate_spend_formula")
    bounds, scalar = period_boundaries(t)
    for b in bounds:
        _window(purchase_model, b)
    t = float(bounds[0]) if scalar else bounds
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    n_samples = int(n_samples)
    jobs = available_cores() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}.")
    purchase_data = {**validate_columns(rfm, purchase_model.data_columns), **purchase_model.covariate_data(rfm)}
    spend_data = {**validate_columns(rfm, spend_model.data_columns), **spend_model.covariate_data(rfm)}
    draw_seed, chunk_seed = _seed_sequence(seed).spawn(2)
    n_draws, future_draw = future_draws(n_samples, n_draws)
    rng = np.random.default_rng(draw_seed)
    pd_ = parameter_draws(purchase_model, n_draws, rng, replace=True)
    sd_ = parameter_draws(spend_model, n_draws, rng, replace=True)
    pp = {k: np.broadcast_to(v, (n_draws,))[future_draw][:, None] for k, v in pd_.items()}
    sp = {k: np.broadcast_to(v, (n_draws,))[future_draw][:, None] for k, v in sd_.items()}
    n = len(rfm)
    chunk = max(1, CHUNK_ELEMENTS // (n_samples * len(bounds)))
    starts = range(0, n, chunk)
    order = np.lexsort(tuple(purchase_data.values())[::-1]) if purchase_data else np.arange(n)
    along = None   # time-varying covariates: the purchases along the customers' paths
    if purchase_model.has_time_varying:
        from .models.timevarying import purchase_simulator

        along = purchase_simulator(purchase_model, rfm, bounds, time_varying=time_varying, future=future)

    def simulate(start: int, stream: np.random.SeedSequence):
        sl = order[start:start + chunk]
        rng = np.random.default_rng(stream)
        if along is None:
            counts = sim_purchases(pp, **{k: v[sl] for k, v in purchase_data.items()}, t=t, rng=rng)
        else:
            counts = along(pd_, future_draw, sl, rng)
            counts = counts[..., 0] if scalar else counts
        spend = sim_spend(sp, **{k: v[sl] for k, v in spend_data.items()}, n_transactions=counts, rng=rng)
        check_finite(spend, "simulate_value")
        return sl, counts, spend

    tasks = zip(starts, chunk_seed.spawn(len(starts)))
    with progress(n, "simulating futures", "customers", progressbar) as advance:
        for result in _in_order(simulate, tasks, 1 if len(starts) == 1 else jobs):
            yield result
            advance(len(result[0]))


def _in_order(fn, tasks, jobs: int):
    """``fn(*task)`` for each task, in order: in this thread, or in ``jobs`` threads with at most
    ``jobs + 1`` results held at once."""
    if jobs == 1:
        for task in tasks:
            yield fn(*task)
        return
    with ThreadPoolExecutor(jobs) as pool:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append(pool.submit(fn, *task))
            if len(pending) > jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def simulate_value(purchase_model, spend_model, t: float, rfm: pd.DataFrame | None = None, *,
                   n_samples: int = 1000, seed: int | None = None,
                   progressbar: bool | None = None) -> pd.DataFrame:
    """Samples of each customer's total spend in the next ``t`` periods, by exact simulation.

    Every sample takes population parameters of both models (from the posterior, or the asymptotic
    normal of an MLE; :data:`SIMULATION_DRAWS` distinct draws shared by the samples), then each
    customer's future from her individual-level posterior:
    alive with probability P(alive); ``λ ~ Gamma(r+x, α+T)``, ``p ~ Beta(a, b+x)``; the purchases of
    a Poisson process with drop-out; each transaction's value ``Gamma(p, ν)`` with
    ``ν ~ Gamma(px+q, γ + x m)`` (see the models' ``simulate_*`` formulas).

    Returns
    -------
    DataFrame ``(n_samples, n_customers)``: one row per simulated future (index ``sample``), one
    column per customer (her id; :func:`~.models.draws.sample_frame`); ``.to_numpy()`` gives the
    array. For summaries over many customers use :func:`predictive_value`, which never holds it whole.
    """
    rfm = purchase_model._rfm_or_fitted(rfm)
    spend_model._check_fitted()
    out = np.empty((int(n_samples), len(rfm)))
    for sl, _, spend in _simulate_chunks(purchase_model, spend_model, t, rfm, n_samples, seed,
                                         progressbar=progressbar):
        out[:, sl] = spend
    return sample_frame(out, rfm.index, f"total spend over t={t:g}")


def predictive_value(purchase_model, spend_model, t: float, rfm: pd.DataFrame | None = None, *,
                     interval: float | None = None, quantiles=None, n_samples: int = 1000,
                     seed: int | None = None, progressbar: bool | None = None) -> pd.DataFrame:
    """Per-customer predictive distribution of total spend in the next ``t`` periods.

    Summarises :func:`simulate_value` chunk by chunk (bounded memory; the same samples for the same
    ``seed``), with a progress bar over the customers (``progressbar``; default: on a terminal or in
    Jupyter, :mod:`clvmodels.progress`).

    Returns
    -------
    DataFrame indexed like ``rfm`` with ``mean`` (Monte Carlo mean of the simulated spend),
    ``p_zero`` (share of samples with no purchase), ``mean_purchases`` and, as for
    :func:`predictive_purchases`, ``median``/``lower``/``upper`` with ``interval`` or one column per
    quantile.
    """
    qs, names = _quantile_columns(interval, quantiles)
    rfm = purchase_model._rfm_or_fitted(rfm)
    spend_model._check_fitted()
    n = len(rfm)
    out = {"mean": np.empty(n), "p_zero": np.empty(n), "mean_purchases": np.empty(n)}
    out.update({name: np.empty(n) for name in names})
    for sl, counts, spend in _simulate_chunks(purchase_model, spend_model, t, rfm, n_samples, seed,
                                              progressbar=progressbar):
        out["mean"][sl] = spend.mean(axis=0)
        out["p_zero"][sl] = (counts == 0).mean(axis=0)
        out["mean_purchases"][sl] = counts.mean(axis=0)
        values = np.quantile(spend, qs, axis=0)
        for name, v in zip(names, values):
            out[name][sl] = v
    return _summary_frame(out, rfm.index, interval)


def randomized_pit_value(purchase_model, spend_model, t: float, actual, rfm: pd.DataFrame | None = None, *,
                         n_samples: int = 1000, seed: int | None = None) -> np.ndarray:
    """Randomised PIT of each customer's actual spend in the window against :func:`simulate_value`.

    ``u = F̂(y−) + V (F̂(y) − F̂(y−))`` with ``F̂`` the empirical cdf of the customer's simulated
    spend: the randomisation spreads the atom at zero spend (no purchase) uniformly.
    """
    rfm = purchase_model._rfm_or_fitted(rfm)
    if isinstance(actual, pd.Series):
        actual = actual.reindex(rfm.index)
    y = np.asarray(actual, dtype=float)
    if y.shape != (len(rfm),) or not np.all(np.isfinite(y)) or np.any(y < 0):
        raise ClvDataError(f"actual spend must be one finite, non-negative value per customer ({len(rfm):,}).")
    rng = np.random.default_rng(seed)
    sim_seed = int(rng.integers(2**63))
    u = np.empty(len(y))
    for sl, _, spend in _simulate_chunks(purchase_model, spend_model, t, rfm, n_samples, sim_seed):
        u[sl] = M.pit_samples(spend, y[sl], seed=rng)
    return u


__all__ = ["predictive_purchases", "predictive_value", "purchase_pmf", "quantile_name", "randomized_pit",
           "randomized_pit_value", "simulate_value"]


def active_customers(model, rfm: pd.DataFrame | None = None, *, interval: float = 0.9, n_samples: int = 1000,
                     n_draws: int | None = None, seed: int | None = None) -> pd.DataFrame:
    """Predictive distribution of how many customers are alive at the end of observation.

    Each simulated future draws the parameters (posterior, or the MLE's asymptotic normal; future
    ``i`` uses draw ``i mod n_draws``, default :data:`~clvmodels.models.draws.SIMULATION_DRAWS`),
    then each customer alive with her ``P(alive | history)`` under them: the count
    ``N = Σ_i Bernoulli(p_i)`` (customers sharing a history: one binomial). Its mean is
    ``Σ_i P(alive)`` up to Monte Carlo error, and its interval carries process and parameter
    uncertainty. A fit without a finite covariance gives process uncertainty only (noted in
    ``attrs["notes"]``).

    Returns
    -------
    A one-row frame (index ``"all"``) with ``n_customers``, ``mean``, ``median``, ``lower``,
    ``upper`` (``attrs["uncertainty"]``: predictive).
    """
    check_kind(model, PurchaseModel, "active_customers")
    _without_time_varying(model, "active_customers")
    check_interval(interval)
    rfm = model._rfm_or_fitted(rfm)
    data, inverse = unique_rows({**validate_columns(rfm, model.data_columns), **model.covariate_data(rfm)})
    counts = np.bincount(inverse, minlength=len(next(iter(data.values())))).astype(np.int64)
    rng = np.random.default_rng(seed)
    notes = []
    try:
        draws = parameter_draws(model, n_draws or SIMULATION_DRAWS, rng)
    except ClvDataError as exc:
        notes.append(f"Process uncertainty only: {exc}")
        draws = parameter_draws(model)
    params = {k: np.asarray(v, dtype=float)[:, None] for k, v in draws.items()}
    alive = np.broadcast_to(model.formula("probability_alive_formula")(params, **data), (_n(draws), len(counts)))
    check_finite(alive, "P(alive)")
    which = np.arange(int(n_samples)) % _n(draws)
    chunk = max(1, CHUNK_ELEMENTS // max(len(counts), 1))
    samples = np.concatenate([rng.binomial(counts[None, :], alive[which[i:i + chunk]]).sum(axis=1)
                              for i in range(0, len(which), chunk)]).astype(float)
    lo, med, hi = np.quantile(samples, [(1 - interval) / 2, 0.5, (1 + interval) / 2])
    frame = interval_frame({"n_customers": [len(rfm)], "mean": [samples.mean()], "median": [med], "lower": [lo],
                            "upper": [hi]}, pd.Index(["all"]), interval, PREDICTIVE)
    frame.attrs["notes"] = notes
    return frame
