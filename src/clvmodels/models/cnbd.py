"""(M)BG/CNBD-k: regular purchase timing (Platzer & Reutterer 2016, "Ticking away the moments: timing
regularity helps to better predict customer activity", Marketing Science 35(5); R package BTYDplus).

While alive, a customer's inter-purchase times are Erlang-k with rate ``λ ~ Gamma(r, rate α)``: the
k-th, 2k-th, ... event of a Poisson process of rate ``λ`` is a purchase, so ``k = 1`` is BG/NBD's
Poisson process and larger ``k`` more regular buying. After every repeat purchase (MBG/CNBD-k: also
right after the first one) she drops out with probability ``p ~ Beta(a, b)``. ``k = 1`` is BG/NBD
(``d = 0``) and MBG/NBD (``d = 1``); ``k`` is a structural setting, chosen by maximum likelihood.

The likelihood reads one summary beyond ``(x, t_x, T)``: ``litt``, the sum of the logs of the
inter-purchase times (:func:`clvmodels.rfm_summary` with ``litt=True``). Predictions do not need it.

A customer alive at ``T`` has seen ``j`` Poisson events since her last purchase (her *phase*,
``0 <= j < k``); given the history, phase ``j`` has posterior weight proportional to the ``j``-th term
of the likelihood's ``S2`` sum, and given the phase ``λ ~ Gamma(r+kx+j, α+T)`` and
``p ~ Beta(a, b+x+d)``. Her next purchases are the ``(k−j)``-th, ``(2k−j)``-th, ... future events,
which gives every prediction below (P(alive), expectations, pmf and exact simulation).
"""

from __future__ import annotations

import functools
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import betainc, expit, gammaln, logsumexp

from ..errors import ClvDataError, ConvergenceWarning
from .bgnbd import BetaGeoModel, mean_waiting_time, purchases_before_dropout
from .namespaces import as_namespace, likelihood
from .purchase import ContinuousPurchaseModel, per_distinct_draw, period_boundaries, scatter, split_over_periods

#: Largest Erlang order accepted (a saved model's ``k_`` is checked against it).
MAX_K = 50


# ---------------------------------------------------------------------------- likelihood
def frequency_terms(params: dict, data: dict, xp, *, k: int = 1, d: int = 1):
    """``lnΓ(r+kx) − lnΓ(r) + r ln α + ln B(a, b+x+d) − ln B(a, b)`` (Platzer & Reutterer 2016; models.md)."""
    xp = as_namespace(xp)
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = data["frequency"]
    return xp.gammaln(r + k * x) - xp.gammaln(r) + r * xp.log(alpha) + xp.betaln(a, b + x + d) - xp.betaln(a, b)


def timing_terms(params: dict, data: dict, xp, *, k: int = 1, d: int = 1):
    """``(k−1) litt − x ln((k−1)!)``: the Erlang densities' parameter-free factors (they decide ``k``)."""
    return (k - 1) * data["litt"] - data["frequency"] * float(gammaln(k))


def history_log_terms(params: dict, x, tx, T, xp, *, k: int = 1, d: int = 1):
    """The log terms of the likelihood's ``(α+T)^−(r+kx) (S1 + S2)`` as ``(dead, [alive_0, ..., alive_{k−1}])``.

    ``dead = ln(a/(b+x−1+d)) − (r+kx) ln(α+t_x)`` (−inf for BG/CNBD-k without repeat purchases): she
    dropped out after her last purchase; ``alive_j = ln[Γ(r+kx+j)/Γ(r+kx) (T−t_x)^j/j!] − (r+kx+j) ln(α+T)``:
    she is alive and has seen ``j`` events of her Erlang clock since ``t_x``."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    n = r + k * x
    log_aT = xp.log(alpha + T)
    if d:
        dead = xp.log(a) - xp.log(b + x) - n * xp.log(alpha + tx)
    else:
        repeat = x > 0
        bx1 = xp.where(repeat, b + x - 1, b)  # only used where x > 0; positive elsewhere (finite gradients)
        dead = xp.where(repeat, xp.log(a) - xp.log(bx1) - n * xp.log(alpha + tx), -np.inf)
    alive = [-n * log_aT]
    if k > 1:
        gap = T - tx
        some = gap > 0
        log_gap = xp.where(some, xp.log(xp.where(some, gap, 1.0)), -np.inf)
        rising = 0.0
        for j in range(1, k):
            rising = rising + xp.log(n + (j - 1))
            alive.append(xp.where(some, rising + j * (log_gap - log_aT) - float(gammaln(j + 1.0)), -np.inf)
                         - n * log_aT)
    return dead, alive


def history_terms(params: dict, data: dict, xp, *, k: int = 1, d: int = 1):
    """``−(r+kx) ln(α+T) + ln(S1 + S2)`` (Platzer & Reutterer 2016; models.md), by log-sum-exp."""
    xp = as_namespace(xp)
    dead, alive = history_log_terms(params, data["frequency"], data["recency"], data["T"], xp, k=k, d=d)
    total = dead
    for term in alive:
        total = xp.logaddexp(total, term)
    return total


def log_likelihood(params: dict, data: dict, xp, *, k: int = 1, d: int = 1):
    """Per-customer log-likelihood of (M)BG/CNBD-k (Platzer & Reutterer 2016; models.md):

    ``(k−1) litt − x ln((k−1)!) + ln B(a, b+x+d) − ln B(a, b) + lnΓ(r+kx) − lnΓ(r) + r ln α
    − (r+kx) ln(α+T) + ln(S1 + S2)`` with ``S1 = [d = 1 or x > 0] a/(b+x−1+d) ((α+T)/(α+t_x))^(r+kx)``
    and ``S2 = Σ_{j<k} Γ(r+kx+j)/Γ(r+kx) (T−t_x)^j / (j! (α+T)^j)``; ``d = 1`` for MBG/CNBD-k, 0 for
    BG/CNBD-k. The sum of :func:`frequency_terms`, :func:`history_terms` and :func:`timing_terms`."""
    return (frequency_terms(params, data, xp, k=k, d=d) + history_terms(params, data, xp, k=k, d=d)
            + timing_terms(params, data, xp, k=k, d=d))


@functools.cache
def likelihood_structure(model_cls: type, k: int) -> type:
    """The likelihood of ``model_cls`` at Erlang order ``k`` as a class of its own (what the fits read:
    ``param_names``, ``log_likelihood`` and its parts, the priors): one per ``(class, k)``, so the
    compiled Bayesian models of different ``k`` never mix (:func:`.bayes.structure_key`)."""
    d = model_cls.drop_at_first
    parts = ((("frequency",), frequency_terms), (("frequency", "recency", "T"), history_terms),
             (("frequency", "litt"), timing_terms))
    return type(f"{model_cls.__name__}(k={k})", (), {
        "__module__": __name__, "k": k, "param_names": model_cls.param_names,
        "default_priors": model_cls.default_priors, "joint_priors": model_cls.joint_priors,
        "bayes_parametrisation": None,
        "log_likelihood": staticmethod(likelihood(functools.partial(log_likelihood, k=k, d=d))),
        "log_likelihood_parts": tuple((cols, likelihood(functools.partial(fn, k=k, d=d))) for cols, fn in parts)})


# ---------------------------------------------------------------------------- predictions
def erlang_order(params: dict) -> int:
    """The Erlang order ``k`` carried with the parameter draws (the same in every draw)."""
    k = np.unique(np.asarray(params["k"], dtype=float))
    if len(k) != 1 or k[0] != np.round(k[0]) or not 1 <= k[0] <= MAX_K:
        raise ClvDataError(f"k must be one whole number from 1 to {MAX_K}, got {k.tolist()}.")
    return int(k[0])


def _alive_state(params, frequency, recency, T, d: int):
    """``(P(alive), phase weights)``: the weights ``w_j`` of the phases ``j < k`` of a customer alive
    at ``T`` (a list of arrays summing to 1)."""
    k = erlang_order(params)
    x, tx, T = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    with np.errstate(divide="ignore", invalid="ignore"):
        dead, alive = history_log_terms(params, x, tx, T, _NUMPY, k=k, d=d)
    alive = np.stack(np.broadcast_arrays(*alive))
    log_alive = logsumexp(alive, axis=0)
    return expit(log_alive - dead), list(np.exp(alive - log_alive))


def probability_alive(params, frequency, recency, T, *, d: int = 1):
    """P(alive at T | x, t_x, T) = S2 / (S1 + S2) (Platzer & Reutterer 2016): the alive terms' share of
    the likelihood."""
    return _alive_state(params, frequency, recency, T, d)[0]


def _future_given_phase(n, alpha_t, a, b, t, k: int, j: int, n_max: int):
    """``P(Y(t) >= m)`` for ``m = 1 .. n_max`` of a customer alive in phase
    ``j`` with ``λ ~ Gamma(n, α')``, ``p ~ Beta(a, b)``: her m-th purchase is the ``(mk−j)``-th event of
    the Poisson process (a negative binomial count, ``P(N >= i) = I_q(i, n)``, ``q = t/(α'+t)``) and
    she survives the ``m−1`` drop-out coins before it (``B(a, b+m−1)/B(a, b)``). Yields the terms."""
    q = t / (alpha_t + t)
    log_surv = np.zeros(np.broadcast(n, alpha_t, a, b).shape)
    m = 1
    while m <= n_max:
        yield np.exp(log_surv) * betainc(float(m * k - j), n, q)
        log_surv = log_surv + np.log(b + (m - 1)) - np.log(a + b + (m - 1))
        m += 1


def _alive_expectation(params, x, T, weights, k: int, d: int, t):
    """``E[Y(t)]`` of a customer alive at ``T`` with phase weights ``weights``: ``Σ_j w_j E_j``, each
    phase's :func:`_expected_given_phase` evaluated for all phases at once."""
    shape = np.broadcast_shapes(np.shape(params["r"] + x), np.shape(params["alpha"] + T), np.shape(t),
                                *(np.shape(w) for w in weights))
    j = np.arange(k, dtype=float).reshape((k,) + (1,) * len(shape))
    n, alpha_t, a, b, t_, j = (np.broadcast_to(v, (k,) + shape).reshape(-1) for v in (
        params["r"] + k * x + j, params["alpha"] + T, params["a"], params["b"] + x + d, t, j))
    per_phase = _expected_given_phase(n, alpha_t, a, b, t_, k, j).reshape((k,) + shape)
    return sum(w * e for w, e in zip(weights, per_phase))


#: A customer's sum in :func:`_expected_given_phase` stops once a bound on the rest falls below this
#: fraction of it.
SERIES_TOL = 1e-16


def _expected_given_phase(n, alpha_t, a, b, t, k: int, j):
    """``E[Y(t)]`` of customers alive in phase ``j`` (flat arrays) with ``λ ~ Gamma(n, α')`` and
    ``p ~ Beta(a, b)``: her m-th purchase is the ``(mk−j)``-th event of the Poisson process, made if she
    survived the ``m−1`` drop-out coins before it (probability ``S_m = B(a, b+m−1)/B(a, b)``), so

    ``E[Y(t)] = Σ_m S_m P(N >= mk−j) = Σ_{i>=1} P(N = i) H(⌊(i+j)/k⌋)``, ``H(M) = Σ_{m<=M} S_m``,

    with ``N`` negative binomial (``P(N = i) = Γ(n+i)/(Γ(n) i!) (1−q)^n q^i``, ``q = t/(α'+t)``). Every
    term is positive (no cancellation); ``P(N = i)`` and ``S_m`` by their ratios, ``P(N = i)`` in log
    space. A customer's sum stops once ``i`` is past the mode and the geometric bound
    ``P(N = i) (H/(1−ρ) + 1/(k (1−ρ)²))`` on the rest (``ρ`` the larger of ``P(N = i+1)/P(N = i)`` and
    ``q``, which bound every later ratio) is below :data:`SERIES_TOL` of the sum."""
    out = np.zeros(n.shape)
    with np.errstate(divide="ignore"):
        log_q = np.log(t) - np.log(alpha_t + t)
    log_pmf = -n * np.log1p(t / alpha_t)
    q = np.exp(log_q)
    H, S = np.zeros(n.shape), np.ones(n.shape)
    purchases = np.zeros(n.shape)
    idx = np.arange(n.size)
    total = np.zeros(n.shape)
    i = 0
    while idx.size:
        i += 1
        log_pmf = log_pmf + np.log(n + (i - 1)) + log_q - np.log(i)
        new = (i + j) % k == 0                  # the event that makes a purchase
        H = np.where(new, H + S, H)
        purchases = purchases + new
        S = np.where(new, S * (b + purchases - 1) / (a + b + purchases - 1), S)
        pmf = np.exp(log_pmf)
        total = total + pmf * H
        if i % 8 == 0:
            rho = np.maximum((n + i) * q / (i + 1), q)
            rest = pmf * (H / (1 - rho) + 1.0 / (k * (1 - rho) ** 2))
            done = (rho < 1) & ((n + i) * q / (i + 1) < 1) & (rest <= SERIES_TOL * total) | (q == 0)
            if done.any():
                out[idx[done]] = total[done]
                keep = ~done
                idx = idx[keep]
                n, a, b, j, q, log_q, log_pmf, H, S, purchases, total = (
                    v[keep] for v in (n, a, b, j, q, log_q, log_pmf, H, S, purchases, total))
    return out


def future_purchases_alive(params, frequency, recency, T, *, t, d: int = 1):
    """E[Y(t)] in ``(T, T+t]`` of a customer alive at ``T`` (Platzer & Reutterer 2016's process, by
    summing ``P(Y(t) >= m)`` over ``m``; it reads the recency: the time since the last purchase
    tells her phase). At ``k = 1`` it is BG/NBD's (MBG/NBD's) closed form."""
    k = erlang_order(params)
    x = np.asarray(frequency, dtype=float)
    _, weights = _alive_state(params, frequency, recency, T, d)
    return _alive_expectation(params, x, np.asarray(T, dtype=float), weights, k, d, np.asarray(t, dtype=float))


def expected_purchases(params, frequency, recency, T, *, t, d: int = 1):
    """E[Y(t) | x, t_x, T] = P(alive) · :func:`future_purchases_alive`."""
    k = erlang_order(params)
    x = np.asarray(frequency, dtype=float)
    alive, weights = _alive_state(params, frequency, recency, T, d)
    return alive * _alive_expectation(params, x, np.asarray(T, dtype=float), weights, k, d, np.asarray(t, dtype=float))


def next_purchase_time(params, frequency, recency, T, *, d: int = 1):
    """``E[τ | τ < ∞, x, t_x, T]``, the expected time from ``T`` to the next purchase given that she
    makes one. As in BG/NBD she buys again exactly when alive at ``T``; in phase ``j`` her next
    purchase is the ``(k−j)``-th Poisson event, a ``Gamma(k−j, λ)`` wait with
    ``λ ~ Gamma(r+kx+j, α+T)``, so ``Σ_j w_j (k−j)(α+T)/(r+kx+j−1)`` with the phase weights ``w_j``
    of :func:`probability_alive` (``inf`` where a weighted phase has ``r+kx+j <= 1``). At ``k = 1``
    it is BG/NBD's ``(α+T)/(r+x−1)``."""
    k = erlang_order(params)
    x = np.asarray(frequency, dtype=float)
    _, weights = _alive_state(params, frequency, recency, T, d)
    rate = params["alpha"] + np.asarray(T, dtype=float)
    with np.errstate(invalid="ignore"):     # inf x 0 for a phase of no weight
        terms = [np.where(w > 0, w * mean_waiting_time(k - j, params["r"] + k * x + j, rate), 0.0)
                 for j, w in enumerate(weights)]
    return sum(terms)


def expected_purchases_new_customer(params, *, t, d: int = 1):
    """E[X(t)] of a customer just acquired: :func:`expected_purchases` at ``x = t_x = T = 0`` (phase 0;
    MBG/CNBD-k: alive after her first purchase with probability ``b/(a+b)``)."""
    return expected_purchases(params, 0.0, 0.0, 0.0, t=t, d=d)


def purchase_pmf(params, frequency, recency, T, *, t, n_max, d: int = 1):
    """Predictive pmf ``P(Y(t) = m | x, t_x, T)`` for ``m = 0 .. n_max−1`` and the tail
    ``P(Y(t) >= n_max)`` on a new last axis: ``P(Y >= m) = P(alive) Σ_j w_j P(Y >= m | j)``
    (:func:`_future_given_phase`), differenced."""
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    k = erlang_order(params)
    x = np.asarray(frequency, dtype=float)
    alive, weights = _alive_state(params, frequency, recency, T, d)
    a, b = params["a"], params["b"] + x + d
    at_least = [np.ones_like(alive)]
    tails = [0.0] * int(n_max)
    for j, w in enumerate(weights):
        terms = _future_given_phase(params["r"] + k * x + j, params["alpha"] + np.asarray(T, float), a, b,
                                    float(t), k, j, n_max=int(n_max))
        for m, term in enumerate(terms):
            tails[m] = tails[m] + w * term
    at_least += [alive * tail for tail in tails]
    at_least = np.stack(np.broadcast_arrays(*at_least), axis=-1)
    out = np.empty(at_least.shape)
    out[..., :-1] = at_least[..., :-1] - at_least[..., 1:]
    out[..., -1] = at_least[..., -1]
    return np.clip(out, 0.0, 1.0)


def probability_of_n_purchases(params, frequency, recency, T, *, t, n, d: int = 1):
    """P(Y(t) = n | x, t_x, T): column ``n`` of :func:`purchase_pmf`."""
    return purchase_pmf(params, frequency, recency, T, t=t, n_max=int(n) + 1, d=d)[..., int(n)]


def simulate_purchases(params, frequency, recency, T, *, t, rng, d: int = 1):
    """One exact draw of each customer's purchases in ``(T, T+t]`` (per period with boundaries
    ``t = [t_1, ..., t_H]``) from her individual-level posterior: alive with P(alive), then her phase
    ``j`` (weights of :func:`probability_alive`'s ``S2`` terms), ``λ ~ Gamma(r+kx+j, α+T)``; the
    ``N`` Poisson events by ``t_H`` fall in the periods multinomially; her purchases are the events
    numbered ``k−j, 2k−j, ...``, up to the one after which she drops out (``G``, beta-geometric with
    ``Beta(a, b+x+d)``, drawn by :func:`~.bgnbd.purchases_before_dropout`)."""
    k = erlang_order(params)
    bounds, scalar = period_boundaries(t)
    x = np.asarray(frequency, dtype=float)
    state = per_distinct_draw(lambda p, *h: _stacked_state(p, *h, d), params, frequency, recency, T)
    alive, weights = state[..., 0, :], np.moveaxis(state[..., 1:, :], -2, 0)
    shape = np.broadcast_shapes(alive.shape, x.shape, np.shape(params["r"]))
    r, alpha, a, b = (np.broadcast_to(v, shape) for v in (params["r"] + k * x, params["alpha"] + T,
                                                          params["a"], params["b"] + x + d))
    alive = np.broadcast_to(alive, shape)
    buys = rng.random(shape) < alive
    cdf = np.cumsum(np.broadcast_to(weights, (k,) + shape)[:, buys], axis=0)
    phase = (rng.random(int(buys.sum())) > cdf).sum(axis=0).clip(max=k - 1)
    events = rng.poisson(rng.gamma(r[buys] + phase, 1.0 / alpha[buys]) * bounds[-1])
    made = (events + phase) // k                       # purchases she would make by t_H if she stayed
    some = made > 0
    last = np.zeros(made.shape, dtype=np.int64)
    last[some] = purchases_before_dropout(made[some], a[buys][some], b[buys][some], rng)
    if scalar:
        return scatter(buys, last)
    per_period = split_over_periods(events, np.diff(bounds, prepend=0.0), rng)
    cumulative = np.minimum((np.cumsum(per_period, axis=-1) + phase[:, None]) // k, last[:, None])
    return scatter(buys, np.diff(cumulative, axis=-1, prepend=0), len(bounds))


def _stacked_state(params, frequency, recency, T, d):
    """P(alive) and the phase weights stacked on the second-last axis (draws and customers stay first
    and last, as :func:`~.purchase.per_distinct_draw` gathers them)."""
    alive, weights = _alive_state(params, frequency, recency, T, d)
    return np.stack(np.broadcast_arrays(alive, *weights), axis=-2)


# ---------------------------------------------------------------------------- estimators
def require_litt(model, rfm: pd.DataFrame) -> None:
    """Refuse a table without ``litt``, saying how to make it (the fits of the regular-buyer models read it)."""
    if "litt" not in getattr(rfm, "columns", ()):
        raise ClvDataError(f"{type(model).__name__} needs the column 'litt' (the sum of the logs of each "
                           "customer's inter-purchase times): summarise the log with "
                           "clvmodels.rfm_summary(..., litt=True) (or calibration_holdout(..., litt=True)).")


#: The formulas of the purchase-model protocol (see :mod:`.purchase`), each taking ``d``.
FORMULAS = {"expected_purchases_formula": expected_purchases, "probability_alive_formula": probability_alive,
            "future_purchases_formula": future_purchases_alive,
            "probability_of_n_purchases_formula": probability_of_n_purchases,
            "new_customer_formula": expected_purchases_new_customer, "purchase_pmf_formula": purchase_pmf,
            "simulate_purchases_formula": simulate_purchases, "next_purchase_time_formula": next_purchase_time}


class _CNBDModel(ContinuousPurchaseModel):
    """Shared estimator of (M)BG/CNBD-k; a subclass sets :attr:`drop_at_first` (``d``), which fixes
    its likelihood and :data:`FORMULAS`."""

    def __init_subclass__(cls, **kwargs):
        d = cls.drop_at_first
        cls.log_likelihood = staticmethod(functools.partial(log_likelihood, d=d))
        for name, formula in FORMULAS.items():
            setattr(cls, name, staticmethod(functools.wraps(formula)(functools.partial(formula, d=d))))
        super().__init_subclass__(**kwargs)

    param_names = ("r", "alpha", "a", "b")
    #: The parameters mean what they mean in BG/NBD: the same priors.
    joint_priors = BetaGeoModel.joint_priors
    default_priors = BetaGeoModel.default_priors
    #: ``d`` of the likelihood: 1 when the customer may drop out right after her first purchase.
    drop_at_first: ClassVar[int] = 1
    future_columns = ("frequency", "recency", "T")
    fit_columns = ("litt",)
    initial_params = BetaGeoModel.initial_params

    def __init__(self, *, k="auto", max_k: int = 6, method: str = "mle", penalizer: float = 0.0,
                 priors: dict | None = None, draws: int = 1000, tune: int = 1000, chains: int = 4,
                 seed: int | None = None, progressbar: bool = True, random_seed: int | None = None):
        super().__init__(method=method, penalizer=penalizer, priors=priors, draws=draws, tune=tune,
                         chains=chains, seed=seed, progressbar=progressbar, random_seed=random_seed)
        self.k = k
        self.max_k = max_k

    # the likelihood at the order being fitted, and the order the formulas read
    def likelihood_structure(self) -> type:
        return likelihood_structure(type(self), self._fitting_k())

    def structure_copy(self):
        copy = type(self)(**self.get_params())
        copy._k = self._fitting_k()
        return copy

    def structure_parameters(self) -> dict[str, float]:
        return {"k": float(self.k_)}

    def _fitting_k(self) -> int:
        k = getattr(self, "_k", None)
        return self._candidate_ks()[0] if k is None else k

    def _candidate_ks(self) -> list[int]:
        """The orders to fit: ``k`` itself, or ``1 .. max_k`` for ``k="auto"``."""
        if isinstance(self.k, str) and self.k == "auto":
            if not isinstance(self.max_k, (int, np.integer)) or not 1 <= self.max_k <= MAX_K:
                raise ClvDataError(f"max_k must be a whole number from 1 to {MAX_K}, got {self.max_k!r}.")
            return list(range(1, int(self.max_k) + 1))
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or not 1 <= self.k <= MAX_K:
            raise ClvDataError(f"k must be 'auto' or a whole number from 1 to {MAX_K}, got {self.k!r}.")
        return [int(self.k)]

    def _fit_arrays(self, rfm: pd.DataFrame) -> dict[str, np.ndarray]:
        require_litt(self, rfm)
        return super()._fit_arrays(rfm)

    def fit(self, rfm: pd.DataFrame, *, method: str | None = None, weights=None, **kwargs):
        """Fit for the given ``k``, or for ``k="auto"`` choose ``k`` in ``1 .. max_k`` by maximum
        likelihood (as Platzer & Reutterer 2016), then fit that ``k`` with ``method``.

        Sets ``k_`` and ``k_log_likelihoods_`` (each candidate's maximised log-likelihood) besides
        the attributes of every fit; only the chosen ``k``'s warnings are shown."""
        ks = self._candidate_ks()
        method = (method or self.method).lower()
        fits, lls = {}, {}
        for k in ks:
            self._k = k
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                super().fit(rfm, method="mle" if len(ks) > 1 else method, weights=weights,
                            **({} if len(ks) > 1 else kwargs))
            fits[k] = ({a: v for a, v in vars(self).items() if a.endswith("_") and not a.startswith("_")}, caught)
            lls[k] = self.log_likelihood_
        best = max(lls, key=lls.get)
        self._k = best
        if len(ks) > 1 and method != "mle":
            super().fit(rfm, method=method, weights=weights, **kwargs)
        else:
            state, caught = fits[best]
            self._reset_fit()
            vars(self).update(state)
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.k_ = best
        self.k_log_likelihoods_ = pd.Series(lls, name="log_likelihood").rename_axis("k")
        if len(ks) > 1 and best == ks[-1]:
            warnings.warn(f"{type(self).__name__}: the likelihood is largest at the largest k tried "
                          f"(max_k={ks[-1]}); a larger max_k may fit better.", ConvergenceWarning, stacklevel=2)
        return self

    def __repr__(self) -> str:
        text = super().__repr__()
        return text.replace("(", f"(k={self.k_}; ", 1) if self.is_fitted else text


_NUMPY = as_namespace(np)


class ModifiedBetaGeoCNBDModel(_CNBDModel):
    """MBG/CNBD-k (Platzer & Reutterer 2016): MBG/NBD with Erlang-k inter-purchase times.

    Parameters
    ----------
    k
        The Erlang order (1 = MBG/NBD), or ``"auto"`` (default) to choose it in ``1 .. max_k`` by
        maximum likelihood.
    max_k
        The largest order tried by ``k="auto"``.
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`.

    The fit needs the ``litt`` column (``rfm_summary(..., litt=True)``); predictions do not.

    Attributes (after ``fit``)
    --------------------------
    k_ : the Erlang order used; k_log_likelihoods_ : each candidate's log-likelihood
    params_ : Series with ``r``, ``alpha``, ``a``, ``b``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_
    """

    display_name = "MBG/CNBD-k"
    short_names = ("mbgcnbd",)
    drop_at_first = 1


class BetaGeoCNBDModel(_CNBDModel):
    """BG/CNBD-k (Platzer & Reutterer 2016): BG/NBD with Erlang-k inter-purchase times.

    As :class:`ModifiedBetaGeoCNBDModel`, except that, as in BG/NBD, a customer cannot drop out
    right after her first purchase (``d = 0``); ``k = 1`` is BG/NBD.
    """

    display_name = "BG/CNBD-k"
    short_names = ("bgcnbd",)
    drop_at_first = 0


__all__ = ["BetaGeoCNBDModel", "ModifiedBetaGeoCNBDModel", "likelihood_structure"]
