"""The model protocol is the only contract: a model defined here, outside the package, gets every
fit, prediction, predictive distribution, CLV, backtest and report without any change to clvmodels.

The model is the NBD (Ehrenberg 1959; Morrison & Schmittlein 1988): customers never drop out and
buy as a Poisson process of rate ``λ ~ Gamma(r, rate α)``. Its formulas are a few lines each, and
its maximum-likelihood estimate is checked against a direct numpy/scipy maximisation of the same
likelihood, written independently below.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize, special, stats

import clvmodels as clv
from clvmodels import predictive as P
from clvmodels.models.purchase import ContinuousPurchaseModel, PurchaseModel, period_boundaries, split_over_periods


def _nb(params, frequency, T, t):
    """Posterior of λ after x purchases in T: Gamma(r+x, α+T); Y(t) ~ NB(r+x, (α+T)/(α+T+t))."""
    shape = params["r"] + frequency
    rate = params["alpha"] + T
    return shape, rate, rate / (rate + t)


def _log_likelihood(params, data, xp):
    """Written once against the namespace ``xp`` (numpy, dual numbers for the MLE, PyTensor for the
    Bayesian fits: see clvmodels.models.namespaces)."""
    r, alpha = params["r"], params["alpha"]
    x, T = data["frequency"], data["T"]
    return xp.gammaln(r + x) - xp.gammaln(r) + r * xp.log(alpha) - (r + x) * xp.log(alpha + T)


def _alive(params, frequency, recency, T):
    return np.ones(np.broadcast_shapes(np.shape(params["r"]), np.shape(frequency)))


def _future(params, frequency, T, *, t):
    shape, rate, _ = _nb(params, frequency, T, t)
    return shape / rate * t


def _expected(params, frequency, recency, T, *, t):
    return _alive(params, frequency, recency, T) * _future(params, frequency, T, t=t)


def _pmf(params, frequency, recency, T, *, t, n_max):
    shape, _, p = _nb(params, frequency, T, t)
    k = np.arange(n_max, dtype=float)
    body = stats.nbinom.pmf(k, shape[..., None], p[..., None])
    tail = stats.nbinom.sf(n_max - 1, shape, p)[..., None]
    return np.concatenate([body, tail], axis=-1)


def _p_n(params, frequency, recency, T, *, t, n):
    shape, _, p = _nb(params, frequency, T, t)
    return stats.nbinom.pmf(n, shape, p)


def _simulate(params, frequency, recency, T, *, t, rng):
    """Y(t), or with period boundaries the counts per period: a Poisson process's events by t_H
    fall in the periods multinomially (the protocol's helpers do the split)."""
    bounds, scalar = period_boundaries(t)
    shape, rate, _ = np.broadcast_arrays(*_nb(params, frequency, T, bounds[-1]))
    n = rng.poisson(rng.gamma(shape, 1.0 / rate) * bounds[-1])
    if scalar:
        return n
    return split_over_periods(n.ravel(), np.diff(bounds, prepend=0.0), rng).reshape(n.shape + (len(bounds),))


def _new(params, *, t):
    return params["r"] / params["alpha"] * t


class NBDModel(ContinuousPurchaseModel):
    """NBD: Poisson purchases with gamma-distributed rates and no drop-out."""

    display_name = "NBD"
    param_names = ("r", "alpha")
    default_priors = {"r": ("HalfNormal", {"sigma": 5.0}), "alpha": ("HalfNormal", {"sigma": 5.0}, {"sigma": "T"})}
    log_likelihood = staticmethod(_log_likelihood)
    probability_alive_formula = staticmethod(_alive)
    future_purchases_formula = staticmethod(_future)
    expected_purchases_formula = staticmethod(_expected)
    purchase_pmf_formula = staticmethod(_pmf)
    probability_of_n_purchases_formula = staticmethod(_p_n)
    simulate_purchases_formula = staticmethod(_simulate)
    new_customer_formula = staticmethod(_new)


@pytest.fixture(scope="module")
def rfm(cdnow_sample_log):
    return clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="W", truncate=True)


@pytest.fixture(scope="module")
def nbd(rfm):
    return NBDModel().fit(rfm)


def _independent_mle(rfm):
    x, T = rfm["frequency"].to_numpy(float), rfm["T"].to_numpy(float)

    def nll(theta):
        r, alpha = np.exp(theta)
        return -np.sum(special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T))

    res = optimize.minimize(nll, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10,
                                                                               "maxiter": 5000})
    return np.exp(res.x), -res.fun


def test_a_model_missing_a_formula_of_its_kind_cannot_be_made():
    class Incomplete(PurchaseModel):
        param_names = ("r",)
        data_columns = ("frequency", "recency", "T")
        log_likelihood = staticmethod(_log_likelihood)
        probability_alive_formula = staticmethod(_alive)

    with pytest.raises(TypeError, match="future_purchases_formula"):
        Incomplete()


def test_a_missing_optional_formula_is_a_clear_error(rfm):
    class NoPmf(NBDModel):
        purchase_pmf_formula = None

    model = NoPmf().fit(rfm)
    with pytest.raises(clv.ModelKindError, match="purchase_pmf formula, which NoPmf does not provide"):
        P.predictive_purchases(model, 10, rfm)
    with pytest.raises(clv.ModelKindError, match="is not a purchase model"):
        P.predictive_purchases(clv.GammaGammaModel(), 10, rfm)


def test_mle_equals_an_independent_maximisation(nbd, rfm):
    (r, alpha), ll = _independent_mle(rfm)
    assert nbd.converged_
    np.testing.assert_allclose([nbd.params_["r"], nbd.params_["alpha"]], [r, alpha], rtol=1e-5)
    np.testing.assert_allclose(nbd.log_likelihood_, ll, rtol=1e-9)
    assert nbd.summary().loc["r", "se"] > 0


def test_predictions_and_intervals(nbd, rfm):
    r, alpha = nbd.params_["r"], nbd.params_["alpha"]
    expected = nbd.expected_purchases(10, rfm)
    np.testing.assert_allclose(expected, (r + rfm["frequency"]) / (alpha + rfm["T"]) * 10, rtol=1e-12)
    np.testing.assert_allclose(nbd.probability_alive(rfm), 1.0)
    assert nbd.expected_purchases_new_customer(52) == pytest.approx(r / alpha * 52, rel=1e-12)
    band = nbd.expected_purchases(10, rfm, interval=0.9, n_draws=200, seed=1)
    assert list(band.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert (band["mean_lower"] < expected).all() and (expected < band["mean_upper"]).all()
    p0 = nbd.probability_of_n_purchases(10, 0, rfm)
    np.testing.assert_allclose(p0, P.purchase_pmf(nbd, 10, 3, rfm)[:, 0], rtol=1e-12)


def test_predictive_distribution_and_pit(nbd, rfm, cdnow_sample_log):
    pmf = P.purchase_pmf(nbd, 39, 8, rfm, n_draws=50, seed=0)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-12)
    counts = P.predictive_purchases(nbd, 39, rfm)
    np.testing.assert_allclose(counts["mean"], nbd.expected_purchases(39, rfm), rtol=1e-12)
    ch = clv.calibration_holdout(cdnow_sample_log, "1997-09-30", "1998-06-30", "W", truncate=True)
    model = NBDModel().fit(ch)
    u = P.randomized_pit(model, 39, ch["frequency_holdout"], seed=0)
    assert u.shape == (len(ch),) and ((0 <= u) & (u <= 1)).all()
    # the NBD never lets a customer go: it over-predicts CDNOW's holdout, so PITs pile up low
    assert np.mean(u) < 0.45


def test_clv_with_a_spend_model(nbd, rfm):
    spend = clv.GammaGammaModel(exclude_invalid=True).fit(rfm)
    value = clv.clv(nbd, spend, rfm, horizon=12, period="M", discount_rate=0.01)
    # no drop-out: the discounted purchases are linear in time, E[Y(iΔ)] − E[Y((i−1)Δ)] = (r+x)/(α+T) Δ
    delta = (365.25 / 12) / 7
    rate = (nbd.params_["r"] + rfm["frequency"]) / (nbd.params_["alpha"] + rfm["T"])
    discount = sum(1.01 ** -i for i in range(1, 13))
    np.testing.assert_allclose(value, rate * delta * discount * spend.expected_spend(rfm), rtol=1e-10)


@pytest.mark.slow
def test_bayesian_fits(rfm):
    map_fit = NBDModel().fit(rfm, method="map")
    assert map_fit.params_["r"] == pytest.approx(NBDModel().fit(rfm).params_["r"], rel=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nuts = NBDModel(draws=200, tune=200, chains=2, seed=3, progressbar=False).fit(rfm, method="nuts")
        advi = NBDModel(seed=3, progressbar=False).fit(rfm, method="advi")
    mle = NBDModel().fit(rfm).params_
    for fit in (nuts, advi):
        np.testing.assert_allclose(fit.params_[["r", "alpha"]], mle[["r", "alpha"]], rtol=0.15)
    assert nuts.posterior_draws_["r"].shape == (400,)
    band = nuts.expected_purchases(39, rfm, interval=0.9)
    assert (band["mean_lower"] <= band["mean_upper"]).all()


@pytest.mark.slow
def test_backtest_and_report(cdnow_sample_log, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clv.backtest(cdnow_sample_log, [NBDModel(), clv.BetaGeoModel()], calibration_end="1997-09-30",
                              t=39, baselines={}, n_draws=50, n_samples=100, seed=0)
    table = result.table("purchases")
    assert list(table.index) == ["NBD", "BG/NBD"]
    assert table.loc["NBD", "mae"] > 0 and np.isfinite(table.loc["NBD", "crps"])
    # no drop-out: the NBD predicts more holdout purchases than BG/NBD, and than were made
    totals = result.totals.set_index(["model", "target"])
    assert totals.loc[("NBD", "purchases"), "predicted"] > totals.loc[("BG/NBD", "purchases"), "predicted"]
    path = clv.compare_report(result, tmp_path / "nbd.html")
    text = path.read_text()
    assert "NBD" in text and "<img" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = clv.clv_report(result, cdnow_sample_log, tmp_path / "nbd_clv.html", model="NBD", n_samples=100)
    assert report.model == "NBD" and report.total["mean"].iloc[0] > 0 and "Customer lifetime value report" in report.html


def test_a_table_in_another_time_unit_is_refused_everywhere(nbd, cdnow_sample_log):
    """A summary in days scored by a model fitted in weeks would be 7x off: every prediction of a
    purchase model refuses it, naming both units (issue #12)."""
    days = clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="D", truncate=True)
    spend = clv.GammaGammaModel(exclude_invalid=True).fit(days)
    for call in (lambda: nbd.expected_purchases(10, days), lambda: nbd.probability_alive(days),
                 lambda: P.predictive_purchases(nbd, 10, days), lambda: P.purchase_pmf(nbd, 10, 3, days),
                 lambda: clv.clv(nbd, spend, days)):
        with pytest.raises(clv.ClvDataError, match=r"Time unit mismatch.*'D'.*'W'"):
            call()


def test_random_seed_is_the_deprecated_name_of_seed(rfm):
    with pytest.warns(DeprecationWarning, match=r"NBDModel\(random_seed=...\) is deprecated: use seed="):
        old = NBDModel(random_seed=1).fit(rfm, method="map")
    np.testing.assert_array_equal(old.params_, NBDModel(seed=1).fit(rfm, method="map").params_)
