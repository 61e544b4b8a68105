"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005; Fader & Hardie 2013 note): published fit,
agreement with lifetimes, input checks, the independence warning, degenerate fits, recovery.

Published: p=6.25, q=3.74, gamma=15.44, LL=-4,055.9 on the 946 CDNOW customers with x > 0.
"""

from __future__ import annotations

import warnings

import mpmath as mp
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import clvmodels as clv
from clvmodels import AssumptionWarning, ClvDataError, ConvergenceWarning, GammaGammaModel, NotFittedError
from clvmodels.datasets import cdnow_summary, load_cdnow, simulate
from clvmodels.models import gamma_gamma

PUBLISHED = {"p": 6.25, "q": 3.74, "gamma": 15.44}
PUBLISHED_LL = -4055.9


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="module")
def fitted(rfm):
    return GammaGammaModel().fit(rfm[rfm["frequency"] > 0])


def test_reproduces_published_fit(fitted):
    assert fitted.n_customers_ == 946
    for k, v in PUBLISHED.items():
        assert fitted.params_[k] == pytest.approx(v, rel=0.01), k
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.5)
    assert fitted.converged_
    assert abs(fitted.correlation_) < 0.3  # CDNOW: spend roughly independent of frequency


def test_reproduces_published_fit_from_our_rfm_of_the_cdnow_log():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CDNOW has 21 duplicate records
        log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
    rfm = clv.rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
    model = GammaGammaModel(exclude_invalid=True).fit(rfm)
    assert model.n_customers_ == 946 and model.n_excluded_ == 2357 - 946
    for k, v in PUBLISHED.items():
        assert model.params_[k] == pytest.approx(v, rel=0.01), k
    assert model.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.5)


def test_exclude_invalid_equals_fitting_the_repeat_buyers(rfm, fitted):
    model = GammaGammaModel(exclude_invalid=True).fit(rfm)
    assert model.n_excluded_ == 2357 - 946
    for k in PUBLISHED:
        assert model.params_[k] == pytest.approx(fitted.params_[k], rel=1e-9)
    assert len(model.expected_spend()) == 2357  # everyone is scored


def test_standard_errors_and_fit_match_lifetimes(rfm, fitted):
    from lifetimes import GammaGammaFitter

    repeat = rfm[rfm["frequency"] > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    table = fitted.summary()
    for ours, theirs in (("p", "p"), ("q", "q"), ("gamma", "v")):
        assert fitted.params_[ours] == pytest.approx(ggf.params_[theirs], rel=1e-4)
        assert table.loc[ours, "se"] == pytest.approx(ggf.standard_errors_[theirs], rel=2e-3)


def test_expected_spend_equals_lifetimes_on_all_customers(rfm, fitted):
    from lifetimes import GammaGammaFitter

    ggf = GammaGammaFitter()
    ggf.params_ = pd.Series({"p": fitted.params_["p"], "q": fitted.params_["q"], "v": fitted.params_["gamma"]})
    ours = fitted.expected_spend(rfm)
    theirs = ggf.conditional_expected_average_profit(rfm["frequency"].to_numpy(), rfm["monetary_value"].to_numpy())
    assert list(ours.index) == list(rfm.index)
    np.testing.assert_allclose(ours.to_numpy(), np.asarray(theirs), rtol=1e-12)
    # customers without repeat purchases get the population mean p γ / (q − 1)
    p, q, g = fitted.params_
    assert np.allclose(ours[rfm["frequency"] == 0], p * g / (q - 1), rtol=1e-14)


def test_log_likelihood_matches_mpmath(rfm, fitted):
    import pytensor
    import pytensor.tensor as pt

    params = {k: pt.dscalar(k) for k in ("p", "q", "gamma")}
    data = {k: pt.dvector(k) for k in ("frequency", "monetary_value")}
    f = pytensor.function([*params.values(), *data.values()], gamma_gamma.log_likelihood(params, data))
    rows = rfm[rfm["frequency"] > 0].iloc[::50]
    p, q, g = (float(fitted.params_[k]) for k in ("p", "q", "gamma"))
    ours = f(p, q, g, rows["frequency"].to_numpy(float), rows["monetary_value"].to_numpy(float))
    for value, (x, m) in zip(ours, rows[["frequency", "monetary_value"]].to_numpy()):
        with mp.workdps(40):
            P, Q, G, X, M = (mp.mpf(float(v)) for v in (p, q, g, x, m))
            ref = (mp.loggamma(P * X + Q) - mp.loggamma(P * X) - mp.loggamma(Q) + Q * mp.log(G)
                   + (P * X - 1) * mp.log(M) + P * X * mp.log(X) - (P * X + Q) * mp.log(G + X * M))
        assert value == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
    # the sum over the fitted customers is the reported maximum
    repeat = rfm[rfm["frequency"] > 0]
    total = f(p, q, g, repeat["frequency"].to_numpy(float), repeat["monetary_value"].to_numpy(float)).sum()
    assert total == pytest.approx(fitted.log_likelihood_, abs=1e-7)


def test_weighted_fit_equals_fit_on_all_rows(rfm, fitted):
    repeat = rfm[rfm["frequency"] > 0]
    counts = repeat.groupby(["frequency", "monetary_value"]).size().rename("n").reset_index()
    doubled = pd.concat([counts, counts])
    model = GammaGammaModel().fit(doubled, weights=np.r_[counts["n"].to_numpy(), np.zeros(len(counts))])
    for k in PUBLISHED:
        assert model.params_[k] == pytest.approx(fitted.params_[k], rel=1e-7)
    assert model.log_likelihood_ == pytest.approx(fitted.log_likelihood_, abs=1e-6)


def test_recovers_known_parameters_on_simulated_data():
    truth = {"p": 4.0, "q": 5.0, "gamma": 30.0}
    log = simulate(50_000, **truth, seed=5)
    rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W", resolution="h")
    model = GammaGammaModel(exclude_invalid=True).fit(rfm)
    se = model.summary()["se"]
    assert model.n_customers_ > 10_000
    for k, v in truth.items():
        assert abs(model.params_[k] - v) < 3 * se[k], (k, model.params_[k], v, se[k])


# ---------------------------------------------------------------------------- input checks and warnings
def test_refuses_customers_without_repeat_purchases(rfm):
    with pytest.raises(ClvDataError, match="frequency 0 or monetary_value <= 0.*1,411 rows.*exclude_invalid=True"):
        GammaGammaModel().fit(rfm)


def test_refuses_non_positive_spend(rfm):
    repeat = rfm[rfm["frequency"] > 0].copy()
    repeat.iloc[:3, repeat.columns.get_loc("monetary_value")] = [0.0, -5.0, 0.0]
    with pytest.raises(ClvDataError, match=r"\(3 rows\)"):
        GammaGammaModel().fit(repeat)
    model = GammaGammaModel(exclude_invalid=True).fit(repeat)
    assert model.n_excluded_ == 3 and model.n_customers_ == 943


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns="monetary_value"), "lacks column"),
    (lambda d: d.assign(monetary_value=d["monetary_value"].where(d.index != d.index[0], np.nan)), "Missing"),
    (lambda d: d.assign(frequency=d["frequency"] + 0.25), "non-negative integers"),
    (lambda d: d.iloc[:1], "at least 2 customers"),
])
def test_bad_input_raises_clear_error(rfm, change, message):
    with pytest.raises(ClvDataError, match=message):
        GammaGammaModel().fit(change(rfm[rfm["frequency"] > 0].copy()))


def test_warns_when_spend_depends_on_frequency():
    rng = np.random.default_rng(0)
    f = rng.integers(1, 20, 2000).astype(float)
    rfm = pd.DataFrame({"frequency": f, "monetary_value": 10 * f * rng.gamma(5, 1 / 5, 2000)})
    with pytest.warns(AssumptionWarning, match="correlated"):
        model = GammaGammaModel().fit(rfm)
    assert model.correlation_ > 0.3
    # independent spend: no such warning
    rfm["monetary_value"] = 10 * rng.gamma(5, 1 / 5, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        GammaGammaModel().fit(rfm)


def test_constant_spend_is_a_boundary_fit_that_warns():
    rfm = pd.DataFrame({"frequency": np.arange(1, 301) % 7 + 1.0, "monetary_value": np.full(300, 10.0)})
    with pytest.warns(ConvergenceWarning, match="boundary"):
        model = GammaGammaModel().fit(rfm)
    assert not model.converged_
    assert np.all(np.isfinite(model.params_.to_numpy()))


def test_heavy_tailed_spend_refuses_expected_spend():
    """q <= 1: the mean spend is infinite under the fitted model; say so rather than predict."""
    rng = np.random.default_rng(3)
    nu = rng.gamma(0.6, 1.0, 3000)  # q = 0.6
    x = rng.integers(1, 5, 3000).astype(float)
    m = rng.gamma(5.0 * x, 1.0) / (nu * x)
    with pytest.warns(AssumptionWarning, match="q = .* <= 1"):
        model = GammaGammaModel().fit(pd.DataFrame({"frequency": x, "monetary_value": m}))
    assert model.params_["q"] <= 1
    with pytest.raises(ClvDataError, match="infinite"):
        model.expected_spend()


# ---------------------------------------------------------------------------- contract
def test_estimator_contract(rfm, fitted):
    model = GammaGammaModel(exclude_invalid=True)
    assert repr(model) == "GammaGammaModel(method='mle', unfitted)"
    params = model.get_params()
    assert params["exclude_invalid"] is True and params["method"] == "mle"
    copy = clone(model)
    assert copy.get_params() == params and copy is not model
    assert model.set_params(penalizer=0.0, exclude_invalid=False) is model and model.exclude_invalid is False
    with pytest.raises(NotFittedError):
        model.expected_spend()
    with pytest.raises(NotFittedError):
        model.summary()
    assert repr(fitted).startswith("GammaGammaModel(p=6.249, q=3.745, gamma=15.45; mle on 946 customers")
    table = fitted.summary()
    assert list(table.columns) == ["estimate", "se", "lower_95%", "upper_95%"]
    assert list(table.index) == ["p", "q", "gamma"]
    assert fitted.aic_ == pytest.approx(6 - 2 * fitted.log_likelihood_)
    assert fitted.bic_ == pytest.approx(3 * np.log(946) - 2 * fitted.log_likelihood_)
    band = fitted.expected_spend(rfm.iloc[:20], interval=0.9, n_draws=400, seed=0)
    point = fitted.expected_spend(rfm.iloc[:20])
    assert np.all((band["mean_lower"] <= point) & (point <= band["mean_upper"]))


def test_weighted_distinct_rows_fit_like_every_customer(cdnow_sample_log):
    """Fitting on the distinct (frequency, spend) pairs with their counts as weights (what Spark
    sends) gives the fit on every customer: parameters, excluded count and correlation alike.
    Weights used to be passed through unsubset, which failed as soon as a customer was excluded."""
    rfm = clv.rfm_summary(cdnow_sample_log, observation_end="1997-09-30", time_unit="W", truncate=True)
    every = GammaGammaModel(exclude_invalid=True).fit(rfm)
    pairs = rfm.groupby(["frequency", "monetary_value"]).size().rename("n").reset_index()
    weighted = GammaGammaModel(exclude_invalid=True).fit(pairs, weights=pairs["n"].to_numpy())
    np.testing.assert_allclose(weighted.params_, every.params_, rtol=1e-6)
    assert weighted.n_excluded_ == every.n_excluded_ == 2357 - 946
    assert weighted.correlation_ == pytest.approx(every.correlation_, rel=1e-9)


def test_parameter_draws_stay_where_the_mean_spend_exists(fitted):
    """Draws of an MLE's asymptotic normal are restricted to q > 1 (the mean spend pγ/(q−1) exists):
    a well identified fit's draws are the plain ones; a weakly identified q (log-scale SE 3.7, as
    small real logs give) no longer reaches q < 1, where simulated spends overflowed; a fit with no
    mass there is refused."""
    from copy import copy

    from clvmodels.models.draws import covariance_problem, parameter_draws

    point = np.log(fitted.params_[["p", "q", "gamma"]].to_numpy())
    plain = np.exp(np.random.default_rng(0).multivariate_normal(point, fitted.covariance_, 500, method="eigh"))
    draws = parameter_draws(fitted, 500, np.random.default_rng(0))
    np.testing.assert_array_equal(np.c_[draws["p"], draws["q"], draws["gamma"]], plain)

    weak = copy(fitted)
    se = np.sqrt(np.diag(fitted.covariance_))
    scale = np.array([1.0, 3.7 / se[1], 3.7 / se[2]])          # q and γ weakly identified, as correlated
    weak.covariance_ = fitted.covariance_ * np.outer(scale, scale)
    stream = np.exp(np.random.default_rng(1).multivariate_normal(point, weak.covariance_, 400, method="eigh"))
    assert (stream[:, 1] <= 1).mean() > 0.2
    draws = parameter_draws(weak, 400, np.random.default_rng(1))
    assert len(draws["q"]) == 400 and draws["q"].min() > 1
    np.testing.assert_array_equal(draws["q"][:100], stream[stream[:, 1] > 1, 1][:100])  # the plain stream, filtered
    spend = gamma_gamma.simulate_spend({k: v[:, None] for k, v in draws.items()}, np.zeros(50), np.zeros(50),
                                       n_transactions=np.ones((400, 50)), rng=np.random.default_rng(2))
    assert np.all(np.isfinite(spend))

    # beyond a log-scale SE of 5 the fit says it barely identifies them, and draws are refused
    vague = copy(fitted)
    vague.covariance_ = fitted.covariance_ * (6.0 / se[1]) ** 2
    assert covariance_problem(vague).startswith("barely identifies p (SE")
    with pytest.raises(ClvDataError, match="This GammaGammaModel fit barely identifies"):
        parameter_draws(vague, 10, np.random.default_rng(0))

    below = copy(fitted)
    below.params_ = fitted.params_.copy()
    below.params_["q"] = 0.5
    with pytest.raises(ClvDataError, match="almost no parameter uncertainty where its predictions exist"):
        parameter_draws(below, 100, np.random.default_rng(0))
