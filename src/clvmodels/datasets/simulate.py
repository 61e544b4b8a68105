"""Simulation with known parameters (and, optionally, covariates with known coefficients).

:func:`simulate`: a transaction log from BG/NBD (purchases, Fader, Hardie & Lee 2005) or Pareto/NBD
(Schmittlein, Morrison & Colombo 1987) + Gamma-Gamma (spend). Each customer draws ``lambda ~ Gamma(r,
rate alpha)``, a drop-out probability ``p ~ Beta(a, b)`` (or, Pareto/NBD, a drop-out rate ``mu ~
Gamma(s, rate beta)``) and a spend rate ``nu ~ Gamma(q, rate gamma)``. She makes a first purchase at a
uniformly staggered date, then buys as a Poisson process of rate ``lambda`` and becomes inactive after
each repeat purchase with probability ``p`` (Pareto/NBD: after an exponential lifetime of rate ``mu``
from her first purchase). Every purchase's value is ``Gamma(shape p_spend, rate nu)``. With ``k > 1``
her inter-purchase times are Erlang-k of rate ``lambda`` (regular buyers: BG/CNBD-k, Platzer &
Reutterer 2016), and ``drop_at_first=True`` lets her drop out right after her first purchase too
(MBG/NBD, MBG/CNBD-k). The simulation runs in rounds over all still-active customers at once
(vectorised), so millions of customers take seconds.

:func:`simulate_bgbb`: BG/BB histories over discrete opportunities (Fader, Hardie & Shang 2010).
:func:`simulate_sbg`: contract lengths from the shifted-beta-geometric model (Fader & Hardie 2007).

Covariates scale each parameter as the models' ``covariate_links`` do (``θ_i = θ exp(sign Σ_k
γ_{θ,k} x_ik)``, ``../shared/reference/models.md``, "Covariates"); the signs are restated here (the data
layer does not import the models) and ``tests/test_covariates.py`` checks that they agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ClvDataError
from ..timevarying import covariate_calendar, fourier_terms, holiday_windows
from ..units import normalize_unit, unit_days

DEFAULT_PURCHASE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # CDNOW, FHL 2005
DEFAULT_SPEND = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # CDNOW, Fader & Hardie 2013
#: The parameters covariates act on and the sign of each link (BG/NBD's, Pareto/NBD's and Gamma-Gamma's
#: ``covariate_links``): ``θ_i = θ exp(sign · Σ γ_{θ,k} x_ik)``.
COVARIATE_LINKS = {"alpha": -1.0, "a": 1.0, "b": 1.0, "beta": -1.0, "gamma": 1.0}
#: BG/BB's links (each beta shape its own coefficient) and the shifted-beta-geometric's.
BGBB_LINKS = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "delta": 1.0}
SBG_LINKS = {"alpha": -1.0, "beta": -1.0}


def simulate(
    n_customers: int = 10_000,
    *,
    r: float = DEFAULT_PURCHASE["r"],
    alpha: float = DEFAULT_PURCHASE["alpha"],
    a: float = DEFAULT_PURCHASE["a"],
    b: float = DEFAULT_PURCHASE["b"],
    p: float = DEFAULT_SPEND["p"],
    q: float = DEFAULT_SPEND["q"],
    gamma: float = DEFAULT_SPEND["gamma"],
    s: float | None = None,
    beta: float | None = None,
    k: int = 1,
    drop_at_first: bool = False,
    start: str = "2024-01-01",
    cohort_length: float = 12.0,
    observation_length: float = 78.0,
    time_unit: str = "W",
    customer_prefix: str | None = None,
    seed: int | None = 0,
    return_truth: bool = False,
    covariates: pd.DataFrame | None = None,
    coefficients: dict[str, float] | None = None,
):
    """Simulate a transaction log from BG/NBD + Gamma-Gamma with known parameters.

    Parameters
    ----------
    n_customers
        Number of customers.
    r, alpha, a, b
        BG/NBD parameters (rates per ``time_unit``). Defaults: the CDNOW estimates.
    p, q, gamma
        Gamma-Gamma spend parameters. Defaults: the CDNOW estimates.
    s, beta
        Pareto/NBD drop-out (both or neither): an exponential lifetime of rate ``mu ~ Gamma(s, rate
        beta)`` replaces BG/NBD's drop-out after purchases (``a``, ``b`` are then not used).
    k
        Erlang order of the inter-purchase times (1: exponential, as in BG/NBD; larger: more regular).
    drop_at_first
        Whether the customer may also drop out right after her first purchase (MBG/NBD, MBG/CNBD-k).
    start
        Date of the earliest possible first purchase.
    cohort_length
        First purchases are uniform over ``[0, cohort_length)`` (in ``time_unit``) from ``start``:
        staggered acquisition as in a real log.
    observation_length
        Observation ends this long after ``start``.
    time_unit
        Unit of the rates and lengths (default weeks).
    customer_prefix
        If given, customer ids are strings ``f"{prefix}{i}"``; otherwise integers ``0..n-1``.
    seed
        Seed of the random generator (reproducible).
    return_truth
        Also return the per-customer latent values (``lambda``, ``p``, ``nu``, ``alive``), with
        the covariates' columns when there are covariates.
    covariates, coefficients
        Static covariates: a numeric frame of one row per customer (in customer order) and the
        coefficients ``{"<param>:<column>": value}`` of the columns, on their own scale, for the
        parameters ``alpha``, ``a``, ``b`` (BG/NBD), ``beta`` (Pareto/NBD) and ``gamma`` (Gamma-Gamma),
        linked as the models link them: ``α_i = α exp(−Σ γ_α x_i)``, ``a_i = a exp(Σ γ_a x_i)``,
        ``b_i = b exp(Σ γ_b x_i)``, ``β_i = β exp(−Σ γ_β x_i)``, ``γ_i = γ exp(Σ γ_γ x_i)``. A fit
        with the same covariates recovers them.

    Returns
    -------
    DataFrame with ``customer_id``, ``timestamp`` and ``amount``, sorted by time (like a real
    log), and optionally the truth frame indexed by customer id (with ``mu``, the drop-out rate, for
    Pareto/NBD).
    """
    pareto = s is not None or beta is not None
    if pareto and (s is None or beta is None or drop_at_first):
        raise ClvDataError("Pareto/NBD drop-out needs both s and beta (and no drop_at_first).")
    _check_design(n_customers, (r, alpha, a, b, p, q, gamma, *((s, beta) if pareto else ())), cohort_length,
                  observation_length)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ClvDataError(f"k must be a whole number of at least 1, got {k!r}.")
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    population = {"alpha": alpha, "a": a, "b": b, "gamma": gamma} | ({"beta": beta} if pareto else {})
    scaled = _individual(population, COVARIATE_LINKS, covariates, coefficients, n)
    lam = rng.gamma(r, 1.0 / scaled["alpha"], n)
    drop = np.zeros(n) if pareto else rng.beta(scaled["a"], scaled["b"], n)
    nu = rng.gamma(q, 1.0 / scaled["gamma"], n)
    first = rng.uniform(0.0, cohort_length, n)
    mu = rng.gamma(s, 1.0 / scaled["beta"], n) if pareto else None
    # Pareto/NBD: purchases stop at the end of her lifetime (BG/NBD: at the observation's end)
    stop = np.full(n, observation_length)
    if pareto:
        stop = np.minimum(first + rng.exponential(1.0, n) / mu, stop)

    cust, times, alive = _bgnbd_purchases(lam, drop, first, stop, rng, k, drop_at_first)
    if pareto:
        alive = stop >= observation_length
    log = _log_frame(cust, times, nu, p, rng, start, observation_length, time_unit, customer_prefix)
    if not return_truth:
        return log
    latent = {"lambda": lam} | ({"mu": mu} if pareto else {"p": drop})
    truth = pd.DataFrame(latent | {"nu": nu, "first_purchase": first, "alive": alive},
                         index=pd.Index(_ids(np.arange(n), customer_prefix), name="customer_id"))
    if covariates is not None:
        truth = truth.join(covariates.set_axis(truth.index))
    return log, truth


def _check_design(n_customers, params, cohort_length, observation_length) -> None:
    """A simulation's size, positive parameters and a cohort window within the observation."""
    if n_customers < 1:
        raise ClvDataError("n_customers must be at least 1.")
    if min(params) <= 0:
        raise ClvDataError("All model parameters must be positive.")
    if cohort_length > observation_length:
        raise ClvDataError("cohort_length must not exceed observation_length.")


def _bgnbd_purchases(lam, drop, first, end, rng, k=1, drop_at_first: bool = False):
    """BG/NBD purchase times after each customer's first at ``first``, up to ``end``: Poisson (Erlang-``k``,
    or Gamma-``k`` waits for a per-customer real ``k``) purchases of rate ``lam`` (a wait is Gamma(k, 1) / lam),
    inactive after each purchase with probability ``drop`` (``None``: never, and no draws for it); simulated
    in rounds over all still-active customers (``end``: one per customer, or one for all). Returns the
    customers, times (first purchases included) and who is alive."""
    n = len(lam)
    end = np.broadcast_to(np.asarray(end, dtype=float), (n,))
    shapes = None if np.ndim(k) == 0 else np.asarray(k, dtype=float)
    cust_parts = [np.arange(n)]
    time_parts = [first]
    active = np.arange(n)
    now = first.copy()
    alive = np.ones(n, dtype=bool)
    if drop_at_first:
        dies = rng.random(n) < drop
        alive[dies] = False
        active = active[~dies]
    while active.size:
        shape = (rng.gamma(shapes[active], 1.0) if shapes is not None else
                 rng.exponential(1.0, active.size) if k == 1 else rng.gamma(k, 1.0, active.size))
        wait = shape / np.maximum(lam[active], 1e-300)
        t_next = now[active] + wait
        buys = t_next < end[active]
        active, t_next = active[buys], t_next[buys]
        cust_parts.append(active)
        time_parts.append(t_next)
        now[active] = t_next
        if drop is not None:
            dies = rng.random(active.size) < drop[active]
            alive[active[dies]] = False
            active = active[~dies]
    return np.concatenate(cust_parts), np.concatenate(time_parts), alive


def _ids(codes: np.ndarray, prefix: str | None) -> np.ndarray:
    return codes if prefix is None else np.char.add(prefix, codes.astype(str)).astype(object)


def _log_frame(cust, times, nu, p: float, rng, start, observation_length: float, time_unit: str,
               prefix: str | None) -> pd.DataFrame:
    """The log of purchases ``(cust, times)`` (``times`` in ``time_unit`` from ``start``), sorted by time,
    each purchase's value ``Gamma(p, rate nu)`` of its customer (Gamma-Gamma)."""
    amounts = rng.gamma(p, 1.0, cust.size) / nu[cust]
    order = np.argsort(times, kind="stable")
    cust, times, amounts = cust[order], times[order], amounts[order]
    scale_ns = unit_days(normalize_unit(time_unit)) * 86_400e9
    ts = pd.Timestamp(start).to_datetime64().astype("datetime64[ns]") + (times * scale_ns).astype("timedelta64[ns]")
    log = pd.DataFrame({"customer_id": _ids(cust, prefix), "timestamp": ts,
                        "amount": np.maximum(np.round(amounts, 2), 0.01)})
    log.attrs["observation_end"] = str(pd.Timestamp(start) + pd.Timedelta(days=observation_length * unit_days(time_unit)))
    return log


def simulate_pareto_ggg(
    n_customers: int = 10_000,
    *,
    r: float = 0.9,
    alpha: float = 10.0,
    s: float = 0.8,
    beta: float = 12.0,
    t: float = 2.5,
    gamma: float = 0.5,
    p: float = DEFAULT_SPEND["p"],
    q: float = DEFAULT_SPEND["q"],
    spend_gamma: float = DEFAULT_SPEND["gamma"],
    start: str = "2024-01-01",
    cohort_length: float = 12.0,
    observation_length: float = 78.0,
    time_unit: str = "W",
    customer_prefix: str | None = None,
    seed: int | None = 0,
    return_truth: bool = False,
):
    """Simulate a transaction log of regular buyers from Pareto/GGG (Platzer & Reutterer 2016,
    "Ticking away the moments", Marketing Science 35(5), section 3.1) with Gamma-Gamma spend.

    Each customer draws her purchase rate ``λ ~ Gamma(r, rate α)``, drop-out rate ``μ ~ Gamma(s, rate
    β)`` and regularity ``k ~ Gamma(t, rate γ)`` (defaults: mean ``k = 5``, fairly regular; the
    paper's Pareto/NBD limit is ``t → ∞`` with ``t/γ = 1``); she makes a first purchase uniformly in
    ``[0, cohort_length)``, then buys with inter-purchase times ``Gamma(k, rate kλ)`` (mean ``1/λ``)
    until her lifetime ``τ ~ Exponential(μ)`` after the first purchase ends. Spend, dates, ids and the
    other arguments as in :func:`simulate`; ``spend_gamma`` is Gamma-Gamma's ``gamma``.

    The truth frame (``return_truth``) holds ``k``, ``lambda``, ``mu``, ``first_purchase``, ``lifetime``
    (``τ``) and ``alive`` (at the end of observation)."""
    _check_design(n_customers, (r, alpha, s, beta, t, gamma, p, q, spend_gamma), cohort_length, observation_length)
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    k = rng.gamma(t, 1.0 / gamma, n)
    nu = rng.gamma(q, 1.0 / spend_gamma, n)
    first = rng.uniform(0.0, cohort_length, n)
    lifetime = rng.exponential(1.0, n) / mu
    end = np.minimum(first + lifetime, observation_length)
    cust, times, _ = _bgnbd_purchases(k * lam, None, first, end, rng, k)   # Gamma(k, kλ) waits, no drop
    log = _log_frame(cust, times, nu, p, rng, start, observation_length, time_unit, customer_prefix)
    if not return_truth:
        return log
    truth = pd.DataFrame({"k": k, "lambda": lam, "mu": mu, "first_purchase": first, "lifetime": lifetime,
                          "alive": first + lifetime > observation_length},
                         index=pd.Index(_ids(np.arange(n), customer_prefix), name="customer_id"))
    return log, truth


def simulate_bgbb(n_customers: int = 10_000, *, alpha: float = 1.204, beta: float = 0.750, gamma: float = 0.657,
                  delta: float = 2.783, n_periods: int = 6, seed: int | None = 0,
                  covariates: pd.DataFrame | None = None, coefficients: dict[str, float] | None = None,
                  log_start: str | None = None, period: str = "Y") -> pd.DataFrame:
    """BG/BB histories (Fader, Hardie & Shang 2010) with known parameters: after her first transaction
    (opportunity 0) each customer dies at the start of each of ``n_periods`` opportunities with
    probability ``θ ~ Beta(γ, δ)`` and, while alive, transacts at it with probability ``p ~ Beta(α, β)``.
    Defaults: the donations data's estimates (Fader, Hardie & Shang 2010).

    ``covariates``, ``coefficients``: as for :func:`simulate`, for ``alpha``, ``beta``, ``gamma``,
    ``delta`` (BG/BB's links, :data:`BGBB_LINKS`: ``θ_i = θ exp(Σ γ_θ x_i)``).

    Returns the summary :func:`clvmodels.bgbb_summary` would give (``frequency``, ``recency``,
    ``n_periods``), one row per customer (ids ``0..n-1``), the covariates' columns joined; or, with
    ``log_start`` (a date), the transaction log (``customer_id``, ``timestamp``): one transaction at
    the start of each opportunity she transacted at, opportunity 0 being the ``period`` (a pandas
    period alias) containing ``log_start``.
    """
    n = int(n_customers)
    if n < 1 or int(n_periods) < 1:
        raise ClvDataError("n_customers and n_periods must be at least 1.")
    if min(alpha, beta, gamma, delta) <= 0:
        raise ClvDataError("All model parameters must be positive.")
    rng = np.random.default_rng(seed)
    scaled = _individual({"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta}, BGBB_LINKS, covariates,
                         coefficients, n)
    p = rng.beta(scaled["alpha"], scaled["beta"])
    death = rng.geometric(rng.beta(scaled["gamma"], scaled["delta"]))   # the opportunity at whose start she dies
    opportunity = np.arange(1, int(n_periods) + 1)
    buys = (opportunity < death[:, None]) & (rng.random((n, opportunity.size)) < p[:, None])
    if log_start is not None:
        customer, at = np.nonzero(np.c_[np.ones(n, dtype=bool), buys])
        starts = pd.period_range(log_start, periods=int(n_periods) + 1, freq=period).start_time
        return pd.DataFrame({"customer_id": customer, "timestamp": starts[at]})
    out = pd.DataFrame({"frequency": buys.sum(axis=1), "recency": np.max(np.where(buys, opportunity, 0), axis=1),
                        "n_periods": int(n_periods)}, index=pd.Index(np.arange(n), name="customer_id"))
    return out if covariates is None else out.join(covariates.set_axis(out.index))


def simulate_sbg(n_customers: int = 10_000, *, alpha: float = 0.704, beta: float = 1.182, horizon: int = 8,
                 seed: int | None = 0, covariates: pd.DataFrame | None = None,
                 coefficients: dict[str, float] | None = None) -> pd.DataFrame:
    """Contract lengths from the shifted-beta-geometric model (Fader & Hardie 2007) with known parameters:
    each customer cancels at the end of every period with probability ``θ ~ Beta(α, β)`` (defaults: the
    paper's "regular" segment), observed for ``horizon`` periods.

    ``covariates``, ``coefficients``: as for :func:`simulate`, for ``alpha`` and ``beta``
    (:data:`SBG_LINKS`: ``α_i = α exp(−Σ γ_α x_i)``, ``β_i = β exp(−Σ γ_β x_i)``).

    Returns one row per customer: ``period`` (the period in which she churned, or ``horizon``) and
    ``churned`` (1, or 0 when still active after ``horizon`` periods), the covariates' columns joined.
    """
    n = int(n_customers)
    if n < 1 or int(horizon) < 1:
        raise ClvDataError("n_customers and horizon must be at least 1.")
    if min(alpha, beta) <= 0:
        raise ClvDataError("All model parameters must be positive.")
    rng = np.random.default_rng(seed)
    scaled = _individual({"alpha": alpha, "beta": beta}, SBG_LINKS, covariates, coefficients, n)
    churn = rng.geometric(rng.beta(scaled["alpha"], scaled["beta"]))
    out = pd.DataFrame({"period": np.minimum(churn, int(horizon)), "churned": (churn <= int(horizon)).astype(int)},
                       index=pd.Index(np.arange(n), name="customer_id"))
    return out if covariates is None else out.join(covariates.set_axis(out.index))


def _individual(params: dict[str, float], links: dict[str, float], covariates, coefficients,
                n: int) -> dict[str, np.ndarray]:
    """Per-customer parameters of ``links`` (a parameter's sign) from the covariates and coefficients."""
    out = {k: np.full(n, float(v)) for k, v in params.items()}
    if covariates is None:
        if coefficients:
            raise ClvDataError("coefficients need covariates: pass covariates=frame with one row per customer.")
        return out
    if len(covariates) != n:
        raise ClvDataError(f"covariates must have one row per customer ({n:,}), got {len(covariates):,}.")
    for name, value in (coefficients or {}).items():
        param, _, column = name.partition(":")
        if param not in params or param not in links or column not in covariates.columns:
            raise ClvDataError(f"Coefficient {name!r}: expected '<param>:<column>' with a parameter of "
                               f"{sorted(set(links) & set(params))} and a column of covariates "
                               f"({list(covariates.columns)}).")
        x = covariates[column].to_numpy(dtype=float)
        if not np.all(np.isfinite(x)):
            raise ClvDataError(f"Covariate column {column!r} has missing or infinite values.")
        out[param] = out[param] * np.exp(links[param] * float(value) * x)
    return out


DEFAULT_PARETO_NBD = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}  # CDNOW, FHL 2005
#: The effects of :func:`simulate_seasonal`'s default calendar on the purchase rate.
DEFAULT_SEASONAL_EFFECTS = {"holiday": 0.7, "fourier_sin1": 0.3}


def simulate_seasonal(
    n_customers: int = 10_000,
    calendar: pd.DataFrame | None = None,
    *,
    model: str = "bgnbd",
    params: dict[str, float] | None = None,
    purchase_coefficients: dict[str, float] | None = None,
    dropout_coefficients: dict[str, float] | None = None,
    start: str = "2024-01-01",
    cohort_length: float = 12.0,
    observation_length: float = 104.0,
    time_unit: str = "W",
    customer_prefix: str | None = None,
    seed: int | None = 0,
    return_truth: bool = False,
):
    """Simulate a log whose purchase (and for Pareto/NBD drop-out) rate follows a calendar.

    Each customer's purchase rate is ``λ · exp(γ_p · z(t))`` and, for Pareto/NBD, her drop-out rate
    ``μ · exp(γ_d · z(t))``, with ``z(t)`` the calendar's values, piecewise constant on its grid (the model
    of Bachmann, Meierer & Näf 2021). The simulation is exact, by a change of time: with
    ``Λ(t) = ∫ exp(γ·z(u)) du`` (piecewise linear), purchases are those of the stationary model in the
    time ``Λ(t)``, mapped back by ``Λ⁻¹``. BG/NBD (Fader, Hardie & Lee 2005): ``λ ~ Gamma(r, α)``, inactive
    after each purchase with probability ``p ~ Beta(a, b)`` (drop-out happens at purchases, so only the
    purchase rate has a calendar). Pareto/NBD (Schmittlein, Morrison & Colombo 1987): ``λ ~ Gamma(r, α)``,
    ``μ ~ Gamma(s, β)``, death when ``∫ μ exp(γ_d·z)`` from the first purchase reaches an ``Exp(1)`` draw.
    Spend is Gamma-Gamma with the CDNOW parameters.

    Parameters
    ----------
    calendar
        A calendar table indexed by period starts (as :func:`clvmodels.timevarying.fourier_terms`,
        :func:`~clvmodels.timevarying.holiday_windows` and :func:`~clvmodels.timevarying.seasonal_dummies`
        return), covering ``[start, start + observation_length]``. Default: a weekly calendar from
        ``start`` with ``fourier_sin1``, ``fourier_cos1`` (a yearly cycle) and ``holiday`` (the three weeks
        up to each Christmas), with ``purchase_coefficients`` :data:`DEFAULT_SEASONAL_EFFECTS`.
    model, params
        ``"bgnbd"`` (``r, alpha, a, b``; default the CDNOW estimates) or ``"pareto_nbd"``
        (``r, alpha, s, beta``; default the CDNOW estimates), rates per ``time_unit``.
    purchase_coefficients, dropout_coefficients
        ``{column: γ}`` of the calendar's columns (absent columns have no effect); drop-out only for Pareto/NBD.
    start, cohort_length, observation_length, time_unit, customer_prefix, seed
        As for :func:`simulate` (first purchases uniform over ``[0, cohort_length)`` from ``start``).

    Returns
    -------
    ``(log, calendar)``: the log (``customer_id``, ``timestamp``, ``amount``, sorted by time) and the
    calendar table used; with ``return_truth`` also the per-customer latent values (``lambda``, ``p`` or
    ``mu``, ``first_purchase``, ``alive`` at the end, and for Pareto/NBD ``death``, in ``time_unit`` from ``start``).
    """
    defaults = {"bgnbd": DEFAULT_PURCHASE, "pareto_nbd": DEFAULT_PARETO_NBD}
    if model not in defaults:
        raise ClvDataError(f"model must be 'bgnbd' or 'pareto_nbd', got {model!r}.")
    params = {**defaults[model], **(params or {})}
    if set(params) != set(defaults[model]) or min(params.values()) <= 0:
        raise ClvDataError(f"params of {model} are positive {sorted(defaults[model])}, got {params}.")
    if dropout_coefficients and model == "bgnbd":
        raise ClvDataError("BG/NBD customers drop out at purchases: only purchase_coefficients apply.")
    if n_customers < 1 or not 0 <= cohort_length <= observation_length:
        raise ClvDataError("n_customers must be at least 1 and 0 <= cohort_length <= observation_length.")
    unit_ns = unit_days(normalize_unit(time_unit)) * 86_400e9
    if calendar is None:
        weeks = pd.date_range(start, pd.Timestamp(start) + pd.Timedelta(observation_length * unit_ns, "ns"), freq="7D")
        christmas = [f"{y}-12-25" for y in range(weeks[0].year, weeks[-1].year + 1)]
        calendar = pd.concat([fourier_terms(weeks), holiday_windows(weeks, christmas, before=20)], axis=1)
        purchase_coefficients = DEFAULT_SEASONAL_EFFECTS if purchase_coefficients is None else purchase_coefficients
    path = covariate_calendar(calendar)
    edges = (path.edges - pd.Timestamp(start).as_unit("ns").value) / unit_ns   # the grid in time_unit from start
    if edges[0] > 0 or edges[-1] < observation_length:
        raise ClvDataError(f"The calendar ({path.periods[0]} to the end of {path.periods[-1]}) must cover the "
                           f"simulated time, {start} plus {observation_length} {time_unit}.")
    clock_p = _Clock(edges, path, purchase_coefficients)
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    first = rng.uniform(0.0, cohort_length, n)
    if model == "bgnbd":
        drop = rng.beta(params["a"], params["b"], n)
        cust, op_times, alive = _bgnbd_purchases(lam, drop, clock_p(first), clock_p(observation_length), rng)
        times = clock_p.inverse(op_times)
        latent = {"lambda": lam, "p": drop}
    else:
        mu = rng.gamma(params["s"], 1.0 / params["beta"], n)
        clock_d = _Clock(edges, path, dropout_coefficients)
        death = clock_d.inverse(clock_d(first) + rng.exponential(1.0, n) / mu)
        begin, stop = clock_p(first), clock_p(np.minimum(death, observation_length))
        count = rng.poisson(lam * (stop - begin))
        owner = np.repeat(np.arange(n), count)
        op_times = begin[owner] + rng.random(owner.size) * (stop - begin)[owner]
        cust = np.concatenate([np.arange(n), owner])
        times = np.concatenate([first, clock_p.inverse(op_times)])
        alive = death > observation_length
        latent = {"lambda": lam, "mu": mu, "death": death}
    nu = rng.gamma(DEFAULT_SPEND["q"], 1.0 / DEFAULT_SPEND["gamma"], n)
    log = _log_frame(cust, times, nu, DEFAULT_SPEND["p"], rng, start, observation_length, time_unit, customer_prefix)
    if not return_truth:
        return log, calendar
    truth = pd.DataFrame({**latent, "first_purchase": first, "alive": alive},
                         index=pd.Index(_ids(np.arange(n), customer_prefix), name="customer_id"))
    return log, calendar, truth


class _Clock:
    """The operational time ``Λ(t) = ∫_{edges[0]}^t exp(γ·z(u)) du`` of a calendar (piecewise linear) and
    its inverse; ``t`` in the simulation's unit from its start."""

    def __init__(self, edges: np.ndarray, path, coefficients: dict[str, float] | None):
        unknown = sorted(set(coefficients or {}) - set(path.columns))
        if unknown:
            raise ClvDataError(f"Coefficients of {unknown}: not columns of the calendar ({list(path.columns)}).")
        gamma = np.array([float((coefficients or {}).get(c, 0.0)) for c in path.columns])
        self.edges, self.rate = edges, np.exp(path.values @ gamma)
        self.cumulative = np.r_[0.0, np.cumsum(self.rate * np.diff(edges))]

    def __call__(self, t):
        j = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, len(self.rate) - 1)
        return self.cumulative[j] + self.rate[j] * (np.asarray(t) - self.edges[j])

    def inverse(self, y):
        """``Λ⁻¹(y)``; beyond the calendar's end the last period's rate continues."""
        j = np.clip(np.searchsorted(self.cumulative, y, side="right") - 1, 0, len(self.rate) - 1)
        return self.edges[j] + (np.asarray(y) - self.cumulative[j]) / self.rate[j]
