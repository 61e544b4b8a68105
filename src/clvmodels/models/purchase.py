"""The protocol of purchase models: the formulas each one declares, and the prediction methods
written once over them.

A purchase model describes each customer's repeat purchases and drop-out from her history
``(frequency, recency, age)``: continuous time (BG/NBD, MBG/NBD, Pareto/NBD: the age is ``T``, a
duration) or discrete transaction opportunities (BG/BB: the age is ``n_periods``, a count). Every
formula is a numpy function of a parameter dict whose values broadcast (draws of shape
``(n_draws, 1)`` against customers ``(n,)``), with the history passed by column name, and lives in
its model's module with its source (paper and equation):

=============================  ================================================================
formula                        meaning
=============================  ================================================================
``probability_alive``          ``P(alive at the end of observation | history)``
``future_purchases``           ``E[Y(t)]`` of a customer alive at the end of observation (it
                               reads ``frequency`` and the age only)
``expected_purchases``         ``E[Y(t) | history]`` = ``probability_alive × future_purchases``
``purchase_pmf``               ``P(Y(t) = k | history)`` for ``k < n_max`` and the tail
                               ``P(Y(t) >= n_max)`` on a new last axis
``future_pmf``                 the same table for a customer alive at the end of observation (it
                               reads ``frequency`` and the age only): ``purchase_pmf`` is
                               ``P(alive) x future_pmf`` plus the dead customers' mass at 0
``simulate_purchases``         one exact draw of ``Y(t)`` per customer and parameter draw; with
                               increasing period boundaries ``t = [t_1, ..., t_H]`` the counts
                               in each period ``(t_{i-1}, t_i]`` on a new last axis
``new_customer``               ``E[X(t)]`` of a customer just acquired
``survival``                   ``P(alive at age + t | alive at the end of observation)`` (it reads
                               ``frequency`` and the age only): ``P(alive)`` at a future date is
                               ``probability_alive × survival``
=============================  ================================================================

and ``next_purchase_time`` (the expected time to the next purchase given that there is one,
:meth:`PurchaseModel.expected_time_to_next_purchase`); plus, for continuous-time models,
``probability_of_n_purchases`` (``P(Y(t) = n | history)``), and the discounted expected residual
transactions (:meth:`ContinuousPurchaseModel.dert`), derived from ``future_purchases``
(:func:`discounted_future_purchases`).
The first three are required (a class without one cannot be instantiated); the others are optional
capabilities, ``None`` where a model has no such formula: predictive distributions and exact
simulation then refuse the model with a clear error, and backtests score its expectations only.
The fits, predictive distributions, CLV, backtests, scoring and Spark use these and nothing else.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Callable, ClassVar

import numpy as np
import pandas as pd

from ..errors import ClvDataError
from ..validation import check_time_unit
from .base import CLVModel, check_n, check_t
from .namespaces import NUMPY
from .quadrature import gauss_legendre, log_doubling_quadrature
from .rows import per_distinct_pair

#: Gauss-Legendre nodes of :func:`discounted_future_purchases`.
DERT_NODES = 64


def mixture_pmf(alive, table):
    """A conditional pmf table from ``P(alive)`` (shape ``(..., n)``) and the table of customers alive
    at the end of observation (``(..., n, n_max + 1)``): ``P(alive) x table`` plus ``1 − P(alive)``
    at 0 (a dead customer makes no purchase)."""
    alive = np.asarray(alive, dtype=float)[..., None]
    out = alive * table
    out[..., 0] += 1.0 - alive[..., 0]
    return out


class PurchaseModel(CLVModel):
    """A model of customers' repeat purchases and drop-out.

    Subclasses declare the formulas below (see the module docstring)."""

    kind_name = "purchase model"
    #: Column holding each customer's age: ``"T"`` (continuous time) or ``"n_periods"``.
    age_column: ClassVar[str] = "T"
    #: Whether time counts discrete transaction opportunities (windows ``t`` are whole numbers).
    discrete: ClassVar[bool] = False
    #: The history columns :meth:`future_purchases_formula` reads: the frequency and the age, except
    #: where the future of a customer alive at the end of observation also depends on the time since
    #: her last purchase (CNBD-k's Erlang clock), which adds the recency.
    future_columns: ClassVar[tuple[str, ...] | None] = None
    #: Whether P(alive) is evaluated once per distinct history: ``False`` where it costs a few
    #: operations per row, which is cheaper than finding the distinct rows.
    compress_alive_rows: ClassVar[bool] = True

    def __init__(self, *, purchase_covariates: list[str] | None = None, dropout_covariates: list[str] | None = None,
                 purchase_time_varying: list[str] | None = None, dropout_time_varying: list[str] | None = None,
                 **kwargs):
        """``purchase_covariates``, ``dropout_covariates``: columns of the customer table whose values scale the purchase and drop-out processes (each model's ``covariate_links``); ``purchase_time_varying``, ``dropout_time_varying``: time-varying covariates (columns of the pieces of ``fit(..., time_varying=)``) multiplying the purchase and drop-out rates by ``exp(γ·z(t))`` (:mod:`.timevarying`; the model's ``time_varying_model``); the other settings as for :class:`~clvmodels.models.base.CLVModel`."""
        super().__init__(**kwargs)
        self.purchase_covariates = purchase_covariates
        self.dropout_covariates = dropout_covariates
        self.purchase_time_varying = purchase_time_varying
        self.dropout_time_varying = dropout_time_varying

    @staticmethod
    @abstractmethod
    def probability_alive_formula(params, frequency, recency, age):
        """P(alive at the end of observation | history); the age argument is named :attr:`age_column`."""

    @staticmethod
    @abstractmethod
    def future_purchases_formula(params, frequency, age, *, t):
        """E[Y(t)] of a customer alive at the end of observation (does not read the recency)."""

    @staticmethod
    @abstractmethod
    def expected_purchases_formula(params, frequency, recency, age, *, t):
        """E[Y(t) | history] = P(alive) x :meth:`future_purchases_formula`."""

    #: Optional: ``purchase_pmf(params, frequency, recency, age, *, t, n_max)``, ``P(Y(t) = k | history)``
    #: for ``k = 0..n_max-1`` and ``P(Y(t) >= n_max)``, on a new last axis.
    purchase_pmf_formula: ClassVar[Callable | None] = None
    #: Optional: ``future_pmf(params, frequency, age, *, t, n_max)``, the :attr:`purchase_pmf_formula`
    #: table of a customer alive at the end of observation; with it predictive distributions average
    #: over draws per distinct ``(frequency, age)`` by matrix products instead of per history.
    future_pmf_formula: ClassVar[Callable | None] = None
    #: Optional: ``simulate_purchases(params, frequency, recency, age, *, t, rng)``, one exact draw of
    #: each customer's purchases in the next ``t`` (integer array); with increasing period boundaries
    #: ``t = [t_1, ..., t_H]`` (a 1-d array, :func:`period_boundaries`) one draw of the counts in each
    #: period ``(t_{i-1}, t_i]`` (``t_0 = 0``), on a new last axis of length ``H``.
    simulate_purchases_formula: ClassVar[Callable | None] = None
    #: Optional: ``new_customer(params, *, t)``, E[X(t)] for a customer just acquired.
    new_customer_formula: ClassVar[Callable | None] = None
    #: Optional: ``survival(params, frequency, age, *, t)``, P(alive at age + t | alive at age).
    survival_formula: ClassVar[Callable | None] = None
    #: Optional: ``next_purchase_time(params, frequency, recency, age)``, ``E[τ | τ < ∞, history]``:
    #: the expected time ``τ`` from the end of observation to the next purchase, given that she makes
    #: one (``inf`` where that mean diverges); see :meth:`expected_time_to_next_purchase`.
    next_purchase_time_formula: ClassVar[Callable | None] = None

    # ------------------------------------------------------------------ checks
    def _rfm_or_fitted(self, rfm):
        """The customers to score (default: the training data), refused when their recorded time unit
        is not the model's (a table in days scored by a model fitted in weeks would be 7x off)."""
        rfm = super()._rfm_or_fitted(rfm)
        check_time_unit(self, rfm)
        return rfm

    @classmethod
    def check_window(cls, t) -> None:
        """A prediction window must be finite and non-negative (and whole for discrete models)."""
        t = np.asarray(t, dtype=float)
        if cls.discrete:
            if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
                raise ClvDataError(f"The number of opportunities must be a non-negative integer, got {t}.")
        else:
            check_t(t)

    @property
    def has_time_varying(self) -> bool:
        """Whether the fitted model has time-varying covariates (:mod:`.timevarying`)."""
        return getattr(self, "time_varying_", None) is not None

    def expected_tracking(self, pieces, birth, boundaries, weights=None, covariates=None):
        """With time-varying covariates: the expected repeat purchases of a cohort per calendar period
        (:func:`.timevarying.expected_tracking`; ``weights``: customers per row of ``pieces``;
        ``covariates``: with static covariates too, their values per row of ``pieces``)."""
        from .timevarying import expected_tracking

        self._check_fitted()
        if not self.has_time_varying:
            raise ClvDataError("expected_tracking(pieces, ...) is for models with time-varying covariates.")
        return expected_tracking(self, pieces, birth, boundaries, weights, covariates)

    # ------------------------------------------------------------------ predictions
    def expected_purchases(self, t: float, rfm: pd.DataFrame | None = None, **kwargs):
        """Expected repeat purchases in the next ``t`` periods (opportunities), given each
        customer's history. ``interval=0.9`` adds parameter uncertainty; see :meth:`CLVModel._predict`.
        With time-varying covariates also ``time_varying=`` (the customers' calibration summary;
        default the training one) and ``future=`` (their pieces from ``T`` on; :func:`.timevarying.predict`)."""
        self.check_window(t)
        if self.has_time_varying:
            from .timevarying import predict

            return predict(self, "expected_purchases", rfm, t=float(t), **kwargs)
        return self._predict(self.expected_purchases_formula, rfm, name="expected_purchases", t=float(t), **kwargs)

    def probability_alive(self, rfm: pd.DataFrame | None = None, *, at: float | None = None, **kwargs):
        """Probability that each customer is still alive at the end of observation or, with ``at``,
        ``at`` periods (opportunities) later: ``P(alive) ×`` the model's ``survival`` over ``at``
        (whatever she buys meanwhile). With time-varying covariates also ``time_varying=`` (see
        :meth:`expected_purchases`) and, with ``at``, ``future=`` (the pieces of ``(T, T+at]``: the
        survival runs on the drop-out process's clock)."""
        if self.has_time_varying:
            from .timevarying import predict

            return predict(self, "probability_alive", rfm, at=at, **kwargs)
        kwargs.setdefault("compress_rows", self.compress_alive_rows)
        if at is None:
            return self._predict(self.probability_alive_formula, rfm, name="probability_alive", **kwargs)
        survival = self.require_formula("survival_formula", "probability_alive(at=...)")
        self.check_window(at)
        alive, age = self.probability_alive_formula, self.age_column

        def alive_at(params, frequency, recency, **history):
            return (alive(params, frequency, recency, **history)
                    * survival(params, frequency, history[age], t=float(at)))

        return self._predict(alive_at, rfm, name="probability_alive", **kwargs)

    def expected_time_to_next_purchase(self, rfm: pd.DataFrame | None = None, **kwargs):
        """Expected time from the end of observation to each customer's next purchase, given that she
        makes one: ``E[τ | τ < ∞, history]`` in the data's time unit.

        The waiting time ``τ`` is infinite with positive probability (she may have dropped out, or
        drop out before buying again), so its plain mean is infinite; this is the mean of the
        purchases that do happen. For BG/NBD, MBG/NBD and (M)BG/CNBD-k a customer alive at ``T``
        always buys once more (drop-out comes only right after a purchase), so it is the expected
        waiting time of an alive customer; for Pareto/NBD and GGompertz/NBD it is also conditional
        on the next purchase coming before her lifetime ends. ``inf`` where even that mean diverges
        (the purchase rate's posterior, ``Gamma(r+x, α+T)``, keeps so much mass near 0 that
        ``E[1/λ]`` is infinite: ``r+x <= 1``, e.g. one-time buyers when ``r < 1``; Pareto/NBD:
        ``r+x+s <= 1``). The probability of a next purchase within a window ``t`` is
        ``1 − probability_of_n_purchases(t, 0)``, and its limit the probability that she buys again
        at all (users of the other libraries ask for both: lifetimes issue #284, the timing of the
        next purchase; PyMC-Marketing issue #1093, no purchase within ``t``). ``interval=`` adds
        parameter uncertainty as for :meth:`expected_purchases` (over draws, the mean of each draw's
        conditional expectation); a model without the formula (BG/BB, whose time counts
        opportunities) raises :class:`~clvmodels.errors.ModelKindError`."""
        formula = self.require_formula("next_purchase_time_formula", "expected_time_to_next_purchase")

        def next_purchase_time(params, *args, **history):   # +inf is an answer, NaN never
            values = formula(params, *args, **history)
            if np.isnan(values).any():
                raise FloatingPointError(f"next_purchase_time of {type(self).__name__} produced NaN: please "
                                         "report it with the model's parameters and the customers' histories.")
            return values

        return self._predict(next_purchase_time, rfm, name="expected_time_to_next_purchase", finite=False, **kwargs)

    def expected_purchases_new_customer(self, t, covariates: pd.DataFrame | None = None, **kwargs):
        """E[X(t)] for a newly acquired customer, for one or several ``t``: a float for scalar ``t``
        without interval, else a Series/frame indexed by ``t``.

        A model with covariates needs the new customers' ``covariates``: one profile (a dict or
        Series) for every ``t``, a frame of profiles for one ``t`` (the result is indexed like it), or
        a frame of one profile per ``t`` (customers of different ages).

        With time-varying covariates: ``future=`` the new customers' covariate paths (pieces on their
        clocks from 0, covering ``t``); a Series over those customers (:func:`.timevarying.new_customers`)."""
        if self.has_time_varying:
            from .timevarying import new_customers

            return new_customers(self, t, kwargs.pop("future", None), **kwargs)
        formula = self.require_formula("new_customer_formula", "expected_purchases_new_customer")
        ts = np.atleast_1d(np.asarray(t, dtype=float))
        self.check_window(ts)
        grid = self._covariate_grid(pd.DataFrame({"t": ts}, index=pd.Index(ts, name="t")), covariates)
        out = self._predict(lambda params, t: formula(params, t=t), grid, name="expected_purchases",
                            columns=("t",), **kwargs)
        return float(out.iloc[0]) if np.ndim(t) == 0 and isinstance(out, pd.Series) and len(out) == 1 else out


def period_boundaries(t) -> tuple[np.ndarray, bool]:
    """A prediction window ``t`` (a number) or increasing period boundaries ``[t_1, ..., t_H]`` (a 1-d
    array) as ``(boundaries, scalar)``: the boundaries as a float array, and whether ``t`` was a number
    (then the simulated counts have no period axis)."""
    bounds = np.asarray(t, dtype=float)
    if bounds.ndim > 1 or bounds.size == 0:
        raise ClvDataError(f"t must be a number or a 1-d array of period boundaries, got shape {bounds.shape}.")
    if bounds.ndim == 1 and (bounds[0] <= 0 or np.any(np.diff(bounds) <= 0)):
        raise ClvDataError(f"Period boundaries must be positive and increasing, got {bounds}.")
    return np.atleast_1d(bounds), bounds.ndim == 0


#: Totals above this many events are spread over the periods by conditional binomials rather than
#: event by event (bounded memory for very frequent buyers).
MAX_EVENTS_PER_TOTAL = 64


def split_over_periods(total, exposure, rng, *, discrete: bool = False) -> np.ndarray:
    """Spread simulated totals over periods: counts ``(m, H)`` summing to ``total``.

    ``total`` holds ``m`` counts (zeros stay zero); ``exposure`` the exposure of each in each period,
    ``(m, H)`` or ``(H,)``: the time alive in it (continuous time) or the number of opportunities
    alive in it (discrete). Given ``N`` events of a Poisson process of constant rate, the events are
    independent uniform times over the exposure, so their counts in disjoint periods are
    multinomial with probabilities proportional to the exposures: drawn event by event (one uniform
    per event, located among the periods), or for totals above :data:`MAX_EVENTS_PER_TOTAL` as a
    sequence of conditional binomials. Given ``N`` successes of Bernoulli trials with constant
    ``p``, the successes are a uniform subset of the opportunities: multivariate hypergeometric,
    drawn as a sequence of conditional hypergeometrics."""
    n = np.asarray(total, dtype=np.int64)
    weights = np.asarray(exposure, dtype=float)
    n_periods = weights.shape[-1]
    out = np.empty((n.size, n_periods), dtype=np.int64)
    if n.size == 0:
        return out
    cumulative = np.cumsum(weights, axis=-1)
    few = np.zeros(n.size, dtype=bool) if discrete else n <= MAX_EVENTS_PER_TOTAL
    if few.any():
        rows = np.repeat(np.arange(int(few.sum())), n[few])
        if cumulative.ndim == 1 and np.ptp(weights) <= 1e-12 * weights[0]:   # equal periods (to rounding)
            period = rng.integers(n_periods, size=rows.size)
        elif cumulative.ndim == 1:
            period = np.searchsorted(cumulative, rng.random(rows.size) * cumulative[-1], side="right")
        else:   # one search over every row's cdf, each shifted by twice its row number (no events x H array)
            ends = cumulative[few]
            cdf = np.divide(ends, ends[:, -1:], out=np.ones_like(ends), where=ends[:, -1:] > 0)
            shifted = (cdf + 2.0 * np.arange(len(cdf))[:, None]).ravel()
            period = np.searchsorted(shifted, rng.random(rows.size) + 2.0 * rows, side="right") - rows * n_periods
        out[few] = _counts_per_period(rows, period, int(few.sum()), n_periods)
    many = ~few
    if many.any():
        out[many] = _sequential_split(n[many], np.broadcast_to(weights, (n.size, n_periods))[many], rng,
                                      discrete=discrete)
    return out


def split_over_lifetime(total, bounds: np.ndarray, lifetime, rng) -> np.ndarray:
    """:func:`split_over_periods` for a Poisson process that runs from 0 until ``lifetime`` (one per
    total): given ``N`` events they are uniform times on ``(0, min(t_H, lifetime))``, each located
    among the period boundaries ``bounds`` by one search (no per-row exposures); totals above
    :data:`MAX_EVENTS_PER_TOTAL` by conditional binomials over the time alive in each period."""
    n = np.asarray(total, dtype=np.int64)
    lifetime = np.asarray(lifetime, dtype=float)
    n_periods = len(bounds)
    out = np.empty((n.size, n_periods), dtype=np.int64)
    few = n <= MAX_EVENTS_PER_TOTAL
    if few.any():
        rows = np.repeat(np.arange(int(few.sum())), n[few])
        span = np.minimum(bounds[-1], lifetime[few])[rows]
        period = np.searchsorted(bounds, rng.random(rows.size) * span, side="right")
        out[few] = _counts_per_period(rows, period, int(few.sum()), n_periods)
    if (~few).any():
        out[~few] = _sequential_split(n[~few], alive_in_periods(bounds, lifetime[~few]), rng, discrete=False)
    return out


def _counts_per_period(rows: np.ndarray, period: np.ndarray, m: int, n_periods: int) -> np.ndarray:
    """``(m, n_periods)`` counts of events located in rows ``rows`` and periods ``period`` (a period
    past the last, from rounding at the end of the range, is the last)."""
    period = np.minimum(period, n_periods - 1)
    return np.bincount(rows * n_periods + period, minlength=m * n_periods).reshape(-1, n_periods)


def _sequential_split(n: np.ndarray, weights: np.ndarray, rng, *, discrete: bool) -> np.ndarray:
    """Multinomial (hypergeometric) split of ``n`` over periods of ``weights`` as conditional
    binomials (hypergeometrics), period by period."""
    rest = np.cumsum(weights[:, ::-1], axis=1)[:, ::-1]        # exposure of periods i .. H
    counts = np.empty(weights.shape, dtype=np.int64)
    for i in range(weights.shape[1] - 1):
        if discrete:
            c = rng.hypergeometric(np.rint(weights[:, i]).astype(np.int64),
                                   np.rint(rest[:, i + 1]).astype(np.int64), n)
        else:
            share = np.divide(weights[:, i], rest[:, i], out=np.zeros(n.size), where=rest[:, i] > 0)
            c = rng.binomial(n, np.clip(share, 0.0, 1.0))
        counts[:, i] = c
        n = n - c
    counts[:, -1] = n
    return counts


def scatter(mask: np.ndarray, values: np.ndarray, n_periods: int | None = None) -> np.ndarray:
    """Integer (int32) array of ``mask``'s shape (plus a last axis of ``n_periods``) holding ``values`` at the
    entries of ``mask`` and 0 elsewhere: simulations draw only for the entries that can be non-zero."""
    out = np.zeros(mask.shape + (() if n_periods is None else (n_periods,)), dtype=np.int32)
    out[mask] = values
    return out


def alive_times_future(alive, future, params, frequency, recency, T, *, t):
    """``E[Y(t) | x, t_x, T] = P(alive) · E[Y(t) | alive at T]`` of a model's ``alive`` and ``future``
    formulas. The second factor does not read the recency, so for a vector of customers it is
    evaluated once per distinct ``(x, T)`` pair (:func:`~.rows.per_distinct_pair`), far fewer than
    the histories."""
    if np.ndim(t) != 0:
        ahead = future(params, frequency, T, t=t)
    else:
        ahead = per_distinct_pair(lambda x, age: future(params, x, age, t=t), frequency, T, axis=-1, params=params)
    return alive(params, frequency, recency, T) * ahead


def per_distinct_draw(fn, params: dict, *columns):
    """``fn(params, *columns)`` evaluated once per distinct parameter draw and distinct history (the
    tuple of the customers' ``columns``, 1-D) and gathered back.

    Simulations share each parameter draw between several futures (the rows of ``params``, shape
    ``(n_samples, 1)``, repeat; :func:`clvmodels.predictive._simulate_chunks`), customers share
    histories (one-time buyers of the same day; the simulation's chunks hold customers of equal
    histories together) unless their parameters are their own (covariates: a customer axis in
    ``params``), and a formula such as Pareto/NBD's P(alive) (a numerical integral) costs far more
    per value than the gather."""
    columns = [np.asarray(c, dtype=float) for c in columns]
    shared = all(np.ndim(v) == 0 or np.shape(v)[-1] == 1 for v in params.values())   # not per customer (covariates)
    if shared and len(columns) and all(c.ndim == 1 for c in columns):
        _, first, inverse = np.unique(np.column_stack(columns), axis=0, return_index=True, return_inverse=True)
        if len(first) < len(columns[0]):
            out = per_distinct_draw(fn, params, *(c[first] for c in columns))
            return np.asarray(out)[..., inverse.ravel()]
    shapes = {np.shape(v) for v in params.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != 1:
        return fn(params, *columns)
    table = np.column_stack([np.asarray(v, dtype=float)[:, 0] for v in params.values()])
    _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(table):
        return fn(params, *columns)
    out = fn({k: np.asarray(v)[first] for k, v in params.items()}, *columns)
    return np.asarray(out)[inverse.ravel()]


def alive_in_periods(bounds: np.ndarray, lifetime: np.ndarray) -> np.ndarray:
    """Time (or opportunities) alive in each period ``(t_{i-1}, t_i]`` of a customer with remaining
    ``lifetime``: ``clip(min(t_i, lifetime) - t_{i-1}, 0)``, on a new last axis."""
    start = np.concatenate([[0.0], bounds[:-1]])
    return np.clip(np.minimum(bounds, lifetime[..., None]) - start, 0.0, None)


class ContinuousPurchaseModel(PurchaseModel):
    """A purchase model in continuous time: histories ``(frequency, recency, T)``."""

    data_columns = ("frequency", "recency", "T")

    #: Optional: ``probability_of_n_purchases(params, frequency, recency, T, *, t, n)``, P(Y(t) = n | history).
    probability_of_n_purchases_formula: ClassVar[Callable | None] = None

    @staticmethod
    def purchase_rate(data: dict[str, np.ndarray], weights: np.ndarray) -> float:
        """Method-of-moments guess of the mean purchase rate ``E[x/T]`` (a starting value of the fits)."""
        return max(float(np.average(data["frequency"] / np.maximum(data["T"], 1e-9), weights=weights)), 1e-6)

    def dert(self, discount_rate: float, rfm: pd.DataFrame | None = None, **kwargs):
        """Discounted expected residual transactions: each customer's expected future purchases, each
        discounted continuously to the end of observation, ``E[∫_0^∞ e^{−δt} dY(t) | history]`` (Fader,
        Hardie & Lee 2005, "RFM and CLV: using iso-value curves", JMR 42(4), eq. 2 for Pareto/NBD),
        times the expected spend per purchase is the customer's residual value.

        ``discount_rate``: ``δ``, the continuously compounded rate per time unit of the model (an
        annual rate ``d`` on weekly data: ``δ = ln(1+d)/52``). Computed from the model's
        ``future_purchases`` (:func:`discounted_future_purchases`) times ``P(alive)``; ``interval=``
        adds parameter uncertainty as for :meth:`expected_purchases`."""
        rate = float(discount_rate)
        if not np.isfinite(rate) or rate <= 0:
            raise ValueError(f"discount_rate must be a positive continuous rate per time unit, got {discount_rate!r}.")
        alive, future = self.probability_alive_formula, self.future_purchases_formula

        def dert(params, frequency, recency, T):
            return (alive(params, frequency, recency, T)
                    * discounted_future_purchases(future, params, frequency, T, rate=rate))

        return self._predict(dert, rfm, name="dert", **kwargs)

    def probability_of_n_purchases(self, t: float, n: int, rfm: pd.DataFrame | None = None, **kwargs):
        """Probability that each customer makes exactly ``n`` repeat purchases in the next ``t`` periods."""
        formula = self.require_formula("probability_of_n_purchases_formula", "probability_of_n_purchases")
        check_t(t)
        check_n(n)
        return self._predict(formula, rfm, name=f"p_{int(n)}_purchases",
                             t=float(t), n=int(n), **kwargs)


def discounted_future_purchases(future, params: dict, frequency, age, *, rate: float):
    """``∫_0^∞ e^{−δt} dE[Y(t)] = δ ∫_0^∞ e^{−δt} E[Y(t)] dt`` (by parts, ``E[Y(0)] = 0``) for a
    customer alive at ``age``, from the model's ``future(params, frequency, age, *, t)``.

    Gauss-Legendre quadrature (:data:`DERT_NODES` nodes) in ``w = ln(1 + t/c)``, ``c = age``, on
    ``[0, W]`` with ``δ c (e^W − 1) = 40`` (the rest is below ``e^−40`` of the whole): the ``E[Y(t)]``
    of these models are analytic but at ``t = −(α+T)`` or ``−(β+T)``, beyond ``−c``, which is
    ``Im w = π`` or ``w = −∞``, and the integrand ``δ c e^w e^{−δ c (e^w − 1)} E[Y]`` falls
    double-exponentially, so the rule converges geometrically (to ~1e-10 against Pareto/NBD's closed
    form with the confluent hypergeometric ``U``, ``tests/test_survival_and_dert.py``)."""
    pos, weight = gauss_legendre(DERT_NODES)
    c = np.maximum(np.asarray(age, dtype=float), 1e-9)[..., None]
    W = np.log1p(40.0 / (rate * c))
    w = W * pos                                                      # (..., nodes)
    t = c * np.expm1(w)
    nodes = {k: np.asarray(v, dtype=float)[..., None] for k, v in params.items()}
    ey = future(nodes, np.asarray(frequency, dtype=float)[..., None], c, t=t)
    integrand = rate * np.exp(-rate * t) * ey * (c + t)                # dt/dw = c e^w = c + t
    return np.sum(integrand * weight, axis=-1) * W[..., 0]


def next_purchase_before_dropout(p, A, log_survival, hazard, ends):
    """``E[τ | τ < ∞]`` of a customer alive at the end of observation who buys at a rate
    ``λ ~ Gamma(p, rate A)`` until an independent remaining lifetime of survival ``S`` ends (Pareto/NBD,
    GGompertz/NBD): her next purchase comes ``u`` later with the defective density
    ``g(u) = p/A (1+u/A)^−(p+1) S(u)`` (``E_λ[λ e^{−λu}]`` times ``S``), so ``E[τ | τ < ∞] = ∫ u g / ∫ g``.

    Both integrals in ``v = ln(1 + u/A)`` (``g du = p e^{−pv} S dv``; ``u = A(e^v − 1)``), in log space,
    over the pieces between ``0`` and the ``ends`` (1-d arrays over the rows, increasing: the knees
    where the hazard turns, and the end beyond which the integrands are negligible), each split at
    its middle and integrated by the doubling rule (:func:`~.quadrature.log_doubling_quadrature`)
    forward from its start and backward from its end, so that a peak or knee at either end is
    resolved; the panels' scale at a point is ``1/(p + hazard + 1)`` (the log-slope of the
    integrands, ``+1`` for the ``e^v`` of ``u``). ``log_survival(v)``: ``ln S`` at the nodes (the
    rows' axis first, two trailing axes); ``hazard(v)``: ``−d ln S/dv`` at points of the rows."""
    P, logA = p[:, None, None], np.log(A)[:, None, None]

    def log_g(v):
        return np.log(P) - P * v + log_survival(v)

    def log_ug(v):
        return log_g(v) + logA + v + np.log(-np.expm1(-v))

    def scale(v):
        return 1.0 / (p + hazard(v) + 1.0)

    points = np.maximum.accumulate(np.stack([np.zeros_like(p), *np.broadcast_arrays(*ends)]), axis=0)
    logs = []
    for f in (log_g, log_ug):
        parts = []
        for lo, hi in zip(points[:-1], points[1:]):
            empty = hi <= lo
            hi = np.where(empty, lo + 1.0, hi)
            mid, top = (lo + hi) / 2.0, hi[:, None, None]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                left = log_doubling_quadrature(NUMPY, f, lo, mid, scale(lo))
                right = log_doubling_quadrature(NUMPY, lambda t: f(top - t), np.zeros_like(p), hi - mid, scale(hi))
            parts.append(np.where(empty, -np.inf, np.logaddexp(left, right)))
        logs.append(np.logaddexp.reduce(parts, axis=0))
    return np.exp(logs[1] - logs[0])


class DiscretePurchaseModel(PurchaseModel):
    """A purchase model of discrete transaction opportunities: histories ``(frequency, recency,
    n_periods)`` counted in opportunities (see :func:`clvmodels.rfm.bgbb_summary`)."""

    data_columns = ("frequency", "recency", "n_periods")
    age_column = "n_periods"
    discrete = True


__all__ = ["ContinuousPurchaseModel", "DiscretePurchaseModel", "PurchaseModel", "alive_in_periods", "alive_times_future",
           "discounted_future_purchases", "next_purchase_before_dropout", "per_distinct_draw", "period_boundaries", "scatter",
           "split_over_lifetime", "split_over_periods"]
