"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): published CDNOW fit and standard errors, point
values, agreement with 50-digit mpmath evaluations of the closed form (likelihood, gradient,
P(alive), expectations, pmf) across extreme histories and alpha <, =, > beta, lifetimes where it is
finite, stability (hypothesis), predictive distribution, simulation recovery, model contract.

Published numbers: ``/work/shared/reference/models.md`` (FHL 2005 / Fader & Hardie 2005 note on
the CDNOW 1/10 sample: r=0.55, alpha=10.58, s=0.61, beta=11.67, LL=-9,595.0; standard errors of
CLVTools' tests 0.048, 0.843, 0.187, 6.21; conditional expectations 6.207, 6.254, 25.46).
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
from clvmodels import ClvDataError, NotFittedError, ParetoNBDModel
from clvmodels.datasets import cdnow_summary
from clvmodels.models import pareto_nbd as pn

NAMES = ("r", "alpha", "s", "beta")
PUBLISHED = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
PUBLISHED_LL = -9595.0
PUBLISHED_SE = {"r": 0.048, "alpha": 0.843, "s": 0.187, "beta": 6.21}
PAPER_PARAMS = {"r": 0.5533, "alpha": 10.578, "s": 0.6062, "beta": 11.668}


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
    return ParetoNBDModel().fit(rfm)


@pytest.fixture(scope="module")
def ll_fn():
    import pytensor
    import pytensor.tensor as pt

    params = {k: pt.dscalar(k) for k in NAMES}
    data = {k: pt.dvector(k) for k in ("frequency", "recency", "T")}
    ll = pn.log_likelihood(params, data)
    grad = pytensor.grad(ll.sum(), list(params.values()))
    return pytensor.function([*params.values(), *data.values()], [ll, *grad])


# ---------------------------------------------------------------------------- mpmath references
def _mp(*values):
    return [v if isinstance(v, mp.mpf) else mp.mpf(float(v)) for v in values]


def mp_parts(r, alpha, s, beta, x, tx, T):
    """The closed form as published (both branches of A0), at 50 digits: (lead, alive term, s/(r+s+x) A0)."""
    r, alpha, s, beta, x, tx, T = _mp(r, alpha, s, beta, x, tx, T)
    k = r + s + x
    if alpha >= beta:
        def F(t):
            return mp.hyp2f1(k, s + 1, k + 1, (alpha - beta) / (alpha + t)) / (alpha + t) ** k
    else:
        def F(t):
            # 2F1(k, r+x; k+1; z) / (beta+t)^k, evaluated through Pfaff's identity
            # 2F1(a, b; c; z) = (1-z)^-b 2F1(c-a, b; c; z/(z-1)) (mpmath's direct series is slow at large x)
            z = (beta - alpha) / (beta + t)
            return (1 - z) ** -(r + x) * mp.hyp2f1(1, r + x, k + 1, z / (z - 1)) / (beta + t) ** k
    lead = mp.loggamma(r + x) - mp.loggamma(r) + r * mp.log(alpha) + s * mp.log(beta)
    alive = (alpha + T) ** -(r + x) * (beta + T) ** -s
    return lead, alive, s / k * (F(tx) - F(T))


def mp_log_likelihood(*args):
    lead, alive, dead = mp_parts(*args)
    return lead + mp.log(alive + dead)


def mp_probability_alive(*args):
    _, alive, dead = mp_parts(*args)
    return alive / (alive + dead)


def mp_expected_purchases(r, alpha, s, beta, x, tx, T, t):
    """Fader & Hardie 2005 note, eq. 27."""
    p_alive = mp_probability_alive(r, alpha, s, beta, x, tx, T)
    r, alpha, s, beta, x, tx, T, t = _mp(r, alpha, s, beta, x, tx, T, t)
    return (r + x) * (beta + T) / ((alpha + T) * (s - 1)) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1)) * p_alive


def mp_probability_new(r, alpha, s, beta, t, n):
    """P(X(t) = n) for a new customer: alive throughout, or dead at tau in (0, t) (Fader & Hardie 2006 note)."""
    r, alpha, s, beta, t = _mp(r, alpha, s, beta, t)

    def nb(tau):
        return (mp.gamma(r + n) / (mp.gamma(r) * mp.factorial(n)) * (alpha / (alpha + tau)) ** r
                * (tau / (alpha + tau)) ** n)

    dead = mp.quad(lambda tau: s * beta ** s * (beta + tau) ** -(s + 1) * nb(tau), [0, min(alpha, beta, t), t])
    return nb(t) * (beta / (beta + t)) ** s + dead


# ---------------------------------------------------------------------------- published fit
def test_reproduces_published_fit_and_log_likelihood(fitted):
    for k, v in PUBLISHED.items():
        assert fitted.params_[k] == pytest.approx(v, abs=0.006), k
    for k, v in PAPER_PARAMS.items():
        assert fitted.params_[k] == pytest.approx(v, rel=2e-3), k
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.05)
    assert fitted.converged_


def test_standard_errors_match_published(fitted):
    se = fitted.summary()["se"]
    for k, v in PUBLISHED_SE.items():
        assert se[k] == pytest.approx(v, rel=0.02), k


def test_fitted_log_likelihood_equals_mpmath_sum(rfm, fitted):
    p = fitted.params_
    counts = rfm.groupby(["frequency", "recency", "T"]).size()
    total = mp.fsum(n * mp_log_likelihood(p["r"], p["alpha"], p["s"], p["beta"], *key) for key, n in counts.items())
    assert fitted.log_likelihood_ == pytest.approx(float(total), rel=1e-9)


@pytest.mark.parametrize("x, tx, T, t, expected", [
    (132, 200, 200, 10, "6.207"), (133, 200, 200, 10, "6.254"), (26, 30.86, 31, 52, "25.46")])
def test_published_conditional_expectations(x, tx, T, t, expected):
    value = pn.expected_purchases(draw(PAPER_PARAMS), np.array([x]), np.array([tx]), np.array([T]), t=t)
    value = float(value.ravel()[0])
    half_digit = 0.5 * 10.0 ** -len(expected.split(".")[1])   # the published value is rounded
    assert value == pytest.approx(float(expected), abs=half_digit)
    exact = mp_expected_purchases(*PAPER_PARAMS.values(), x, tx, T, t)
    assert value == pytest.approx(float(exact), rel=1e-9)


def test_finite_where_lifetimes_returns_nan():
    from lifetimes import ParetoNBDFitter

    lf = ParetoNBDFitter()
    lf.params_ = pd.Series(PAPER_PARAMS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lf.conditional_expected_number_of_purchases_up_to_time(10, np.array([132, 133]),
                                                                          np.array([200, 200]), np.array([200, 200]))
    ours = pn.expected_purchases(draw(PAPER_PARAMS), np.array([132, 133]), np.array([200.0, 200.0]),
                                 np.array([200.0, 200.0]), t=10)
    assert np.all(np.isfinite(ours))
    # the reference stack returns NaN here; where it is finite it must agree
    finite = np.isfinite(np.asarray(theirs, dtype=float))
    np.testing.assert_allclose(ours[0][finite], np.asarray(theirs, dtype=float)[finite], rtol=1e-6)


def test_predictions_agree_with_lifetimes_where_it_is_finite(rfm, fitted):
    from lifetimes import ParetoNBDFitter

    lf = ParetoNBDFitter()
    lf.params_ = pd.Series({k: float(fitted.params_[k]) for k in NAMES})
    f, r_, T = rfm["frequency"].to_numpy(), rfm["recency"].to_numpy(), rfm["T"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_alive = np.asarray(lf.conditional_probability_alive(f, r_, T), dtype=float)
        theirs_e = np.asarray(lf.conditional_expected_number_of_purchases_up_to_time(39, f, r_, T), dtype=float)
    ours_alive = fitted.probability_alive().to_numpy()
    ours_e = fitted.expected_purchases(39).to_numpy()
    assert np.isfinite(ours_alive).all() and np.isfinite(ours_e).all()
    ok = np.isfinite(theirs_alive)
    assert ok.mean() > 0.99
    np.testing.assert_allclose(ours_alive[ok], theirs_alive[ok], rtol=1e-6)
    ok = np.isfinite(theirs_e)
    np.testing.assert_allclose(ours_e[ok], theirs_e[ok], rtol=1e-6)
    new = fitted.expected_purchases_new_customer([1.0, 39.0, 78.0]).to_numpy()
    np.testing.assert_allclose(new, lf.expected_number_of_purchases_up_to_time(np.array([1.0, 39.0, 78.0])),
                               rtol=1e-8)


# ---------------------------------------------------------------------------- extreme grid vs mpmath
PARAM_SETS = [
    PAPER_PARAMS,                                              # alpha < beta, close
    {"r": 0.5, "alpha": 20.0, "s": 0.7, "beta": 2.0},          # alpha > beta
    {"r": 0.5, "alpha": 1.0, "s": 0.7, "beta": 50.0},          # alpha << beta
    {"r": 2.0, "alpha": 100.0, "s": 0.5, "beta": 0.1},         # alpha >> beta
    {"r": 0.3, "alpha": 10.0, "s": 1.5, "beta": 10.0},         # alpha == beta
    {"r": 0.8, "alpha": 10.0, "s": 0.9, "beta": 10.0 * (1 + 1e-9)},  # alpha ~ beta
]
HISTORIES = [
    (0, 0, 39), (0, 0, 5000), (1, 1, 39), (1, 38.9, 39), (26, 30.86, 31), (132, 200, 200),
    (133, 199.9, 200), (5000, 999.99, 1000), (5000, 100, 3000), (1000, 0.5, 1), (300, 3000, 3000),
    (20, 39, 39.0001), (3, 1e-6, 1e5),
]


@pytest.mark.parametrize("params", PARAM_SETS, ids=lambda p: f"a{p['alpha']:.3g}-b{p['beta']:.3g}")
def test_extreme_histories_match_mpmath(ll_fn, params):
    hist = np.array(HISTORIES, dtype=float)
    x, tx, T = hist.T
    ll, *_ = ll_fn(*params.values(), x, tx, T)
    alive = pn.probability_alive(draw(params), x, tx, T)[0]
    expected = pn.expected_purchases(draw(params), x, tx, T, t=52.0)[0]
    for i, h in enumerate(HISTORIES):
        ref_ll = mp_log_likelihood(*params.values(), *h)
        assert abs(ll[i] - float(ref_ll)) <= 1e-6 * max(1.0, abs(float(ref_ll))) * 1e-3, h  # |d ln L| < 1e-9 rel
        assert alive[i] == pytest.approx(float(mp_probability_alive(*params.values(), *h)), rel=1e-6, abs=1e-300), h
        ref_e = mp_expected_purchases(*params.values(), *h, 52.0)
        assert expected[i] == pytest.approx(float(ref_e), rel=1e-6, abs=1e-300), h


@pytest.mark.parametrize("params", [PARAM_SETS[0], PARAM_SETS[1], PARAM_SETS[3]], ids=["close", "a>b", "a>>b"])
def test_gradient_matches_mpmath(ll_fn, params):
    hist = [(0, 0, 39), (5, 20.5, 39), (132, 200, 200), (5000, 100, 3000)]
    x, tx, T = np.array(hist, dtype=float).T
    _, *grad = ll_fn(*params.values(), x, tx, T)
    for j, name in enumerate(NAMES):
        def f(v):
            p = dict(params)
            p[name] = v
            return mp.fsum(mp_log_likelihood(*p.values(), *h) for h in hist)

        ref = mp.diff(f, mp.mpf(params[name]))
        assert grad[j] == pytest.approx(float(ref), rel=1e-6, abs=1e-8), name


def test_equal_recency_and_age_has_finite_gradient(ll_fn):
    ll, *grad = ll_fn(*PAPER_PARAMS.values(), np.array([3.0, 0.0]), np.array([10.0, 0.0]), np.array([10.0, 0.0]))
    assert np.isfinite(ll).all() and np.isfinite(grad).all()
    # with t_x = T nobody can have died in between: L is the 'alive' term alone
    ref = mp_log_likelihood(*PAPER_PARAMS.values(), 3, 10, 10)
    assert ll[0] == pytest.approx(float(ref), rel=1e-12)


UPDATED = {"r": 500.0, "alpha": 600.0, "s": 0.6, "beta": 500.0}   # an alive customer after ~500 purchases


@pytest.mark.parametrize("params", [PAPER_PARAMS, PARAM_SETS[1], PARAM_SETS[2], UPDATED],
                         ids=["close", "a>b", "a<<b", "updated"])
@pytest.mark.parametrize("t, n", [(10.0, 0), (10.0, 1), (52.0, 3), (52.0, 20), (0.5, 2), (1000.0, 5), (500.0, 300),
                                  (1e4, 2)])
def test_probability_new_matches_mpmath(params, t, n):
    ours = float(pn.probability_new(*params.values(), t, n))
    assert ours == pytest.approx(float(mp_probability_new(*params.values(), t, n)), rel=1e-7, abs=1e-100)


def test_conditional_pmf_sums_to_one_and_its_mean_is_the_expectation(rfm, fitted):
    sample = rfm.iloc[::150]
    from clvmodels.predictive import purchase_pmf

    pmf = purchase_pmf(fitted, 39.0, 60, sample)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-9)
    assert pmf[:, -1].max() < 1e-6
    mean = (pmf[:, :-1] * np.arange(60)).sum(axis=1)
    np.testing.assert_allclose(mean, fitted.expected_purchases(39.0, sample).to_numpy(), rtol=1e-6)
    p3 = fitted.probability_of_n_purchases(39.0, 3, sample).to_numpy()
    np.testing.assert_allclose(p3, pmf[:, 3], rtol=1e-12)


def test_simulated_purchases_match_the_expectation(fitted):
    rng = np.random.default_rng(7)
    params = {k: np.full((50_000, 1), float(v)) for k, v in fitted.params_.items()}
    hist = np.array([[0, 0, 39.0], [5, 30.0, 39.0], [20, 38.0, 39.0]])
    counts = pn.simulate_purchases(params, *hist.T, t=39.0, rng=rng)
    expected = pn.expected_purchases(draw(fitted.params_), *hist.T, t=39.0)[0]
    se = counts.std(axis=0) / np.sqrt(len(counts))
    assert np.all(np.abs(counts.mean(axis=0) - expected) < 4 * se)


# ---------------------------------------------------------------------------- stability
PARAM = st.floats(1e-2, 1e2)


@st.composite
def histories(draw_):
    x = draw_(st.integers(0, 5000))
    T = draw_(st.floats(1e-3, 5000.0))
    u = draw_(st.floats(0.0, 1.0))
    return float(x), (0.0 if x == 0 else u * T), T


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=PARAM, alpha=st.floats(1e-2, 1e3), s=PARAM, beta=st.floats(1e-2, 1e3), history=histories(),
       t1=st.floats(0.0, 1000.0), t2=st.floats(0.0, 1000.0))
def test_stable_for_extreme_histories_and_parameters(ll_fn, r, alpha, s, beta, history, t1, t2):
    x, tx, T = history
    ll, *grad = ll_fn(r, alpha, s, beta, np.array([x]), np.array([tx]), np.array([T]))
    assert np.isfinite(ll).all() and np.isfinite(grad).all()
    params = draw({"r": r, "alpha": alpha, "s": s, "beta": beta})
    X, TX, TT = np.array([x]), np.array([tx]), np.array([T])
    alive = pn.probability_alive(params, X, TX, TT)
    assert np.isfinite(alive).all() and np.all((alive >= 0) & (alive <= 1))
    lo, hi = sorted((t1, t2))
    e_lo = pn.expected_purchases(params, X, TX, TT, t=lo)
    e_hi = pn.expected_purchases(params, X, TX, TT, t=hi)
    assert np.isfinite(e_lo).all() and np.isfinite(e_hi).all()
    assert np.all(e_lo >= 0) and np.all(e_hi >= e_lo * (1 - 1e-10))
    new = pn.expected_new(r, alpha, s, beta, np.array([lo, hi]))
    assert np.isfinite(new).all() and new[0] >= 0 and new[1] >= new[0] * (1 - 1e-10)


# ---------------------------------------------------------------------------- fitting
def test_weighted_fit_on_unique_rows_equals_fit_on_all_rows(rfm, fitted):
    counts = rfm.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    weighted = ParetoNBDModel().fit(counts, weights=counts["n"])
    np.testing.assert_allclose(weighted.params_.to_numpy(), fitted.params_.to_numpy(), rtol=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-10)


def simulate_pareto(n, r, alpha, s, beta, T, seed):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    mu = rng.gamma(s, 1 / beta, n)
    death = rng.exponential(1 / mu)
    Ts = rng.choice([T / 2, 3 * T / 4, T], n)                       # three cohorts
    end = np.minimum(death, Ts)
    x = rng.poisson(lam * end)
    tx = np.array([np.max(rng.uniform(0, e, k)) if k else 0.0 for k, e in zip(x, end)])
    return pd.DataFrame({"frequency": x, "recency": np.floor(tx * 7) / 7, "T": Ts})  # daily resolution


def test_recovers_known_parameters_on_simulated_data():
    truth = {"r": 0.8, "alpha": 8.0, "s": 0.5, "beta": 12.0}
    model = ParetoNBDModel().fit(simulate_pareto(8_000, *truth.values(), T=52.0, seed=3))
    table = model.summary()
    for k, v in truth.items():
        lo, hi = table.loc[k, "lower_95%"], table.loc[k, "upper_95%"]
        # inside a widened 95% interval (a 4-parameter test at 95% fails now and then by chance)
        assert lo / 1.3 < v < hi * 1.3, (k, v, lo, hi)


def test_intervals_and_clv(rfm, fitted):
    out = fitted.expected_purchases(39.0, rfm.iloc[:50], interval=0.9, n_draws=200, seed=1)
    assert list(out.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert np.all(out["mean_lower"] <= out["mean_median"]) and np.all(out["mean_median"] <= out["mean_upper"])
    point = fitted.expected_purchases(39.0, rfm.iloc[:50])
    assert np.all((out["mean_lower"] <= point * 1.0001) & (point <= out["mean_upper"] * 1.0001))
    spend = cdnow_summary(with_spend=True)
    gg = clv.GammaGammaModel(exclude_invalid=True).fit(spend)
    value = clv.clv(fitted, gg, spend.iloc[:20], horizon=12, period_length=4.345, discount_rate=0.01)
    assert np.isfinite(value).all() and (value >= 0).all()


def test_estimator_contract_and_errors(rfm):
    model = ParetoNBDModel(penalizer=0.01)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.probability_alive(rfm)
    bad = rfm.head(10).copy()
    bad.loc[bad.index[0], "recency"] = bad["T"].iloc[0] + 5
    with pytest.raises(ClvDataError, match="recency"):
        ParetoNBDModel().fit(bad)
    fitted = ParetoNBDModel().fit(rfm.head(500))
    with pytest.raises(ClvDataError):
        fitted.expected_purchases(-1.0)
    with pytest.raises(ClvDataError):
        fitted.probability_of_n_purchases(10.0, 1.5)


# ---------------------------------------------------------------------------- Bayesian fit
@pytest.mark.slow
def test_bayesian_fits_sample_the_shapes_and_mean_times(rfm):
    from clvmodels.models import bayes
    from clvmodels.models.rows import compress

    u, w = compress({k: rfm[k].to_numpy(float) for k in ("frequency", "recency", "T")})
    priors = bayes.resolve_priors(ParetoNBDModel, None, u, w)
    assert list(priors) == ["r", "purchase_interval", "s", "lifetime"]
    mean_T = np.average(u["T"], weights=w)
    assert priors["lifetime"] == ("HalfCauchy", {"beta": pytest.approx(mean_T)})
    model = bayes.build_pymc_model(ParetoNBDModel, u, w, priors)
    assert {v.name for v in model.free_RVs} == {"r", "purchase_interval", "s", "lifetime"}
    assert {v.name for v in model.deterministics} == {"alpha", "beta"}
    # the MAP's log posterior (priors at the sampled quantities computed from the parameters) is the
    # PyMC model's density without the Jacobians of the log transforms, at the same point
    post, _ = bayes._log_posterior_functions(ParetoNBDModel, tuple(u), model, priors)
    point = dict(PAPER_PARAMS)
    sampled = pn.BAYES_PARAMETRISATION.from_params(point)
    assert pn.BAYES_PARAMETRISATION.to_params(sampled) == pytest.approx(point)
    logp = model.compile_logp(jacobian=False)(bayes._start_point(model, sampled))
    assert post(np.log([point[k] for k in NAMES]))[0] == pytest.approx(float(logp), rel=1e-10)
    # a prior of a parameter that is not sampled switches to the plain parametrisation; mixing is refused
    plain = bayes.resolve_priors(ParetoNBDModel, {"beta": ("HalfNormal", {"sigma": 100.0})}, u, w)
    assert list(plain) == list(NAMES) and bayes.parametrisation(ParetoNBDModel, plain) is None
    assert bayes.resolve_priors(ParetoNBDModel, {"s": ("Gamma", {"alpha": 2.0, "beta": 2.0})}, u, w)["s"][0] == "Gamma"
    with pytest.raises(ValueError, match="cannot be mixed"):
        bayes.resolve_priors(ParetoNBDModel, {"lifetime": ("HalfNormal", {"sigma": 9.0}),
                                              "alpha": ("HalfNormal", {"sigma": 9.0})}, u, w)


@pytest.mark.slow
def test_short_nuts_agrees_with_the_mle(rfm):
    """With the old HalfNormal(5) priors on (r, alpha, s, beta) the posterior means of s and beta on the
    CDNOW sample were 1.9 and 60 (MLE 0.61, 11.7; 2 x 300 draws); now within one MLE standard error.

    On this third of the sample the data barely identify ``s`` (the s-beta ridge): its posterior sd
    is about half the MLE's standard error, right at the prior-sensitivity rule's threshold (0.5), so
    whether ``s`` is flagged depends on the draws; the purchase process (r, alpha) never is."""
    from clvmodels import ConvergenceWarning, PriorSensitivityWarning

    sample = rfm.iloc[::3]                        # 786 customers: a NUTS run of about a minute
    mle = ParetoNBDModel().fit(sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", PriorSensitivityWarning)
        model = ParetoNBDModel(seed=3, progressbar=False).fit(sample, method="nuts", draws=300, tune=300,
                                                                    chains=2)
    assert model.diagnostics_["divergences"] == 0 and max(model.diagnostics_["r_hat"].values()) < 1.05
    se = np.sqrt(np.diag(mle.covariance_))
    shift = (np.log(model.params_[list(NAMES)]) - np.log(mle.params_[list(NAMES)])) / se
    assert (shift.abs() < 1.0).all(), shift
    table = model.prior_sensitivity_
    assert not table.loc[["r", "alpha"], "prior_dominated"].any(), table
    assert (table["prior_shift_se"].abs() < 1.0).all() and (table["prior_sd_ratio"] > 0.4).all(), table
    out = model.probability_alive(sample.iloc[:20], interval=0.9)
    assert np.all((out["mean_lower"] <= out["mean"]) & (out["mean"] <= out["mean_upper"]))


def test_save_and_load_round_trip(tmp_path, rfm, fitted):
    from clvmodels.models.persistence import load_model, save_model

    save_model(fitted, tmp_path / "pnbd")
    loaded = load_model(tmp_path / "pnbd")
    assert type(loaded) is ParetoNBDModel
    pd.testing.assert_series_equal(loaded.expected_purchases(39.0, rfm), fitted.expected_purchases(39.0, rfm))


def test_gradient_finite_when_recency_rounds_to_T(ll_fn):
    """Regression: t_x = T − 1 ulp made every quadrature panel zero-wide in y, so the log of the
    integral was −inf and its gradient NaN (found by the Hypothesis stability test)."""
    out = ll_fn(1.0, 1.0, 1.0, 1.0, np.array([1.0]), np.array([0.9999999999999999]), np.array([1.0]))
    assert all(np.isfinite(v).all() for v in out)
    exact = ll_fn(1.0, 1.0, 1.0, 1.0, np.array([1.0]), np.array([1.0]), np.array([1.0]))
    np.testing.assert_allclose(out[0], exact[0], rtol=1e-12)


# ---------------------------------------------------------------------------- predictive pmf (recursion)
PMF_PARAMS = PARAM_SETS + [{"r": 0.6, "alpha": 10.0, "s": 1.0, "beta": 12.0},        # s = 1
                           {"r": 1.5, "alpha": 3.0, "s": 6.0, "beta": 40.0}]          # s large
PMF_HISTORIES = [(0, 0.0), (0, 39.0), (1, 1.0), (5, 39.0), (30, 100.0), (100, 300.0), (500, 500.0),
                 (500, 20.0), (3, 500.0)]


def _grid(params, t):
    """Updated parameters ``(r+x, α+T, s, β+T)`` of customers alive at ``T`` over PMF_HISTORIES."""
    x, T = (np.array(v, dtype=float) for v in zip(*PMF_HISTORIES))
    return params["r"] + x, params["alpha"] + T, np.full(len(x), params["s"]), params["beta"] + T


@pytest.mark.parametrize("params", PMF_PARAMS, ids=lambda p: f"r{p['r']:.3g}-a{p['alpha']:.3g}-s{p['s']:.3g}-b{p['beta']:.3g}")
@pytest.mark.parametrize("t", [1.0, 39.0, 104.0, 500.0])
def test_recursive_pmf_agrees_with_the_quadrature_to_1e8(params, t):
    """Acceptance (issue 13): the recursion agrees with the numerical version (the quadrature over the
    death time, kept as the oracle) to 1e-8 on histories with x up to 500 and T up to 500 weeks, and
    the tail column is the rest of the mass."""
    r, alpha, s, beta = _grid(params, t)
    n_max = 700 if t >= 104 else 250
    table = pn.alive_pmf(r, alpha, s, beta, t, n_max)
    oracle = pn.probability_new_quadrature(r[:, None], alpha[:, None], s[:, None], beta[:, None], t,
                                           np.arange(n_max, dtype=float))
    np.testing.assert_allclose(table[:, :n_max], oracle, rtol=0, atol=1e-8)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(table[:, -1], np.clip(1 - oracle.sum(axis=1), 0, 1), atol=1e-8)
    # the mean is the closed-form expectation of a customer alive at T (eq. 17 at updated parameters):
    # to 1e-11 by the recursion, to 1e-8 where the quadrature (the fallback) is used
    mean = (table[:, :n_max] * np.arange(n_max)).sum(axis=1)
    expected = pn.expected_new(r, alpha, s, beta, t)
    small_tail = table[:, -1] < 1e-13
    recursed = np.abs(beta - alpha) / beta * t / (alpha + t) <= pn._MAX_DECAY
    np.testing.assert_allclose(mean[small_tail], expected[small_tail], rtol=1e-8)
    np.testing.assert_allclose(mean[small_tail & recursed], expected[small_tail & recursed], rtol=1e-11)


def test_recursion_needs_no_quadrature_where_it_is_stable(monkeypatch):
    """Where ``|κ| q ≤ 0.9`` (every realistic conditional prediction) the quadrature is never called,
    so the grid above tests the recursion itself."""
    def refuse(*args, **kwargs):
        raise AssertionError("quadrature fallback used")

    monkeypatch.setattr(pn, "probability_new_quadrature", refuse)
    for params in PMF_PARAMS:
        r, alpha, s, beta = _grid(params, 39.0)
        stable = np.abs(beta - alpha) / beta * 39.0 / (alpha + 39.0) <= pn._MAX_DECAY
        table = pn.alive_pmf(r[stable], alpha[stable], s[stable], beta[stable], 39.0, 50)
        assert np.isfinite(table).all()
    with pytest.raises(AssertionError, match="quadrature"):          # alpha >> beta, t >> beta: unstable
        pn.alive_pmf(2.0, 100.0, 0.5, 0.1, 39.0, 5)


@pytest.mark.parametrize("params, t, n", [(PAPER_PARAMS, 39.0, 0), (PAPER_PARAMS, 39.0, 7), (UPDATED, 52.0, 40),
                                          ({"r": 500.6, "alpha": 510.0, "s": 1.0, "beta": 511.0}, 500.0, 450),
                                          (PARAM_SETS[3], 39.0, 2), (PARAM_SETS[2], 500.0, 30)],
                         ids=["paper-0", "paper-7", "updated-40", "x500-T500-s1", "fallback", "a<<b-long"])
def test_recursive_pmf_matches_mpmath(params, t, n):
    """To 1e-12 by the recursion, 1e-8 by the quadrature where it falls back (|κ| q > 0.9)."""
    r, alpha, s, beta = params.values()
    recursed = abs(beta - alpha) / beta * t / (alpha + t) <= pn._MAX_DECAY
    ours = float(pn.probability_new(r, alpha, s, beta, t, n))
    ref = float(mp_probability_new(r, alpha, s, beta, t, n))
    assert ours == pytest.approx(ref, rel=1e-12 if recursed else 1e-8, abs=1e-300)


def test_pmf_matches_simulation():
    """Monte Carlo: 400,000 simulated futures of three histories (CDNOW fit, a heavy buyer with
    x = 500 over T = 500 weeks, alpha >> beta) agree with the pmf count by count within 4.5 standard
    errors, and a chi-square over the bulk is not extreme."""
    rng = np.random.default_rng(2026)
    cases = [(PAPER_PARAMS, (2, 30.0, 39.0), 39.0), (PAPER_PARAMS, (500, 499.0, 500.0), 52.0),
             ({"r": 2.0, "alpha": 30.0, "s": 0.8, "beta": 3.0}, (4, 20.0, 26.0), 26.0)]
    for params, history, t in cases:
        sims = pn.simulate_purchases({k: np.full((400_000, 1), v) for k, v in params.items()}, *history, t=t,
                                     rng=rng)[:, 0]
        n_max = int(sims.max()) + 2
        pmf = pn.purchase_pmf(draw(params), *(np.array([v]) for v in history), t=t, n_max=n_max)[0, 0]
        freq = np.bincount(sims, minlength=n_max + 1)[:n_max + 1] / len(sims)
        se = np.sqrt(pmf * (1 - pmf) / len(sims)) + 1e-12
        assert np.all(np.abs(freq - pmf) < 4.5 * se + 1e-6)
        bulk = pmf * len(sims) > 20
        chi2 = ((freq[bulk] - pmf[bulk]) ** 2 / pmf[bulk]).sum() * len(sims)
        assert chi2 < bulk.sum() + 6 * np.sqrt(2 * bulk.sum())


def test_conditional_pmf_of_extreme_histories_sums_to_one_with_the_right_mean():
    """x up to 500, T up to 500 weeks, s near 1 and alpha ~ beta: no NaN, total mass 1, mean = eq. 27."""
    params = {"r": 0.55, "alpha": 10.0, "s": 1.0 + 1e-9, "beta": 10.0 * (1 + 1e-9)}
    x = np.array([0, 1, 10, 100, 500, 500.0])
    tx = np.array([0, 0.5, 200, 490, 100, 499.9])
    T = np.array([0.5, 1, 300, 500, 500, 500.0])
    pmf = pn.purchase_pmf(draw(params), x, tx, T, t=104.0, n_max=400)[0]
    assert np.isfinite(pmf).all()
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-12)
    mean = (pmf[:, :-1] * np.arange(400)).sum(axis=1)
    np.testing.assert_allclose(mean, pn.expected_purchases(params, x, tx, T, t=104.0), rtol=1e-8)


def test_predictive_purchases_per_pair_equal_per_history(rfm, fitted, monkeypatch):
    """predictive.py's matrix products per (x, T) pair equal averaging each history's table."""
    from clvmodels import predictive as P

    sample = rfm.iloc[::60]
    fast = P.predictive_purchases(fitted, 52.0, sample, interval=0.9, n_draws=12, seed=1)
    monkeypatch.setattr(ParetoNBDModel, "future_pmf_formula", None)
    slow = P.predictive_purchases(fitted, 52.0, sample, interval=0.9, n_draws=12, seed=1)
    pd.testing.assert_frame_equal(fast, slow, rtol=1e-12)


def test_future_purchases_of_an_alive_customer_per_pair_equal_per_customer(rfm):
    """eq. 27's factor without P(alive) is evaluated once per distinct (x, T) pair and gathered back
    (``purchase.alive_times_future``): the same values as customer by customer, for a stack of draws."""
    from clvmodels.models.purchase import alive_times_future

    rng = np.random.default_rng(2)
    draws = {k: v * rng.uniform(0.9, 1.1, (5, 1)) for k, v in {"r": 0.55, "alpha": 10.6, "s": 0.61, "beta": 11.7}.items()}
    x, tx, T = rfm["frequency"].to_numpy(float), rfm["recency"].to_numpy(float), rfm["T"].to_numpy(float)
    alive = pn.probability_alive(draws, x, tx, T)
    shared = alive_times_future(pn.probability_alive, pn.future_purchases_alive, draws, x, tx, T, t=39.0) / alive
    direct = pn.expected_new(draws["r"] + x, draws["alpha"] + T, draws["s"], draws["beta"] + T, 39.0)
    assert shared.shape == (5, len(rfm)) and len(np.unique(np.c_[x, T], axis=0)) < len(rfm) / 5
    np.testing.assert_allclose(shared, direct, rtol=1e-15)
    np.testing.assert_array_equal(pn.expected_purchases(draws, x, tx, T, t=39.0), alive * direct)
