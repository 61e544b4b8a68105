"""Tests' helper for time-varying covariates: customers' covariate paths cut on a calendar grid into the
pieces of :mod:`clvmodels.exposure`, and exact simulation of BG/NBD and Pareto/NBD purchases under a
piecewise-constant multiplier (the data layer's builders do this from logs; these build the same
objects from arrays)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvmodels.exposure import ExposurePieces, TimeVaryingSummary


def grid_pieces(birth, end, columns, z_of_cell, *, step=1.0, cut=None, start=None) -> ExposurePieces:
    """Each customer's window ``[start_i, end_i]`` on her clock (0 = first purchase at calendar time
    ``birth_i``) cut at the calendar grid ``k·step`` (and at ``cut_i`` where inside): the covariates of
    calendar cell ``k`` are ``z_of_cell(k)`` (``(m,) -> (m, K)``)."""
    birth, end = np.asarray(birth, float), np.asarray(end, float)
    n = len(birth)
    start = np.zeros(n) if start is None else np.asarray(start, float)
    cal_lo, cal_hi = birth + start, birth + end
    k0 = np.floor(cal_lo / step)
    m = int(np.max(np.ceil(cal_hi / step) - k0)) + 2
    grid = (k0[:, None] + np.arange(1, m)[None, :]) * step - birth[:, None]      # cut points on the clock
    cuts = [start[:, None], grid, end[:, None]]
    if cut is not None:
        cuts.insert(2, np.asarray(cut, float)[:, None])
    pts = np.sort(np.clip(np.concatenate(cuts, axis=1), start[:, None], end[:, None]), axis=1)
    lo, hi = pts[:, :-1], pts[:, 1:]
    keep = hi - lo > 1e-12 * (1.0 + end[:, None])
    customer = np.broadcast_to(np.arange(n)[:, None], lo.shape)[keep]
    lo, hi = lo[keep], hi[keep]
    cell = np.floor((birth[customer] + 0.5 * (lo + hi)) / step)
    z = np.asarray(z_of_cell(cell), float).reshape(len(cell), -1)
    return ExposurePieces(tuple(columns), customer.astype(np.int64), lo, hi - lo, z, n)


def summary_of(rfm, birth, columns, z_of_cell, purchase_times, *, step=1.0) -> TimeVaryingSummary:
    """The calibration summary: pieces over ``[0, T]`` cut at the recency, and ``purchase_z``, the sum
    of ``z`` at each customer's repeat purchase times (``purchase_times[i]``, on her clock)."""
    pieces = grid_pieces(birth, rfm["T"].to_numpy(), columns, z_of_cell, step=step, cut=rfm["recency"].to_numpy())
    pz = np.zeros((len(rfm), len(columns)))
    for i, times in enumerate(purchase_times):
        if len(times):
            pz[i] = np.asarray(z_of_cell(np.floor((birth[i] + np.asarray(times)) / step)), float).reshape(len(times), -1).sum(0)
    return TimeVaryingSummary(pieces, pz)


def _cumulative(pieces: ExposurePieces, rate, i_slices):
    """Per customer, the piece boundaries and the cumulative integral of ``rate`` at them."""
    out = []
    for sl in i_slices:
        lo = pieces.start[sl]
        ends = np.r_[lo, lo[-1] + pieces.length[sl][-1]] if len(lo) else np.zeros(1)
        cum = np.r_[0.0, np.cumsum(pieces.length[sl] * rate[sl])]
        out.append((ends, cum))
    return out


def simulate(model: str, params: dict, birth, T, columns, z_of_cell, gamma_p, gamma_d=None, *, step=1.0, seed=0,
             holdout=0.0):
    """An exact draw of BG/NBD (``model="bgnbd"``) or Pareto/NBD (``"pnbd"``) customers observed over
    ``[0, T_i]`` with purchase rate ``λ exp(γ_p·z(t))`` (and Pareto/NBD drop-out rate
    ``μ exp(γ_d·z(t))``): purchases are drawn in operational time ``A`` (``C`` for the lifetime) and
    mapped back through the inverse of the piecewise-linear ``A``. Returns the RFM table and the
    repeat purchase times (on each customer's clock); with ``holdout > 0`` also each customer's
    purchases in ``(T, T + holdout]`` and whether she is alive at ``T``."""
    rng = np.random.default_rng(seed)
    birth, T = np.asarray(birth, float), np.asarray(T, float)
    n = len(birth)
    pieces = grid_pieces(birth, T + holdout, columns, z_of_cell, step=step)
    a = np.exp(pieces.z @ np.asarray(gamma_p, float))
    c = np.exp(pieces.z @ np.asarray(gamma_d if gamma_d is not None else np.zeros(len(columns)), float))
    bounds = np.searchsorted(pieces.customer, np.arange(n + 1))
    slices = [slice(bounds[i], bounds[i + 1]) for i in range(n)]
    A, C = _cumulative(pieces, a, slices), _cumulative(pieces, c, slices)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    rows, times, future, alive = [], [], [], []
    for i in range(n):
        ends, cum = A[i]
        horizon = cum[-1]
        if model == "bgnbd":
            p = rng.beta(params["a"], params["b"])
            ops, t, death = [], 0.0, np.inf
            while True:
                t += rng.exponential(1.0 / lam[i])
                if t > horizon:
                    break
                ops.append(t)
                if rng.random() < p:
                    death = np.interp(t, cum, ends)
                    break
        else:
            mu = rng.gamma(params["s"], 1.0 / params["beta"])
            c_ends, c_cum = C[i]
            death_c = rng.exponential(1.0 / mu)
            death = np.interp(death_c, c_cum, c_ends) if death_c < c_cum[-1] else np.inf
            limit = np.interp(min(death, T[i] + holdout), ends, cum)
            ops = list(np.cumsum(rng.exponential(1.0 / lam[i], size=int(lam[i] * limit * 3 + 50))))
            while ops and ops[-1] < limit:
                ops += list(ops[-1] + np.cumsum(rng.exponential(1.0 / lam[i], size=100)))
            ops = [u for u in ops if u <= limit]
        clock = np.interp(np.asarray(ops), cum, ends) if ops else np.zeros(0)
        calibration = clock[clock <= T[i]]
        times.append(calibration)
        future.append(len(clock) - len(calibration))
        alive.append(death > T[i])
        rows.append((len(calibration), calibration[-1] if len(calibration) else 0.0, T[i]))
    rfm = pd.DataFrame(rows, columns=["frequency", "recency", "T"])
    if holdout:
        return rfm, times, np.array(future), np.array(alive)
    return rfm, times
