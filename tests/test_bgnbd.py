"""BG/NBD (Fader, Hardie & Lee 2005): published fit, agreement with lifetimes, point values,
probability of n purchases, weights, recovery on simulated data, numerical stability, model contract.

Published numbers: ``/work/shared/reference/models.md`` (FHL 2005 on the CDNOW 1/10 sample:
r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9,582.4; point values from lifetimes' test suite).
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
from clvmodels import BetaGeoModel, ClvDataError, ConvergenceWarning, NotFittedError
from clvmodels.datasets import cdnow_summary, load_cdnow, simulate
from clvmodels.models import bgnbd

PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4
NAMES = ("r", "alpha", "a", "b")


@pytest.fixture(autouse=True)
def _mpmath_precision():
    """50 significant digits for the mpmath references, for this module's tests only."""
    with mp.workdps(50):
        yield


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary()


@pytest.fixture(scope="module")
def fitted(rfm):
    return BetaGeoModel().fit(rfm)


@pytest.fixture(scope="module")
def lifetimes_fitter(fitted):
    from lifetimes import BetaGeoFitter

    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series({k: float(fitted.params_[k]) for k in NAMES})
    return bgf


def draw(params: dict) -> dict:
    """One parameter draw in the (n_draws, 1) layout of the prediction formulas."""
    return {k: np.array([[float(v)]]) for k, v in params.items()}


@pytest.fixture(scope="module")
def ll_fn():
    """The PyTensor log-likelihood expression, compiled once."""
    import pytensor
    import pytensor.tensor as pt

    params = {k: pt.dscalar(k) for k in NAMES}
    data = {k: pt.dvector(k) for k in ("frequency", "recency", "T")}
    return pytensor.function([*params.values(), *data.values()], bgnbd.log_likelihood(params, data))


# ---------------------------------------------------------------------------- mpmath references
def mp_expected_new(r, alpha, a, b, t):
    """FHL 2005 eq. (9) as printed, at 50 digits (a = 1 and a + b = 1 are removable singularities:
    step off them by 1e-30)."""
    r, alpha, a, b, t = (mp.mpf(float(v)) for v in (r, alpha, a, b, t))
    if a == 1:
        a += mp.mpf(10) ** -30
    if a + b == 1:
        b += mp.mpf(10) ** -30
    c = a + b - 1
    return c / (a - 1) * (1 - (alpha / (alpha + t)) ** r * mp.hyp2f1(r, b, c, t / (alpha + t)))


def mp_probability_alive(r, alpha, a, b, x, tx, T):
    r, alpha, a, b, x, tx, T = (mp.mpf(float(v)) for v in (r, alpha, a, b, x, tx, T))
    if x == 0:
        return mp.mpf(1)
    return 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + tx)) ** (r + x))


def mp_expected_purchases(r, alpha, a, b, x, tx, T, t):
    """FHL 2005 eq. (10) as printed (no Euler transformation), at 50 digits."""
    r, alpha, a, b, x, tx, T, t = (mp.mpf(float(v)) for v in (r, alpha, a, b, x, tx, T, t))
    c = a + b + x - 1
    z = t / (alpha + T + t)
    num = c / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * mp.hyp2f1(r + x, b + x, c, z))
    return num * mp_probability_alive(r, alpha, a, b, x, tx, T)


def mp_log_likelihood(r, alpha, a, b, x, tx, T):
    """FHL 2005 eq. (6) at 50 digits."""
    r, alpha, a, b, x, tx, T = (mp.mpf(float(v)) for v in (r, alpha, a, b, x, tx, T))
    lead = mp.loggamma(r + x) - mp.loggamma(r) + r * mp.log(alpha) + mp.log(mp.beta(a, b + x) / mp.beta(a, b))
    bracket = (alpha + T) ** -(r + x)
    if x > 0:
        bracket += a / (b + x - 1) * (alpha + tx) ** -(r + x)
    return lead + mp.log(bracket)


def mp_probability_new(r, alpha, a, b, t, n):
    """FHL 2005 eq. (8) as printed (explicit sum over j < n), at 50 digits."""
    r, alpha, a, b, t = (mp.mpf(float(v)) for v in (r, alpha, a, b, t))

    def nb(j):
        return mp.gamma(r + j) / (mp.gamma(r) * mp.factorial(j)) * (alpha / (alpha + t)) ** r * (t / (alpha + t)) ** j

    out = mp.beta(a, b + n) / mp.beta(a, b) * nb(n)
    if n > 0:
        out += mp.beta(a + 1, b + n - 1) / mp.beta(a, b) * (1 - mp.fsum(nb(j) for j in range(n)))
    return out


# ---------------------------------------------------------------------------- published fit
def test_reproduces_published_fit_on_cdnow_summary(fitted):
    for k, v in PUBLISHED.items():
        assert fitted.params_[k] == pytest.approx(v, rel=0.005), k
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.5)
    assert fitted.converged_
    assert fitted.n_customers_ == 2357


def test_reproduces_published_fit_from_our_rfm_of_the_cdnow_log():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CDNOW has 21 duplicate records
        log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
    rfm = clv.rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
    assert len(rfm) == 2357
    model = BetaGeoModel().fit(rfm)
    for k, v in PUBLISHED.items():
        assert model.params_[k] == pytest.approx(v, rel=0.005), k
    assert model.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.5)
    assert model.time_unit_ == "W"


def test_standard_errors_match_lifetimes(rfm, fitted):
    """lifetimes' standard errors come from the autograd Hessian at its optimum: same definition."""
    from lifetimes import BetaGeoFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = BetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])
    table = fitted.summary()
    for k in NAMES:
        assert fitted.params_[k] == pytest.approx(bgf.params_[k], rel=1e-4)
        assert table.loc[k, "se"] == pytest.approx(bgf.standard_errors_[k], rel=2e-3), k


def test_penalized_fit_optimises_lifetimes_penalized_objective(rfm):
    """penalizer = lifetimes' penalizer_coef: the same objective (mean negative log-likelihood plus
    penalizer x sum of squared parameters); our optimum is at least as good as lifetimes' (whose
    optimiser stops early here: 5.879 against our 4.215)."""
    from lifetimes import BetaGeoFitter

    from clvmodels.models.rows import compress
    from clvmodels.models.mle import mle_objective, objective_inputs

    x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))

    def theirs_objective(params):
        return BetaGeoFitter._negative_log_likelihood(np.log(params), x, tx, T, np.ones(len(x)), 0.1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = BetaGeoFitter(penalizer_coef=0.1).fit(rfm["frequency"], rfm["recency"], rfm["T"])
    model = BetaGeoModel(penalizer=0.1).fit(rfm)
    assert model.converged_
    data, w = compress({"frequency": x, "recency": tx, "T": T})
    f = mle_objective(BetaGeoModel, tuple(data))
    inputs = objective_inputs(BetaGeoModel, data, w) + [w.sum(), 0.1]
    for params in (bgf.params_[list(NAMES)].to_numpy(), model.params_[list(NAMES)].to_numpy()):
        assert float(f(np.log(params), *inputs)[0]) == pytest.approx(theirs_objective(params), rel=1e-12)
    assert theirs_objective(model.params_[list(NAMES)].to_numpy()) <= theirs_objective(bgf.params_[list(NAMES)].to_numpy())
    # the reported log-likelihood is the unpenalized one, below the unpenalized maximum
    assert model.log_likelihood_ < PUBLISHED_LL


# ---------------------------------------------------------------------------- agreement with lifetimes
def test_predictions_equal_lifetimes_on_all_customers(rfm, fitted, lifetimes_fitter):
    x, tx, T = (rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    ours = fitted.expected_purchases(39)
    theirs = lifetimes_fitter.conditional_expected_number_of_purchases_up_to_time(39, x, tx, T)
    assert list(ours.index) == list(rfm.index)
    np.testing.assert_allclose(ours.to_numpy(), theirs, rtol=1e-9, atol=0)
    alive = fitted.probability_alive()
    np.testing.assert_allclose(alive.to_numpy(), lifetimes_fitter.conditional_probability_alive(x, tx, T),
                               rtol=1e-9, atol=0)
    for t in (1.0, 10.0, 52.0, 104.0):
        assert fitted.expected_purchases_new_customer(t) == pytest.approx(
            float(lifetimes_fitter.expected_number_of_purchases_up_to_time(t)), rel=1e-9)


def test_probability_of_n_purchases_equals_lifetimes_for_a_new_customer(fitted, lifetimes_fitter):
    p = fitted.params_
    for t in (1.0, 10.0, 39.0, 78.0):
        ns = np.arange(0, 25)
        ours = bgnbd.probability_new(p["r"], p["alpha"], p["a"], p["b"], t, ns)
        theirs = [lifetimes_fitter.probability_of_n_purchases_up_to_time(t, int(n)) for n in ns]
        # lifetimes forms the tail as 1 − Σ_{j<n}: absolute error ~1e-16, so compare absolutely...
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-13)
        # ...and against 50-digit mpmath relatively, down to the smallest probabilities
        for n in (0, 1, 3, 10, 24):
            ref = mp_probability_new(p["r"], p["alpha"], p["a"], p["b"], t, n)
            assert ours[n] == pytest.approx(float(ref), rel=1e-9), (t, n)
        assert ours.sum() <= 1.0 + 1e-12


def test_conditional_pmf_sums_to_one_and_its_mean_is_the_expectation(rfm, fitted):
    x, tx, T = (rfm[c].to_numpy() for c in ("frequency", "recency", "T"))
    params = draw(fitted.params_)
    ns = np.arange(0, 400).reshape(-1, 1)  # the largest expectation here is ~25 purchases
    pmf = bgnbd.probability_of_n_purchases(params, x, tx, T, t=39.0, n=ns)
    assert pmf.shape == (400, len(rfm))
    assert np.all(pmf >= 0)
    np.testing.assert_allclose(pmf.sum(axis=0), 1.0, rtol=0, atol=1e-10)
    mean = (ns * pmf).sum(axis=0)
    np.testing.assert_allclose(mean, fitted.expected_purchases(39).to_numpy(), rtol=1e-8)
    # the estimator method gives the same column
    two = fitted.probability_of_n_purchases(39, 2)
    np.testing.assert_allclose(two.to_numpy(), pmf[2], rtol=1e-12)
    assert two.name == "p_2_purchases"


@pytest.mark.slow
def test_probability_new_is_stable_and_memory_bounded_for_huge_n():
    """The NB tail is I_q(n, r) (betainc), not 1 − Σ_{j<n}: no (n x customers) array, no cancellation."""
    args = (50.0, 0.5, 0.8, 20.0, 100.0)  # E[X(t)] is large: mass far out
    for n in (0, 1, 5, 500, 2000, 10_000):
        ours = float(bgnbd.probability_new(*args, n))
        assert ours == pytest.approx(float(mp_probability_new(*args, n)), rel=1e-9, abs=1e-300), n
    # a million customers asking for P(X = 200000): values, not a MemoryError
    n = np.full(1_000_000, 200_000.0)
    out = bgnbd.probability_new(0.5, 1.0, 0.8, 2.4, 1e6, n)
    assert out.shape == (1_000_000,) and np.all(np.isfinite(out)) and np.all(out >= 0)


# ---------------------------------------------------------------------------- published point values
def test_published_point_values():
    params = draw(PUBLISHED)
    value = bgnbd.expected_purchases(params, np.array([2.0]), np.array([30.43]), np.array([38.86]), t=39.0)
    assert value.item() == pytest.approx(1.226, abs=5e-4)
    new = bgnbd.expected_new(PUBLISHED["r"], PUBLISHED["alpha"], PUBLISHED["a"], PUBLISHED["b"], np.array([1.0, 78.0]))
    assert new[0] == pytest.approx(0.0533, abs=5e-5)
    assert new[1] == pytest.approx(1.86, abs=5e-3)


def test_new_customer_method_accepts_scalars_and_grids(fitted):
    single = fitted.expected_purchases_new_customer(39.0)
    assert isinstance(single, float)
    grid = fitted.expected_purchases_new_customer([0.0, 1.0, 39.0])
    assert grid.iloc[0] == 0.0 and grid.iloc[2] == pytest.approx(single)
    assert grid.is_monotonic_increasing


# ---------------------------------------------------------------------------- weights
def test_weighted_fit_on_unique_rows_equals_fit_on_all_rows(rfm, fitted, ll_fn):
    counts = rfm.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    assert len(counts) < len(rfm)
    weighted = BetaGeoModel().fit(counts, weights=counts["n"].to_numpy())
    for k in NAMES:
        assert weighted.params_[k] == pytest.approx(fitted.params_[k], rel=1e-7)
    assert weighted.log_likelihood_ == pytest.approx(fitted.log_likelihood_, abs=1e-6)
    assert weighted.n_customers_ == 2357 and weighted.n_unique_ == len(counts)
    # the likelihood summed over every customer row (no compression) is the reported maximum
    p = fitted.params_
    full = ll_fn(p["r"], p["alpha"], p["a"], p["b"], *(rfm[c].to_numpy(float) for c in ("frequency", "recency", "T")))
    assert full.sum() == pytest.approx(fitted.log_likelihood_, abs=1e-7)
    # duplicating every customer doubles the log-likelihood and leaves the estimate unchanged
    double = BetaGeoModel().fit(pd.concat([rfm, rfm]))
    for k in NAMES:
        assert double.params_[k] == pytest.approx(fitted.params_[k], rel=1e-7)
    assert double.log_likelihood_ == pytest.approx(2 * fitted.log_likelihood_, abs=1e-6)


def test_log_likelihood_matches_mpmath(rfm, fitted, ll_fn):
    p = fitted.params_
    rows = rfm.iloc[::97]
    ours = ll_fn(p["r"], p["alpha"], p["a"], p["b"], *(rows[c].to_numpy(float) for c in ("frequency", "recency", "T")))
    for value, (_, row) in zip(ours, rows.iterrows()):
        ref = mp_log_likelihood(p["r"], p["alpha"], p["a"], p["b"], row["frequency"], row["recency"], row["T"])
        assert value == pytest.approx(float(ref), rel=1e-12)


# ---------------------------------------------------------------------------- simulated data
def test_recovers_known_parameters_on_simulated_data():
    truth = {"r": 0.5, "alpha": 6.0, "a": 0.7, "b": 3.0}
    log = simulate(50_000, **truth, cohort_length=12.0, observation_length=78.0, seed=3)
    # hourly resolution: two purchases in the same hour (counted once) are vanishingly rare
    rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W", resolution="h")
    assert len(rfm) == 50_000
    model = BetaGeoModel().fit(rfm)
    se = model.summary()["se"]
    for k, v in truth.items():
        assert abs(model.params_[k] - v) < 3 * se[k], (k, model.params_[k], v, se[k])


# ---------------------------------------------------------------------------- numerical stability
PARAM = st.floats(1e-3, 1e3)
stability_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def histories(draw_):
    x = draw_(st.integers(0, 5000))
    T = draw_(st.floats(0.0, 5000.0))
    u = draw_(st.floats(0.0, 1.0))
    tx = 0.0 if x == 0 else u * T
    return float(x), tx, T


@stability_settings
@given(r=PARAM, alpha=st.floats(1e-3, 1e4), a=PARAM, b=PARAM, history=histories(),
       t1=st.floats(0.0, 5000.0), t2=st.floats(0.0, 5000.0))
def test_stable_for_extreme_histories_and_parameters(ll_fn, r, alpha, a, b, history, t1, t2):
    x, tx, T = history
    ll = ll_fn(r, alpha, a, b, np.array([x]), np.array([tx]), np.array([T]))
    assert np.all(np.isfinite(ll))
    params = draw({"r": r, "alpha": alpha, "a": a, "b": b})
    X, TX, TT = np.array([x]), np.array([tx]), np.array([T])
    alive = bgnbd.probability_alive(params, X, TX, TT)
    assert np.all(np.isfinite(alive)) and np.all((alive >= 0) & (alive <= 1))
    lo, hi = sorted((t1, t2))
    e_lo = bgnbd.expected_purchases(params, X, TX, TT, t=lo)
    e_hi = bgnbd.expected_purchases(params, X, TX, TT, t=hi)
    assert np.all(np.isfinite(e_lo)) and np.all(np.isfinite(e_hi))
    assert np.all(e_lo >= 0)
    assert np.all(e_hi >= e_lo * (1 - 1e-8))
    new = bgnbd.expected_new(r, alpha, a, b, np.array([lo, hi]))
    assert np.all(np.isfinite(new)) and new[0] >= 0 and new[1] >= new[0] * (1 - 1e-8)


# cases where lifetimes 0.11.3 returns NaN (scipy's hyp2f1 fails: large parameters of opposite
# sign in the transformed series near z = 1), with the customer most likely alive
LIFETIMES_NAN_CASES = [
    # r, alpha, a, b, x, t_x, T, t
    (82.08, 4.812, 24.07, 0.1634, 156, 3.943, 3.943, 79.38),
    (93.01, 0.5236, 20.48, 5.149, 162, 1.4, 1.404, 62.16),
    (96.14, 4.178, 29.39, 5.393, 198, 9.6, 9.608, 4685.0),
]


@pytest.mark.parametrize("case", LIFETIMES_NAN_CASES)
def test_finite_and_exact_where_lifetimes_returns_nan(case):
    from lifetimes import BetaGeoFitter

    r, alpha, a, b, x, tx, T, t = case
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series({"r": r, "alpha": alpha, "a": a, "b": b})
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = bgf.conditional_expected_number_of_purchases_up_to_time(t, np.array([x]), np.array([tx]), np.array([T]))
    assert not np.isfinite(theirs[0])
    ours = bgnbd.expected_purchases(draw({"r": r, "alpha": alpha, "a": a, "b": b}),
                                    np.array([float(x)]), np.array([tx]), np.array([T]), t=t)
    ref = mp_expected_purchases(r, alpha, a, b, x, tx, T, t)
    assert ours.item() == pytest.approx(float(ref), rel=1e-9)
    assert ours.item() > 1.0  # an alive, frequent buyer: not a silent 0 either


@pytest.mark.parametrize("params", [
    (99.54, 1.772, 3.880, 0.03857, 2757.0),
    (95.27, 0.1103, 0.05703, 0.5290, 2452.0),
    (99.03, 0.1116, 0.1665, 43.75, 1275.0),
])
def test_new_customer_finite_where_lifetimes_is_not(params):
    from lifetimes import BetaGeoFitter

    r, alpha, a, b, t = params
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series({"r": r, "alpha": alpha, "a": a, "b": b})
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not np.isfinite(bgf.expected_number_of_purchases_up_to_time(t))
    assert float(bgnbd.expected_new(r, alpha, a, b, t)) == pytest.approx(float(mp_expected_new(r, alpha, a, b, t)), rel=1e-8)


@pytest.mark.parametrize("x, tx, T, t", [
    (200, 150.0, 160.0, 39.0), (250, 300.0, 310.0, 52.0), (1000, 999.0, 1000.0, 1000.0),
    (5000, 4999.0, 5000.0, 5000.0), (3000, 100.0, 5000.0, 10.0), (0, 0.0, 5000.0, 5000.0),
    # z = t/(α+T+t) within 1e-5 of 1
    (5, 0.9, 1.0, 5000.0), (0, 0.0, 0.01, 5000.0), (40, 2.0, 2.0, 5000.0),
])
def test_large_frequency_and_long_histories_match_mpmath(x, tx, T, t):
    params = draw(PUBLISHED)
    X, TX, TT = np.array([float(x)]), np.array([tx]), np.array([T])
    ours = bgnbd.expected_purchases(params, X, TX, TT, t=t).item()
    ref = mp_expected_purchases(*PUBLISHED.values(), x, tx, T, t)
    assert ours == pytest.approx(float(ref), rel=1e-9, abs=1e-300)
    alive = bgnbd.probability_alive(params, X, TX, TT).item()
    assert alive == pytest.approx(float(mp_probability_alive(*PUBLISHED.values(), x, tx, T)), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("a, b", [
    (1.0, 2.0), (1.0 + 3e-6, 2.0), (1.0 - 9e-6, 0.5), (1.0, 0.001),  # the (a − 1) division
    (0.5, 0.5), (0.3, 0.7), (0.7, 0.3 + 1e-9), (0.2, 0.8 - 4e-6),     # the 2F1 pole at a + b = 1
])
def test_removable_singularities_of_expected_new(a, b):
    for r, alpha, t in [(0.5, 3.0, 10.0), (2.0, 0.5, 1000.0), (0.05, 20.0, 0.5)]:
        ours = float(bgnbd.expected_new(r, alpha, a, b, t))
        ref = float(mp_expected_new(r, alpha, a, b, t))
        assert ours == pytest.approx(ref, rel=1e-7), (r, alpha, a, b, t)


@pytest.mark.parametrize("r, alpha, a, b", [
    (0.243, 4.414, 0.793, 2.426), (0.001, 1.0, 1.0, 32.0), (50.0, 0.5, 20.0, 0.3), (0.02, 900.0, 30.0, 5.0),
])
def test_short_horizons_keep_full_precision(r, alpha, a, b):
    """For t << α the closed form's 1 − 2F1 cancels to nothing (it gave 0, or a relative error of
    1e-4 near a = 1); the power series in z keeps every digit, down to t = 1e-300."""
    ts = np.array([1e-300, 1e-100, 1e-12, 1e-6, 1e-3, 0.1, 1.0])
    ours = bgnbd.expected_new(r, alpha, a, b, ts)
    for value, t in zip(ours, ts):
        with mp.workdps(50):
            ref = float(mp_expected_new(r, alpha, a, b, t))
        assert value == pytest.approx(ref, rel=1e-9), t
    assert np.all(np.diff(ours) > 0)


def test_quadrature_fallback_matches_mpmath():
    """Parameters where scipy's hyp2f1 fails on both series (NaN/overflow): the quadrature."""
    for args in [(1.0, 0.5, 101.0, 0.5, 5.0), (1.0, 0.5, 1000.0, 0.5, 5.0), (238.08, 8.755, 24.07, 156.16, 79.38),
                 (1019.5, 0.0625, 0.5, 1021.0, 1.0), (5.0, 1.0, 0.2, 300.0, 50.0)]:
        ref = float(mp_expected_new(*args))
        assert bgnbd.expected_new(*args).item() == pytest.approx(ref, rel=1e-9), args
        assert bgnbd._expected_new_quadrature(*args) == pytest.approx(ref, rel=1e-9), args


def test_expected_new_broadcasts_over_draws_and_customers():
    r = np.array([[0.5], [0.6], [0.7]])
    out = bgnbd.expected_new(r, 3.0, np.array([[1.0], [0.8], [1.5]]), 2.0, np.array([1.0, 10.0, 100.0, 0.0]))
    assert out.shape == (3, 4)
    assert np.all(out[:, 3] == 0.0)
    for i in range(3):
        for j, t in enumerate([1.0, 10.0, 100.0]):
            assert out[i, j] == pytest.approx(float(mp_expected_new(r[i, 0], 3.0, [1.0, 0.8, 1.5][i], 2.0, t)), rel=1e-7)


def test_random_parameters_and_histories_match_mpmath():
    rng = np.random.default_rng(11)
    for _ in range(60):
        r, alpha, a, b = 10 ** rng.uniform(-2, 2), 10 ** rng.uniform(-1, 3), 10 ** rng.uniform(-1.5, 1.5), 10 ** rng.uniform(-1.5, 2)
        x = float(int(10 ** rng.uniform(0, 3.7)))
        T = 10 ** rng.uniform(0, 3.7)
        tx, t = T * rng.uniform(0.8, 1.0), 10 ** rng.uniform(-1, 3.7)
        ours = bgnbd.expected_purchases(draw(dict(r=r, alpha=alpha, a=a, b=b)), np.array([x]), np.array([tx]),
                                        np.array([T]), t=t).item()
        ref = float(mp_expected_purchases(r, alpha, a, b, x, tx, T, t))
        assert ours == pytest.approx(ref, rel=1e-7, abs=1e-290), (r, alpha, a, b, x, tx, T, t)


# ---------------------------------------------------------------------------- model contract
def test_estimator_contract(rfm):
    model = BetaGeoModel(penalizer=0.0)
    assert repr(model) == "BetaGeoModel(method='mle', unfitted)"
    assert not hasattr(model, "params_")
    assert model.get_params()["penalizer"] == 0.0
    assert model.set_params(penalizer=0.01) is model and model.penalizer == 0.01
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(nonsense=1)
    copy = clone(model)
    assert isinstance(copy, BetaGeoModel) and copy is not model and copy.get_params() == model.get_params()
    model.set_params(penalizer=0.0)
    assert model.fit(rfm) is model
    assert repr(model).startswith("BetaGeoModel(r=0.2426, alpha=4.414, a=0.7929, b=2.426; mle on 2,357 customers")
    assert not hasattr(clone(model), "params_")
    table = model.summary()
    assert list(table.index) == list(NAMES)
    assert list(table.columns) == ["estimate", "se", "lower_95%", "upper_95%"]
    assert np.all((table["lower_95%"] < table["estimate"]) & (table["estimate"] < table["upper_95%"]))
    assert np.all(table["se"] > 0)
    assert list(model.summary(0.9).columns)[2:] == ["lower_90%", "upper_90%"]
    ll = model.log_likelihood_
    assert model.aic_ == pytest.approx(2 * 4 - 2 * ll)
    assert model.bic_ == pytest.approx(4 * np.log(2357) - 2 * ll)
    assert table.attrs["aic"] == model.aic_ and table.attrs["converged"] is True
    assert "<b>BetaGeoModel" in model._repr_html_()


def test_not_fitted_errors():
    model = BetaGeoModel()
    for call in (lambda: model.expected_purchases(10), model.probability_alive, model.summary,
                 lambda: model.expected_purchases_new_customer(1.0), lambda: model.probability_of_n_purchases(1, 0)):
        with pytest.raises(NotFittedError, match="fit"):
            call()


@pytest.mark.parametrize("change, message", [
    (lambda d: d.assign(recency=d["T"] + 1.0), "Recency must lie in"),
    (lambda d: d.assign(frequency=d["frequency"].astype(float).where(d.index != 1, np.nan)), "Missing"),
    (lambda d: d.assign(frequency=d["frequency"].where(d.index != 2, -1)), "non-negative integers"),
    (lambda d: d.assign(frequency=d["frequency"] + 0.5), "non-negative integers"),
    (lambda d: d.assign(recency=d["recency"].where(d.index != 1, -2.0)), "Recency must lie in"),
    (lambda d: d.drop(columns="T"), "lacks column"),
    (lambda d: d.iloc[:0], "empty"),
    (lambda d: d.assign(T=d["T"].astype(object).where(d.index != 3, "soon")), "non-numeric"),
])
def test_bad_rfm_input_raises_clear_error(rfm, change, message):
    with pytest.raises(ClvDataError, match=message):
        BetaGeoModel().fit(change(rfm.copy()))


def test_bad_prediction_arguments(fitted):
    with pytest.raises(ClvDataError, match="non-negative"):
        fitted.expected_purchases(-1.0)
    with pytest.raises(ClvDataError, match="non-negative integer"):
        fitted.probability_of_n_purchases(10, 1.5)
    with pytest.raises(ClvDataError):
        fitted.fit(cdnow_summary(), weights=np.ones(3))


def test_nobody_repeats_warns_about_the_boundary():
    rng = np.random.default_rng(0)
    rfm = pd.DataFrame({"frequency": np.zeros(500), "recency": np.zeros(500), "T": rng.uniform(20, 40, 500)})
    with pytest.warns(ConvergenceWarning, match="boundary"):
        model = BetaGeoModel().fit(rfm)
    assert not model.converged_
    assert model.optimizer_["at_boundary"]
    assert np.all(np.isfinite(model.params_.to_numpy()))


def test_nobody_drops_out_warns_about_the_boundary():
    rng = np.random.default_rng(1)
    T = rng.uniform(20, 40, 500)
    rfm = pd.DataFrame({"frequency": rng.integers(5, 30, 500).astype(float), "recency": T, "T": T})
    with pytest.warns(ConvergenceWarning, match="boundary"):
        model = BetaGeoModel().fit(rfm)
    assert not model.converged_
    assert np.all(np.isfinite(model.params_.to_numpy()))


def test_predictions_for_new_rows_and_intervals(fitted):
    new = pd.DataFrame({"frequency": [0, 2, 10], "recency": [0.0, 30.43, 20.0], "T": [10.0, 38.86, 39.0]},
                       index=pd.Index(["a", "b", "c"], name="customer_id"))
    point = fitted.expected_purchases(39, new)
    assert list(point.index) == ["a", "b", "c"]
    assert point["b"] == pytest.approx(1.226, abs=5e-3)
    band = fitted.expected_purchases(39, new, interval=0.9, n_draws=300, seed=1)
    assert list(band.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert np.all((band["mean_lower"] <= point) & (point <= band["mean_upper"]))
    alive = fitted.probability_alive(new)
    assert alive["a"] == 1.0 and 0 < alive["c"] < alive["b"] < 1


def test_expected_new_at_huge_beta_shapes_is_accurate_and_quiet():
    """A fit at the drop-out boundary (a, b ~ 1e7: the drop-out probability ~fixed) made the series
    overflow in the elements it then rejected: the value stands, and no RuntimeWarning leaks."""
    r, alpha, a, b, t = 10.59, 79.39, 5292449.48, 28534658.19, 17.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        value = float(bgnbd.expected_new(r, alpha, a, b, t))
    mp.mp.dps = 40
    z = mp.mpf(t) / (alpha + t)
    exact = (a + b - 1) / mp.mpf(a - 1) * (1 - (1 - z) ** r * mp.hyp2f1(r, b, a + b - 1, z))
    assert value == pytest.approx(float(exact), rel=1e-9)
