"""MBG/NBD (Batislam, Denizel & Filiztekin 2007): published CDNOW fit (lifetimes' test suite,
agrees with BTYDplus), agreement with lifetimes' ``ModifiedBetaGeoFitter`` to 1e-6 relative on
every prediction, mpmath checks, pmf and simulation consistency, stability, model contract.

Published numbers: ``/work/shared/reference/models.md`` (r=0.525, alpha=6.183, a=0.891, b=1.614,
LL=-9,582.14 on the CDNOW 1/10 sample).
"""

from __future__ import annotations

import warnings

import mpmath as mp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

import clvmodels as clv
from clvmodels import ClvDataError, ModifiedBetaGeoModel, NotFittedError
from clvmodels.datasets import cdnow_summary
from clvmodels.models import mbgnbd

NAMES = ("r", "alpha", "a", "b")
PUBLISHED = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
PUBLISHED_LL = -9582.14


@pytest.fixture(autouse=True)
def _mpmath_precision():
    """50 significant digits for the mpmath references, for this module's tests only."""
    with mp.workdps(50):
        yield


def draw(params: dict) -> dict:
    return {k: np.array([[float(v)]]) for k, v in params.items()}


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary()


@pytest.fixture(scope="module")
def fitted(rfm):
    return ModifiedBetaGeoModel().fit(rfm)


@pytest.fixture(scope="module")
def lifetimes_fitter(fitted):
    from lifetimes import ModifiedBetaGeoFitter

    mbg = ModifiedBetaGeoFitter()
    mbg.params_ = pd.Series({k: float(fitted.params_[k]) for k in NAMES})
    return mbg


@pytest.fixture(scope="module")
def ll_fn():
    import pytensor
    import pytensor.tensor as pt

    params = {k: pt.dscalar(k) for k in NAMES}
    data = {k: pt.dvector(k) for k in ("frequency", "recency", "T")}
    return pytensor.function([*params.values(), *data.values()], mbgnbd.log_likelihood(params, data))


def mp_log_likelihood(r, alpha, a, b, x, tx, T):
    """Batislam et al. 2007, eq. 5, at 50 digits."""
    r, alpha, a, b, x, tx, T = (mp.mpf(float(v)) for v in (r, alpha, a, b, x, tx, T))
    lead = mp.loggamma(r + x) - mp.loggamma(r) + r * mp.log(alpha)
    return lead + mp.log(mp.beta(a, b + x + 1) / mp.beta(a, b) * (alpha + T) ** -(r + x)
                         + mp.beta(a + 1, b + x) / mp.beta(a, b) * (alpha + tx) ** -(r + x))


def mp_expected_purchases(r, alpha, a, b, x, tx, T, t):
    """Batislam et al. 2007, eq. 9 as printed, at 50 digits."""
    r, alpha, a, b, x, tx, T, t = (mp.mpf(float(v)) for v in (r, alpha, a, b, x, tx, T, t))
    num = (a + b + x) / (a - 1) * (1 - mp.hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + T + t))
                                   * ((alpha + T) / (alpha + T + t)) ** (r + x))
    return num / (1 + a / (b + x) * ((alpha + T) / (alpha + tx)) ** (r + x))


# ---------------------------------------------------------------------------- published fit
def test_reproduces_published_fit(fitted):
    for k, v in PUBLISHED.items():
        assert fitted.params_[k] == pytest.approx(v, abs=6e-4), k
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.01)
    assert fitted.converged_


def test_fit_equals_lifetimes_fit(rfm, fitted):
    from lifetimes import ModifiedBetaGeoFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ModifiedBetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])
    np.testing.assert_allclose(fitted.params_[list(NAMES)].to_numpy(), theirs.params_[list(NAMES)].to_numpy(),
                               rtol=2e-5)
    se = fitted.summary()["se"]
    np.testing.assert_allclose(se[list(NAMES)].to_numpy(), theirs.standard_errors_[list(NAMES)].to_numpy(), rtol=2e-3)


def test_log_likelihood_matches_mpmath(rfm, fitted, ll_fn):
    p = fitted.params_
    sample = rfm.iloc[::97]
    ours = ll_fn(*p[list(NAMES)], *(sample[c].to_numpy(float) for c in ("frequency", "recency", "T")))
    ref = [float(mp_log_likelihood(*p[list(NAMES)], *row)) for row in sample.to_numpy()]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


# ---------------------------------------------------------------------------- lifetimes agreement
def test_predictions_equal_lifetimes_on_all_customers(rfm, fitted, lifetimes_fitter):
    f, r_, T = rfm["frequency"], rfm["recency"], rfm["T"]
    np.testing.assert_allclose(fitted.probability_alive().to_numpy(),
                               lifetimes_fitter.conditional_probability_alive(f, r_, T), rtol=1e-6)
    for t in (1.0, 39.0, 78.0):
        theirs = lifetimes_fitter.conditional_expected_number_of_purchases_up_to_time(t, f, r_, T)
        np.testing.assert_allclose(fitted.expected_purchases(t).to_numpy(), theirs, rtol=1e-6)
    ts = np.array([1.0, 39.0, 78.0])
    np.testing.assert_allclose(fitted.expected_purchases_new_customer(ts).to_numpy(),
                               lifetimes_fitter.expected_number_of_purchases_up_to_time(ts), rtol=1e-6)


@pytest.mark.parametrize("t, n", [(39.0, 0), (39.0, 1), (39.0, 5), (78.0, 12), (1.0, 2)])
def test_probability_of_n_purchases_new_customer_equals_lifetimes(fitted, lifetimes_fitter, t, n):
    ours = mbgnbd.probability_of_n_purchases_new_customer(draw(fitted.params_), t=t, n=n)
    assert float(np.ravel(ours)[0]) == pytest.approx(lifetimes_fitter.probability_of_n_purchases_up_to_time(t, n),
                                                     rel=1e-6)


def test_new_customer_pmf_sums_to_one_with_the_right_mean(fitted):
    p = draw(fitted.params_)
    ns = np.arange(400.0)
    pmf = mbgnbd.probability_of_n_purchases_new_customer(p, t=39.0, n=ns)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)
    assert (ns * pmf).sum() == pytest.approx(float(np.ravel(mbgnbd.expected_purchases_new_customer(p, t=39.0))[0]),
                                             rel=1e-8)


def test_conditional_pmf_sums_to_one_and_its_mean_is_the_expectation(rfm, fitted):
    from clvmodels.predictive import purchase_pmf

    pmf = purchase_pmf(fitted, 39.0, 200, rfm.iloc[::50])
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-12)
    mean = (pmf[:, :-1] * np.arange(200)).sum(axis=1)
    np.testing.assert_allclose(mean, fitted.expected_purchases(39.0, rfm.iloc[::50]).to_numpy(), rtol=1e-6)


def test_conditional_pmf_columns_are_the_per_count_formula(rfm, fitted):
    """The recursive table (BG/NBD's alive law at b+x+1) equals eq. (6)'s per-count evaluation."""
    from clvmodels.predictive import purchase_pmf

    sample = rfm.iloc[::40]
    pmf = purchase_pmf(fitted, 52.0, 12, sample)
    for k in range(12):
        np.testing.assert_allclose(pmf[:, k], fitted.probability_of_n_purchases(52.0, k, sample).to_numpy(),
                                   rtol=1e-10, atol=1e-300)


def test_simulated_purchases_match_the_expectation(fitted):
    rng = np.random.default_rng(11)
    params = {k: np.full((50_000, 1), float(v)) for k, v in fitted.params_.items()}
    hist = np.array([[0, 0, 39.0], [5, 30.0, 39.0], [20, 38.0, 39.0]])
    counts = mbgnbd.simulate_purchases(params, *hist.T, t=39.0, rng=rng)
    expected = mbgnbd.expected_purchases(draw(fitted.params_), *hist.T, t=39.0)[0]
    se = counts.std(axis=0) / np.sqrt(len(counts))
    assert np.all(np.abs(counts.mean(axis=0) - expected) < 4 * se)


@pytest.mark.parametrize("x, tx, T, t", [(0, 0, 39, 39), (2, 30.43, 38.86, 39), (200, 50, 52, 52),
                                         (5000, 999, 1000, 1000), (1, 0.1, 5000, 10)])
def test_extreme_histories_match_mpmath(fitted, x, tx, T, t):
    p = fitted.params_
    ours = mbgnbd.expected_purchases(draw(p), np.array([x]), np.array([tx]), np.array([T]), t=t)
    assert float(np.ravel(ours)[0]) == pytest.approx(float(mp_expected_purchases(*p[list(NAMES)], x, tx, T, t)),
                                                     rel=1e-8)


# ---------------------------------------------------------------------------- stability
PARAM = st.floats(1e-3, 1e3)


@st.composite
def histories(draw_):
    x = draw_(st.integers(0, 5000))
    T = draw_(st.floats(0.0, 5000.0))
    u = draw_(st.floats(0.0, 1.0))
    return float(x), (0.0 if x == 0 else u * T), T


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=PARAM, alpha=st.floats(1e-3, 1e4), a=PARAM, b=PARAM, history=histories(),
       t1=st.floats(0.0, 5000.0), t2=st.floats(0.0, 5000.0))
def test_stable_for_extreme_histories_and_parameters(ll_fn, r, alpha, a, b, history, t1, t2):
    x, tx, T = history
    assert np.isfinite(ll_fn(r, alpha, a, b, np.array([x]), np.array([tx]), np.array([T]))).all()
    params = draw({"r": r, "alpha": alpha, "a": a, "b": b})
    X, TX, TT = np.array([x]), np.array([tx]), np.array([T])
    alive = mbgnbd.probability_alive(params, X, TX, TT)
    assert np.isfinite(alive).all() and np.all((alive >= 0) & (alive <= 1))
    lo, hi = sorted((t1, t2))
    e_lo = mbgnbd.expected_purchases(params, X, TX, TT, t=lo)
    e_hi = mbgnbd.expected_purchases(params, X, TX, TT, t=hi)
    assert np.isfinite(e_lo).all() and np.isfinite(e_hi).all()
    assert np.all(e_lo >= 0) and np.all(e_hi >= e_lo * (1 - 1e-8))


# ---------------------------------------------------------------------------- contract
def test_weighted_fit_equals_fit_on_all_rows(rfm, fitted):
    counts = rfm.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    weighted = ModifiedBetaGeoModel().fit(counts, weights=counts["n"])
    np.testing.assert_allclose(weighted.params_.to_numpy(), fitted.params_.to_numpy(), rtol=1e-6)


def test_zero_repeaters_can_be_dead_unlike_bgnbd(rfm, fitted):
    alive = fitted.probability_alive(pd.DataFrame({"frequency": [0], "recency": [0.0], "T": [39.0]}))
    assert 0 < float(alive.iloc[0]) < 1


def test_intervals_clv_and_contract(rfm, fitted):
    out = fitted.probability_alive(rfm.iloc[:30], interval=0.9, n_draws=200, seed=1)
    assert np.all((out["mean_lower"] <= out["mean_median"]) & (out["mean_median"] <= out["mean_upper"]))
    spend = cdnow_summary(with_spend=True)
    gg = clv.GammaGammaModel(exclude_invalid=True).fit(spend)
    value = clv.clv(fitted, gg, spend.iloc[:20], horizon=6, period_length=4.345)
    assert np.isfinite(value).all() and (value >= 0).all()
    model = ModifiedBetaGeoModel(penalizer=0.1)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.expected_purchases(10.0, rfm)
    with pytest.raises(ClvDataError):
        fitted.probability_of_n_purchases(10.0, -1)
    bad = rfm.head(5).assign(frequency=1.5)
    with pytest.raises(ClvDataError, match="frequency"):
        ModifiedBetaGeoModel().fit(bad)


# ---------------------------------------------------------------------------- Bayesian fit
@pytest.mark.slow
def test_short_nuts_agrees_with_the_mle(rfm, fitted):
    from clvmodels import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ModifiedBetaGeoModel(seed=2, progressbar=False).fit(rfm, method="nuts", draws=300, tune=300,
                                                                          chains=2)
    assert model.diagnostics_["divergences"] == 0 and max(model.diagnostics_["r_hat"].values()) < 1.05
    for k in NAMES:
        sd = model.posterior_draws_[k].std()
        assert abs(model.params_[k] - fitted.params_[k]) < 3 * sd, k
    out = model.expected_purchases(39.0, rfm.iloc[:20], interval=0.9)
    assert np.all((out["mean_lower"] <= out["mean"]) & (out["mean"] <= out["mean_upper"]))


def test_save_and_load_round_trip(tmp_path, rfm, fitted):
    from clvmodels.models.persistence import load_model, save_model

    save_model(fitted, tmp_path / "mbg")
    loaded = load_model(tmp_path / "mbg")
    assert type(loaded) is ModifiedBetaGeoModel
    pd.testing.assert_series_equal(loaded.probability_alive(rfm), fitted.probability_alive(rfm))
