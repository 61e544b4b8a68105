"""Time-varying covariates in the purchase models: the design, the integrated multipliers, the fit's
objective and the forecasts (issue #16).

A customer's purchase rate is ``λ_i exp(γ_p·z_i(t))`` (and, for Pareto/NBD, her drop-out rate
``μ_i exp(γ_d·z_i(t))``), piecewise constant on the pieces of :mod:`clvmodels.exposure` (Bachmann,
Meierer & Näf 2021, "The role of time-varying contextual factors in latent attrition models for
customer base analysis", Marketing Science 40(4): CLVTools' "pnbd dyncov"). Everything the models need
comes from the integrated multipliers, on each customer's clock,

    A_i(t) = ∫_0^t exp(γ_p·z_i(u)) du,      C_i(t) = ∫_0^t exp(γ_d·z_i(u)) du,

and from ``γ_p·purchase_z_i`` (the purchase times' multipliers: the Jacobian of the time change at the
``x`` repeat purchases).

* BG/NBD and MBG/NBD are a **time change**: in operational time ``A(t)`` the purchases and the
  drop-out chances after them follow the model without covariates, so
  ``ln L_i = γ_p·purchase_z_i + LL(x, t_x → A(t_x), T → A(T))`` with the model's one
  ``log_likelihood``; forecasts are the model's formulas in operational time.
* Pareto/NBD's drop-out runs on its own clock ``C``: its likelihood is :mod:`.pnbd_timevarying`.

Each model that supports time-varying covariates declares ``time_varying_model``, an object with
``processes`` (those it links), ``extras(params, gammas, exposure, want_grad)`` (the per-customer
quantities its likelihood reads beyond the RFM columns, with their derivatives) and
``log_likelihood(params, data, xp)`` (over the RFM columns and those extras). The fit's objective
(:func:`objective`) evaluates that likelihood with dual numbers whose tangents are the per-customer
parameters and the extras, then applies the chain rule through the extras' derivatives in ``γ``
and through the static covariates' link (:func:`~.mle.link_gradient`).

Coefficients are fitted on standardised covariates (their exposure-weighted mean and standard
deviation over the fit's pieces; a shift is absorbed by the population parameters) and reported on
the user's scale too, like static covariates; they are named ``tv_<process>:<column>``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ClvDataError
from ..exposure import ExposurePieces, TimeVaryingSummary
from . import dual
from .draws import model_draws
from .namespaces import DUAL, NUMPY

#: The processes a time-varying covariate can scale.
PROCESSES = ("purchase", "dropout")


def coefficient_name(process: str, column: str) -> str:
    """The name of the coefficient of ``column`` in ``process`` (``tv_purchase:holiday``)."""
    return f"tv_{process}:{column}"


# ---------------------------------------------------------------------------- design
@dataclass(frozen=True)
class TimeVaryingDesign:
    """The time-varying covariates of a model: the columns of each process and their standardisation
    (exposure-weighted mean and standard deviation over the fit's pieces)."""

    processes: dict
    columns: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]

    @classmethod
    def learn(cls, pieces: ExposurePieces, processes: dict[str, list[str]]) -> "TimeVaryingDesign":
        columns = tuple(dict.fromkeys(c for cols in processes.values() for c in cols))
        z = piece_columns(pieces, columns)
        w = np.asarray(pieces.length, dtype=float)
        if not w.sum() > 0:
            raise ClvDataError("The time-varying covariates' pieces have no length: nothing to fit.")
        means = np.average(z, axis=0, weights=w) if len(z) else np.zeros(len(columns))
        scales = np.sqrt(np.average((z - means) ** 2, axis=0, weights=w))
        flat = [c for c, m, s in zip(columns, means, scales) if not s > 1e-12 * max(1.0, abs(m))]
        if flat:
            raise ClvDataError(f"Time-varying covariate(s) {flat} take one value over every customer's window "
                               f"({len(w):,} pieces): their effect is not identified apart from the population "
                               "parameters. Leave them out (or pass a static covariate instead).")
        return cls({p: tuple(c) for p, c in processes.items()}, columns, tuple(map(float, means)),
                   tuple(map(float, scales)))

    def names(self, process: str) -> tuple[str, ...]:
        return tuple(self.processes.get(process, ()))

    def index(self, process: str) -> np.ndarray:
        """The positions of ``process``'s columns among :attr:`columns`."""
        return np.array([self.columns.index(c) for c in self.names(process)], dtype=np.int64)

    @property
    def coefficient_names(self) -> tuple[str, ...]:
        return tuple(coefficient_name(p, c) for p in PROCESSES for c in self.names(p))

    def split(self, coefficients) -> dict[str, np.ndarray]:
        """``{process: its coefficients}`` from a vector in the order of :attr:`coefficient_names`."""
        out, at = {}, 0
        for p in PROCESSES:
            n = len(self.names(p))
            out[p] = np.asarray(coefficients[at:at + n], dtype=float)
            at += n
        return out

    def standardise(self, pieces: ExposurePieces) -> np.ndarray:
        """The pieces' ``z`` as the design's standardised columns."""
        return (piece_columns(pieces, self.columns) - np.array(self.means)) / np.array(self.scales)

    def user_scale(self, values: np.ndarray) -> np.ndarray:
        """Coefficients (or their SEs) per unit of the user's columns."""
        scale = {c: s for c, s in zip(self.columns, self.scales)}
        return np.asarray(values, dtype=float) / np.array([scale[c] for p in PROCESSES for c in self.names(p)])

    def to_dict(self) -> dict:
        return {"processes": {p: list(c) for p, c in self.processes.items()}, "columns": list(self.columns),
                "means": list(self.means), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, d: dict) -> "TimeVaryingDesign":
        try:
            design = cls({str(p): tuple(map(str, c)) for p, c in d["processes"].items()},
                         tuple(map(str, d["columns"])), tuple(map(float, d["means"])), tuple(map(float, d["scales"])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ClvDataError(f"Invalid time-varying covariate design ({type(exc).__name__}: {exc}).") from None
        ok = (len(design.means) == len(design.scales) == len(design.columns)
              and all(np.isfinite(m) and np.isfinite(s) and s > 0 for m, s in zip(design.means, design.scales))
              and all(c in design.columns for cols in design.processes.values() for c in cols))
        if not ok:
            raise ClvDataError("Invalid time-varying covariate design: every column needs a finite mean and a "
                               "positive scale, and every process's columns must be among the design's.")
        return design


def piece_columns(pieces: ExposurePieces, columns) -> np.ndarray:
    """The pieces' ``z`` columns named ``columns`` (an error naming the missing ones)."""
    missing = [c for c in columns if c not in pieces.columns]
    if missing:
        raise ClvDataError(f"Time-varying covariate(s) {missing} are not among the pieces' columns "
                           f"{list(pieces.columns)}; build the summary with them.")
    z = np.asarray(pieces.z, dtype=float).reshape(len(pieces.length), -1)
    return z[:, [list(pieces.columns).index(c) for c in columns]]


# ---------------------------------------------------------------------------- exposure
@dataclass(frozen=True)
class Exposure:
    """Pieces as the likelihood reads them: standardised covariates, and which pieces lie before the
    recency (``before``); ``purchase_z`` standardised (``Σ_j (z_j − m)/s = (purchase_z − x m)/s``)."""

    customer: np.ndarray
    start: np.ndarray
    length: np.ndarray
    z: np.ndarray
    before: np.ndarray
    purchase_z: np.ndarray
    n: int

    @functools.cached_property
    def distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, rows)``: the distinct rows of ``z`` and each piece's (calendar covariates shared by
        all customers have a few, whatever the number of pieces): the columns' codes combined one
        column at a time, renumbered after each (exact, linear in the pieces)."""
        codes = np.zeros(len(self.z), dtype=np.int64)
        for k in range(self.z.shape[1]):
            column, levels = pd.factorize(self.z[:, k])
            codes, _ = pd.factorize(codes * len(levels) + column)
        first = np.zeros(codes.max() + 1 if codes.size else 0, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes))[::-1]
        return codes, self.z[first]

    @functools.cached_property
    def lengths(self) -> dict:
        """Sparse ``(n, distinct rows)`` matrices of the customers' time at each distinct ``z``: over
        the whole window (``"all"``) and before the recency (``"before"``). ``A = W exp(Z γ)``."""
        from scipy import sparse

        codes, rows = self.distinct
        out = {}
        for name, keep in (("all", slice(None)), ("before", self.before)):
            out[name] = sparse.csr_matrix((self.length[keep], (self.customer[keep], codes[keep])),
                                          shape=(self.n, len(rows)))
        return out

    def first_piece(self) -> np.ndarray:
        """Per piece, the index of its customer's first piece (pieces are contiguous per customer)."""
        c = self.customer
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if c.size else np.zeros(0, dtype=np.int64)
        return np.repeat(starts, np.diff(np.r_[starts, c.size]))

    @classmethod
    def of_summary(cls, design: TimeVaryingDesign, summary: TimeVaryingSummary, frequency, recency, T) -> "Exposure":
        pieces = summary.pieces
        n = len(frequency)
        check_pieces(pieces, n, T)
        pz = (np.zeros((n, len(pieces.columns))) if summary.purchase_z is None   # a forecast summary
              else np.asarray(summary.purchase_z, dtype=float).reshape(n, -1))
        if pz.shape[1] != len(pieces.columns):
            raise ClvDataError(f"purchase_z has {pz.shape[1]} columns, the pieces {len(pieces.columns)}.")
        if not np.all(np.isfinite(pz)):
            raise ClvDataError(f"purchase_z has {int((~np.isfinite(pz)).any(axis=1).sum()):,} rows with missing or "
                               "infinite values.")
        pz = pz[:, [list(pieces.columns).index(c) for c in design.columns]]
        pz = (pz - np.asarray(frequency, dtype=float)[:, None] * np.array(design.means)) / np.array(design.scales)
        customer = np.asarray(pieces.customer, dtype=np.int64)
        start, length = np.asarray(pieces.start, dtype=float), np.asarray(pieces.length, dtype=float)
        tx = np.asarray(recency, dtype=float)[customer]
        before = start + length <= tx + 1e-9 * (1.0 + tx)
        return cls(customer, start, length, design.standardise(pieces), before, pz, n)

    @classmethod
    def of_pieces(cls, design: TimeVaryingDesign, pieces: ExposurePieces, n: int) -> "Exposure":
        """A future window's pieces (no purchases, nothing before a recency)."""
        check_pieces(pieces, n)
        customer = np.asarray(pieces.customer, dtype=np.int64)
        return cls(customer, np.asarray(pieces.start, dtype=float), np.asarray(pieces.length, dtype=float),
                   design.standardise(pieces), np.zeros(len(customer), dtype=bool), np.zeros((n, len(design.columns))), n)

    def pieces_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pieces, customer)``: the pieces of the customers at ``rows`` (positions) by customer in that
        order (in time order within each), and their customers renumbered ``0 .. len(rows) − 1``."""
        new = np.full(self.n, -1, dtype=np.int64)
        new[rows] = np.arange(len(rows))
        keep = np.flatnonzero(new[self.customer] >= 0)
        keep = keep[np.argsort(new[self.customer[keep]], kind="stable")]
        return keep, new[self.customer[keep]]

    def subset(self, rows: np.ndarray, pieces: tuple[np.ndarray, np.ndarray] | None = None) -> "Exposure":
        """The customers at ``rows`` (positions), renumbered ``0 .. len(rows) − 1`` in that order
        (``pieces``: their :meth:`pieces_of`, where the caller has it already)."""
        keep, customer = self.pieces_of(rows) if pieces is None else pieces
        return Exposure(customer, self.start[keep], self.length[keep], self.z[keep], self.before[keep],
                        self.purchase_z[rows], len(rows))

    def clipped(self, start, end) -> "Exposure":
        """The parts of the pieces within ``[start_i, end_i]`` (per customer, on her clock)."""
        lo = np.maximum(self.start, np.asarray(start, dtype=float)[self.customer])
        hi = np.minimum(self.start + self.length, np.asarray(end, dtype=float)[self.customer])
        keep = hi > lo
        return Exposure(self.customer[keep], lo[keep], (hi - lo)[keep], self.z[keep], self.before[keep],
                        self.purchase_z, self.n)

    def multiplier(self, design: TimeVaryingDesign, process: str, gamma) -> np.ndarray:
        """``exp(γ·z)`` on each piece (``γ`` the process's coefficients)."""
        return np.exp(self.z[:, design.index(process)] @ np.asarray(gamma, dtype=float))

    def integrate(self, values: np.ndarray) -> np.ndarray:
        """``Σ`` of ``values`` over each customer's pieces."""
        return np.bincount(self.customer, weights=values, minlength=self.n)

    def clock(self, design: TimeVaryingDesign, process: str, gamma) -> np.ndarray:
        """Each customer's ``process`` clock over these pieces: ``Σ length · exp(γ·z)`` (``A`` or ``C``)."""
        return self.integrate(self.length * self.multiplier(design, process, gamma))


def check_pieces(pieces: ExposurePieces, n: int, T=None) -> None:
    """The pieces belong to a table of ``n`` customers, are finite with positive lengths, and (given
    ``T``) tile each customer's ``[0, T_i]``."""
    customer = np.asarray(pieces.customer)
    if pieces.n_customers != n:
        raise ClvDataError(f"The time-varying summary is for {pieces.n_customers:,} customers, the table has {n:,} "
                           "rows: build it from the same customers, in the same order.")
    if customer.size and (customer.min() < 0 or customer.max() >= n or np.any(np.diff(customer) < 0)):
        raise ClvDataError("The pieces' customer index must be ascending rows of the customer table.")
    length = np.asarray(pieces.length, dtype=float)
    bad = ~(np.isfinite(length) & (length > 0)) | ~np.isfinite(np.asarray(pieces.start, dtype=float))
    if bad.any() or not np.all(np.isfinite(pieces.z)):
        raise ClvDataError(f"{int(bad.sum()):,} pieces have a non-positive or non-finite length or start, or the "
                           "covariates are not finite.")
    if T is not None:
        covered = np.bincount(customer, weights=length, minlength=n)
        T = np.asarray(T, dtype=float)
        off = np.abs(covered - T) > 1e-6 * (1.0 + T)
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ClvDataError(f"The pieces do not cover [0, T] for {int(off.sum()):,} customers (e.g. row {i}: "
                               f"{covered[i]:.6g} of T = {T[i]:.6g}); build the summary from the same RFM table.")


# ---------------------------------------------------------------------------- time change (BG/NBD, MBG/NBD)
class TimeChange:
    """A model whose process in operational time ``A(t)`` is the model without covariates (BG/NBD,
    MBG/NBD: only the purchase rate varies): its likelihood is the model's own at
    ``t_x → A(t_x)``, ``T → A(T)`` (plus ``γ_p·purchase_z``, added by :func:`objective`)."""

    processes = ("purchase",)

    def __init__(self, log_likelihood, probability_alive, future_purchases, new_customer, survival, simulate):
        self.log_likelihood = log_likelihood
        self._alive, self._future, self._new = probability_alive, future_purchases, new_customer
        self._survival, self._simulate = survival, simulate

    def alive(self, params, data, extras):
        """P(alive at ``T``): the model's at the operational times ``A(t_x)``, ``A(T)``."""
        return self._alive(params, data["frequency"], extras["recency"][0], extras["T"][0])

    def future(self, params, data, extras, window: "Exposure", design, gammas):
        """E[Y] over the future ``window`` of a customer alive at ``T``: the model's over the window's
        operational time ``A(T+t) − A(T)`` (the future does not depend on the operational age beyond
        what the model's formula reads)."""
        return self._future(params, data["frequency"], extras["T"][0], t=window.clock(design, "purchase", gammas["purchase"]))

    def new_customer(self, params, window: "Exposure", design, gammas):
        """E[X] of a customer just acquired over ``window`` (her clock from 0)."""
        return self._new(params, t=window.clock(design, "purchase", gammas["purchase"]))

    def survival(self, params, data, extras, window: "Exposure", design, gammas):
        """P(alive at the end of ``window`` | alive at ``T``): the model's survival over the window's
        operational time from the operational age ``A(T)`` (drop-out comes only at purchases)."""
        return self._survival(params, data["frequency"], extras["T"][0], t=window.clock(design, "purchase", gammas["purchase"]))

    def simulate(self, params, data, extras, periods: "HorizonPeriods", design, gammas, rng):
        """Purchases per period ``(samples, n, H)`` (``params`` of shape ``(samples, 1)`` or ``(samples, n)``),
        exactly: the model's own simulation in operational time, each customer's period boundaries
        ``A(T + b_h) − A(T)`` her own (purchase counts per period are invariant to the time change)."""
        own = np.cumsum(periods.sums(periods.exposure.length * periods.exposure.multiplier(design, "purchase",
                                                                                             gammas["purchase"])), axis=-1)
        return self._simulate(params, data["frequency"], extras["recency"][0], extras["T"][0], t=own, rng=rng)

    def symbolic_extras(self, params, data, gammas, exposure: "Exposure", design):
        """:meth:`extras` as PyTensor expressions (values only: PyTensor differentiates them)."""
        import pytensor.tensor as pt

        le = exposure.length * pt.exp(pt.dot(exposure.z[:, design.index("purchase")], gammas["purchase"]))
        before = np.flatnonzero(exposure.before)
        return {"recency": scatter_sum(le[before], exposure.customer[before], exposure.n),
                "T": scatter_sum(le, exposure.customer, exposure.n)}

    def extras(self, params, data, gammas, exposure: Exposure, design: TimeVaryingDesign, want_grad: bool):
        """``{"recency": A(t_x), "T": A(T)}``, each ``(value, None, {"purchase": ∂/∂γ_p (n, K_p)})``:
        ``A = W e`` and ``∂A/∂γ_k = W (e z_k)`` over the distinct covariate rows (:attr:`Exposure.lengths`)."""
        z = exposure.distinct[1][:, design.index("purchase")]
        e = np.exp(z @ gammas["purchase"])
        out = {}
        for name, which in (("recency", "before"), ("T", "all")):
            w = exposure.lengths[which]
            out[name] = (w @ e, None, {"purchase": w @ (e[:, None] * z) if want_grad else None})
        return out


# ---------------------------------------------------------------------------- the model's side
def processes_of(model, summary=None) -> dict[str, list[str]]:
    """``{process: [columns]}`` of the time-varying covariates named in ``model``'s constructor
    (``<process>_time_varying``); checks that the class links them and, given the fit's ``summary``
    (or ``None``), that one is given exactly when they are named."""
    out = {}
    for process in PROCESSES:
        columns = getattr(model, f"{process}_time_varying", None)
        if columns is None or (not isinstance(columns, str) and len(columns) == 0):
            continue
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ClvDataError(f"{process}_time_varying must be a list of column names, got {columns!r:.80}.")
        out[process] = list(columns)
    tv_model = getattr(type(model), "time_varying_model", None)
    unlinked = [p for p in out if tv_model is None or p not in tv_model.processes]
    if unlinked:
        raise ClvDataError(f"{type(model).__name__} has no time-varying covariates of its {unlinked} process(es) "
                           f"(it links {list(tv_model.processes) if tv_model else 'none'}); leave "
                           f"{[p + '_time_varying' for p in unlinked]} out.")
    if out and summary is None:
        raise ClvDataError(f"This {type(model).__name__} has time-varying covariates {out}: pass their summary, "
                           "fit(rfm, time_varying=summary) (a clvmodels.exposure.TimeVaryingSummary of the same "
                           "customers).")
    if summary is not None and not out:
        raise ClvDataError(f"time_varying= was given but {type(model).__name__} names no time-varying covariate: "
                           "pass purchase_time_varying=[...] (or dropout_time_varying=[...]) to the constructor.")
    if summary is not None and not isinstance(summary, TimeVaryingSummary):
        raise ClvDataError(f"time_varying must be a clvmodels.exposure.TimeVaryingSummary, got {type(summary).__name__}.")
    return out


@dataclass(frozen=True)
class TimeVaryingFit:
    """What a fit with time-varying covariates evaluates: the design, the customers' exposure, the
    data rows (one per customer) and weights, and the static covariates' link."""

    model_cls: type
    design: TimeVaryingDesign
    exposure: Exposure
    data: dict
    w: np.ndarray
    link: object

    @property
    def names(self) -> tuple[str, ...]:
        """The time-varying coefficients, in the order they follow the other parameters."""
        return self.design.coefficient_names

    def objective(self, covariate_penalty: float):
        """The MLE's objective (:func:`objective`)."""
        return objective(self.model_cls, self.model_cls.time_varying_model, self.design, self.exposure, self.data,
                         self.w, self.link, covariate_penalty)

    def symbolic_log_likelihood(self, params: dict, coefficients: dict):
        """``Σ w_i ℓ_i`` as a PyTensor scalar (the Bayesian fits): ``params`` the population parameters
        and static coefficients, ``coefficients`` the time-varying ones by name (PyTensor scalars);
        the extras built by scatter-adds over the pieces (:meth:`symbolic_extras` of the model's
        ``time_varying_model``)."""
        import pytensor.tensor as pt

        from .namespaces import pytensor_namespace

        xp = pytensor_namespace()
        tv_model = self.model_cls.time_varying_model
        per_row = params if self.link is None else self.link.individual(params, self.data, xp)
        gammas = {}
        for process in PROCESSES:
            mine = [coefficients[coefficient_name(process, c)] for c in self.design.names(process)]
            gammas[process] = pt.stack(mine) if mine else pt.as_tensor(np.zeros(0))
        extras = tv_model.symbolic_extras(per_row, self.data, gammas, self.exposure, self.design)
        ll = tv_model.log_likelihood(per_row, {**self.data, **extras}, xp)
        pz = self.exposure.purchase_z[:, self.design.index("purchase")]
        return pt.sum(self.w * (ll + pt.dot(pz, gammas["purchase"])))


def fit_setup(model, processes: dict, summary: TimeVaryingSummary, data: dict, w: np.ndarray) -> TimeVaryingFit:
    """Learn and keep the design (``time_varying_``) and return what the fits evaluate: the customers
    whose likelihood terms coincide merged into one weighted row (:func:`compress_exposure`)."""
    if summary.purchase_z is None:
        raise ClvDataError("This time-varying summary has no purchase_z (a forecast summary of an RFM table): a fit "
                           "needs the purchase times' covariates, timevarying_summary(log, covariates, ...).")
    design = TimeVaryingDesign.learn(summary.pieces, processes)
    exposure = Exposure.of_summary(design, summary, data["frequency"], data["recency"], data["T"])
    model.time_varying_ = design.to_dict()
    data, w, exposure = compress_exposure(data, w, exposure)
    return TimeVaryingFit(model.likelihood_structure(), design, exposure, data, w, model._covariate_link())


def exposure_groups(data: dict, exposure: Exposure) -> np.ndarray:
    """Per customer, the number of her group: customers with the same row of ``data`` and the same
    pieces (start, then lengths and covariate rows in order) share one. The pieces are keyed by a
    64-bit sum of hashed (position, piece) codes (splitmix64), and every customer's pieces are then
    compared with her group's first customer's: one who differs (a hash collision) gets a group of
    her own, so the groups are exact."""
    from ..data import splitmix64
    from .rows import unique_rows

    n = exposure.n
    codes, _ = exposure.distinct
    piece = pd.factorize(pd.factorize(exposure.length)[0] * (int(codes.max(initial=0)) + 1) + codes)[0]
    first = exposure.first_piece()
    position = np.arange(len(piece)) - first
    count = np.bincount(exposure.customer, minlength=n)
    has = count > 0
    offsets = np.r_[0, np.cumsum(count)[:-1]]
    start = np.zeros(n)
    start[has] = exposure.start[offsets[has]]
    key = piece.astype(np.int64) * (int(position.max(initial=0)) + 1) + position
    h = np.zeros(n, dtype=np.uint64)
    if len(key):
        h[has] = np.add.reduceat(splitmix64(key.astype(np.uint64)), offsets[has])
    _, group = unique_rows({**data, "_count": count, "_start": start, "_hash": h.view(np.int64)})
    _, lead = np.unique(group, return_index=True)       # each group's first customer
    other = offsets[lead[group[exposure.customer]]] + position   # the same piece of her group's first customer
    differs = np.bincount(exposure.customer, weights=piece != piece[other], minlength=n) > 0
    group[differs] = group.max() + 1 + np.arange(int(differs.sum()))
    return group


def compress_exposure(data: dict, w: np.ndarray, exposure: Exposure) -> tuple[dict, np.ndarray, Exposure]:
    """The customers of :func:`exposure_groups` merged: one row per group with its total weight, and
    the weighted mean of the group's ``purchase_z`` (which enters the log-likelihood only through the
    linear term ``w_i γ_p·purchase_z_i``: the sum over a group is the same). A calendar shared by all
    customers leaves as many groups as distinct ``(frequency, recency, T, start on the calendar)``; the
    objective, its gradient and its optimum are those of the customers one by one (the tests)."""
    group = exposure_groups(data, exposure)
    size = group.max() + 1 if len(group) else 0
    if size == exposure.n:
        return data, w, exposure
    total = np.bincount(group, weights=w, minlength=size)
    _, first = np.unique(group, return_index=True)
    sums = np.zeros((size, exposure.purchase_z.shape[1]))
    np.add.at(sums, group, w[:, None] * exposure.purchase_z)
    keep = total > 0
    rows, total = first[keep], total[keep]
    merged = dataclasses.replace(exposure.subset(rows), purchase_z=sums[keep] / total[:, None])
    return {k: np.asarray(v)[rows] for k, v in data.items()}, total, merged


def scatter_sum(values, customer: np.ndarray, n: int):
    """PyTensor: the sums of ``values`` (per piece) per customer."""
    import pytensor.tensor as pt

    return pt.inc_subtensor(pt.zeros(n)[customer], values)


def design_of(model) -> TimeVaryingDesign | None:
    """The fitted model's time-varying design (None without)."""
    d = getattr(model, "time_varying_", None)
    return None if d is None else TimeVaryingDesign.from_dict(d)


# ---------------------------------------------------------------------------- the fit's objective
def objective(model_cls, tv_model, design: TimeVaryingDesign, exposure: Exposure, data: dict, w: np.ndarray,
              link=None, covariate_penalty: float = 0.0):
    """``f(theta, total, penalizer) -> (nll, grad)`` for the log-parameters, the static covariates'
    free coefficients (``link``) and the time-varying coefficients (in :attr:`TimeVaryingDesign.
    coefficient_names` order), as :func:`~.mle.mle_objective`.

    Dual numbers carry one tangent per model parameter (each customer's own) and one per extra
    quantity of ``tv_model`` (e.g. ``A(t_x)``, ``A(T)``); the chain rule then gives the gradient in
    ``γ`` (``∂ℓ_i/∂γ = purchase_z_i + Σ_e ∂ℓ_i/∂e_i ∂e_i/∂γ``) and through the link."""
    from .mle import link_gradient, penalised

    names = model_cls.param_names
    k = len(names)
    n_static = 0 if link is None else link.n_free
    pz = exposure.purchase_z[:, design.index("purchase")]

    def f(theta, total, penalizer):
        theta = np.asarray(theta, dtype=float)
        params = dict(zip(names, np.exp(theta[:k])))
        gammas = design.split(theta[k + n_static:])
        per_row = params if link is None else link.individual({**params, **link.coefficients(theta[k:k + n_static])},
                                                               data, np)
        extras = tv_model.extras(per_row, data, gammas, exposure, design, True)
        dims = k + len(extras)
        unit = np.eye(dims)
        variables = {n: dual.Dual(per_row[n], unit[:, j].reshape((dims,) + (1,) * np.ndim(per_row[n])))
                     for j, n in enumerate(names)}
        columns = dict(data)
        for e, (name, (value, _, _)) in enumerate(extras.items()):
            columns[name] = dual.Dual(value, unit[:, k + e].reshape(dims, 1))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ll = tv_model.log_likelihood(variables, columns, DUAL)
            weighted = ll.full_tangent() * w                          # (dims, n): w_i ∂ℓ_i/∂(θ_ij, e_i)
        weighted = weighted.copy()
        grad_gamma = {"purchase": pz.T @ w, "dropout": np.zeros(len(design.names("dropout")))}
        for e, (value, d_params, d_gamma) in enumerate(extras.values()):
            we = weighted[k + e]
            if d_params is not None:      # an extra that reads the per-customer parameters
                for j in range(k):
                    weighted[j] = weighted[j] + we * d_params[j]
            for process, g in d_gamma.items():
                if g is not None and g.size:
                    grad_gamma[process] = grad_gamma[process] + we @ g
        grad_log, grad_static = link_gradient(names, link, weighted[:k], per_row, data)
        grad = np.r_[grad_log, grad_static, grad_gamma["purchase"], grad_gamma["dropout"]]
        log_lik = float(np.sum(w * ll.value) + w @ (pz @ gammas["purchase"]))
        return penalised(theta, k, log_lik, grad, total, penalizer, covariate_penalty)

    return f


def coefficient_table(model, level: float) -> pd.DataFrame:
    """Rows of the time-varying coefficients for ``summary()``: estimate, SE and normal interval on
    the standardised scale, and per unit of the user's column (``user_*``)."""
    from scipy import stats

    design = design_of(model)
    names = list(design.coefficient_names)
    cov = model.covariance_
    n = len(names)
    se = np.sqrt(np.diag(cov)[-n:]) if n and np.all(np.isfinite(cov)) else np.full(n, np.nan)
    est = model.time_varying_coefficients_[names].to_numpy()
    z = stats.norm.ppf(0.5 + level / 2)
    lo, hi = f"lower_{level:.0%}", f"upper_{level:.0%}"
    table = pd.DataFrame({"estimate": est, "se": se, lo: est - z * se, hi: est + z * se},
                         index=pd.Index(names, name="parameter"))
    for column in ("estimate", "se", lo, hi):
        table[f"user_{column}"] = design.user_scale(table[column].to_numpy())
    return table


# ---------------------------------------------------------------------------- forecasts
def future_window(design: TimeVaryingDesign, future: ExposurePieces | None, start, t: float, n: int) -> Exposure:
    """The ``future`` pieces within ``[start_i, start_i + t]``, checked to cover it."""
    if future is None:
        raise ClvDataError("This model has time-varying covariates: pass the future pieces of the forecast window, "
                           "future=ExposurePieces (each customer's covariates from the end of observation on, on "
                           "her clock).")
    start = np.broadcast_to(np.asarray(start, dtype=float), (n,))
    window = Exposure.of_pieces(design, future, n).clipped(start, start + t)
    covered = window.integrate(window.length)
    short = covered < t - 1e-6 * (1.0 + t)
    if short.any():
        i = int(np.flatnonzero(short)[0])
        raise ClvDataError(f"The future pieces cover only part of the forecast window for {int(short.sum()):,} "
                           f"customers (e.g. row {i}: {covered[i]:.6g} of t = {t:.6g} from {start[i]:.6g}); extend "
                           "the covariate path to the end of the window.")
    return window


@dataclass(frozen=True)
class HorizonPeriods:
    """A future window's pieces cut at the period boundaries ``T_i + b_h``, each piece's period ``h``,
    for per-period sums (what simulations read)."""

    exposure: Exposure
    period: np.ndarray
    n_periods: int

    @classmethod
    def of(cls, window: Exposure, start, bounds) -> "HorizonPeriods":
        start = np.broadcast_to(np.asarray(start, dtype=float), (window.n,))
        parts = [window.clipped(start + lo, start + hi) for lo, hi in zip(np.r_[0.0, bounds[:-1]], bounds)]
        customer = np.concatenate([p.customer for p in parts])
        begin = np.concatenate([p.start for p in parts])
        order = np.lexsort((begin, customer))
        period = np.repeat(np.arange(len(parts)), [len(p.customer) for p in parts])[order]
        exposure = Exposure(customer[order], begin[order], np.concatenate([p.length for p in parts])[order],
                            np.concatenate([p.z for p in parts])[order], np.zeros(len(order), dtype=bool),
                            window.purchase_z, window.n)
        return cls(exposure, period, len(parts))

    def subset(self, rows: np.ndarray) -> "HorizonPeriods":
        pieces = self.exposure.pieces_of(rows)
        return HorizonPeriods(self.exposure.subset(rows, pieces), self.period[pieces[0]], self.n_periods)

    def sums(self, values: np.ndarray) -> np.ndarray:
        """``Σ`` of per-piece ``values`` (last axis: the pieces) per customer and period: ``(..., n, H)``."""
        from scipy import sparse

        e = self.exposure
        index = sparse.csr_matrix((np.ones(len(e.customer)), (np.arange(len(e.customer)),
                                                               e.customer * self.n_periods + self.period)),
                                  shape=(len(e.customer), e.n * self.n_periods))
        values = np.asarray(values, dtype=float)
        flat = values.reshape(-1, values.shape[-1])
        return np.asarray((index.T @ flat.T).T).reshape(values.shape[:-1] + (e.n, self.n_periods))


def _at(draws: dict, i: int, design: TimeVaryingDesign):
    """Draw ``i``: the parameters (and static coefficients) and ``{process: γ}``."""
    names = set(design.coefficient_names)
    params = {k: float(v[i]) for k, v in draws.items() if k not in names}
    return params, design.split([float(draws[c][i]) for c in design.coefficient_names])


def summarise(values: np.ndarray, index, name: str, interval):
    """Point values (mean over draws) or the expected value's interval frame."""
    from .draws import EXPECTED, check_interval, interval_frame, quantiles

    if interval is None:
        return pd.Series(values.mean(axis=0), index=index, name=name)
    level = check_interval(interval)
    median, lower, upper = quantiles(values, [0.5, (1 - level) / 2, (1 + level) / 2])
    return interval_frame({"mean": values.mean(axis=0), "median": median, "lower": lower, "upper": upper}, index,
                          level, EXPECTED)


def _customers(model, rfm, summary):
    """The customers of ``rfm`` (default: the training ones and summary) as the forecasts read them:
    ``(rfm, data (with the static covariates), exposure)``."""
    model._check_fitted()
    training = rfm is None or rfm is getattr(model, "rfm_", None)
    rfm = model._rfm_or_fitted(rfm)
    summary = summary if summary is not None else getattr(model, "time_varying_summary_", None) if training else None
    if summary is None:
        raise ClvDataError(f"This {type(model).__name__} has time-varying covariates: pass the customers' summary, "
                           "time_varying=TimeVaryingSummary (same rows as rfm).")
    data = model._data_arrays(rfm)
    data.update(model.covariate_data(rfm))
    return rfm, data, Exposure.of_summary(design_of(model), summary, data["frequency"], data["recency"], data["T"])


def _histories(model, data: dict, exposure: Exposure, draws: dict):
    """Per parameter draw: ``(params per customer, {process: γ}, extras, P(alive) at T)``."""
    design, tv_model, link = design_of(model), type(model).time_varying_model, model._covariate_link()
    for i in range(len(next(iter(draws.values())))):
        params, gammas = _at(draws, i, design)
        per_row = params if link is None else link.individual(params, data, NUMPY)
        extras = tv_model.extras(per_row, data, gammas, exposure, design, False)
        yield per_row, gammas, extras, tv_model.alive(per_row, data, extras)


def predict(model, quantity: str, rfm=None, *, t=None, at=None, time_varying=None, future=None, interval=None,
            n_draws=None, seed=None):
    """``"probability_alive"`` at ``T`` (with ``at``: at ``T+at``, times the model's survival over the
    ``future`` pieces of ``(T, T+at]``) or ``"expected_purchases"`` in ``(T, T+t]`` per customer of
    ``rfm`` (default: the training customers and summary) with time-varying covariates: the model's
    ``time_varying_model`` at the clocks of the calibration ``time_varying`` summary and, for
    purchases, over the ``future`` pieces (:class:`~clvmodels.exposure.ExposurePieces` of the same
    customers from ``T_i`` on, their clock). Static covariates are applied as in any prediction."""
    rfm, data, exposure = _customers(model, rfm, time_varying)
    design, tv_model = design_of(model), type(model).time_varying_model
    window, ahead = None, tv_model.future
    if quantity == "expected_purchases":
        model.check_window(t)
        window = future_window(design, future, data["T"], float(t), len(rfm))
    elif at is not None:
        model.check_window(at)
        window, ahead = future_window(design, future, data["T"], float(at), len(rfm)), tv_model.survival
    values = []
    draws = model_draws(model, interval=interval, n_draws=n_draws, seed=seed)[0]
    for per_row, gammas, extras, alive in _histories(model, data, exposure, draws):
        value = alive if window is None else alive * ahead(per_row, data, extras, window, design, gammas)
        values.append(np.broadcast_to(value, (len(rfm),)))
    return summarise(np.array(values), rfm.index, quantity, interval)


def value_draws(model, rfm, draws: dict, *, bounds, factors, time_varying=None, future=None) -> dict[str, np.ndarray]:
    """Per draw (rows) and customer, as :func:`clvmodels.clv.purchase_value_draws` without covariates
    that vary: ``probability_alive`` at ``T``, ``expected_purchases`` by the last boundary and
    ``discounted_purchases`` ``P(alive) Σ_i f_i (E[Y(t_i)] − E[Y(t_{i−1})])`` over the periods
    ``(t_{i−1}, t_i]`` of ``bounds`` with discount factors ``factors``, the expectations over the
    ``future`` pieces."""
    rfm, data, exposure = _customers(model, rfm, time_varying)
    design, tv_model = design_of(model), type(model).time_varying_model
    bounds = np.asarray(bounds, dtype=float)
    window = future_window(design, future, data["T"], float(bounds[-1]), len(rfm))
    parts = [window.clipped(data["T"], data["T"] + b) for b in bounds]
    out = {"probability_alive": [], "expected_purchases": [], "discounted_purchases": []}
    for per_row, gammas, extras, alive in _histories(model, data, exposure, draws):
        total, previous = 0.0, 0.0
        for part, factor in zip(parts, factors):
            current = tv_model.future(per_row, data, extras, part, design, gammas)
            total = total + (current - previous) * factor
            previous = current
        for name, value in (("probability_alive", alive), ("expected_purchases", alive * previous),
                            ("discounted_purchases", alive * total)):
            out[name].append(np.broadcast_to(value, (len(rfm),)))
    return {name: np.array(values) for name, values in out.items()}


def purchase_simulator(model, rfm, bounds, *, time_varying=None, future=None):
    """``simulate(draws, future_draw, rows, rng) -> (n_samples, len(rows), H)``: the purchases per period
    ``(T + b_{h−1}, T + b_h]`` of the customers at ``rows`` of ``rfm`` in each simulated future, future ``i``
    at parameter draw ``future_draw[i]`` of ``draws`` (with the time-varying coefficients), exactly:
    per draw, the customers' integrals over their calibration pieces (``time_varying``, default the
    training summary) and their ``future`` pieces cut at the periods, then the ``time_varying_model``'s
    ``simulate`` (alive at ``T`` with P(alive), the individual-level posterior, purchases until drop-out
    on the covariates' clocks). What :func:`clvmodels.predictive._simulate_chunks` reads in place of the
    ``simulate_purchases_formula``."""
    rfm, data, exposure = _customers(model, rfm, time_varying)
    design, tv_model, link = design_of(model), type(model).time_varying_model, model._covariate_link()
    bounds = np.asarray(bounds, dtype=float)
    periods = HorizonPeriods.of(future_window(design, future, data["T"], float(bounds[-1]), len(rfm)), data["T"],
                                bounds)

    def simulate(draws: dict, future_draw: np.ndarray, rows: np.ndarray, rng) -> np.ndarray:
        part = {k: np.asarray(v)[rows] for k, v in data.items()}
        mine, ahead = exposure.subset(rows), periods.subset(rows)
        out = np.zeros((len(future_draw), len(rows), len(bounds)), dtype=np.int32)
        for d in np.unique(future_draw):
            at = np.flatnonzero(future_draw == d)
            params, gammas = _at(draws, int(d), design)
            per_row = params if link is None else link.individual(params, part, NUMPY)
            extras = tv_model.extras(per_row, part, gammas, mine, design, False)
            shaped = {k: np.broadcast_to(np.asarray(v, dtype=float), (len(at), 1) if np.ndim(v) == 0
                                         else (len(at), len(rows))) for k, v in per_row.items()}
            out[at] = tv_model.simulate(shaped, part, extras, ahead, design, gammas, rng)
        return out

    return simulate


def new_customers(model, t, future: ExposurePieces, *, interval=None, n_draws=None, seed=None):
    """E[X(t)] of customers just acquired, each along her covariate path ``future`` (pieces on her
    clock from 0, one customer per row of its table); a Series over those customers."""
    if model.has_covariates:
        raise ClvDataError("Forecasts for new customers with both static and time-varying covariates are not "
                           "supported yet.")
    model.check_window(t)
    design, tv_model = design_of(model), type(model).time_varying_model
    n = future.n_customers
    window = future_window(design, future, 0.0, float(t), n)
    draws = model_draws(model, interval=interval, n_draws=n_draws, seed=seed)[0]
    values = []
    for i in range(len(next(iter(draws.values())))):
        params, gammas = _at(draws, i, design)
        values.append(np.broadcast_to(tv_model.new_customer(params, window, design, gammas), (n,)))
    return summarise(np.array(values), pd.RangeIndex(n, name="customer"), "expected_purchases", interval)


def expected_tracking(model, pieces: ExposurePieces, birth, boundaries, weights=None, covariates=None) -> pd.Series:
    """The expected cumulative repeat purchases of a cohort by calendar time, per period: customer
    ``i``, acquired at calendar time ``birth_i`` with covariate path ``pieces`` (her clock from 0 to
    at least the last boundary), contributes E[X(u)] of a new customer at her age ``u`` at each of
    the calendar ``boundaries`` (the periods are ``(b_{h−1}, b_h]``, ``b_0`` the first acquisition),
    times her ``weights`` (default 1: e.g. the number of customers acquired on one day, sharing a path).
    With static covariates too, ``covariates`` (a table, one row per row of ``pieces``) gives each row's
    parameters. One pass over the pieces per boundary (at the estimate)."""
    design, tv_model, link = design_of(model), type(model).time_varying_model, model._covariate_link()
    birth = np.asarray(birth, dtype=float)
    n = pieces.n_customers
    if link is not None and (covariates is None or len(covariates) != n):
        raise ClvDataError(f"This {type(model).__name__} has static covariates too: pass covariates=, a table with "
                           f"their columns and one row per row of the pieces ({n:,}).")
    exposure = Exposure.of_pieces(design, pieces, n)
    weights = np.ones(n) if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), (n,))
    params, gammas = _at(model.parameter_draws(), 0, design)
    if link is not None:
        params = link.individual(params, model.covariate_data(covariates), NUMPY)
    cumulative = []
    for b in np.asarray(boundaries, dtype=float):
        age = np.maximum(b - birth, 0.0)
        window = exposure.clipped(np.zeros(n), age)
        value = np.where(age > 0, tv_model.new_customer(params, window, design, gammas), 0.0)
        cumulative.append(float(value @ weights))
    per_period = np.diff(np.r_[0.0, cumulative])
    return pd.Series(per_period, index=pd.Index(np.asarray(boundaries, dtype=float), name="period_end"),
                     name="expected_purchases")
