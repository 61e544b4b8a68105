"""Customer lifetime value: discounted future spend, its expectation and its predictive distribution.

Discounting: over ``H`` periods of length ``Δ`` at per-period rate ``d``, the spend of period ``i``
(the window ``((i−1)Δ, iΔ]``) counts ``1/(1+d)^i`` (the discrete discounting of lifetimes'
``customer_lifetime_value`` and of Fader, Hardie & Lee 2005). Two quantities follow:

* the **expected** CLV, ``E[Z] · Σ_i (E[Y(iΔ)] − E[Y((i−1)Δ)]) / (1+d)^i``; with parameter draws the
  same formula per draw gives the uncertainty of this *expected value* (parameter uncertainty only:
  an interval of it does not contain what a customer will actually spend);
* the **predictive** CLV, the distribution of the *realised* discounted value ``Σ_i S_i / (1+d)^i``
  with ``S_i`` the customer's spend in period ``i``, by exact simulation of her purchases per period
  and their values (process and parameter uncertainty): :func:`simulate_clv`,
  :func:`predictive_clv`, and :func:`total_value` for the total of a segment or of the whole base
  from the same simulation.

:func:`clv` returns the expected CLV, and with ``interval`` the predictive interval by default
(``kind="predictive"``: columns ``mean``, ``median``, ``lower``, ``upper``, ``p_zero``) or the
expected value's (``kind="expected"``: ``mean``, ``mean_median``, ``mean_lower``, ``mean_upper``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ClvDataError, renamed_argument
from .models.base import check_kind
from .validation import validate_columns
from .models.covariates import KEY_PREFIX
from .models.draws import (CHUNK_ELEMENTS, EXPECTED, PREDICTIVE, check_interval, interval_frame, model_draws, quantiles,
                           sample_frame, summarise_draws)
from . import predictive as P
from .models.purchase import PurchaseModel
from .models.rows import unique_rows
from .models.spend import SpendModel
from . import units


def purchase_value_draws(model, params, histories: dict, *, bounds: np.ndarray,
                         factors: np.ndarray) -> dict[str, np.ndarray]:
    """Per draw (rows) and history (columns): ``probability_alive``, ``expected_purchases`` by the
    last boundary and ``discounted_purchases`` ``Σ_i (E[Y(t_i)] − E[Y(t_{i−1})]) · f_i`` over the
    periods ``(t_{i−1}, t_i]`` of the boundaries ``bounds`` (``t_i = iΔ`` for a CLV) with discount
    factors ``factors`` (``1/(1+d)^i``).

    ``E[Y(t) | x, t_x, T] = P(alive) · E[Y(t) | alive at T]`` and the second factor depends on
    ``(x, T)`` only, which far fewer customers share than whole histories: the horizon's sum is taken
    once per distinct ``(x, T)`` (with covariates: ``(x, T, covariates)``; a model's ``future_columns``
    where its future reads more of the history) and multiplied by ``P(alive)`` once per history."""
    columns = model.future_columns or ("frequency", model.age_column)
    pairs, pair_code = unique_rows({k: v for k, v in histories.items() if k in columns or k.startswith(KEY_PREFIX)})
    future = model.formula("future_purchases_formula")
    total = 0.0
    previous = 0.0
    for boundary, factor in zip(bounds, factors):
        current = future(params, **pairs, t=float(boundary))
        total = total + (current - previous) * factor
        previous = current
    alive = model.formula("probability_alive_formula")(params, **histories)
    alive = np.broadcast_to(alive, np.broadcast_shapes(np.shape(alive), (1, len(pair_code))))
    return {"probability_alive": alive,
            "expected_purchases": alive * np.take(np.atleast_2d(previous), pair_code, axis=-1),
            "discounted_purchases": alive * np.take(np.atleast_2d(total), pair_code, axis=-1)}


def clv_periods(horizon: int, period_length: float, discount_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The period boundaries ``Δ, 2Δ, ..., HΔ`` of a CLV and their discount factors ``1/(1+d)^i``."""
    steps = np.arange(1.0, int(horizon) + 1)
    return period_length * steps, (1.0 + discount_rate) ** -steps


def value_customers(purchase_model, spend_model, data: dict[str, np.ndarray], *, horizon: int | None = None,
                    period_length: float | None = None, discount_rate: float | None = None,
                    bounds: np.ndarray | None = None, factors: np.ndarray | None = None,
                    interval: float | None = None,
                    n_draws: int | None = None, seed: int | None = None,
                    what: tuple[str, ...] = ("clv",), finite: bool = True,
                    rfm: pd.DataFrame | None = None, time_varying=None, future=None) -> dict[str, dict[str, np.ndarray]]:
    """Per-customer summaries (``mean``, and with ``interval`` ``median``/``lower``/``upper``) of
    ``what`` among ``expected_purchases`` (by the horizon), ``probability_alive``,
    ``expected_spend`` and ``clv``, all from one set of parameter draws of each model: intervals of
    expected values (parameter uncertainty only). The CLV's periods are ``horizon`` periods of
    ``period_length`` at ``discount_rate`` (:func:`clv_periods`), or given as ``bounds`` and ``factors``
    (see :func:`purchase_value_draws`).

    The purchase-model quantities are evaluated once per distinct history (see
    :func:`purchase_value_draws`; with covariates, per distinct history and covariate profile),
    streaming over chunks of histories and their customers so that draws x customers never has to
    fit in memory at once; ``spend_model`` may be ``None`` when ``what`` needs no spend.
    ``finite=False``: a non-finite value makes its customer's mean non-finite instead of raising
    (see :func:`clvmodels.models.base.summarise_draws`). ``rfm``: the customers' table, whose covariate
    columns models with covariates read (:meth:`~clvmodels.models.base.CLVModel.covariate_data`).

    A purchase model with time-varying covariates forecasts along the customers' pieces: the
    calibration ``time_varying`` summary and the ``future`` pieces from ``T`` over the periods
    (:func:`~clvmodels.models.timevarying.value_draws`), per customer."""
    models = [purchase_model] + ([spend_model] if spend_model is not None else [])
    covariates = [_covariates(m, rfm) for m in models]
    draws = model_draws(*models, interval=interval, n_draws=n_draws, seed=seed)
    if bounds is None:
        bounds, factors = clv_periods(horizon, period_length, discount_rate)
    spend_data = {}
    if {"expected_spend", "clv"} & set(what):
        expected_spend = spend_model.formula("expected_spend_formula")
        spend_data = {**{k: data[k] for k in spend_model.data_columns}, **covariates[1]}
    out = {}
    if "expected_spend" in what:
        out["expected_spend"] = summarise_draws(expected_spend, draws[1], spend_data, interval=interval,
                                                compress_rows=False, finite=finite)
    if getattr(purchase_model, "has_time_varying", False):
        from .models.timevarying import value_draws

        values = value_draws(purchase_model, rfm, draws[0], bounds=bounds, factors=factors, time_varying=time_varying,
                             future=future)
        if "clv" in what:
            params = {k: np.asarray(v, dtype=float)[:, None] for k, v in draws[1].items()}
            values["clv"] = values["discounted_purchases"] * expected_spend(params, **spend_data)
        local = {"history": np.arange(values["probability_alive"].shape[1], dtype=float)}
        return out | {name: summarise_draws(_gather(values[name], name), draws[0], local, interval=interval,
                                            compress_rows=False, finite=finite)
                      for name in ("expected_purchases", "probability_alive", "clv") if name in what}
    # sorted (by covariate profile, then frequency): a chunk of histories holds whole profiles and
    # (frequency, age) pairs, which formulas share (per profile, per pair)
    histories, history_code = unique_rows({**covariates[0], **{k: data[k] for k in purchase_model.data_columns}},
                                          sort=True)
    n_histories, n_draws = len(next(iter(histories.values()))), len(next(iter(draws[0].values())))
    keys = ("mean",) if interval is None else ("mean", "median", "lower", "upper")
    params = {k: v[:, None] for k, v in draws[0].items()}
    per_history = {name: {k: np.empty(n_histories) for k in keys}
                   for name in ("expected_purchases", "probability_alive") if name in what}
    if "clv" in what:
        out["clv"] = {k: np.empty(len(history_code)) for k in keys}
    customers = np.argsort(history_code, kind="stable")          # customers by history: a chunk's are contiguous
    ends = np.searchsorted(history_code[customers], np.arange(0, n_histories + 1))
    step = max(1, CHUNK_ELEMENTS // max(n_draws, 1))            # draws x histories held at once
    for h0 in range(0, n_histories, step):
        h1 = min(h0 + step, n_histories)
        values = purchase_value_draws(purchase_model, params, {k: v[h0:h1] for k, v in histories.items()},
                                      bounds=bounds, factors=factors)
        local = {"history": np.arange(h1 - h0, dtype=float)}
        for name, parts in per_history.items():
            summary = summarise_draws(_gather(values[name], name), draws[0], local, interval=interval,
                                      compress_rows=False, finite=finite)
            for k, v in summary.items():
                parts[k][h0:h1] = v
        if "clv" in what:
            purchases = values["discounted_purchases"]

            def clv_fn(params, history, **spend_history):
                return purchases[:, history.astype(np.int64)] * expected_spend(params, **spend_history)

            clv_fn.__name__ = "clv"
            who = customers[ends[h0]:ends[h1]]
            # per customer a gather and a few products, and mean spends are nearly all distinct:
            # de-duplicating these rows would cost more than it saves
            summary = summarise_draws(clv_fn, draws[1], {"history": (history_code[who] - h0).astype(float),
                                                         **{k: v[who] for k, v in spend_data.items()}},
                                      interval=interval, compress_rows=False, finite=finite)
            for k, v in summary.items():
                out["clv"][k][who] = v
    for name, parts in per_history.items():
        out[name] = {k: v[history_code] for k, v in parts.items()}
    return out


def _covariates(model, rfm) -> dict[str, np.ndarray]:
    """The covariate columns of ``model`` from ``rfm`` (none without covariates)."""
    if not model.has_covariates:
        return {}
    if rfm is None:
        raise ClvDataError(f"{type(model).__name__} has covariates: pass the customers' table (rfm=...) that holds them.")
    return model.covariate_data(rfm)


def _gather(values: np.ndarray, name: str):
    def fn(params, history):
        return values[:, history.astype(np.int64)]

    fn.__name__ = name
    return fn


def check_discounting(horizon, discount_rate) -> None:
    """A CLV horizon is a positive whole number of periods; a discount rate a finite number > -1."""
    if int(horizon) != horizon or horizon < 1:
        raise ClvDataError(f"horizon must be a positive integer, got {horizon!r}.")
    if not np.isfinite(discount_rate) or discount_rate <= -1:
        raise ClvDataError(f"discount_rate must be a number > -1 (e.g. 0.01 per period), got {discount_rate!r}.")


#: What :func:`clv` returns with an interval.
KINDS = ("predictive", "expected")


def _settings(purchase_model, spend_model, rfm, horizon, period, discount_rate, period_length, caller):
    """Checked inputs of a CLV: the customers, their columns, and the period length ``Δ``."""
    check_kind(purchase_model, PurchaseModel, f"{caller} (the purchase model)")
    check_kind(spend_model, SpendModel, f"{caller} (the spend model)")
    purchase_model._check_fitted()
    spend_model._check_fitted()
    check_discounting(horizon, discount_rate)
    rfm = purchase_model._rfm_or_fitted(rfm)
    period_length = units.period_length(period, purchase_model.time_unit_, period_length)
    columns = tuple(dict.fromkeys(purchase_model.data_columns + spend_model.data_columns))
    data = validate_columns(rfm, columns)
    return rfm, data, period_length


def discounted_chunks(purchase_model, spend_model, rfm, *, bounds, factors, n_samples, seed, jobs=None,
                      n_draws=None, progressbar=None, time_varying=None, future=None):
    """Yield ``(customer positions, discounted value, purchases, spend per period)``: the spend simulated
    per period ``(t_{i−1}, t_i]`` of ``bounds`` (:func:`clvmodels.predictive._simulate_chunks`, exact
    per model, ``(n_samples, chunk, H)``) weighted by ``factors`` and summed, and the number of
    purchases over all periods, both ``(n_samples, chunk)``. ``jobs``: threads simulating chunks
    (default: one per CPU; the result does not depend on it); ``n_draws``: distinct parameter draws
    shared by the futures (default :data:`clvmodels.models.draws.SIMULATION_DRAWS`); ``progressbar``:
    a bar over the customers (default: on a terminal or in Jupyter, :mod:`clvmodels.progress`);
    ``time_varying``, ``future``: the paths of a purchase model with time-varying covariates."""
    for sl, counts, spend in P._simulate_chunks(purchase_model, spend_model, bounds, rfm, n_samples, seed,
                                                jobs=jobs, n_draws=n_draws, progressbar=progressbar,
                                                time_varying=time_varying, future=future):
        yield sl, spend @ factors, counts.sum(axis=-1), spend


def simulate_clv(purchase_model, spend_model, rfm: pd.DataFrame | None = None, *, horizon: int = 12,
                 period: str = "M", discount_rate: float = 0.01, period_length: float | None = None,
                 n_samples: int = 1000, seed: int | None = None, jobs: int | None = None,
                 n_draws: int | None = None, progressbar: bool | None = None, time_varying=None,
                 future=None) -> pd.DataFrame:
    """Samples of each customer's realised discounted value ``Σ_i S_i / (1+d)^i`` over ``horizon``
    periods, by exact simulation: every sample draws the parameters of both models (posterior, or
    the MLE's asymptotic normal), then the customer's purchases in each period from her
    individual-level posterior (the purchase model's ``simulate_purchases`` with period boundaries)
    and their values (the spend model's ``simulate_spend``, e.g. ``Gamma(n p, ν)`` per period).

    Returns a frame ``(n_samples, n_customers)``: one row per simulated future (index ``sample``),
    one column per customer (her id; ``.to_numpy()`` gives the array); for many customers use
    :func:`predictive_clv` or :func:`total_value`, which never hold it whole. The arguments are those of :func:`clv`; ``jobs``
    threads simulate chunks of customers (default: one per CPU), each chunk with its own random
    stream spawned from ``seed``, so the samples do not depend on ``jobs``. The futures share
    ``n_draws`` parameter draws (default :data:`clvmodels.models.draws.SIMULATION_DRAWS`: future ``i``
    uses draw ``i mod n_draws``). A purchase model with time-varying covariates reads the customers'
    ``time_varying`` summary and ``future`` pieces (:func:`predictive_clv`)."""
    rfm, _, period_length = _settings(purchase_model, spend_model, rfm, horizon, period, discount_rate,
                                      period_length, "simulate_clv")
    bounds, factors = clv_periods(horizon, period_length, discount_rate)
    out = np.empty((int(n_samples), len(rfm)))
    for sl, value, _, _ in discounted_chunks(purchase_model, spend_model, rfm, bounds=bounds, factors=factors,
                                             n_samples=n_samples, seed=seed, jobs=jobs, n_draws=n_draws,
                                             progressbar=progressbar, time_varying=time_varying, future=future):
        out[:, sl] = value
    return sample_frame(out, rfm.index, f"discounted value over {horizon} periods of length {period_length:g}")


def _segment_codes(segments, rfm: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Integer code per customer and the segments' labels (one segment ``"all"`` by default)."""
    if segments is None:
        return np.zeros(len(rfm), dtype=np.int64), pd.Index(["all"], name="segment")
    if isinstance(segments, str):
        segments = rfm[segments]
    if isinstance(segments, pd.Series):
        missing = rfm.index.difference(segments.index)
        if len(missing):
            raise ClvDataError(f"segments lacks {len(missing):,} of the customers (e.g. {list(missing[:3])}).")
        segments = segments.reindex(rfm.index)
    labels = np.asarray(segments)
    if labels.shape != (len(rfm),):
        raise ClvDataError(f"segments must hold one label per customer ({len(rfm):,}), got shape {labels.shape}.")
    codes, uniques = pd.factorize(labels, sort=True)
    if (codes < 0).any():
        raise ClvDataError(f"segments has {int((codes < 0).sum()):,} missing label(s).")
    return codes, pd.Index(uniques, name="segment")


def _simulate_summaries(purchase_model, spend_model, rfm, qs, *, segments=None, horizon, period_length,
                        discount_rate, n_samples, seed, jobs=None, n_draws=None, progressbar=None,
                        time_varying=None, future=None):
    """One pass of the simulation: per-customer mean, ``p_zero``, ``mean_purchases`` and the
    quantiles ``qs`` of the discounted value, and the samples of each segment's total
    ``(n_samples, n_segments)`` (sums over customers per simulated future)."""
    n = len(rfm)
    codes, labels = _segment_codes(segments, rfm)
    per = {"mean": np.empty(n), "p_zero": np.empty(n), "mean_purchases": np.empty(n)}
    per_q = np.empty((len(qs), n))
    totals = np.zeros((int(n_samples), len(labels)))
    bounds, factors = clv_periods(horizon, period_length, discount_rate)
    for sl, value, counts, _ in discounted_chunks(purchase_model, spend_model, rfm, bounds=bounds, factors=factors,
                                                  n_samples=n_samples, seed=seed, jobs=jobs, n_draws=n_draws,
                                                  progressbar=progressbar, time_varying=time_varying,
                                                  future=future):
        per["mean"][sl] = value.mean(axis=0)
        per["p_zero"][sl] = (counts == 0).mean(axis=0)
        per["mean_purchases"][sl] = counts.mean(axis=0)
        per_q[:, sl] = quantiles(value, qs)
        chunk_codes = codes[sl]
        for g in np.unique(chunk_codes):
            totals[:, g] += value[:, chunk_codes == g].sum(axis=1)
    return per, per_q, totals, labels


def predictive_clv(purchase_model, spend_model, rfm: pd.DataFrame | None = None, *, horizon: int = 12,
                   period: str = "M", discount_rate: float = 0.01, period_length: float | None = None,
                   interval: float | None = 0.9, quantiles=None, n_samples: int = 1000,
                   seed: int | None = None, jobs: int | None = None, n_draws: int | None = None,
                   progressbar: bool | None = None, time_varying=None, future=None) -> pd.DataFrame:
    """Per-customer predictive distribution of realised discounted value (:func:`simulate_clv`),
    summarised chunk by chunk (bounded memory: 1M customers x 1,000 futures never in memory at once).
    A purchase model with time-varying covariates reads the customers' calibration summary
    ``time_varying`` (default the training one) and their ``future`` pieces over the horizon.

    Returns
    -------
    DataFrame indexed like ``rfm``: ``mean`` (Monte Carlo mean: the expected CLV up to simulation
    error), ``median``, ``lower``, ``upper`` (the predictive interval of level ``interval``; or one
    ``q5``-style column per entry of ``quantiles``), ``p_zero`` (P(CLV = 0): no purchase within the
    horizon) and ``mean_purchases``; ``attrs["uncertainty"]`` is
    :data:`~clvmodels.models.draws.PREDICTIVE`. The same ``seed`` gives the same futures as
    :func:`simulate_clv` and :func:`total_value`, whatever the number of threads ``jobs``.
    """
    qs, names = P._quantile_columns(interval, quantiles)
    rfm, _, period_length = _settings(purchase_model, spend_model, rfm, horizon, period, discount_rate,
                                      period_length, "predictive_clv")
    per, per_q, _, _ = _simulate_summaries(purchase_model, spend_model, rfm, qs, horizon=horizon,
                                           period_length=period_length, discount_rate=discount_rate,
                                           n_samples=n_samples, seed=seed, jobs=jobs, n_draws=n_draws,
                                           progressbar=progressbar, time_varying=time_varying, future=future)
    return _customer_frame(per, per_q, names, rfm.index, interval)


def _customer_frame(per: dict, per_q: np.ndarray, names, index, interval) -> pd.DataFrame:
    """Per-customer summaries of a simulation: mean, quantiles (or the interval), ``p_zero``, ``mean_purchases``."""
    columns = {"mean": per["mean"], **dict(zip(names, per_q)), "p_zero": per["p_zero"],
               "mean_purchases": per["mean_purchases"]}
    return P._summary_frame(columns, index, interval)


def total_value(purchase_model, spend_model, rfm: pd.DataFrame | None = None, *, segments=None,
                horizon: int = 12, period: str = "M", discount_rate: float = 0.01,
                period_length: float | None = None, interval: float = 0.9, n_samples: int = 1000,
                seed: int | None = None, jobs: int | None = None, n_draws: int | None = None,
                progressbar: bool | None = None) -> pd.DataFrame:
    """Predictive distribution of the total discounted value of each segment (or of all customers).

    Each simulated future of :func:`simulate_clv` is summed over the segment's customers: the total
    carries process and parameter uncertainty (the customers share the parameters of a future, so
    their parameter errors add up rather than cancel), and with the same ``seed`` its mean is the sum
    of :func:`predictive_clv`'s per-customer means.

    Parameters
    ----------
    segments
        ``None`` (one segment, ``"all"``), a column name of ``rfm``, or one label per customer (an
        array in the order of ``rfm`` or a Series indexed by customer id).

    Returns
    -------
    DataFrame indexed by segment with ``n_customers``, ``mean``, ``median``, ``lower``, ``upper`` of
    the total (``attrs["uncertainty"]``: predictive).
    """
    check_interval(interval)
    rfm, _, period_length = _settings(purchase_model, spend_model, rfm, horizon, period, discount_rate,
                                      period_length, "total_value")
    _, _, totals, labels = _simulate_summaries(
        purchase_model, spend_model, rfm, np.array([0.5]), segments=segments, horizon=horizon,
        period_length=period_length, discount_rate=discount_rate, n_samples=n_samples, seed=seed, jobs=jobs,
        n_draws=n_draws, progressbar=progressbar)
    codes, _ = _segment_codes(segments, rfm)
    return _totals_frame(totals, np.bincount(codes, minlength=len(labels)), labels, interval)


def _totals_frame(totals: np.ndarray, n_customers, labels, interval: float) -> pd.DataFrame:
    """Summary of simulated totals ``(n_samples, n_segments)``: mean, median and predictive interval."""
    q = quantiles(totals, [0.5, (1 - interval) / 2, (1 + interval) / 2])
    columns = {"n_customers": n_customers, "mean": totals.mean(axis=0), "median": q[0], "lower": q[1], "upper": q[2]}
    return interval_frame(columns, labels, interval, PREDICTIVE)


def value_forecast(purchase_model, spend_model, rfm: pd.DataFrame | None = None, *, segments=None,
                   horizon: int = 12, period: str = "M", discount_rate: float = 0.01,
                   period_length: float | None = None, interval: float = 0.9, n_samples: int = 1000,
                   seed: int | None = None, jobs: int | None = None,
                   n_draws: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`predictive_clv`, :func:`total_value` per segment and the whole base's total, from one
    simulation (the same futures, so the totals' means are the sums of the customers' means).

    Returns
    -------
    ``(customers, segments, total)``: the frame of :func:`predictive_clv`, that of
    :func:`total_value` (one row per segment; one row ``"all"`` without ``segments``), and the
    total over all customers (one row ``"all"``), each with ``attrs["uncertainty"]`` predictive.
    """
    check_interval(interval)
    qs, names = P._quantile_columns(interval, None)
    rfm, _, period_length = _settings(purchase_model, spend_model, rfm, horizon, period, discount_rate,
                                      period_length, "value_forecast")
    per, per_q, totals, labels = _simulate_summaries(
        purchase_model, spend_model, rfm, qs, segments=segments, horizon=horizon, period_length=period_length,
        discount_rate=discount_rate, n_samples=n_samples, seed=seed, jobs=jobs, n_draws=n_draws)
    customers = _customer_frame(per, per_q, names, rfm.index, interval)
    codes, _ = _segment_codes(segments, rfm)
    by_segment = _totals_frame(totals, np.bincount(codes, minlength=len(labels)), labels, interval)
    total = _totals_frame(totals.sum(axis=1, keepdims=True), [len(rfm)], pd.Index(["all"], name="segment"), interval)
    return customers, by_segment, total


def clv(
    purchase_model,
    spend_model,
    rfm: pd.DataFrame | None = None,
    *,
    horizon: int = 12,
    period: str = "M",
    discount_rate: float = 0.01,
    period_length: float | None = None,
    interval: float | None = None,
    kind: str = "predictive",
    n_draws: int | None = None,
    n_samples: int = 1000,
    seed: int | None = None,
    time_unit: str | None = None,
    time_varying=None,
    future=None,
) -> pd.Series | pd.DataFrame:
    """Discounted customer lifetime value over ``horizon`` discounting periods of length ``period``.

    Parameters
    ----------
    purchase_model
        A fitted purchase model with an ``expected_purchases`` formula (e.g. :class:`BetaGeoModel`).
    spend_model
        A fitted :class:`GammaGammaModel`.
    rfm
        Customers to score (default: the purchase model's training data). Needs ``frequency``,
        ``recency``, ``T`` and ``monetary_value``.
    horizon
        Number of discounting periods.
    period
        Length of a discounting period (``"M"``: months). The data's own unit (``time_unit`` of
        the RFM table, e.g. weeks) is the model's; ``time_unit=`` here is the deprecated name of
        ``period``.
    discount_rate
        Discount rate per period (e.g. 0.01 per month).
    period_length
        Length of one period in the purchase model's time unit. By default derived from
        ``period`` and the unit the model was fitted in (a month is 365.25/12 days); pass it to
        use another convention (lifetimes takes a month as 4.345 weeks).
    interval
        With ``interval`` (e.g. 0.9), a frame of the distribution named by ``kind``.
    time_varying, future
        A purchase model with time-varying covariates: the customers' calibration summary (default:
        the training one) and their covariate pieces from ``T`` over the horizon (required): the
        expected CLV (:func:`value_customers`) and the predictive one (:func:`predictive_clv`).
    kind
        ``"predictive"`` (default): the distribution of the *realised* discounted value (what the
        customer will actually spend; process and parameter uncertainty), by simulation
        (:func:`predictive_clv`, ``n_samples`` futures sharing ``n_draws`` parameter draws, default
        200, seeded ``seed``). ``"expected"``: the
        uncertainty of the *expected* value over parameter draws of both models (``n_draws``
        posterior draws or draws from the MLE's asymptotic normal): narrow, and not an interval for
        what a customer will spend.

    Returns
    -------
    Without ``interval``: a Series of expected CLV per customer. With it, ``kind="predictive"``: a
    frame with ``mean``, ``median``, ``lower``, ``upper``, ``p_zero`` (P(CLV = 0)) and
    ``mean_purchases``; ``kind="expected"``: ``mean``, ``mean_median``, ``mean_lower``,
    ``mean_upper``. ``attrs["uncertainty"]`` says which (see
    :func:`~clvmodels.models.draws.interval_frame`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    period = renamed_argument("clv", "period", period, "time_unit", time_unit)
    rfm, data, period_length = _settings(purchase_model, spend_model, rfm, horizon, period, discount_rate,
                                         period_length, "clv")
    if interval is not None and kind == "predictive":
        return predictive_clv(purchase_model, spend_model, rfm, horizon=horizon, period_length=period_length,
                              discount_rate=discount_rate, interval=interval, n_samples=n_samples, seed=seed,
                              n_draws=n_draws, time_varying=time_varying, future=future)
    values = value_customers(purchase_model, spend_model, data, horizon=int(horizon), period_length=period_length,
                             discount_rate=discount_rate, interval=interval, n_draws=n_draws, seed=seed,
                             rfm=rfm, time_varying=time_varying, future=future)["clv"]
    if interval is None:
        return pd.Series(values["mean"], index=rfm.index, name="clv")
    return interval_frame(values, rfm.index, interval, EXPECTED)


