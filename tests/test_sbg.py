"""Shifted-beta-geometric model (Fader & Hardie 2007): the published 'regular' and 'high end'
fits from the survivor table of years 0-7, projected retention over the holdout years 8-12,
survival/retention identities, DERL (Fader & Hardie 2010) against direct summation and mpmath,
numerical stability over wide parameters (hypothesis), input checks and model contract.

Published numbers: ``/work/shared/reference/models.md`` (regular: alpha=0.704, beta=1.182,
LL=-1,680.3; high end: alpha=0.668, beta=3.806, LL=-1,611.2).
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from clvmodels import ClvDataError, NotFittedError, ShiftedBetaGeoModel, survivor_table
from clvmodels.models import sbg

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241, 223, 207, 194, 183, 173]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491, 468, 445, 427, 409, 394]
CASES = {
    "regular": (REGULAR, {"alpha": 0.704, "beta": 1.182}, -1680.3),
    "high_end": (HIGH_END, {"alpha": 0.668, "beta": 3.806}, -1611.2),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    survivors, published, ll = CASES[request.param]
    return survivors, published, ll, ShiftedBetaGeoModel().fit_survivors(survivors[:8])


def test_reproduces_published_fits(case):
    _, published, ll, model = case
    for k, v in published.items():
        assert model.params_[k] == pytest.approx(v, abs=6e-4), k
    assert model.log_likelihood_ == pytest.approx(ll, abs=0.05)
    assert model.converged_


def test_log_likelihood_equals_the_papers_formula(case):
    survivors, _, _, model = case
    s = survivors[:8]
    with mp.workdps(40):
        a, b = (mp.mpf(float(model.params_[k])) for k in ("alpha", "beta"))
        ll = mp.fsum((s[t - 1] - s[t]) * mp.log(mp.beta(a + 1, b + t - 1) / mp.beta(a, b)) for t in range(1, 8))
        ll += s[7] * mp.log(mp.beta(a, b + 7) / mp.beta(a, b))
    assert model.log_likelihood_ == pytest.approx(float(ll), rel=1e-12)


def test_projected_survivors_track_the_holdout_years(case):
    survivors, _, _, model = case
    projected = model.expected_survivors(range(8, 13), cohort_size=1000).to_numpy()
    actual = np.array(survivors[8:], dtype=float)
    # Fader & Hardie 2007, fig. 3-4: the sBG projection tracks years 8-12 closely (within 5%)
    np.testing.assert_allclose(projected, actual, rtol=0.05)
    # it under-projects slightly, and the in-sample fit is close too
    assert np.all(projected < actual)
    np.testing.assert_allclose(model.expected_survivors(range(1, 8), 1000).to_numpy(), survivors[1:8], rtol=0.03)


def test_survival_retention_and_churn_identities(case):
    _, _, _, model = case
    p = {k: np.array([[float(v)]]) for k, v in model.params_.items()}
    t = np.arange(1.0, 30.0)
    S = sbg.survival(p, t)[0]
    S_prev = sbg.survival(p, t - 1)[0]
    np.testing.assert_allclose(S / S_prev, sbg.retention_rate(p, t)[0], rtol=1e-12)
    np.testing.assert_allclose(S_prev - S, sbg.churn_probability(p, t)[0], rtol=1e-10)
    assert np.all(np.diff(sbg.retention_rate(p, t)[0]) > 0)      # heterogeneity: retention rises
    rates = model.retention_rate([1, 2, 3])
    assert rates.iloc[0] == pytest.approx(float(model.survival(1).iloc[0]), rel=1e-12)


@pytest.mark.parametrize("renewals", [0, 1, 4, 20])
@pytest.mark.parametrize("d", [0.05, 0.1, 0.5])
def test_derl_equals_direct_summation(case, renewals, d):
    _, _, _, model = case
    a, b = (float(model.params_[k]) for k in ("alpha", "beta"))
    n = renewals + 1
    # F&H 2010: sum over t >= n of S(t | T > n-1) / (1+d)^(t-n), term by term:
    # S(n+j | T > n-1) = prod_{i=0}^{j} (b+n-1+i)/(a+b+n-1+i)
    i = np.arange(5000)
    terms = np.exp(np.cumsum(np.log((b + n - 1 + i) / (a + b + n - 1 + i))) - i * np.log1p(d))
    assert float(model.derl(renewals, d).iloc[0]) == pytest.approx(terms.sum(), rel=1e-10)


def test_del_and_derl_relation(case):
    _, _, _, model = case
    d = 0.1
    # a new customer pays now, then (if she renews) the DERL of a customer with 0 renewals, discounted once
    assert model.discounted_expected_lifetime(d) == pytest.approx(
        1 + float(model.derl(0, d).iloc[0]) / (1 + d), rel=1e-12)
    dels = model.discounted_expected_lifetime([0.05, 0.1, 0.2]).to_numpy()
    assert dels[1] == pytest.approx(model.discounted_expected_lifetime(d), rel=1e-14)
    assert np.all(np.diff(dels) < 0)
    derl = model.derl([0, 1, 2, 5, 10], d).to_numpy()
    assert np.all(np.diff(derl) > 0)  # survivors are the loyal ones: residual value grows with tenure


def test_intervals(case):
    _, _, _, model = case
    out = model.survival([1, 5, 12], interval=0.9, n_draws=300, seed=0)
    assert np.all((out["mean_lower"] < out["mean_median"]) & (out["mean_median"] < out["mean_upper"]))
    point = model.survival([1, 5, 12])
    assert np.all((out["mean_lower"].to_numpy() < point.to_numpy()) & (point.to_numpy() < out["mean_upper"].to_numpy()))
    derl = model.derl([0, 3], 0.1, interval=0.8, n_draws=200, seed=0)
    assert np.all(derl["mean_lower"] < derl["mean_upper"])


def test_survivor_table_and_generic_fit_agree():
    table = survivor_table(REGULAR[:8])
    assert list(table.columns) == ["period", "churned", "count"]
    assert table["count"].sum() == 1000
    assert table.iloc[-1].tolist() == [7, 0, 241]
    direct = ShiftedBetaGeoModel().fit(table, weights=table["count"])
    assert direct.params_["alpha"] == pytest.approx(0.704, abs=6e-4)
    assert direct.n_customers_ == 1000


@pytest.mark.parametrize("survivors, message", [
    ([1000, 1100, 900], "must not increase"), ([1000], "at least 2"), ([1000, -1], "non-negative")])
def test_bad_survivors_raise_clear_errors(survivors, message):
    with pytest.raises(ClvDataError, match=message):
        survivor_table(survivors)


def test_bad_rows_and_arguments():
    bad = pd.DataFrame({"period": [0, 1], "churned": [1, 0]})
    with pytest.raises(ClvDataError, match="period"):
        ShiftedBetaGeoModel().fit(bad)
    bad = pd.DataFrame({"period": [1, 2], "churned": [2, 0]})
    with pytest.raises(ClvDataError, match="churned"):
        ShiftedBetaGeoModel().fit(bad)
    model = ShiftedBetaGeoModel()
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.survival(3)
    model.fit_survivors(REGULAR[:8])
    with pytest.raises(ClvDataError, match="discount_rate"):
        model.derl(0, 0.0)
    with pytest.raises(ClvDataError, match="renewals"):
        model.derl(1.5, 0.1)
    with pytest.raises(ClvDataError):
        model.retention_rate(0)


@pytest.mark.slow
def test_short_nuts_agrees_with_the_mle(case):
    import warnings

    from clvmodels import ConvergenceWarning

    survivors, _, _, mle = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ShiftedBetaGeoModel(seed=5, progressbar=False).fit_survivors(
            survivors[:8], method="nuts", draws=300, tune=300, chains=2)
    assert model.diagnostics_["divergences"] == 0 and max(model.diagnostics_["r_hat"].values()) < 1.05
    for k in ("alpha", "beta"):
        sd = model.posterior_draws_[k].std()
        assert abs(model.params_[k] - mle.params_[k]) < 3 * sd, k
    derl = model.derl([0, 5], 0.1)          # averaged over the posterior
    assert np.isfinite(derl).all()


def test_save_and_load_round_trip(tmp_path, case):
    from clvmodels.models.persistence import load_model, save_model

    _, _, _, model = case
    save_model(model, tmp_path / "sbg")
    loaded = load_model(tmp_path / "sbg")
    assert type(loaded) is ShiftedBetaGeoModel
    pd.testing.assert_series_equal(loaded.derl([0, 3], 0.1), model.derl([0, 3], 0.1))


@pytest.mark.parametrize("B, C, z", [
    (170.0, 171.0, 1 / 1.0625),      # DERL at alpha=beta=1 after 169 renewals: scipy gave inf
    (1000.5, 1001.0, 0.999),         # scipy's hyp2f1 returns NaN here
    (1.182, 1.886, 1 / 1.1),
    (3.806, 4.474, 0.99),
    (0.5, 50.0, 0.5),
    (0.5, 1.0, 1 / 1.0001),          # DEL at alpha=beta=0.5, d=1e-4: the fraction did not converge
    (0.001, 0.5, 1 / 1.0001),
])
def test_hyp2f1_one_matches_mpmath_where_scipy_fails(B, C, z):
    from clvmodels.models.sbg import hyp2f1_one

    with mp.workdps(40):
        ref = mp.hyp2f1(1, B, C, z)
    assert float(hyp2f1_one(B, C, z)) == pytest.approx(float(ref), rel=1e-11)


def test_derl_finite_at_long_tenure():
    """Regression: derl returned inf for alpha = beta = 1, 169 renewals, d = 0.0625."""
    from clvmodels.models.sbg import derl

    value = float(derl({"alpha": np.array(1.0), "beta": np.array(1.0)}, 169, discount_rate=0.0625))
    n = 170
    with mp.workdps(40):
        ref = mp.beta(1, 1 + n) / mp.beta(1, n) * mp.hyp2f1(1, 1 + n, 2 + n, 1 / mp.mpf(1.0625))
    assert value == pytest.approx(float(ref), rel=1e-11)


# ---------------------------------------------------------------------------- numerical stability
SHAPE = st.floats(1e-3, 1e4)
RATE = st.floats(1e-4, 10.0)
PERIOD = st.integers(0, 5000)


def sbg_params(alpha, beta) -> dict:
    return {"alpha": np.array(alpha), "beta": np.array(beta)}


def mp_hyp2f1_one(B, C, z):
    """``Σ_k (B)_k/(C)_k z^k`` term by term (mpmath's own hyp2f1 is wrong for some large B, C: e.g.
    3.3e164 for 2F1(1, 5304.6; 7227.2; 0.905), whose terms fall geometrically from 1); the ratio of
    successive terms stays below ``z``, so the tail after a term is at most ``term · z/(1−z)``."""
    total, term, k = mp.mpf(1), mp.mpf(1), 0
    while term * z / (1 - z) > mp.mpf(10) ** -25 * total:
        term *= (B + k) / (C + k) * z
        total += term
        k += 1
    return total


def mp_derl(alpha, beta, renewals, d):
    """Fader & Hardie 2010, eq. 6, at 30 digits: B(α, β+n)/B(α, β+n−1) = (β+n−1)/(α+β+n−1)."""
    with mp.workdps(30):
        a, b, d = mp.mpf(alpha), mp.mpf(beta), mp.mpf(d)
        n = renewals + 1
        return (b + n - 1) / (a + b + n - 1) * mp_hyp2f1_one(b + n, a + b + n, 1 / (1 + d))


@settings(max_examples=200, deadline=None)
@given(alpha=SHAPE, beta=SHAPE, periods=st.lists(PERIOD, min_size=2, max_size=6), renewals=PERIOD,
       more=st.integers(1, 3000), d1=RATE, d2=RATE)
def test_stable_and_in_range_for_wide_parameters(alpha, beta, periods, renewals, more, d1, d2):
    p = sbg_params(alpha, beta)
    t = np.array([0.0, *sorted(periods)])
    S = sbg.survival(p, t)
    assert np.all(np.isfinite(S)) and S[0] == 1.0 and np.all((S >= 0) & (S <= 1))
    assert np.all(np.diff(S) <= 0)                               # a cohort only shrinks
    t1 = t[t >= 1]
    if len(t1):
        r = sbg.retention_rate(p, t1)
        assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) >= 0)    # eq. 5: retention rises
        churn = sbg.churn_probability(p, t1)
        # the difference of survivals loses ~1e-12 to cancellation (mpmath checks churn exactly below)
        np.testing.assert_allclose(churn, sbg.survival(p, t1 - 1) - sbg.survival(p, t1), rtol=1e-8, atol=1e-10)
    lo, hi = sorted((d1, d2))
    derl = {(n, d): float(sbg.derl(p, n, discount_rate=d)) for n in (renewals, renewals + more) for d in (lo, hi)}
    for (n, d), v in derl.items():
        assert np.isfinite(v) and 0 <= v <= (1 + d) / d * (1 + 1e-12), (n, d, v)
    for n in (renewals, renewals + more):
        assert derl[(n, lo)] >= derl[(n, hi)] * (1 - 1e-12)      # more discounting, less value
    for d in (lo, hi):
        assert derl[(renewals + more, d)] >= derl[(renewals, d)] * (1 - 1e-10)  # survivors are the loyal ones
        dl = float(sbg.del_new_customer(p, discount_rate=d))
        assert 1 <= dl <= (1 + d) / d * (1 + 1e-12)
        assert dl == pytest.approx(1 + float(sbg.derl(p, 0, discount_rate=d)) / (1 + d), rel=1e-10)


@settings(max_examples=50, deadline=None)
@given(alpha=SHAPE, beta=SHAPE, renewals=PERIOD, d=st.floats(0.01, 10.0))   # the reference sums ~ 60/d terms
@pytest.mark.slow
def test_derl_del_and_survival_match_mpmath(alpha, beta, renewals, d):
    p = sbg_params(alpha, beta)
    assert float(sbg.derl(p, renewals, discount_rate=d)) == pytest.approx(float(mp_derl(alpha, beta, renewals, d)),
                                                                         rel=1e-9)
    with mp.workdps(30):
        ref_del = mp_hyp2f1_one(mp.mpf(beta), mp.mpf(alpha) + mp.mpf(beta), 1 / (1 + mp.mpf(d)))
        a, b, t = mp.mpf(alpha), mp.mpf(beta), renewals + 1
        ref_s = mp.beta(a, b + t) / mp.beta(a, b)
        ref_churn = mp.beta(a + 1, b + t - 1) / mp.beta(a, b)
    assert float(sbg.del_new_customer(p, discount_rate=d)) == pytest.approx(float(ref_del), rel=1e-9)
    assert float(sbg.survival(p, float(t))) == pytest.approx(float(ref_s), rel=1e-9, abs=1e-300)
    assert float(sbg.churn_probability(p, float(t))) == pytest.approx(float(ref_churn), rel=1e-9, abs=1e-300)


def test_mpmath_reference_where_mpmaths_hyp2f1_fails():
    """The reference sum agrees with mpmath where mpmath is right, and with ours where it is not."""
    with mp.workdps(30):
        assert mp_hyp2f1_one(mp.mpf(1.182), mp.mpf(1.886), 1 / mp.mpf(1.1)) == pytest.approx(
            float(mp.hyp2f1(1, 1.182, 1.886, 1 / mp.mpf(1.1))), rel=1e-20)
        B, C, z = mp.mpf(5304.619061154909), mp.mpf(7227.219538586772), 1 / (1 + mp.mpf(0.10455583836649986))
        assert mp.hyp2f1(1, B, C, z) > 1e160          # mpmath: wrong
        ref = mp_hyp2f1_one(B, C, z)
    assert 2.98 < ref < 2.99                           # ~ 1/(1 − z·B/C) = 3.0
    assert float(sbg.hyp2f1_one(float(B), float(C), float(z))) == pytest.approx(float(ref), rel=1e-11)


# ---------------------------------------------------------------------------- retention backtest
@pytest.fixture(scope="module")
def retention():
    from clvmodels import retention_backtest

    return retention_backtest({"regular": REGULAR, "high end": HIGH_END}, calibration_periods=7)


def test_retention_backtest_projects_years_8_to_12(retention):
    holdout = retention.survivors.query("phase == 'holdout' and model == 'sBG'").set_index(["cohort", "period"])
    assert list(holdout.loc["regular", "actual"]) == REGULAR[8:]
    # S(t) at the fit on years 0-7 (the published parameters) x 1,000; actual: 223..173 and 468..394
    np.testing.assert_allclose(holdout.loc["regular", "predicted"], [220.1, 204.4, 191.2, 179.9, 170.0], atol=0.1)
    np.testing.assert_allclose(holdout.loc["high end", "predicted"], [460.4, 435.8, 414.2, 395.1, 378.0], atol=0.1)
    table = retention.table("regular")
    assert table.loc["sBG", "mape"] == pytest.approx(1.49, abs=0.01)
    assert table.loc["sBG", "final_error_pct"] == pytest.approx(-1.71, abs=0.01)   # 170.0 vs 173
    assert retention.table("high end").loc["sBG", "mape"] == pytest.approx(2.83, abs=0.01)
    params = retention.parameters.query("statistic == 'estimate'").set_index(["cohort", "parameter"])["value"]
    assert params[("high end", "beta")] == pytest.approx(3.806, abs=6e-4)


def test_constant_churn_baseline_misses_by_a_wide_margin(retention):
    from clvmodels.retention import constant_churn_survival

    # geometric MLE on years 1-7, regular: 759 lost over 3,358 customer-years at risk
    theta = 759 / 3358
    np.testing.assert_allclose(constant_churn_survival(REGULAR, 7, [1, 12]), (1 - theta) ** np.array([1, 12]))
    base = retention.table("regular").loc["constant churn"]
    assert base["mape"] == pytest.approx(59.0, abs=0.1) and base["final_error_pct"] == pytest.approx(-73.3, abs=0.1)
    assert set(retention.best()) == {"sBG"}
    assert len(retention.warnings) == 0


def test_retention_report(retention, tmp_path):
    from clvmodels import compare_report
    from clvmodels.report import RETENTION_SECTIONS

    text = compare_report(retention, tmp_path / "retention.html").read_text()
    positions = [text.index(f'<section id="{s}">') for s in RETENTION_SECTIONS]
    assert positions == sorted(positions)
    assert text.count("<img") == 2 and "Plot not available" not in text          # one plot per cohort
    assert "period 12 survivors projected 170 vs actual 173 (<b>-1.7%</b>)" in text
    assert text.count('<td class="best">') == 6                                  # 3 metrics x 2 cohorts
    assert retention._repr_html_().startswith('<div class="clv-report">')


def test_retention_backtest_arguments():
    from clvmodels import retention_backtest

    with pytest.raises(ClvDataError, match="calibration_periods"):
        retention_backtest(REGULAR, calibration_periods=12)
    with pytest.raises(ClvDataError, match="must not increase"):
        retention_backtest([1000, 800, 850, 700], calibration_periods=1)
    single = retention_backtest(REGULAR[:10], calibration_periods=7)
    assert single.cohorts == ["cohort"] and len(single.survivors.query("phase == 'holdout'")) == 4
