"""Shifted-beta-geometric (sBG) model of contractual retention (Fader & Hardie 2007).

At the end of every period an active customer cancels with probability ``θ``, the same for her
whole lifetime; across customers ``θ ~ Beta(α, β)``. With ``T`` the period in which a customer
churns (``T = 1``: she did not renew at the end of her first period):

* ``P(T = t) = B(α+1, β+t−1) / B(α, β)`` (Fader & Hardie 2007, eq. 3);
* ``S(t) = P(T > t) = B(α, β+t) / B(α, β)`` (eq. 4);
* retention rate ``r(t) = S(t)/S(t−1) = (β+t−1)/(α+β+t−1)`` (eq. 5), increasing in ``t``: the
  heterogeneity the model captures (the churn-prone leave first).

Its data are per-period counts, not per-customer histories. A cohort's survivor counts
``n_0, n_1, ..., n_K`` (customers active at the start of periods 0..K) become one row per churn
period ``t = 1..K`` (``churned = 1``, weight ``n_{t−1} − n_t``) plus one censored row
(``period = K``, ``churned = 0``, weight ``n_K``): see :func:`survivor_table`. The generic
weighted fit (:meth:`CLVModel.fit` with ``weights``) then maximises exactly the likelihood of
Fader & Hardie 2007, eq. 6.

Discounted expected residual lifetime (Fader & Hardie 2010, "Customer-base valuation in a
contractual setting", Marketing Science 29(1), eq. 6): for a customer who has made ``n−1``
renewals, evaluated just before her ``n``-th renewal decision (so the next payment, if she renews,
is not discounted),
``DERL(d | n−1 renewals) = B(α, β+n)/B(α, β+n−1) · 2F1(1, β+n; α+β+n; 1/(1+d))``;
the discounted expected lifetime of a new customer, her first payment included, is
``DEL(d) = 2F1(1, β; α+β; 1/(1+d))``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln

from .namespaces import likelihood
from .contractual import ContractualModel


# ---------------------------------------------------------------------------- likelihood
@likelihood
def log_likelihood(params: dict, data: dict, xp):
    """Log-likelihood of one row (Fader & Hardie 2007, eq. 6), in the namespace ``xp`` (:mod:`.namespaces`).

    ``churned = 1``: ``ln P(T = t) = ln B(α+1, β+t−1) − ln B(α, β)``;
    ``churned = 0`` (still active after ``t`` periods): ``ln S(t) = ln B(α, β+t) − ln B(α, β)``.
    """
    alpha, beta = params["alpha"], params["beta"]
    t, churned = data["period"], data["churned"]
    return xp.where(churned > 0.5,
                    xp.betaln(alpha + 1, beta + t - 1),
                    xp.betaln(alpha, beta + t)) - xp.betaln(alpha, beta)


# ---------------------------------------------------------------------------- predictions
def survival(params, period):
    """S(t) = B(α, β+t)/B(α, β): share of a cohort still active after ``t`` periods (eq. 4)."""
    alpha, beta = params["alpha"], params["beta"]
    return np.exp(betaln(alpha, beta + period) - betaln(alpha, beta))


def retention_rate(params, period):
    """r(t) = (β+t−1)/(α+β+t−1): share of the customers active in period ``t−1`` who renew (eq. 5)."""
    alpha, beta = params["alpha"], params["beta"]
    return (beta + period - 1.0) / (alpha + beta + period - 1.0)


def churn_probability(params, period):
    """P(T = t) = B(α+1, β+t−1)/B(α, β): share of a cohort lost at the end of period ``t`` (eq. 3)."""
    alpha, beta = params["alpha"], params["beta"]
    return np.exp(betaln(alpha + 1.0, beta + period - 1.0) - betaln(alpha, beta))


def hyp2f1_one(B, C, z, max_iter: int = 20_000):
    """``2F1(1, B; C; z)`` for ``0 <= z < 1`` and ``C > B > 0`` by the continued fraction of the
    incomplete beta function.

    With ``a = C − 1`` and ``b = B − a``, ``2F1(a+b, 1; a+1; z)`` is the continued fraction of
    Numerical Recipes' ``betacf`` (modified Lentz). scipy's ``hyp2f1`` returns inf, NaN or wrong values
    for part of the range DERL needs (e.g. ``B = C − 1`` large, ``z`` near 1); this stays accurate
    (~1e-12 against mpmath). Elements whose fraction has not converged after ``max_iter`` steps
    (``z`` within ~1e-4 of 1 with ``C − B < 1``, e.g. DEL at a discount rate of 0.01% with
    ``α = β = 0.5``) are integrated instead (:func:`_hyp2f1_one_quadrature`).
    """
    B, C, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (B, C, z)))
    a = C - 1.0
    b = B - a
    tiny = 1e-300

    def guard(v):
        return np.where(np.abs(v) < tiny, tiny, v)

    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(z)
    d = 1.0 / guard(1.0 - qab * z / qap)
    h = d.copy()
    delta = np.zeros_like(z)
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * z / ((qam + m2) * (a + m2))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        h = h * d * c
        aa = -(a + m) * (qab + m) * z / ((a + m2) * (qap + m2))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) <= 1e-15):
            return h
    out = np.array(h, dtype=float).reshape(-1)
    slow = np.flatnonzero(np.abs(np.asarray(delta) - 1.0) > 1e-15)
    flat = [v.reshape(-1) for v in (B, C, z)]
    out[slow] = [_hyp2f1_one_quadrature(flat[0][i], flat[1][i], flat[2][i]) for i in slow]
    return out.reshape(np.shape(h))


def _hyp2f1_one_quadrature(B: float, C: float, z: float) -> float:
    """``2F1(1, B; C; z) = E[1/(1 − z u)]`` with ``u ~ Beta(B, C − B)`` (Euler's integral; DEL's
    ``E_θ[Σ_t ((1−θ) z)^t]``), integrated in ``v = 1 − u`` with QUADPACK's algebraic weight
    ``v^(C−B−1) (1−v)^(B−1)``, which takes the Beta density's end singularities exactly."""
    from scipy import integrate  # imported when a quadrature is needed (a fast start)

    value, _ = integrate.quad(lambda v: 1.0 / (1.0 - z + z * v), 0.0, 1.0, weight="alg",
                              wvar=(C - B - 1.0, B - 1.0), limit=500, epsabs=0.0, epsrel=1e-12)
    return float(value / np.exp(betaln(B, C - B)))


def derl(params, renewals, *, discount_rate):
    """DERL(d | n−1 renewals) = B(α, β+n)/B(α, β+n−1) · 2F1(1, β+n; α+β+n; 1/(1+d)) with
    ``n − 1 = renewals`` (Fader & Hardie 2010, eq. 6).

    ``renewals = 0`` is a customer who has just been acquired and will decide on her first renewal;
    the value counts the expected number of future (discounted) payments, each worth 1.
    """
    alpha, beta = params["alpha"], params["beta"]
    n = renewals + 1.0
    ratio = np.exp(betaln(alpha, beta + n) - betaln(alpha, beta + n - 1.0))
    return ratio * hyp2f1_one(beta + n, alpha + beta + n, 1.0 / (1.0 + discount_rate))


def del_new_customer(params, *, discount_rate):
    """DEL(d) = 2F1(1, β; α+β; 1/(1+d)): discounted expected lifetime of a new customer, her first
    payment included (Fader & Hardie 2010, eq. 5)."""
    alpha, beta = params["alpha"], params["beta"]
    return hyp2f1_one(beta, alpha + beta, 1.0 / (1.0 + discount_rate))


# ---------------------------------------------------------------------------- data
# ---------------------------------------------------------------------------- estimator
class ShiftedBetaGeoModel(ContractualModel):
    """Shifted-beta-geometric model of contractual retention (Fader & Hardie 2007).

    Fit on a per-period table (``period``, ``churned``) with counts as ``weights``, or directly on
    a cohort's survivor counts with :meth:`fit_survivors`.

    Parameters
    ----------
    method, penalizer, priors, draws, tune, chains, seed, progressbar
        As for :class:`~clvmodels.BetaGeoModel`.

    Attributes (after ``fit``)
    --------------------------
    params_ : Series with ``alpha``, ``beta``
    log_likelihood_, aic_, bic_, converged_, covariance_ (log-parameters), n_customers_

    Examples
    --------
    >>> sbg = ShiftedBetaGeoModel().fit_survivors([1000, 631, 468, 382, 326, 289, 262, 241])  # doctest: +SKIP
    >>> sbg.params_.round(3).tolist()                                                      # doctest: +SKIP
    [0.704, 1.182]
    >>> sbg.survival([8, 9, 10, 11, 12])                                                   # doctest: +SKIP
    """

    display_name = "sBG"
    short_names = ("sbg",)
    param_names = ("alpha", "beta")
    default_priors = {
        "alpha": ("HalfNormal", {"sigma": 10.0}),
        "beta": ("HalfNormal", {"sigma": 10.0}),
    }
    #: Covariates (PyMC-Marketing): ``α_i = α exp(−γ_α·z_i)``, ``β_i = β exp(−γ_β·z_i)``.
    covariate_links = {"dropout": (("alpha", -1.0), ("beta", -1.0))}
    log_likelihood = staticmethod(log_likelihood)
    survival_formula = staticmethod(survival)
    retention_rate_formula = staticmethod(retention_rate)
    derl_formula = staticmethod(derl)
    del_formula = staticmethod(del_new_customer)
