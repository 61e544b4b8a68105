"""Bayesian fits (MAP, NUTS, ADVI) built from the models' one likelihood, and predictions from them.

The acceptance fits (NUTS, 4 chains x 1,000 draws on the CDNOW sample) are marked slow; the default
run checks the same plumbing on short chains.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import clvmodels as clv
from clvmodels.datasets import cdnow_summary
from clvmodels.errors import ConvergenceWarning
from clvmodels.models import bayes
from clvmodels.models.rows import compress

#: FHL 2005 / lifetimes: the BG/NBD MLE on the CDNOW sample; Fader & Hardie 2013: the Gamma-Gamma MLE.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="module")
def mle(rfm):
    return clv.BetaGeoModel().fit(rfm)


@pytest.fixture(scope="module")
def gg_mle(rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clv.GammaGammaModel(exclude_invalid=True).fit(rfm)


@pytest.fixture(scope="module")
def short_nuts(rfm):
    """A short NUTS run (2 chains x 300 draws): enough for the plumbing and rough values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clv.BetaGeoModel(seed=1, progressbar=False).fit(
            rfm, method="nuts", draws=300, tune=300, chains=2)


# ---------------------------------------------------------------------------- priors
def test_default_priors_are_scaled_to_the_data(rfm):
    data = clv.BetaGeoModel()._data_arrays(rfm)
    u, w = compress(data)
    priors = bayes.resolve_priors(clv.BetaGeoModel, None, u, w)
    mean_T = float(np.average(u["T"], weights=w))
    dist, kwargs = priors["alpha"]
    assert dist == "HalfNormal" and kwargs["sigma"] == pytest.approx(5 * mean_T)
    # the same customers in days: the alpha prior scales with the time unit, the shapes do not
    days = rfm.assign(recency=rfm["recency"] * 7, T=rfm["T"] * 7)
    ud, wd = compress(clv.BetaGeoModel()._data_arrays(days))
    priors_days = bayes.resolve_priors(clv.BetaGeoModel, None, ud, wd)
    assert priors_days["alpha"][1]["sigma"] == pytest.approx(7 * kwargs["sigma"])
    assert priors_days["r"] == priors["r"]


def test_priors_can_be_replaced_by_spec_dist_or_function(rfm, mle):
    custom = {
        "r": ("Gamma", {"alpha": 2.0, "beta": 4.0}),
        "alpha": pm.HalfNormal.dist(sigma=20.0),
        "a": lambda name: pm.LogNormal(name, 0.0, 1.5),
    }
    data = clv.BetaGeoModel()._data_arrays(rfm)
    u, w = compress(data)
    model = bayes.build_pymc_model(clv.BetaGeoModel, u, w, bayes.resolve_priors(clv.BetaGeoModel, custom, u, w))
    assert [v.name for v in model.free_RVs] == ["r", "alpha", "a", "b"]
    assert type(model["r"].owner.op).__name__ == "GammaRV"
    assert type(model["a"].owner.op).__name__ == "LogNormalRV"
    # the potential is the weighted log-likelihood: equal to the MLE's at the same point
    (potential,) = model.replace_rvs_by_values(model.potentials)
    values = {model.rvs_to_values[model[k]]: np.log(mle.params_[k]) for k in ("r", "alpha", "a", "b")}
    assert {v.name for v in values} == {"r_log__", "alpha_log__", "a_log__", "b_log__"}
    assert float(potential.eval(values)) == pytest.approx(-9582.4, abs=0.1)


@pytest.mark.slow
def test_beta_shapes_get_the_joint_concentration_prior_by_default(rfm):
    """(a, b): a/(a+b) ~ Uniform(0, 1) and a+b with density (1+a+b)^-2, i.e. the proper density
    (a+b)^-1 (1+a+b)^-2 on (a, b), entered as a Potential on half-flat a and b."""
    from scipy import integrate

    u, w = compress(clv.BetaGeoModel()._data_arrays(rfm))
    priors = bayes.resolve_priors(clv.BetaGeoModel, None, u, w)
    joint = priors["a"]
    assert isinstance(joint, bayes.BetaConcentrationPrior) and priors["b"] is joint
    model = bayes.build_pymc_model(clv.BetaGeoModel, u, w, priors)
    assert [type(model[k].owner.op).__name__ for k in ("a", "b")] == ["HalfFlatRV", "HalfFlatRV"]
    assert {p.name for p in model.potentials} == {"prior_a_b", "log_likelihood"}
    a, b = 0.8, 2.4
    assert float(joint.logp(a, b).eval()) == pytest.approx(-np.log(a + b) - 2 * np.log1p(a + b), rel=1e-12)
    # a proper density: it integrates to 1 over (0, inf)^2 (in polar-like coordinates a = k u, b = k (1-u))
    density = lambda k, u: k * np.exp(float(joint.logp(k * u, k * (1 - u)).eval()))  # noqa: E731
    total, _ = integrate.dblquad(density, 0, 1, 0, np.inf)
    assert total == pytest.approx(1.0, rel=1e-6)
    # giving a or b replaces the joint prior: the given one, and the default for the other
    replaced = bayes.resolve_priors(clv.BetaGeoModel, {"a": ("Gamma", {"alpha": 1.0, "beta": 1.0})}, u, w)
    assert replaced["a"] == ("Gamma", {"alpha": 1.0, "beta": 1.0})
    assert replaced["b"] == clv.BetaGeoModel.default_priors["b"]
    names = {p.name for p in bayes.build_pymc_model(clv.BetaGeoModel, u, w, replaced).potentials}
    assert names == {"log_likelihood"}


def test_bad_priors_are_refused(rfm):
    with pytest.raises(ValueError, match="unknown parameter"):
        clv.BetaGeoModel(priors={"s": ("HalfNormal", {"sigma": 1.0})}).fit(rfm, method="map")
    with pytest.raises(ValueError, match="not a PyMC distribution"):
        clv.BetaGeoModel(priors={"r": ("Nope", {})}).fit(rfm, method="map")
    with pytest.raises(ValueError, match="spec"):
        clv.BetaGeoModel(priors={"r": ("HalfNormal",)}).fit(rfm, method="map")


# ---------------------------------------------------------------------------- MAP
@pytest.mark.slow
def test_map_is_close_to_the_mle_with_a_laplace_covariance(rfm, mle):
    # with nearly flat priors on all four parameters the posterior mode is the MLE
    flat = {k: clv.BetaGeoModel.default_priors[k] for k in ("a", "b")}
    model = clv.BetaGeoModel(progressbar=False, priors=flat).fit(rfm, method="map")
    assert model.method_ == "map" and model.converged_
    for k, v in mle.params_.items():
        assert model.params_[k] == pytest.approx(v, rel=0.03), k
    # weak priors: the Laplace covariance is close to the MLE's inverse Hessian
    np.testing.assert_allclose(np.sqrt(np.diag(model.covariance_)), np.sqrt(np.diag(mle.covariance_)), rtol=0.05)
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.2)
    table = model.summary()
    assert list(table.index) == ["r", "alpha", "a", "b"] and "se" in table
    # predictions carry the Laplace uncertainty
    out = model.expected_purchases(39, interval=0.9, n_draws=300, seed=0)
    assert np.all(out["mean_lower"] <= out["mean"]) and np.all(out["mean"] <= out["mean_upper"])
    # the default joint prior on (a, b) pulls the mode's concentration a+b down (measured a -13%,
    # b -16%), leaving r, alpha and the mean drop-out probability a/(a+b) nearly where they were
    default = clv.BetaGeoModel(progressbar=False).fit(rfm, method="map").params_
    for k in ("r", "alpha"):
        assert default[k] == pytest.approx(mle.params_[k], rel=0.01), k
    assert 0.75 < (default["a"] + default["b"]) / (mle.params_["a"] + mle.params_["b"]) < 0.95
    phi = lambda p: p["a"] / (p["a"] + p["b"])  # noqa: E731
    assert phi(default) == pytest.approx(phi(mle.params_), rel=0.05)  # measured +3.1%
    assert (out["mean_upper"] - out["mean_lower"]).mean() > 0


def test_map_gamma_gamma(rfm, gg_mle):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = clv.GammaGammaModel(exclude_invalid=True, progressbar=False).fit(rfm, method="map")
    for k, v in gg_mle.params_.items():
        assert model.params_[k] == pytest.approx(v, rel=0.05), k


def test_map_at_the_boundary_is_reported():
    """Nobody buys twice: the MAP of r, a, b runs to the optimiser's box (the shared
    :data:`~clvmodels.models.optimize.LOG_BOX`), beyond the boundary, and says so."""
    from clvmodels.models.optimize import LOG_BOX

    rng = np.random.default_rng(0)
    rfm = pd.DataFrame({"frequency": np.zeros(300), "recency": np.zeros(300), "T": rng.uniform(5, 30, 300)})
    with pytest.warns(ConvergenceWarning, match=r"the MAP runs to a boundary \(r, a, b\).*more informative priors"):
        model = clv.BetaGeoModel(progressbar=False).fit(rfm, method="map")
    assert not model.converged_ and model.diagnostics_["at_boundary"] == ["r", "a", "b"]
    for k in ("r", "a", "b"):
        assert model.params_[k] == pytest.approx(np.exp(-LOG_BOX), rel=1e-6), k
    assert model.aic_ == pytest.approx(8 - 2 * model.log_likelihood_, rel=1e-15)
    assert model.bic_ == pytest.approx(4 * np.log(300) - 2 * model.log_likelihood_, rel=1e-15)


# ---------------------------------------------------------------------------- NUTS, short
def test_nuts_sets_the_posterior_and_diagnostics(short_nuts, mle):
    model = short_nuts
    assert model.method_ == "nuts" and model.sampler_ == bayes.default_nuts_sampler()
    assert set(model.posterior_draws_) == {"r", "alpha", "a", "b"}
    assert all(v.shape == (600,) for v in model.posterior_draws_.values())
    assert model.idata_.posterior["r"].shape == (2, 300)
    for k in model.param_names:
        assert model.params_[k] == pytest.approx(model.posterior_draws_[k].mean())
    assert model.params_["r"] == pytest.approx(mle.params_["r"], rel=0.05)
    assert model.params_["alpha"] == pytest.approx(mle.params_["alpha"], rel=0.05)
    diag = model.diagnostics_
    assert diag["divergences"] == 0 and max(diag["r_hat"].values()) < 1.05
    table = model.summary(level=0.9)
    assert list(table.columns) == ["mean", "sd", "hdi_lower_90%", "hdi_upper_90%", "r_hat", "ess_bulk", "ess_tail",
                                   "mle", "prior_shift_se", "prior_sd_ratio", "prior_dominated"]
    assert not table["prior_dominated"].any()
    assert table.attrs["divergences"] == 0 and table.attrs["n_draws"] == 600
    r = model.posterior_draws_["r"]
    assert table.loc["r", "hdi_lower_90%"] > np.quantile(r, 0.01)
    assert table.loc["r", "hdi_upper_90%"] < np.quantile(r, 0.99)


def test_predictions_average_over_the_posterior(short_nuts, rfm):
    model = short_nuts
    draws = model.posterior_draws_
    point = model.expected_purchases(39)
    out = model.expected_purchases(39, interval=0.9)
    assert list(out.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    np.testing.assert_allclose(point, out["mean"])
    # by hand for customer 1: mean over all posterior draws
    from clvmodels.models.bgnbd import expected_purchases

    row = rfm.iloc[[0]]
    by_hand = expected_purchases({k: v[:, None] for k, v in draws.items()}, row["frequency"].to_numpy(float),
                                 row["recency"].to_numpy(float), row["T"].to_numpy(float), t=39.0)
    assert out["mean"].iloc[0] == pytest.approx(by_hand.mean())
    assert out["mean_lower"].iloc[0] == pytest.approx(np.quantile(by_hand, 0.05))
    alive = model.probability_alive(interval=0.5)
    assert np.all((alive["mean_lower"] <= alive["mean_median"]) & (alive["mean_median"] <= alive["mean_upper"]))
    assert np.all((alive["mean_lower"] >= 0) & (alive["mean_upper"] <= 1))
    # a subset of draws, seeded
    a = model.expected_purchases(39, interval=0.9, n_draws=100, seed=3)
    b = model.expected_purchases(39, interval=0.9, n_draws=100, seed=3)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_clv_with_bayesian_models(short_nuts, gg_mle, rfm):
    value = clv.clv(short_nuts, gg_mle, rfm, horizon=6, period_length=4.35, discount_rate=0.01, interval=0.8,
                    kind="expected", seed=0)
    assert np.all(np.isfinite(value.to_numpy()))
    assert np.all((value["mean_lower"] <= value["mean_median"]) & (value["mean_median"] <= value["mean_upper"]))
    point = clv.clv(short_nuts, gg_mle, rfm, horizon=6, period_length=4.35, discount_rate=0.01)
    assert point.sum() == pytest.approx(value["mean"].sum(), rel=0.05)
    # the predictive CLV (the default with an interval) simulates from posterior draws
    predictive = clv.clv(short_nuts, gg_mle, rfm, horizon=6, period_length=4.35, discount_rate=0.01, interval=0.8,
                         n_samples=500, seed=0)
    assert predictive.attrs["uncertainty"].startswith("predictive")
    assert predictive["mean"].sum() == pytest.approx(point.sum(), rel=0.05)
    assert (predictive["upper"] - predictive["lower"]).mean() > 3 * (value["mean_upper"] - value["mean_lower"]).mean()


def test_convergence_checks_warn_with_advice():
    good = {"r_hat": {"r": 1.001, "a": 1.003}, "ess_bulk": {"r": 3000.0, "a": 2500.0},
            "ess_tail": {"r": 2000.0, "a": 1800.0}, "divergences": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bayes.check_chains("M", good, 4, 0.8)
    with pytest.warns(ConvergenceWarning, match=r"r_hat up to 1.050 > 1.01 \(a\).*more tune/draws"):
        assert not bayes.check_chains("M", {**good, "r_hat": {"r": 1.0, "a": 1.05}}, 4, 0.8)
    with pytest.warns(ConvergenceWarning, match=r"effective sample size as low as 150 \(< 400\) for r"):
        bayes.check_chains("M", {**good, "ess_tail": {"r": 150.0, "a": 1800.0}}, 4, 0.8)
    with pytest.warns(ConvergenceWarning, match="3 divergent transitions.*target_accept"):
        bayes.check_chains("M", {**good, "divergences": 3}, 4, 0.8)


def test_advi_settling_check():
    rng = np.random.default_rng(0)
    assert bayes.elbo_settled(9600 + rng.normal(0, 5, 5000))
    assert not bayes.elbo_settled(np.linspace(12000, 9600, 5000) + rng.normal(0, 5, 5000))


@pytest.mark.slow
def test_too_short_chains_warn_with_advice(rfm):
    with pytest.warns(ConvergenceWarning, match="effective sample size|r_hat"):
        clv.BetaGeoModel(seed=2, progressbar=False).fit(rfm, method="nuts", draws=20, tune=30, chains=2)


@pytest.mark.slow
def test_pymc_sampler_gives_the_same_posterior(rfm, short_nuts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = clv.BetaGeoModel(seed=3, progressbar=False).fit(
            rfm, method="nuts", draws=300, tune=300, chains=2, nuts_sampler="pymc")
    assert model.sampler_ == "pymc"
    for k in ("r", "alpha"):
        assert model.params_[k] == pytest.approx(short_nuts.params_[k], rel=0.05)


@pytest.mark.slow
def test_advi_is_roughly_right(rfm, mle):
    model = clv.BetaGeoModel(seed=1, progressbar=False).fit(
        rfm, method="advi", draws=250, chains=2, advi_iterations=4_000)
    assert model.posterior_draws_["r"].shape == (500,)
    assert model.params_["r"] == pytest.approx(mle.params_["r"], rel=0.1)
    assert model.params_["alpha"] == pytest.approx(mle.params_["alpha"], rel=0.15)
    assert model.params_["a"] == pytest.approx(mle.params_["a"], rel=0.5)
    assert "r_hat" not in model.summary()


# ---------------------------------------------------------------------------- acceptance (slow)
@pytest.mark.slow
def test_nuts_bgnbd_cdnow_acceptance(rfm, mle):
    """NUTS 4 x 1,000 on CDNOW: r_hat <= 1.01, no divergences, posterior means within 5% of the MLE.

    Measured over seeds 42, 7, 1, 2 with the default priors: r +0.7%, alpha +1.4%, a +1.5-1.8%,
    b +2.9-3.4%. (With independent near-flat priors on a and b their means were 22% and 30% above
    the MLE: see :class:`clvmodels.models.bayes.BetaConcentrationPrior`.)"""
    model = clv.BetaGeoModel(seed=42, progressbar=False).fit(rfm, method="nuts", draws=1000, tune=1000,
                                                                      chains=4)
    diag = model.diagnostics_
    assert model.converged_
    assert max(diag["r_hat"].values()) <= 1.01
    assert diag["divergences"] == 0
    assert min(diag["ess_bulk"].values()) > 400
    for k in ("r", "alpha", "a", "b"):
        assert model.params_[k] == pytest.approx(mle.params_[k], rel=0.05), k
        # and the MLE lies in the bulk of the posterior
        assert 0.2 < np.mean(model.posterior_draws_[k] < mle.params_[k]) < 0.8, k


@pytest.mark.slow
def test_nuts_gamma_gamma_cdnow_acceptance(rfm, gg_mle):
    """Measured over seeds 42, 7, 1, 2: p +2.9-3.8%, q +0.3-0.6%, gamma +2.0-3.0% (with a flat prior
    on q, gamma's mean was 4.4-5.8% above the MLE)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", clv.AssumptionWarning)
        model = clv.GammaGammaModel(exclude_invalid=True, seed=42, progressbar=False).fit(
            rfm, method="nuts", draws=1000, tune=1000, chains=4)
    diag = model.diagnostics_
    assert model.converged_ and max(diag["r_hat"].values()) <= 1.01 and diag["divergences"] == 0
    for k, v in gg_mle.params_.items():
        assert model.params_[k] == pytest.approx(v, rel=0.05), k
        assert 0.3 < np.mean(model.posterior_draws_[k] < v) < 0.7, k
    spend = model.expected_spend(interval=0.9)
    assert np.all(spend["mean_lower"] > 0) and np.all(spend["mean_lower"] < spend["mean_upper"])
