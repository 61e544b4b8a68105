"""Forecast-accuracy metrics for per-customer predictions of holdout purchases and value.

Three families, all plain numpy functions of arrays (one entry per customer):

* point forecasts: :func:`point_errors` (MAE, RMSE, bias), :func:`total_error_pct`,
  :func:`spearman`, :func:`top_share` (share of the actual value captured by the predicted top
  customers), :func:`gini` (normalised Gini of the predicted ranking) and :func:`gains_curve`
  (the lift chart's data);
* predictive distributions of counts, given as a probability mass function per customer (an
  ``(n_customers, K + 1)`` array: columns ``0..K−1`` hold ``P(N = k)``, the last one the tail mass
  ``P(N ≥ K)``, as made by :func:`clvmodels.predictive.purchase_pmf` with ``n_max = K``):
  :func:`randomized_pit`, :func:`log_score`,
  :func:`crps_pmf` and the distribution of the total over customers, :func:`total_pmf`;
* predictive distributions given as samples (simulated values): :func:`pit_samples`,
  :func:`crps_samples` and :func:`total_interval_samples`; :func:`sample_pmf`, the pmf of simulated counts.

Ties in the predicted ranking are shared fairly: customers with equal predictions count as the
average over all their orderings, so a forecast that predicts the same value for everyone scores as
a random ranking, never better.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, stats

from .errors import ClvDataError

#: Nominal levels of the central predictive intervals whose coverage is reported.
COVERAGE_LEVELS = (0.5, 0.8, 0.9)


def _pair(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if a.shape != p.shape:
        raise ClvDataError(f"actual and predicted differ in length ({a.size:,} vs {p.size:,}).")
    if a.size == 0:
        raise ClvDataError("No customers to evaluate (empty arrays).")
    bad = ~(np.isfinite(a) & np.isfinite(p))
    if bad.any():
        raise ClvDataError(f"{int(bad.sum()):,} non-finite actual or predicted value(s): metrics need finite numbers.")
    return a, p


# ---------------------------------------------------------------------------- point forecasts
def point_errors(actual, predicted) -> dict[str, float]:
    """Per-customer mean absolute error, root mean squared error and bias (mean of predicted − actual)."""
    a, p = _pair(actual, predicted)
    err = p - a
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "bias": float(np.mean(err))}


def total_error_pct(actual, predicted) -> float:
    """Error of the predicted total, in percent of the actual total: ``100 (Σp − Σa) / Σa``."""
    a, p = _pair(actual, predicted)
    total = a.sum()
    if total == 0:
        return float("nan") if p.sum() == 0 else float("inf")
    return float(100.0 * (p.sum() - total) / total)


def spearman(actual, predicted) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant."""
    a, p = _pair(actual, predicted)
    if np.all(a == a[0]) or np.all(p == p[0]):
        return float("nan")
    return float(stats.spearmanr(a, p).statistic)


def _tie_groups(actual: np.ndarray, predicted: np.ndarray):
    """Customers grouped by predicted value, best first: (group sizes, actual sums per group)."""
    values, inverse = np.unique(-predicted, return_inverse=True)  # ascending −p: descending p
    counts = np.bincount(inverse, minlength=len(values)).astype(float)
    sums = np.bincount(inverse, weights=actual, minlength=len(values))
    return counts, sums


def top_share(actual, predicted, fraction: float) -> float:
    """Share of the total actual value held by the ``fraction`` of customers predicted highest.

    Customers tied with the last selected one count pro rata (the expectation over random tie
    breaks). Returns NaN when the actual total is 0.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    a, p = _pair(actual, predicted)
    total = a.sum()
    if total == 0:
        return float("nan")
    counts, sums = _tie_groups(a, p)
    k = fraction * a.size
    before = np.concatenate([[0.0], np.cumsum(counts)[:-1]])
    taken = np.clip(k - before, 0.0, counts)  # customers taken from each tie group
    return float(np.sum(sums * taken / counts) / total)


def gains_curve(actual, predicted, n_points: int = 101):
    """Cumulative gains (the lift chart's data): share of actual value captured by the top ``x``.

    Returns ``(x, captured)``: arrays of ``n_points`` customer fractions from 0 to 1 and the share
    of the actual total captured by the customers predicted highest, ties shared pro rata.
    """
    a, p = _pair(actual, predicted)
    x = np.linspace(0.0, 1.0, n_points)
    total = a.sum()
    if total == 0:
        return x, np.full(n_points, np.nan)
    counts, sums = _tie_groups(a, p)
    edges = np.concatenate([[0.0], np.cumsum(counts)]) / a.size
    captured = np.concatenate([[0.0], np.cumsum(sums)]) / total
    return x, np.interp(x, edges, captured)


def _gains_area(a: np.ndarray, p: np.ndarray) -> float:
    counts, sums = _tie_groups(a, p)
    edges = np.concatenate([[0.0], np.cumsum(counts)]) / a.size
    captured = np.concatenate([[0.0], np.cumsum(sums)]) / a.sum()
    return float(np.sum(np.diff(edges) * (captured[1:] + captured[:-1]) / 2))


def gini(actual, predicted) -> float:
    """Normalised Gini coefficient of the predicted ranking.

    ``G(p) / G(a)``, where ``G(s) = 2 × (area under the cumulative-gains curve when customers are
    sorted by s) − 1``: 1 for a ranking as good as sorting by the actual values, 0 for a random (or
    constant) ranking, negative for a ranking worse than random. Ties are shared pro rata. NaN when
    the actual values are all equal (nothing to rank).
    """
    a, p = _pair(actual, predicted)
    if a.sum() == 0 or np.all(a == a[0]):
        return float("nan")
    best = 2 * _gains_area(a, a) - 1
    return float((2 * _gains_area(a, p) - 1) / best)


# ---------------------------------------------------------------------------- count distributions
def _pmf_actual(pmf, actual) -> tuple[np.ndarray, np.ndarray]:
    pmf = np.asarray(pmf, dtype=float)
    y = np.asarray(actual, dtype=float).ravel()
    if pmf.ndim != 2 or pmf.shape[0] != y.size or pmf.shape[1] < 2:
        raise ClvDataError(
            f"pmf must have shape (n_customers, K + 1) with n_customers = {y.size:,}; got {pmf.shape}.")
    if np.any(y < 0) or np.any(y != np.round(y)):
        raise ClvDataError("Actual counts must be non-negative integers.")
    if not np.all(np.isfinite(pmf)) or np.any(pmf < -1e-12) or np.any(np.abs(pmf.sum(axis=1) - 1) > 1e-6):
        raise ClvDataError("Each pmf row must hold finite, non-negative probabilities summing to 1 "
                           "(the last column being the tail mass).")
    return np.clip(pmf, 0.0, None), y.astype(np.int64)


def randomized_pit(pmf, actual, *, seed=None) -> np.ndarray:
    """Randomised probability integral transform of counts (Czado, Gneiting & Held 2009, eq. 1).

    ``u = F(y − 1) + V · P(y)`` with ``V ~ Uniform(0, 1)``: uniform on (0, 1) when the forecasts
    are calibrated. An actual count of ``K`` or more falls in the tail column ``P(N ≥ K)``.
    """
    pmf, y = _pmf_actual(pmf, actual)
    k = np.minimum(y, pmf.shape[1] - 1)
    cdf_below = np.cumsum(pmf, axis=1) - pmf  # P(N < j)
    rows = np.arange(y.size)
    v = np.random.default_rng(seed).uniform(size=y.size)
    return np.clip(cdf_below[rows, k] + v * pmf[rows, k], 0.0, 1.0)


def pit_coverage(pit, levels=COVERAGE_LEVELS) -> dict[float, float]:
    """Coverage of the central predictive intervals from PIT values.

    The actual value lies in the central ``level`` interval exactly when its (randomised) PIT lies in
    ``[(1 − level)/2, (1 + level)/2]``; randomisation makes this exact for discrete forecasts, whose
    integer-valued intervals would otherwise cover more than their nominal level.
    """
    u = np.asarray(pit, dtype=float).ravel()
    return {lev: float(np.mean((u >= (1 - lev) / 2) & (u <= (1 + lev) / 2))) for lev in levels}


def pit_histogram(pit, bins: int = 10) -> np.ndarray:
    """Share of PIT values in each of ``bins`` equal bins of (0, 1) (flat at 1/bins when calibrated)."""
    u = np.asarray(pit, dtype=float).ravel()
    counts, _ = np.histogram(u, bins=bins, range=(0.0, 1.0))
    return counts / max(u.size, 1)


def log_score(pmf, actual, *, floor: float = 1e-300) -> float:
    """Mean negative log predictive probability of the actual counts (lower is better).

    Probabilities are floored at ``floor`` so that an impossible outcome scores ``−log(floor)`` (about
    690 by default), not infinity. A pmf estimated from ``m`` simulated futures gives 0 to outcomes
    no future reached: a floor at its resolution (e.g. ``0.5 / m``) scores them as rare, not impossible.
    """
    pmf, y = _pmf_actual(pmf, actual)
    k = np.minimum(y, pmf.shape[1] - 1)
    prob = pmf[np.arange(y.size), k]
    return float(-np.mean(np.log(np.maximum(prob, floor))))


def crps_pmf(pmf, actual) -> float:
    """Mean continuous ranked probability score of count forecasts (lower is better).

    ``CRPS = Σ_k (F(k) − 1{y ≤ k})²`` (Czado, Gneiting & Held 2009, sec. 3), summed over
    ``k = 0..K−1``; the tail mass ``P(N ≥ K)`` is placed at ``K``, so the score is exact when every
    actual count is below ``K`` and the tail mass is negligible.
    """
    pmf, y = _pmf_actual(pmf, actual)
    cdf = np.cumsum(pmf[:, :-1], axis=1)  # F(0..K−1)
    ks = np.arange(cdf.shape[1])
    step = (y[:, None] <= ks[None, :]).astype(float)
    return float(np.mean(np.sum((cdf - step) ** 2, axis=1)))


def total_pmf(pmf, weights=None, *, tail: float = 1e-12):
    """Distribution of the sum over customers of independent counts with the given pmfs.

    The characteristic functions of the customers are multiplied on an FFT grid wide enough for
    the total (its mean ± about 12 standard deviations), and the product is inverted; the last pmf
    column (the tail mass ``P(N ≥ K)``) is treated as the value ``K``. The product is evaluated only at the
    frequencies where it is not negligible (below 1e-18 in modulus, as happens fast for a total of
    many customers: ``|φ(ω)| ≈ exp(−σ²ω²/2)``), so the cost is about (customers × counts × a few
    hundred), not customers × grid size. ``weights`` (integers) count identical customers.

    Returns
    -------
    (support, probabilities): the integer totals and their probabilities (those above ``tail``).
    """
    pmf = np.asarray(pmf, dtype=float)
    if pmf.ndim != 2 or pmf.shape[0] == 0:
        raise ClvDataError(f"pmf must be 2-D (customers x counts), got shape {pmf.shape}.")
    w = np.ones(pmf.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (pmf.shape[0],) or np.any(w < 0) or np.any(w != np.round(w)):
        raise ClvDataError("weights must be one non-negative integer per pmf row.")
    ks = np.arange(pmf.shape[1], dtype=float)
    mean_i = pmf @ ks
    var_i = np.maximum(pmf @ ks**2 - mean_i**2, 0.0)
    mean, sd = float(w @ mean_i), float(np.sqrt(w @ var_i))
    n = fft.next_fast_len(2 * max(32, int(np.ceil(12 * sd + 10))) + 1)
    max_total = int(w.sum()) * (pmf.shape[1] - 1)
    n = min(n, fft.next_fast_len(max_total + 1))  # no wider than the support
    lo = max(0, int(np.floor(mean)) - n // 2)
    half = n // 2

    def log_phi(j: np.ndarray) -> np.ndarray:
        """log of the total's characteristic function at frequencies 2πj/n, shifted by lo."""
        omega = 2 * np.pi * j / n
        out = np.zeros(len(j), dtype=complex)
        chunk = max(1, 4_000_000 // len(j))
        for start in range(0, pmf.shape[0], chunk):
            rows = pmf[start:start + chunk]
            phi = rows @ np.cos(np.outer(ks, omega)) - 1j * (rows @ np.sin(np.outer(ks, omega)))  # real BLAS
            with np.errstate(divide="ignore"):
                out += w[start:start + chunk] @ np.log(phi)  # integer weights: branch-cut free
        return out + 1j * omega * lo

    m = min(half, 64)
    while True:
        values = log_phi(np.arange(m + 1))
        if m >= half or values[-1].real < np.log(1e-18):
            break
        m = min(half, 4 * m)
    spectrum = np.zeros(n, dtype=complex)
    spectrum[:m + 1] = np.exp(values)
    mirror = np.arange(1, m + 1)
    spectrum[n - mirror] = np.conj(spectrum[mirror])  # a real pmf has a Hermitian spectrum
    probs = np.clip(np.real(np.fft.ifft(spectrum)), 0.0, None)
    probs /= probs.sum()
    support = lo + np.arange(n)
    keep = (probs > tail) & (support <= max_total)
    first, last = int(np.argmax(keep)), len(keep) - int(np.argmax(keep[::-1]))
    return support[first:last], probs[first:last]


def interval_from_pmf(support, probs, level: float = 0.9) -> tuple[float, float]:
    """Central ``level`` interval of a discrete distribution: the (1−level)/2 and (1+level)/2 quantiles."""
    cdf = np.cumsum(probs) / np.sum(probs)
    lo = support[min(np.searchsorted(cdf, (1 - level) / 2), len(cdf) - 1)]
    hi = support[min(np.searchsorted(cdf, (1 + level) / 2), len(cdf) - 1)]
    return float(lo), float(hi)


# ---------------------------------------------------------------------------- sample distributions
def pit_samples(samples, actual, *, seed=None) -> np.ndarray:
    """Randomised PIT from predictive samples (``(n_samples, n_customers)``).

    ``u = (#{X < y} + V · #{X = y}) / m``: handles the point mass at 0 of value forecasts.
    """
    s = np.asarray(samples, dtype=float)
    y = np.asarray(actual, dtype=float).ravel()
    if s.ndim != 2 or s.shape[1] != y.size:
        raise ClvDataError(f"samples must have shape (n_samples, {y.size:,}), got {s.shape}.")
    below = (s < y).sum(axis=0)
    equal = (s == y).sum(axis=0)
    v = np.random.default_rng(seed).uniform(size=y.size)
    return (below + v * equal) / s.shape[0]


def sample_pmf(samples, n_max: int) -> np.ndarray:
    """The empirical pmf of count samples ``(n_samples, n_customers)``: per customer (rows) the share
    of samples equal to ``k`` in column ``k < n_max`` and of samples ``>= n_max`` in the last column
    (the layout of :func:`randomized_pit`, :func:`log_score`, :func:`crps_pmf`)."""
    s = np.asarray(samples)
    if s.ndim != 2 or np.any(s < 0) or int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"samples must be non-negative counts (n_samples, n_customers) and n_max a positive "
                           f"integer; got shape {s.shape} and n_max={n_max!r}.")
    n_max = int(n_max)
    cell = np.arange(s.shape[1]) * (n_max + 1) + np.minimum(s, n_max).astype(np.int64)
    return np.bincount(cell.ravel(), minlength=s.shape[1] * (n_max + 1)).reshape(s.shape[1], -1) / s.shape[0]


def crps_samples(samples, actual) -> float:
    """Mean CRPS from predictive samples: ``E|X − y| − ½ E|X − X'|`` (Gneiting & Raftery 2007, eq. 21).

    ``E|X − X'|`` is computed from the sorted samples in ``O(m log m)`` per customer.
    """
    s = np.sort(np.asarray(samples, dtype=float), axis=0)
    y = np.asarray(actual, dtype=float).ravel()
    if s.ndim != 2 or s.shape[1] != y.size:
        raise ClvDataError(f"samples must have shape (n_samples, {y.size:,}), got {s.shape}.")
    m = s.shape[0]
    first = np.abs(s - y).mean(axis=0)
    coef = (2 * np.arange(1, m + 1) - m - 1)[:, None]
    spread = 2.0 * (coef * s).sum(axis=0) / (m * m)  # E|X − X'| over ordered pairs
    return float(np.mean(first - 0.5 * spread))


def total_interval_samples(samples, level: float = 0.9) -> tuple[float, float, float]:
    """Mean and central ``level`` interval of the total over customers, from joint samples.

    Each row of ``samples`` is one simulated future of all customers (parameter draw included), so
    the interval of the row sums carries the parameter uncertainty shared by customers.
    """
    totals = np.asarray(samples, dtype=float).sum(axis=1)
    lo, hi = np.quantile(totals, [(1 - level) / 2, (1 + level) / 2])
    return float(totals.mean()), float(lo), float(hi)
