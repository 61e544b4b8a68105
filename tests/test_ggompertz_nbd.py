"""GGompertz/NBD (Bemmaor & Glady 2012): the published CDNOW log-likelihood (where the MLE runs to the
Pareto/NBD boundary), the Pareto/NBD limit, the likelihood's integral against scipy's adaptive
quadrature, the predictions against independent integrals and a Monte Carlo simulation of the
model, and parameter recovery on simulated customers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

import clvmodels as clv
from clvmodels.datasets import cdnow_summary
from clvmodels.models import ggompertz_nbd as gg
from clvmodels.models.pareto_nbd import log_likelihood as pareto_log_likelihood

PARAMS = dict(r=0.8, alpha=6.0, b=0.05, s=1.5, beta=3.0)


def _history_arrays(frame):
    return {k: frame[k].to_numpy(float) for k in ("frequency", "recency", "T")}


def test_cdnow_reaches_the_published_pareto_log_likelihood():
    """On CDNOW the drop-out rate shows no ageing: the MLE runs to b, β → 0 with β/b → Pareto/NBD's
    β, and its log-likelihood to the published −9,594.98 (CLVTools' and Bemmaor & Glady's check)."""
    rfm = cdnow_summary()
    with pytest.warns(clv.ConvergenceWarning, match="boundary"):
        model = clv.GGompertzNBDModel().fit(rfm)
    assert model.log_likelihood_ == pytest.approx(-9594.98, abs=0.02)
    assert not model.converged_
    pareto = clv.ParetoNBDModel().fit(rfm)
    p = model.params_
    assert p["b"] < 1e-5 and p["beta"] / p["b"] == pytest.approx(pareto.params_["beta"], rel=1e-3)
    assert p["r"] == pytest.approx(pareto.params_["r"], rel=1e-4)


def test_pareto_limit_and_integral_against_adaptive_quadrature():
    rows = pd.DataFrame({"frequency": [0, 3, 40, 500, 1], "recency": [0, 20.0, 38.0, 77.0, 1e-3],
                         "T": [39.0, 39.0, 39.0, 78.0, 500.0]})
    data = _history_arrays(rows)
    pareto = dict(r=0.55, alpha=10.6, s=0.61, beta=11.7)
    limit = dict(r=0.55, alpha=10.6, b=1e-8, s=0.61, beta=11.7e-8)
    np.testing.assert_allclose(gg.log_likelihood(limit, data), pareto_log_likelihood(pareto, data), rtol=1e-6)
    for params in (PARAMS, dict(r=2.0, alpha=1.0, b=0.5, s=0.2, beta=20.0)):
        r, alpha, b, s, beta = (params[k] for k in ("r", "alpha", "b", "s", "beta"))
        for x, tx, T, ll in zip(*data.values(), gg.log_likelihood(params, data)):
            def log_density(tau):   # ln[(α+τ)^−(r+x) f(τ)]
                return (-(r + x) * np.log(alpha + tau) + np.log(s * b) + b * tau + s * np.log(beta)
                        - (s + 1) * np.log(beta + np.expm1(b * tau)))
            top = log_density(tx)
            died = integrate.quad(lambda tau: np.exp(log_density(tau) - top), tx, T, epsabs=0, epsrel=1e-12,
                                  limit=500)[0]
            log_alive = -(r + x) * np.log(alpha + T) + s * np.log(beta / (beta + np.expm1(b * T)))
            want = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
                    + np.logaddexp(log_alive, top + np.log(died)))
            assert ll == pytest.approx(want, rel=1e-10, abs=1e-10), (params, x, tx, T)


def _simulate_new(params, t, n, seed):
    """Monte Carlo of the model itself: λ ~ Gamma(r, α), η ~ Gamma(s, β), a Gompertz lifetime by
    inversion of exp(−η (e^{bτ} − 1)), Poisson(λ min(t, τ)) purchases."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params["r"], 1 / params["alpha"], n)
    eta = rng.gamma(params["s"], 1 / params["beta"], n)
    tau = np.log1p(rng.exponential(size=n) / eta) / params["b"]
    return lam, tau, rng.poisson(lam * np.minimum(t, tau))


def test_predictions_against_integrals_and_simulation():
    model = clv.GGompertzNBDModel()
    model.params_ = pd.Series(PARAMS)
    # a new customer's expectation: r/α ∫_0^t S(v) dv, and the simulated mean
    for t in (5.0, 52.0):
        survival = integrate.quad(lambda v: (PARAMS["beta"] / (PARAMS["beta"] + np.expm1(PARAMS["b"] * v))) ** PARAMS["s"],
                                  0, t, epsrel=1e-12)[0]
        got = gg.expected_purchases_new_customer(PARAMS, t=t)
        assert got == pytest.approx(PARAMS["r"] / PARAMS["alpha"] * survival, rel=1e-10)
        _, _, n = _simulate_new(PARAMS, t, 400_000, seed=int(t))
        assert got == pytest.approx(n.mean(), abs=4 * n.std() / np.sqrt(n.size))
    # conditional predictions: the simulated customers observed to T = 30, then the next 20 weeks
    lam, tau, _ = _simulate_new(PARAMS, 0.0, 400_000, seed=3)
    rng = np.random.default_rng(4)
    T, t = 30.0, 20.0
    x = rng.poisson(lam * np.minimum(T, tau))
    # the last purchase time: the max of x uniform times on (0, min(T, τ))
    tx = np.where(x > 0, np.minimum(T, tau) * rng.beta(np.maximum(x, 1), 1.0), 0.0)
    future = rng.poisson(lam * np.clip(np.minimum(T + t, tau) - T, 0, None))
    alive = tau > T
    groups = pd.DataFrame({"x": x, "tx": np.round(tx), "future": future, "alive": alive})
    checked = 0
    for (xi, txi), g in groups.groupby(["x", "tx"]):
        if len(g) < 4000:
            continue
        checked += 1
        # customers of a history (t_x rounded to a week): the model's predictions at its mid-point
        hist = {"frequency": np.array([float(xi)]), "recency": np.array([float(txi)]), "T": np.array([T])}
        p_alive = gg.probability_alive(PARAMS, **hist)[0]
        expected = gg.expected_purchases(PARAMS, **hist, t=t)[0]
        assert p_alive == pytest.approx(g["alive"].mean(), abs=0.03 + 4 * np.sqrt(0.25 / len(g))), (xi, txi)
        assert expected == pytest.approx(g["future"].mean(), rel=0.08, abs=4 * g["future"].std() / np.sqrt(len(g))), (xi, txi)
    assert checked >= 3
    # the survival over the next t and P(alive) at a future date
    hist = {"frequency": np.array([2.0]), "T": np.array([T])}
    kappa = gg._kappa(PARAMS["b"], PARAMS["beta"], T)
    assert gg.survival(PARAMS, **hist, t=t)[0] == pytest.approx((1 + kappa * np.expm1(PARAMS["b"] * t)) ** -PARAMS["s"])
    rfm = pd.DataFrame({"frequency": [2.0], "recency": [25.0], "T": [T]})
    model.n_customers_ = 1
    later = model.probability_alive(rfm, at=t).iloc[0]
    assert later == pytest.approx(model.probability_alive(rfm).iloc[0] * gg.survival(PARAMS, **hist, t=t)[0])


def _simulate_histories(params, n, T, seed):
    lam, tau, _ = _simulate_new(params, 0.0, n, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.poisson(lam * np.minimum(T, tau)).astype(float)
    # recency to the day (as a summary in weeks has it): histories repeat, the fit runs on unique rows
    tx = np.where(x > 0, np.floor(np.minimum(T, tau) * rng.beta(np.maximum(x, 1), 1.0) * 7) / 7, 0.0)
    return pd.DataFrame({"frequency": x, "recency": tx, "T": np.full(n, T)})


def test_recovers_known_parameters_on_simulated_data():
    rfm = _simulate_histories(PARAMS, 10_000, 52.0, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error", clv.ConvergenceWarning)
        model = clv.GGompertzNBDModel().fit(rfm)
    table = model.summary()
    for k, v in PARAMS.items():
        assert abs(table.loc[k, "estimate"] - v) < 3 * table.loc[k, "se"], (k, table.loc[k].to_dict(), v)


@pytest.mark.slow
def test_map_agrees_with_the_mle_on_simulated_data():
    rfm = _simulate_histories(PARAMS, 10_000, 52.0, seed=11)
    mle = clv.GGompertzNBDModel().fit(rfm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", clv.PriorSensitivityWarning)
        map_ = clv.GGompertzNBDModel().fit(rfm, method="map")
    table = mle.summary()
    for k in PARAMS:
        assert abs(map_.params_[k] - mle.params_[k]) < table.loc[k, "se"], k
