"""Pareto/GGG (Platzer & Reutterer 2016): the likelihood against a direct integral over the lifetime,
P(alive) and the simulated futures against brute-force simulation of the process, the Pareto/NBD
limit, parameter recovery on simulated regular buyers, holdout purchases, save/load and refusals."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import clvmodels as clv
from clvmodels.errors import ClvDataError, ConvergenceWarning, ModelKindError
from clvmodels.models import pareto_ggg
from clvmodels.models.pareto_ggg import ParetoGGGModel, simulate_alive_future


def _log_likelihood(k, lam, mu, x, tx, T, litt):
    return pareto_ggg.log_likelihood({"k": k, "lambda": lam, "mu": mu},
                                     {"frequency": x, "recency": tx, "T": T, "litt": litt})


@pytest.mark.parametrize("k, lam, mu, gaps, T", [
    (3.0, 0.4, 0.05, [2.0, 3.5, 1.0], 20.0),       # regular, alive-looking
    (0.6, 1.3, 0.3, [0.2, 4.0], 30.0),             # irregular (k < 1), long silence
    (8.0, 0.1, 0.02, [], 40.0),                    # no repeat purchase
    (1.0, 0.7, 0.2, [1.0], 1.0),                   # purchase at T: no gap
])
def test_likelihood_integrates_the_lifetime_out(k, lam, mu, gaps, T):
    """Eq. 5 with ``τ`` integrated out equals the Gamma densities of the gaps times the integral over
    ``τ > t_x`` of ``μ e^{−μτ}`` and the probability of no purchase in ``(t_x, min(τ, T)]``."""
    gaps = np.asarray(gaps)
    x, tx, litt = len(gaps), gaps.sum(), np.log(gaps).sum()
    density = stats.gamma(k, scale=1 / (k * lam))
    survive = integrate.quad(lambda tau: mu * np.exp(-mu * tau) * density.sf(tau - tx), tx, T, epsabs=0,
                             epsrel=1e-12)[0] + np.exp(-mu * T) * density.sf(T - tx)
    expected = density.logpdf(gaps).sum() + np.log(survive)
    got = _log_likelihood(k, lam, mu, float(x), tx, T, litt)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_likelihood_is_finite_at_extremes():
    k = np.array([0.05, 50.0, 1.0, 200.0])
    lam = np.array([1e-6, 30.0, 5.0, 1e-3])
    mu = np.array([1e-8, 1e-6, 10.0, 1e-9])
    values = _log_likelihood(k, lam, mu, np.array([0.0, 40.0, 3.0, 0.0]), np.array([0.0, 1.5, 0.6, 0.0]),
                             np.full(4, 500.0), np.array([0.0, 40 * np.log(1.5 / 40), 3 * np.log(0.2), 0.0]))
    assert np.all(np.isfinite(values))


def _silent_then(k, lam, mu, gap, t, n, seed):
    """Brute force from the process: customers alive right after a purchase (time 0) with the given
    latents; among those without a purchase in (0, gap], whether each is alive at ``gap`` and her
    purchases in (gap, gap + t]."""
    rng = np.random.default_rng(seed)
    death = rng.exponential(1 / mu, n)
    now = np.zeros(n)
    first = np.full(n, np.inf)
    count = np.zeros(n)
    active = np.arange(n)
    while active.size:
        now[active] += rng.gamma(k, 1 / (k * lam), active.size)
        active = active[now[active] < np.minimum(death[active], gap + t)]
        first[active] = np.minimum(first[active], now[active])
        count[active] += now[active] > gap
    silent = first > gap
    return death[silent] > gap, count[silent & (death > gap)]


@pytest.mark.parametrize("k, lam, mu, gap", [(4.0, 0.5, 0.1, 3.0), (0.7, 0.3, 0.05, 6.0), (1.0, 0.4, 0.2, 2.5)])
def test_probability_alive_and_future_match_brute_force(k, lam, mu, gap):
    """P(alive | no purchase in a gap after the last one) and the purchases of the silent customers
    alive at its end, against simulating the process itself (5 standard errors)."""
    alive, future = _silent_then(k, lam, mu, gap, t=8.0, n=400_000, seed=1)
    p = pareto_ggg.probability_alive({"k": k, "lambda": lam, "mu": mu}, 3.0, 10.0, 10.0 + gap)
    assert abs(alive.mean() - p) < 5 * np.sqrt(p * (1 - p) / alive.size)
    m = 200_000
    simulated = simulate_alive_future(np.full(m, k), np.full(m, lam), np.full(m, mu), np.full(m, gap),
                                      np.array([8.0]), np.random.default_rng(2))[:, 0]
    se = np.hypot(future.std() / np.sqrt(future.size), simulated.std() / np.sqrt(m))
    assert abs(simulated.mean() - future.mean()) < 5 * se


def test_exponential_timing_is_pareto_nbd_per_customer():
    """At ``k = 1`` the customer is Pareto/NBD's: P(alive) ``= 1/(1 + μ/(λ+μ)(e^{(λ+μ)gap} − 1))`` and
    ``E[Y(t) | alive] = λ/μ (1 − e^{−μt})`` (Schmittlein, Morrison & Colombo 1987)."""
    lam, mu, gap, t = 0.8, 0.15, 4.0, 6.0
    p = pareto_ggg.probability_alive({"k": 1.0, "lambda": lam, "mu": mu}, 2.0, 3.0, 3.0 + gap)
    assert p == pytest.approx(1 / (1 + mu / (lam + mu) * np.expm1((lam + mu) * gap)), rel=1e-12)
    m = 400_000
    counts = simulate_alive_future(np.ones(m), np.full(m, lam), np.full(m, mu), np.full(m, gap), np.array([t]),
                                   np.random.default_rng(3))[:, 0]
    assert abs(counts.mean() - lam / mu * -np.expm1(-mu * t)) < 5 * counts.std() / np.sqrt(m)


def test_simulated_periods_add_up_to_the_window():
    rng = np.random.default_rng(4)
    m = 1000
    args = (rng.gamma(3, 1, m), rng.gamma(2, 0.3, m), rng.gamma(1, 0.05, m), rng.uniform(0, 10, m))
    per_period = simulate_alive_future(*args, np.array([2.0, 5.0, 9.0]), np.random.default_rng(5))
    total = simulate_alive_future(*args, np.array([9.0]), np.random.default_rng(5))
    assert per_period.shape == (m, 3) and np.array_equal(per_period.sum(axis=1), total[:, 0])


def _no_repeat_brute_force(hyper, T, n, seed):
    """Customers drawn from the populations, kept when the process makes no repeat purchase in (0, T]."""
    rng = np.random.default_rng(seed)
    k, lam, mu = (rng.gamma(hyper[c, 0], 1 / hyper[c, 1], n) for c in range(3))
    silent = rng.gamma(k, 1 / (k * lam)) > np.minimum(rng.exponential(1 / mu), T)
    return silent, k[silent], lam[silent], mu[silent]


@pytest.mark.parametrize("hyper", [[[6.3, 1.6], [1.25, 12.3], [0.84, 13.0]],    # the benchmark's posterior
                                   [[0.8, 0.5], [0.5, 3.0], [2.0, 20.0]],       # irregular, heterogeneous k
                                   [[400.0, 400.0], [0.8, 8.0], [0.7, 10.0]]])  # Pareto/NBD limit
def test_no_repeat_marginal_and_draws_match_brute_force(hyper):
    """The sampler integrates out the latents of customers without repeat purchases: their marginal
    likelihood (quadrature, all distinct T in one pass) against simulating the populations and the
    process (5 standard errors), and the exact draws of their latents against the kept simulations."""
    from clvmodels.models import pggg_mcmc

    _, _, marginal, draw, _ = pggg_mcmc.kernels()
    hyper = np.array(hyper)
    T = np.array([1.0, 30.0, 30.2, 52.0])
    count = np.array([2.0, 1.0, 3.0, 1.0])
    one = [marginal(hyper, T[[j]], np.ones(1), np.empty((3, 1))) for j in range(T.size)]
    # one pass over all T (the midpoint rule between 30 and 30.2) agrees with one T at a time
    assert marginal(hyper, T, count, np.empty((3, T.size))) == pytest.approx(np.dot(count, one), rel=1e-7)
    for j, t in enumerate(T[[0, 3]]):
        silent, k, lam, mu = _no_repeat_brute_force(hyper, t, 1_000_000, seed=j)
        p = np.exp(one[3 * j])
        assert abs(silent.mean() - p) < 5 * np.sqrt(p * (1 - p) / silent.size)
        drawn = np.array([draw(hyper, t) for _ in range(20_000)])
        for c, values in enumerate((k, lam, mu)):
            se = np.hypot(values.std() / np.sqrt(values.size), drawn[:, c].std() / np.sqrt(len(drawn)))
            assert abs(np.mean(drawn[:, c]) - values.mean()) < 5 * se


def test_simulator_alive_share_is_the_lifetime_law():
    """``P(alive at the end) = E[(β/(β + end − first))^s]`` over the uniform first purchases."""
    log, truth = clv.simulate_pareto_ggg(50_000, s=0.8, beta=12.0, seed=6, return_truth=True)
    first = np.linspace(0, 12, 20_001)
    expected = np.mean((12.0 / (12.0 + 78.0 - first)) ** 0.8)
    assert abs(truth["alive"].mean() - expected) < 5 * np.sqrt(expected * (1 - expected) / len(truth))
    assert log.groupby("customer_id").size().sum() == len(log) and set(truth.columns) >= {"k", "lambda", "mu"}


# ---------------------------------------------------------------------------- fits
@pytest.fixture(scope="module")
def small_fit():
    log = clv.simulate_pareto_ggg(300, seed=7)
    rfm = clv.rfm_summary(log, litt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # far too short to converge: plumbing only
        model = ParetoGGGModel(chains=2, tune=30, draws=40, latent_draws=20, seed=8).fit(rfm)
    return model, rfm


def test_fit_attributes_and_predictions_for_the_fitted_customers(small_fit):
    model, rfm = small_fit
    assert list(model.params_.index) == ["r", "alpha", "s", "beta", "t", "gamma"]
    assert all(len(v) == 80 for v in model.posterior_draws_.values())
    draws = model.customer_draws(rfm.iloc[:5])
    assert draws["k"].shape == (20, 5)
    alive = model.probability_alive(rfm.iloc[:50])
    assert alive.between(0, 1).all() and alive.index.equals(rfm.index[:50])
    later = model.probability_alive(rfm.iloc[:50], at=10.0)
    assert np.all(later <= alive + 1e-12)
    frame = model.probability_alive(interval=0.8)
    assert (frame["mean_lower"] <= frame["mean_upper"]).all()
    expected = model.expected_purchases(10.0)
    simulated = model.simulate_purchases(10.0, seed=1)
    assert simulated.shape == (20, len(rfm)) and simulated.attrs["uncertainty"].startswith("predictive")
    # both are means over the same draws of simulated futures: close in total
    assert simulated.to_numpy().mean(axis=0).sum() == pytest.approx(expected.sum(), rel=0.15)
    assert model.expected_purchases(10.0).equals(expected)          # seeded: repeatable


def test_same_seed_same_draws(small_fit):
    model, rfm = small_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        again = ParetoGGGModel(chains=2, tune=30, draws=40, latent_draws=20, seed=8).fit(rfm)
    assert all(np.array_equal(again.posterior_draws_[k], model.posterior_draws_[k]) for k in model.param_names)


def test_fit_shows_a_bar_of_the_sweeps_when_asked(small_fit, capsys):
    """The chains run in pieces of sweeps (here three) with a progress bar between them: shown when
    asked (off a terminal, as here, none by default); the bar does not change the draws."""
    model, rfm = small_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        shown = ParetoGGGModel(chains=2, tune=30, draws=40, latent_draws=20, seed=8, progressbar=True).fit(rfm)
        assert "Pareto/GGG MCMC" in capsys.readouterr().err
        ParetoGGGModel(chains=2, tune=5, draws=5, latent_draws=2, seed=8).fit(rfm)
        assert "Pareto/GGG MCMC" not in capsys.readouterr().err
    assert all(np.array_equal(shown.posterior_draws_[k], model.posterior_draws_[k]) for k in model.param_names)


def test_save_and_load_keep_the_latent_draws(small_fit, tmp_path):
    model, rfm = small_fit
    model.save(tmp_path / "pggg")
    loaded = clv.load_model(tmp_path / "pggg")
    pd.testing.assert_series_equal(loaded.probability_alive(rfm), model.probability_alive())
    pd.testing.assert_series_equal(loaded.expected_purchases(5.0, rfm), model.expected_purchases(5.0))


def test_refusals(small_fit):
    model, rfm = small_fit
    with pytest.raises(ValueError, match="MCMC only.*ModifiedBetaGeoCNBDModel"):
        ParetoGGGModel().fit(rfm, method="mle")
    with pytest.raises(ValueError, match="NUTS"):
        ParetoGGGModel(method="nuts").fit(rfm)
    with pytest.raises(ClvDataError, match="litt"):
        ParetoGGGModel().fit(rfm.drop(columns="litt"))
    with pytest.raises(ClvDataError, match="weights"):
        ParetoGGGModel().fit(rfm, weights=np.ones(len(rfm)))
    with pytest.raises(ClvDataError, match="fitted on.*2 of the 3"):
        model.probability_alive(pd.concat([rfm.iloc[:1], rfm.iloc[:2].set_axis([-1, -2])]))
    with pytest.raises(ClvDataError, match="'T' differs"):
        model.expected_purchases(5.0, rfm.assign(T=rfm["T"] + 1))
    with pytest.raises(ClvDataError, match="simulate_purchases"):
        model.expected_purchases(5.0, interval=0.9)
    with pytest.raises(ModelKindError, match="new_customer"):
        model.expected_purchases_new_customer(5.0)
    with pytest.raises(ModelKindError, match="latent draws"):
        pareto_ggg.probability_alive(model.parameter_draws(), rfm["frequency"], rfm["recency"], rfm["T"])


# ---------------------------------------------------------------------------- slow: recovery and limits
@pytest.fixture(scope="module")
def regular_fit():
    """3,000 regular buyers (mean k = 4), fitted on the first 52 weeks, 26 weeks of holdout."""
    truth_params = {"r": 1.2, "alpha": 12.0, "s": 0.9, "beta": 15.0, "t": 6.0, "gamma": 1.5}
    log = clv.simulate_pareto_ggg(3000, **truth_params, observation_length=78.0, seed=11)
    cal = clv.calibration_holdout(log, calibration_end="2024-12-29", observation_end=log.attrs["observation_end"],
                                  litt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ParetoGGGModel(chains=2, tune=500, draws=1000, seed=12).fit(cal)
    return model, cal, truth_params


@pytest.mark.slow
def test_recovers_the_population_parameters(regular_fit):
    model, _, truth = regular_fit
    summary = model.summary()
    for name, value in truth.items():
        mean, sd = summary.loc[name, "mean"], summary.loc[name, "sd"]
        assert abs(mean - value) < 3 * sd, (name, mean, sd, value)
    mean_k = model.posterior_draws_["t"] / model.posterior_draws_["gamma"]
    assert abs(mean_k.mean() - 4.0) < 0.5


@pytest.mark.slow
def test_holdout_purchases_agree_with_the_simulation(regular_fit):
    """The predicted holdout total of the same customers against what the simulated process did
    (within 5%: Monte Carlo of 400 futures per customer, and the posterior's own uncertainty)."""
    model, cal, _ = regular_fit
    t = float(cal["duration_holdout"].iloc[0])
    predicted = model.expected_purchases(t, cal)
    actual = cal["frequency_holdout"]
    assert predicted.sum() == pytest.approx(actual.sum(), rel=0.05)
    assert np.corrcoef(predicted, actual)[0, 1] > 0.6


@pytest.mark.slow
def test_pareto_nbd_limit():
    """Exponential inter-purchase times (``k_i`` about 1: ``t = γ = 400``): P(alive) and expected
    purchases of Pareto/GGG within 0.04 (mean absolute difference) and 5% (total) of Pareto/NBD's MLE."""
    log = clv.simulate_pareto_ggg(2000, r=0.8, alpha=8.0, s=0.7, beta=10.0, t=400.0, gamma=400.0, seed=13)
    rfm = clv.rfm_summary(log, litt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ParetoGGGModel(chains=2, tune=500, draws=1000, seed=14).fit(rfm)
    pnbd = clv.ParetoNBDModel().fit(rfm)
    assert abs(np.mean(model.posterior_draws_["t"] / model.posterior_draws_["gamma"]) - 1.0) < 0.15
    assert np.mean(np.abs(model.probability_alive() - pnbd.probability_alive())) < 0.04
    assert model.expected_purchases(26.0).sum() == pytest.approx(pnbd.expected_purchases(26.0).sum(), rel=0.05)


def test_backtest_scores_its_holdout_purchases():
    """Fitted on each cutoff's calibration customers, Pareto/GGG predicts their holdout; with a spend
    model its value is scored and its discounted value (which needs population-level formulas) is
    reported as missing rather than failing the backtest."""
    log = clv.simulate_pareto_ggg(300, seed=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clv.backtest(log, {"Pareto/GGG": ParetoGGGModel(chains=2, tune=30, draws=40, latent_draws=20, seed=1)},
                              calibration_end="2024-12-29", spend_model=clv.GammaGammaModel(exclude_invalid=True),
                              baselines={})
    totals = result.totals.set_index("target")
    assert set(totals.index) == {"purchases", "value"} and (totals["predicted"] > 0).all()
    assert result.warnings["message"].str.contains("No discounted value").any()
