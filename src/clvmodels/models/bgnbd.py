"""BG/NBD: the beta-geometric/negative-binomial purchase model (Fader, Hardie & Lee 2005).

While alive, a customer buys as a Poisson process of rate ``lambda ~ Gamma(r, rate alpha)``; after
every repeat purchase she drops out with probability ``p ~ Beta(a, b)``.

All of the model's mathematics is in this module: the log-likelihood (PyTensor, used by the MLE and
Bayesian fits) and the predictive formulas (numpy, broadcasting over parameter draws of shape
``(n_draws, 1)`` against customers of shape ``(n_customers,)``).

A customer alive at ``T`` with history ``(x, t_x, T)`` behaves from ``T`` on like a new customer with
the updated parameters ``(r+x, alpha+T, a, b+x)`` (the individual-level posterior of FHL 2005,
sec. 5). So every conditional prediction is ``P(alive) x`` the new-customer formula at the updated
parameters, and the new-customer formulas are written once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from scipy.special import betaln, expit, gammaln, hyp2f1

from ..errors import ClvDataError
from ._pt import betaln as pt_betaln
from .base import CLVModel


# ---------------------------------------------------------------------------- likelihood
def log_likelihood(params: dict, data: dict):
    """Per-customer log-likelihood, FHL 2005 eq. (6), in log space.

    ``ln L = lnΓ(r+x) − lnΓ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    + ln[(α+T)^−(r+x) + 1{x>0} a/(b+x−1) (α+t_x)^−(r+x)]``, the bracket by log-sum-exp.
    """
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x, tx, T = data["frequency"], data["recency"], data["T"]
    repeat = pt.gt(x, 0)
    # b + x − 1 is only used where x > 0; keep it positive elsewhere so gradients stay finite
    bx1 = pt.switch(repeat, b + x - 1, b)
    term_alive = -(r + x) * pt.log(alpha + T)
    term_dead = pt.switch(repeat, pt.log(a) - pt.log(bx1) - (r + x) * pt.log(alpha + tx), -np.inf)
    return (pt.gammaln(r + x) - pt.gammaln(r) + r * pt.log(alpha)
            + pt_betaln(a, b + x) - pt_betaln(a, b) + pt.logaddexp(term_alive, term_dead))


# ---------------------------------------------------------------------------- predictions
def log_odds_dead(params, frequency, recency, T):
    """``ln[P(dead)/P(alive)]`` at ``T``: ``ln(a/(b+x−1)) + (r+x) ln((α+T)/(α+t_x))`` for x > 0, −inf for x = 0."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = frequency
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = (np.log(a) - np.log(b + x - 1)
                + (r + x) * (np.log(alpha + T) - np.log(alpha + recency)))
    return np.where(x > 0, odds, -np.inf)


def probability_alive(params, frequency, recency, T):
    """P(alive at T | x, t_x, T) = 1 / (1 + 1{x>0} a/(b+x−1) ((α+T)/(α+t_x))^(r+x)) (FHL 2005 eq. 11)."""
    return expit(-log_odds_dead(params, frequency, recency, T))


def expected_new(r, alpha, a, b, t):
    """E[X(t)] for a new customer (FHL 2005 eq. 9), evaluated after Euler's transformation.

    ``(α/(α+t))^r 2F1(r, b; a+b−1; z) = (1−z)^(a−1) 2F1(a+b−1−r, a−1; a+b−1; z)`` with
    ``z = t/(α+t)``: the transformed series has parameters that do not grow with ``r`` and ``b``, so
    it stays finite and accurate when they are updated by a large frequency.
    """
    t = np.asarray(t, dtype=float)
    c = a + b - 1.0
    z = t / (alpha + t)
    log1mz = np.log(alpha) - np.log(alpha + t)
    term = np.exp((a - 1.0) * log1mz) * hyp2f1(c - r, a - 1.0, c, z)
    return c / (a - 1.0) * (1.0 - term)


def expected_purchases(params, frequency, recency, T, *, t):
    """E[Y(t) | x, t_x, T]: expected repeat purchases in (T, T+t] (FHL 2005 eq. 10)."""
    x = frequency
    alive = probability_alive(params, frequency, recency, T)
    future = expected_new(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x, t)
    return alive * future


def expected_purchases_new_customer(params, *, t):
    """E[X(t)] for a customer just acquired (FHL 2005 eq. 9)."""
    return expected_new(params["r"], params["alpha"], params["a"], params["b"], t)


def probability_new(r, alpha, a, b, t, n):
    """P(X(t) = n) for a new customer (FHL 2005 eq. 8), in log space."""
    n = np.asarray(n)
    log_q = np.log(t) - np.log(alpha + t)          # ln(t/(α+t))
    log_1mq = np.log(alpha) - np.log(alpha + t)    # ln(α/(α+t))
    log_nb = lambda j: gammaln(r + j) - gammaln(r) - gammaln(j + 1.0) + r * log_1mq + j * log_q  # noqa: E731
    first = np.exp(betaln(a, b + n) - betaln(a, b) + log_nb(n))
    if np.all(n == 0):
        return first
    # 1 − Σ_{j<n} NB(j): the NB(r, q) mass below n
    n_max = int(np.max(n))
    js = np.arange(n_max).reshape((-1,) + (1,) * np.ndim(first))
    cdf = np.where(js < n, np.exp(log_nb(js)), 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        second = np.exp(betaln(a + 1.0, b + n - 1.0) - betaln(a, b)) * np.clip(1.0 - cdf, 0.0, 1.0)
    return first + np.where(n > 0, second, 0.0)


def probability_of_n_purchases(params, frequency, recency, T, *, t, n):
    """P(Y(t) = n | x, t_x, T): alive customers follow the new-customer law at updated parameters."""
    x = frequency
    alive = probability_alive(params, frequency, recency, T)
    p_alive = probability_new(params["r"] + x, params["alpha"] + T, params["a"], params["b"] + x, t, n)
    return alive * p_alive + (1.0 - alive) * (np.asarray(n) == 0)


# ---------------------------------------------------------------------------- estimator
class BetaGeoModel(CLVModel):
    """BG/NBD purchase and drop-out model (Fader, Hardie & Lee 2005).

    Parameters
    ----------
    method
        Default fit method: ``"mle"``, ``"map"``, ``"nuts"`` or ``"advi"``.
    penalizer
        L2 penalty on the parameters (lifetimes' ``penalizer_coef``) for the MLE; 0 by default.
    priors
        Bayesian fits: priors replacing :attr:`default_priors`.
    draws, tune, chains, random_seed, progressbar
        Bayesian fits: sampler settings.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``r``, ``alpha``, ``a``, ``b``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_, n_unique_

    Examples
    --------
    >>> model = BetaGeoModel().fit(rfm)               # doctest: +SKIP
    >>> model.expected_purchases(t=39)                 # doctest: +SKIP
    """

    param_names = ("r", "alpha", "a", "b")
    data_columns = ("frequency", "recency", "T")
    default_priors = {
        "r": ("HalfNormal", {"sigma": 5.0}),
        "alpha": ("HalfNormal", {"sigma": 50.0}),
        "a": ("HalfNormal", {"sigma": 5.0}),
        "b": ("HalfNormal", {"sigma": 10.0}),
    }
    log_likelihood = staticmethod(log_likelihood)
    #: The conditional expected-purchases formula, used by :func:`clvmodels.clv`.
    expected_purchases_formula = staticmethod(expected_purchases)

    def initial_params(self, data, weights):
        # r/alpha: a method-of-moments guess of the purchase rate
        rate = np.average(data["frequency"] / np.maximum(data["T"], 1e-9), weights=weights)
        return np.array([1.0, 1.0 / max(rate, 1e-6), 1.0, 1.0])

    def expected_purchases(self, t: float, rfm: pd.DataFrame | None = None, **kwargs):
        """Expected repeat purchases in the next ``t`` periods, given each customer's history
        (FHL 2005 eq. 10). ``interval=0.9`` adds parameter uncertainty; see :meth:`CLVModel._predict`."""
        _check_t(t)
        return self._predict(expected_purchases, rfm, name="expected_purchases", t=float(t), **kwargs)

    def probability_alive(self, rfm: pd.DataFrame | None = None, **kwargs):
        """Probability that each customer is still alive at the end of observation (FHL 2005 eq. 11)."""
        return self._predict(probability_alive, rfm, name="probability_alive", **kwargs)

    def probability_of_n_purchases(self, t: float, n: int, rfm: pd.DataFrame | None = None, **kwargs):
        """Probability that each customer makes exactly ``n`` repeat purchases in the next ``t`` periods."""
        _check_t(t)
        if int(n) != n or n < 0:
            raise ClvDataError(f"n must be a non-negative integer, got {n!r}.")
        return self._predict(probability_of_n_purchases, rfm, name=f"p_{int(n)}_purchases",
                             t=float(t), n=int(n), **kwargs)

    def expected_purchases_new_customer(self, t, **kwargs):
        """E[X(t)] for a newly acquired customer (FHL 2005 eq. 9), for one or several ``t``."""
        ts = np.atleast_1d(np.asarray(t, dtype=float))
        _check_t(ts)
        grid = pd.DataFrame({"t": ts}, index=pd.Index(ts, name="t"))
        out = self._predict(lambda params, t: expected_purchases_new_customer(params, t=t), grid,
                            name="expected_purchases", columns=("t",), **kwargs)
        return float(out.iloc[0]) if np.ndim(t) == 0 and isinstance(out, pd.Series) else out


def _check_t(t) -> None:
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ClvDataError(f"t must be finite and non-negative, got {t}.")
