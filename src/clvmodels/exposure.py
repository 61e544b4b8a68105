"""Time-varying covariates as the likelihood reads them: each customer's covariate path cut into pieces
on which it is constant.

A time-varying covariate multiplies a customer's purchase (or drop-out) rate by ``exp(γ · z_i(t))``,
piecewise constant on a regular calendar grid (Bachmann, Meierer & Näf 2021, "The role of time-varying
contextual factors in latent attrition models for customer base analysis", Marketing Science 40(4)).
The likelihood needs, per customer, integrals of that multiplier over parts of the customer's window
and its values at the purchase times. Both are computed once from these compact summaries, for any γ:

    A_i(t) = ∫_0^t exp(γ·z_i(u)) du = Σ_pieces min(length, max(0, t − start)) · exp(γ·z_piece)

All times are in the RFM table's unit and on each customer's own clock (0 = the first purchase), so that
pieces line up with ``recency`` (t_x) and ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExposurePieces:
    """Customers' covariate paths over a window, cut into pieces of constant covariates.

    Attributes
    ----------
    columns
        The covariate names (``K`` of them), in the order of ``z``'s columns.
    customer
        ``(m,)`` int64: the row of the customer table each piece belongs to; ascending, and within a
        customer the pieces are in time order and contiguous (they tile the customer's window).
    start, length
        ``(m,)`` float: a piece covers ``[start, start + length)`` on the customer's clock; ``length > 0``.
    z
        ``(m, K)`` float: the covariate values on the piece (finite).
    n_customers
        The number of rows of the customer table (a customer may have no piece only if its window is
        empty).
    """

    columns: tuple[str, ...]
    customer: np.ndarray
    start: np.ndarray
    length: np.ndarray
    z: np.ndarray
    n_customers: int


@dataclass(frozen=True)
class TimeVaryingSummary:
    """What a fit with time-varying covariates reads besides the RFM table (rows in the same order).

    Attributes
    ----------
    pieces
        Each customer's path over the calibration window ``[0, T_i]``, cut at ``recency`` as well, so
        that every piece lies within ``[0, t_x]`` or within ``[t_x, T]``.
    purchase_z
        ``(n, K)``: the sum over the customer's ``frequency`` repeat purchases of ``z`` at the purchase
        time (the purchase times' multipliers enter the likelihood as ``exp(γ · purchase_z_i)``), or
        ``None`` in a summary for forecasts only (:func:`clvmodels.timevarying.forecast_summary`: P(alive)
        and the expectations read the history through the integrals alone), which a fit refuses.
    """

    pieces: ExposurePieces
    purchase_z: np.ndarray | None
