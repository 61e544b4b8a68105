"""MBG/NBD: the modified beta-geometric/negative-binomial model (Batislam, Denizel & Filiztekin 2007).

As BG/NBD (:mod:`clvmodels.models.bgnbd`), except that a customer may also drop out right after
her *first* purchase: a coin with drop-out probability ``p ~ Beta(a, b)`` is tossed after every
purchase, the first one included. Customers without repeat purchases can therefore be inactive,
which removes BG/NBD's ``1{x>0}`` and the "zero repeaters are all alive" artefact.

A customer alive at ``T`` has survived ``x + 1`` tosses, so from ``T`` on she behaves like a
*BG/NBD* customer just after a purchase, with the updated parameters ``(r+x, α+T, a, b+x+1)``; a
new MBG/NBD customer is dead at once with probability ``a/(a+b)`` and otherwise a BG/NBD customer
with ``(r, α, a, b+1)``. The BG/NBD new-customer formulas are therefore reused from
:mod:`clvmodels.models.bgnbd`, not rewritten here.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..errors import ClvDataError
from .namespaces import likelihood
from .purchase import ContinuousPurchaseModel, alive_times_future, mixture_pmf, per_distinct_draw
from .bgnbd import (BetaGeoModel, expected_new, lifetime_survival, next_purchase_time, probability_new,
                    simulate_until_dropout)
from .bgnbd import alive_pmf as bg_alive_pmf
from .timevarying import TimeChange
from .rows import per_distinct_pair


# ---------------------------------------------------------------------------- likelihood
@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Per-customer log-likelihood (Batislam et al. 2007, eq. 5; Wagner & Hoppe 2008, App. A), in the
    namespace ``xp`` (:mod:`.namespaces`).

    ``ln L = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x+1) − ln B(a, b)
    + ln[(α+T)^−(r+x) + a/(b+x) (α+t_x)^−(r+x)]``, the bracket by log-sum-exp (the second term,
    ``B(a+1, b+x)/B(a, b+x+1) = a/(b+x)``, applies for every ``x``). It is the sum of
    :func:`frequency_terms` and :func:`history_terms`.
    """
    return frequency_terms(params, data, xp) + history_terms(params, data, xp)


@likelihood
def frequency_terms(params: dict, data: dict, xp):
    """The terms that read only ``x``: ``lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x+1) − ln B(a, b)``."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = data["frequency"]
    return xp.gammaln(r + x) - xp.gammaln(r) + r * xp.log(alpha) + xp.betaln(a, b + x + 1) - xp.betaln(a, b)


@likelihood
def history_terms(params: dict, data: dict, xp):
    """The bracket: ``ln[(α+T)^−(r+x) + a/(b+x) (α+t_x)^−(r+x)]``."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x, tx, T = data["frequency"], data["recency"], data["T"]
    term_alive = -(r + x) * xp.log(alpha + T)
    term_dead = xp.log(a) - xp.log(b + x) - (r + x) * xp.log(alpha + tx)
    return xp.logaddexp(term_alive, term_dead)


# ---------------------------------------------------------------------------- predictions
def probability_alive(params, frequency, recency, T):
    """P(alive at T | x, t_x, T) = 1 / (1 + a/(b+x) ((α+T)/(α+t_x))^(r+x)) (Batislam et al. 2007, eq. 8)."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = frequency
    log_odds_dead = (np.log(a) - np.log(b + x)
                     + (r + x) * (np.log(alpha + T) - np.log(alpha + recency)))
    return expit(-log_odds_dead)


def expected_purchases(params, frequency, recency, T, *, t):
    """E[Y(t) | x, t_x, T] (Batislam et al. 2007, eq. 9): ``P(alive)`` times the BG/NBD
    new-customer expectation (FHL 2005 eq. 9) at ``(r+x, α+T, a, b+x+1)``, i.e.
    ``(a+b+x)/(a−1) [1 − ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; t/(α+T+t))] P(alive)``."""
    return alive_times_future(probability_alive, future_purchases_alive, params, frequency, recency, T, t=t)


def future_purchases_alive(params, frequency, T, *, t):
    """E[Y(t)] of a customer alive at ``T`` with ``x`` repeat purchases: the BG/NBD new-customer
    expectation at ``(r+x, α+T, a, b+x+1)`` (Batislam et al. 2007, eq. 9 without ``P(alive)``)."""
    x = frequency
    return expected_new(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x + 1.0, t)


def survival(params, frequency, T, *, t):
    """P(alive at ``T+t`` | alive at ``T``, ``x`` repeat purchases): BG/NBD's
    :func:`~.bgnbd.lifetime_survival` at ``λ ~ Gamma(r+x, α+T)``, ``p ~ Beta(a, b+x+1)`` (she also
    survived the drop-out chance at her first purchase)."""
    x = np.asarray(frequency, dtype=float)
    return lifetime_survival(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x + 1.0, t)


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] = b/(a−1) [1 − (α/(α+t))^r 2F1(r, b+1; a+b; t/(α+t))] (Batislam et al. 2007, eq. 7):
    ``b/(a+b)`` times the BG/NBD new-customer expectation at ``(r, α, a, b+1)``."""
    a, b = params["a"], params["b"]
    return b / (a + b) * expected_new(params["r"], params["alpha"], a, b + 1.0, t)


def probability_of_n_purchases_new_customer(params, *, t, n):
    """P(X(t) = n) for a new customer (Batislam et al. 2007, eq. 6): dead at once with probability
    ``a/(a+b)``, else the BG/NBD law (FHL 2005 eq. 8) at ``(r, α, a, b+1)``."""
    a, b = params["a"], params["b"]
    p_dead = a / (a + b)
    bg = probability_new(params["r"], params["alpha"], a, b + 1.0, t, n)
    return p_dead * (np.asarray(n) == 0) + (1.0 - p_dead) * bg


def probability_of_n_purchases(params, frequency, recency, T, *, t, n):
    """P(Y(t) = n | x, t_x, T): alive customers follow the BG/NBD law at ``(r+x, α+T, a, b+x+1)``."""
    x = frequency
    alive = probability_alive(params, frequency, recency, T)
    p_alive = probability_new(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x + 1.0, t, n)
    return alive * p_alive + (1.0 - alive) * (np.asarray(n) == 0)


def purchase_pmf(params, frequency, recency, T, *, t, n_max):
    """Predictive pmf ``P(Y(t) = k | x, t_x, T)`` for ``k = 0 .. n_max−1`` and the tail
    ``P(Y(t) ≥ n_max)``, stacked on a new last axis of length ``n_max + 1``: alive customers follow
    the BG/NBD law (FHL 2005 eq. 8; :func:`.bgnbd.alive_pmf`, its recursions in the count and closed-form
    tail) at ``(r+x, α+T, a, b+x+1)``, evaluated once per distinct ``(x, T)``."""
    def future(x, age):
        return future_pmf(params, x, age, t=t, n_max=n_max)

    # the alive customers' law depends on (x, T) only: evaluated once per distinct pair
    return mixture_pmf(probability_alive(params, frequency, recency, T), per_distinct_pair(future, frequency, T, params=params))


def future_pmf(params, frequency, T, *, t, n_max):
    """:func:`purchase_pmf` of a customer alive at ``T``: the BG/NBD law at ``(r+x, α+T, a, b+x+1)``."""
    if int(n_max) != n_max or n_max < 1:
        raise ClvDataError(f"n_max must be a positive integer, got {n_max!r}.")
    x = np.asarray(frequency, dtype=float)
    return bg_alive_pmf(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x + 1.0, float(t), int(n_max))


def simulate_purchases(params, frequency, recency, T, *, t, rng):
    """One draw of each customer's repeat purchases in ``(T, T+t]`` from her individual-level
    posterior: alive with probability P(alive), then ``λ ~ Gamma(r+x, rate α+T)``,
    ``p ~ Beta(a, b+x+1)``, and ``min(N, G)`` purchases with ``N ~ Poisson(λ t)``,
    ``G ~ Geometric(p)`` (she drops out after purchase ``G``); per period with boundaries
    ``t = [t_1, ..., t_H]`` (:func:`~clvmodels.models.bgnbd.simulate_until_dropout`)."""
    x = np.asarray(frequency, dtype=float)
    return simulate_until_dropout(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x + 1.0,
                                  per_distinct_draw(probability_alive, params, frequency, recency, T), t=t, rng=rng)


# ---------------------------------------------------------------------------- estimator
class ModifiedBetaGeoModel(ContinuousPurchaseModel):
    """MBG/NBD purchase and drop-out model (Batislam, Denizel & Filiztekin 2007).

    Parameters
    ----------
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``r``, ``alpha``, ``a``, ``b``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_

    Examples
    --------
    >>> model = ModifiedBetaGeoModel().fit(rfm)        # doctest: +SKIP
    >>> model.probability_alive()                      # doctest: +SKIP
    """

    display_name = "MBG/NBD"
    short_names = ("mbgnbd",)
    param_names = ("r", "alpha", "a", "b")
    #: The parameters mean what they mean in BG/NBD: the same priors, (a, b) jointly (see :mod:`.bayes`).
    joint_priors = BetaGeoModel.joint_priors
    default_priors = BetaGeoModel.default_priors
    #: Covariates as BG/NBD's (PyMC-Marketing): ``α_i = α exp(−γ_α·z_i)``, ``a_i = a exp(γ_a·z_i)``, ``b_i = b exp(γ_b·z_i)``.
    covariate_links = {"purchase": (("alpha", -1.0),), "dropout": (("a", 1.0), ("b", 1.0))}
    covariate_effects = {"alpha": "the mean purchase rate (r/α)",
                         "a": "a of the drop-out probability's beta law (higher: more drop-out)",
                         "b": "b of the drop-out probability's beta law (higher: less drop-out)"}
    log_likelihood = staticmethod(log_likelihood)
    #: Time-varying purchase covariates: a time change of the model (:mod:`.timevarying`).
    time_varying_model = TimeChange(log_likelihood, probability_alive, future_purchases_alive,
                                    expected_purchases_new_customer, survival, simulate_purchases)
    #: ``log_likelihood`` as a sum of parts, each with the columns it reads (see :mod:`.mle`).
    log_likelihood_parts = ((("frequency",), frequency_terms),
                            (("frequency", "recency", "T"), history_terms))
    #: The formulas of the purchase-model protocol (see :mod:`.purchase`).
    expected_purchases_formula = staticmethod(expected_purchases)
    probability_alive_formula = staticmethod(probability_alive)
    future_purchases_formula = staticmethod(future_purchases_alive)
    probability_of_n_purchases_formula = staticmethod(probability_of_n_purchases)
    new_customer_formula = staticmethod(expected_purchases_new_customer)
    survival_formula = staticmethod(survival)
    #: BG/NBD's: an alive customer's purchase rate has the same posterior, ``Gamma(r+x, α+T)``.
    next_purchase_time_formula = staticmethod(next_purchase_time)
    compress_alive_rows = False  # a few operations per row: cheaper than deduplicating
    purchase_pmf_formula = staticmethod(purchase_pmf)
    future_pmf_formula = staticmethod(future_pmf)
    simulate_purchases_formula = staticmethod(simulate_purchases)

    initial_params = BetaGeoModel.initial_params
