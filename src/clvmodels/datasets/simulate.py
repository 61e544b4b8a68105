"""Transaction-level simulation from BG/NBD (purchases, Fader, Hardie & Lee 2005) + Gamma-Gamma (spend).

Each customer draws ``lambda ~ Gamma(r, rate alpha)``, a drop-out probability ``p ~ Beta(a, b)`` and a
spend rate ``nu ~ Gamma(q, rate gamma)``. She makes a first purchase at a uniformly staggered date,
then buys as a Poisson process of rate ``lambda`` and becomes inactive after each repeat purchase with
probability ``p``. Every purchase's value is ``Gamma(shape p_spend, rate nu)``. With ``k > 1`` her
inter-purchase times are Erlang-k of rate ``lambda`` (regular buyers: BG/CNBD-k, Platzer & Reutterer
2016), and ``drop_at_first=True`` lets her drop out right after her first purchase too (MBG/NBD,
MBG/CNBD-k).

The simulation runs in rounds over all still-active customers at once (vectorised), so millions of
customers take seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ClvDataError
from ..units import normalize_unit, unit_days

DEFAULT_PURCHASE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # CDNOW, FHL 2005
DEFAULT_SPEND = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # CDNOW, Fader & Hardie 2013
#: The parameters covariates act on and the sign of each link (BG/NBD's and Gamma-Gamma's
#: ``covariate_links``): ``θ_i = θ exp(sign · Σ γ_{θ,k} x_ik)``.
COVARIATE_LINKS = {"alpha": -1.0, "a": 1.0, "b": 1.0, "gamma": 1.0}


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
        parameters ``alpha``, ``a``, ``b`` (BG/NBD) and ``gamma`` (Gamma-Gamma), linked as the models
        link them: ``α_i = α exp(−Σ γ_α x_i)``, ``a_i = a exp(Σ γ_a x_i)``, ``b_i = b exp(Σ γ_b x_i)``,
        ``γ_i = γ exp(Σ γ_γ x_i)``. A fit with the same covariates recovers them.

    Returns
    -------
    DataFrame with ``customer_id``, ``timestamp`` and ``amount``, sorted by time (like a real
    log), and optionally the truth frame indexed by customer id.
    """
    if n_customers < 1:
        raise ClvDataError("n_customers must be at least 1.")
    if min(r, alpha, a, b, p, q, gamma) <= 0:
        raise ClvDataError("All model parameters must be positive.")
    if cohort_length > observation_length:
        raise ClvDataError("cohort_length must not exceed observation_length.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ClvDataError(f"k must be a whole number of at least 1, got {k!r}.")
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    scaled = _individual({"alpha": alpha, "a": a, "b": b, "gamma": gamma}, covariates, coefficients, n)
    lam = rng.gamma(r, 1.0 / scaled["alpha"], n)
    drop = rng.beta(scaled["a"], scaled["b"], n)
    nu = rng.gamma(q, 1.0 / scaled["gamma"], n)
    first = rng.uniform(0.0, cohort_length, n)

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
        shape = rng.exponential(1.0, active.size) if k == 1 else rng.gamma(k, 1.0, active.size)
        wait = shape / np.maximum(lam[active], 1e-300)
        t_next = now[active] + wait
        buys = t_next < observation_length
        active, t_next = active[buys], t_next[buys]
        cust_parts.append(active)
        time_parts.append(t_next)
        now[active] = t_next
        dies = rng.random(active.size) < drop[active]
        alive[active[dies]] = False
        active = active[~dies]
    log, truth_ids = _purchase_log(cust_parts, time_parts, nu, p, rng,
                                   start=start, observation_length=observation_length, time_unit=time_unit,
                                   customer_prefix=customer_prefix)
    if not return_truth:
        return log
    truth = pd.DataFrame(
        {"lambda": lam, "p": drop, "nu": nu, "first_purchase": first, "alive": alive},
        index=pd.Index(truth_ids, name="customer_id"),
    )
    if covariates is not None:
        truth = truth.join(covariates.set_axis(truth.index))
    return log, truth


def _purchase_log(cust_parts, time_parts, nu, p: float, rng, *, start: str, observation_length: float,
                  time_unit: str, customer_prefix: str | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The simulated purchases (customer numbers and times in ``time_unit`` from ``start``, in parts)
    as a log sorted by time, each amount ``Gamma(p, rate nu)`` of its customer's ``nu``; and the ids of
    the customers ``0 .. len(nu)-1``."""
    cust = np.concatenate(cust_parts)
    times = np.concatenate(time_parts)
    amounts = rng.gamma(p, 1.0, cust.size) / nu[cust]
    order = np.argsort(times, kind="stable")
    cust, times, amounts = cust[order], times[order], amounts[order]

    scale_ns = unit_days(normalize_unit(time_unit)) * 86_400e9
    ts = pd.Timestamp(start).to_datetime64().astype("datetime64[ns]") + (times * scale_ns).astype("timedelta64[ns]")
    ids = cust if customer_prefix is None else np.char.add(customer_prefix, cust.astype(str)).astype(object)
    log = pd.DataFrame({"customer_id": ids, "timestamp": ts, "amount": np.maximum(np.round(amounts, 2), 0.01)})
    end = pd.Timestamp(start) + pd.Timedelta(days=observation_length * unit_days(time_unit))
    log.attrs["observation_end"] = str(end)
    n = len(nu)
    truth_ids = np.arange(n) if customer_prefix is None else np.char.add(customer_prefix, np.arange(n).astype(str)).astype(object)
    return log, truth_ids


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
    if n_customers < 1:
        raise ClvDataError("n_customers must be at least 1.")
    if min(r, alpha, s, beta, t, gamma, p, q, spend_gamma) <= 0:
        raise ClvDataError("All model parameters must be positive.")
    if cohort_length > observation_length:
        raise ClvDataError("cohort_length must not exceed observation_length.")
    rng = np.random.default_rng(seed)
    n = int(n_customers)
    lam = rng.gamma(r, 1.0 / alpha, n)
    mu = rng.gamma(s, 1.0 / beta, n)
    k = rng.gamma(t, 1.0 / gamma, n)
    nu = rng.gamma(q, 1.0 / spend_gamma, n)
    first = rng.uniform(0.0, cohort_length, n)
    lifetime = rng.exponential(1.0, n) / mu
    end = np.minimum(first + lifetime, observation_length)
    cust_parts, time_parts = [np.arange(n)], [first]
    active, now = np.arange(n), first.copy()
    while active.size:
        t_next = now[active] + rng.gamma(k[active], 1.0) / (k[active] * lam[active])
        buys = t_next < end[active]
        active, t_next = active[buys], t_next[buys]
        cust_parts.append(active)
        time_parts.append(t_next)
        now[active] = t_next
    log, truth_ids = _purchase_log(cust_parts, time_parts, nu, p, rng, start=start,
                                   observation_length=observation_length, time_unit=time_unit,
                                   customer_prefix=customer_prefix)
    if not return_truth:
        return log
    truth = pd.DataFrame({"k": k, "lambda": lam, "mu": mu, "first_purchase": first, "lifetime": lifetime,
                          "alive": first + lifetime > observation_length},
                         index=pd.Index(truth_ids, name="customer_id"))
    return log, truth


def _individual(params: dict[str, float], covariates, coefficients, n: int) -> dict[str, np.ndarray]:
    """Per-customer parameters of :data:`COVARIATE_LINKS` from the covariates and coefficients."""
    out = {k: np.full(n, float(v)) for k, v in params.items()}
    if covariates is None:
        if coefficients:
            raise ClvDataError("coefficients need covariates: pass covariates=frame with one row per customer.")
        return out
    if len(covariates) != n:
        raise ClvDataError(f"covariates must have one row per customer ({n:,}), got {len(covariates):,}.")
    for name, value in (coefficients or {}).items():
        param, _, column = name.partition(":")
        if param not in COVARIATE_LINKS or column not in covariates.columns:
            raise ClvDataError(f"Coefficient {name!r}: expected '<param>:<column>' with a parameter of "
                               f"{sorted(COVARIATE_LINKS)} and a column of covariates ({list(covariates.columns)}).")
        x = covariates[column].to_numpy(dtype=float)
        if not np.all(np.isfinite(x)):
            raise ClvDataError(f"Covariate column {column!r} has missing or infinite values.")
        out[param] = out[param] * np.exp(COVARIATE_LINKS[param] * float(value) * x)
    return out
