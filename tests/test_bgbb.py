"""BG/BB (Fader, Hardie & Shang 2010): the published donations fit (weighted), the same fit from a
transaction log through :func:`bgbb_summary`, agreement with lifetimes' ``BetaGeoBetaBinomFitter``
predictions, mpmath, pmf/simulation consistency, stability, input checks, model contract and the
discrete backtest (calibration 1995-2001, holdout 2002-2006) with its report.

Published numbers: ``/work/shared/reference/models.md`` (alpha=1.204, beta=0.750, gamma=0.657,
delta=2.783, LL=-33,225.6 on 11,104 donors with 6 opportunities).
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

from clvmodels import BetaGeoBetaBinomModel, ClvDataError, NotFittedError, bgbb_summary, load_transactions
from clvmodels.datasets import load_donations
from clvmodels.models import bgbb

NAMES = ("alpha", "beta", "gamma", "delta")
PUBLISHED = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
PUBLISHED_LL = -33225.6


@pytest.fixture(autouse=True)
def _mpmath_precision():
    """40 significant digits for the mpmath references, for this module's tests only."""
    with mp.workdps(40):
        yield


def draw(params: dict) -> dict:
    return {k: np.array([[float(v)]]) for k, v in params.items()}


@pytest.fixture(scope="module")
def donations():
    return load_donations().rename(columns={"periods": "n_periods"})


@pytest.fixture(scope="module")
def fitted(donations):
    return BetaGeoBetaBinomModel().fit(donations, weights=donations["weights"])


@pytest.fixture(scope="module")
def lifetimes_fitter(fitted):
    from lifetimes import BetaGeoBetaBinomFitter

    lf = BetaGeoBetaBinomFitter()
    lf.params_ = pd.Series({k: float(fitted.params_[k]) for k in NAMES})
    return lf


@pytest.fixture(scope="module")
def ll_fn():
    import pytensor
    import pytensor.tensor as pt

    params = {k: pt.dscalar(k) for k in NAMES}
    data = {k: pt.dvector(k) for k in ("frequency", "recency", "n_periods")}
    return pytensor.function([*params.values(), *data.values()], bgbb.log_likelihood(params, data))


def mp_log_likelihood(alpha, beta, gamma, delta, x, tx, n):
    """FHS 2010, eq. 5, at 40 digits."""
    alpha, beta, gamma, delta = (mp.mpf(float(v)) for v in (alpha, beta, gamma, delta))
    x, tx, n = int(x), int(tx), int(n)
    B = mp.beta
    L = B(alpha + x, beta + n - x) / B(alpha, beta) * B(gamma, delta + n) / B(gamma, delta)
    L += mp.fsum(B(alpha + x, beta + tx - x + i) / B(alpha, beta) * B(gamma + 1, delta + tx + i) / B(gamma, delta)
                 for i in range(n - tx))
    return mp.log(L)


def donations_log(donations: pd.DataFrame) -> pd.DataFrame:
    """A transaction log with the donations table's histories: first gift in 1995, then gifts in
    the years 1995+1 .. 1995+x-1 and 1995+t_x (several gifts in some years, at odd dates)."""
    rows, cid = [], 0
    for x, tx, _, w in donations[["frequency", "recency", "n_periods", "weights"]].itertuples(index=False):
        years = [] if x == 0 else list(range(1, x)) + [tx]
        for _ in range(int(w)):
            cid += 1
            rows.append((f"d{cid}", "1995-03-01", 10.0))
            for k, y in enumerate(years):
                rows.append((f"d{cid}", f"{1995 + y}-0{1 + k % 9}-15", 5.0))
                if k == 0:
                    rows.append((f"d{cid}", f"{1995 + y}-12-30", 1.0))  # a second gift the same year
    return pd.DataFrame(rows, columns=["donor", "date", "gift"])


# ---------------------------------------------------------------------------- published fit
def test_reproduces_published_fit(fitted):
    for k, v in PUBLISHED.items():
        assert fitted.params_[k] == pytest.approx(v, abs=6e-4), k
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.05)
    assert fitted.n_customers_ == 11_104
    assert fitted.converged_


def test_log_likelihood_matches_mpmath(donations, fitted, ll_fn):
    p = fitted.params_[list(NAMES)]
    cols = [donations[c].to_numpy(float) for c in ("frequency", "recency", "n_periods")]
    ours = ll_fn(*p, *cols)
    ref = [float(mp_log_likelihood(*p, *row)) for row in zip(*cols)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # the same expression evaluated by numpy, as the predictions do
    np.testing.assert_allclose(bgbb._log_likelihood(np, draw(p), *cols)[0][0], ref, rtol=1e-12)
    total = float(np.dot(ref, donations["weights"]))
    assert fitted.log_likelihood_ == pytest.approx(total, rel=1e-10)


def test_fit_from_a_transaction_log_through_the_summary(donations, fitted):
    log = load_transactions(donations_log(donations), customer_id="donor", timestamp="date", amount="gift")
    summary = bgbb_summary(log, period="Y", observation_end="2001-12-31")
    assert len(summary) == 11_104 and (summary["n_periods"] == 6).all()
    counts = summary.groupby(["frequency", "recency"]).size()
    expected = donations.set_index(["frequency", "recency"])["weights"]
    pd.testing.assert_series_equal(counts.sort_index(), expected.sort_index(), check_names=False,
                                   check_dtype=False)
    model = BetaGeoBetaBinomModel().fit(summary)
    np.testing.assert_allclose(model.params_.to_numpy(), fitted.params_.to_numpy(), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:1 duplicate transaction row")
def test_summary_of_a_messy_log():
    log = pd.DataFrame({
        "id": ["a", "a", "a", "b", "c", "c", "d"],
        "ts": ["2020-05-01", "2020-11-30", "2022-01-02", "2021-07-01", "2020-01-01", "2020-01-01", "2023-06-30"],
    })
    s = bgbb_summary(log, period="Y", observation_end="2023-12-31", customer_id="id", timestamp="ts", amount=None)
    assert s.loc["a"].tolist() == [1, 2, 3]     # same-year repeat is one; last gift 2 years on; 3 opportunities
    assert s.loc["b"].tolist() == [0, 0, 2]
    assert s.loc["c"].tolist() == [0, 0, 3]     # duplicate rows on the first day: no repeat
    assert s.loc["d"].tolist() == [0, 0, 0]     # acquired in the last period: no opportunity yet
    q = bgbb_summary(log, period="Q", customer_id="id", timestamp="ts", amount=None)
    assert q.loc["a"].tolist() == [2, 7, 12]    # Q2 2020 .. Q2 2023 (the last date of the log)
    with pytest.raises(ClvDataError, match="period"):
        bgbb_summary(log, period="fortnight", customer_id="id", timestamp="ts", amount=None)
    with pytest.raises(ClvDataError, match="observation end"):
        bgbb_summary(log, period="Y", observation_end="2022-06-30", customer_id="id", timestamp="ts", amount=None)


# ---------------------------------------------------------------------------- lifetimes agreement
@pytest.mark.parametrize("m", [1, 5, 10])
def test_predictions_equal_lifetimes(donations, fitted, lifetimes_fitter, m):
    f, r, n = donations["frequency"], donations["recency"], donations["n_periods"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = lifetimes_fitter.conditional_expected_number_of_purchases_up_to_time(m, f, r, n)
        alive = lifetimes_fitter.conditional_probability_alive(m, f, r, n)
    np.testing.assert_allclose(fitted.expected_purchases(m).to_numpy(), e, rtol=1e-6)
    np.testing.assert_allclose(fitted.probability_alive(t=m).to_numpy(), alive, rtol=1e-6)
    np.testing.assert_array_equal(fitted.probability_alive(at=m).to_numpy(), fitted.probability_alive(t=m).to_numpy())


def test_new_customer_histogram_equals_lifetimes(donations, fitted, lifetimes_fitter):
    lifetimes_fitter.data = donations   # lifetimes reads the cohort size from its training data
    theirs = lifetimes_fitter.expected_number_of_transactions_in_first_n_periods(6)["model"]
    ours = fitted.probability_of_n_purchases_new_customer(6) * donations["weights"].sum()
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-6)
    # its mean is the new-customer expectation (FHS 2010 eq. 9)
    mean = float((ours.index.to_numpy() * ours.to_numpy()).sum() / donations["weights"].sum())
    assert mean == pytest.approx(fitted.expected_purchases_new_customer(6), rel=1e-10)


def test_expected_survived_limit_at_gamma_one():
    m, delta = 7.0, 2.5
    exact = sum(delta / (delta + j) for j in range(1, 8))   # B(1, d+j)/B(1, d) = d/(d+j)
    for g in (1.0, 1.0 + 1e-9, 1.0 - 1e-9, 1.0 + 1e-6):
        assert float(bgbb.expected_survived(g, delta, m)) == pytest.approx(exact, rel=2e-6)


def test_conditional_pmf_sums_to_one_and_its_mean_is_the_expectation(donations, fitted):
    from clvmodels.predictive import purchase_pmf

    pmf = purchase_pmf(fitted, 5, 7, donations)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(pmf[:, 6:] == 0)                 # at most 5 transactions in 5 opportunities
    mean = (pmf[:, :-1] * np.arange(7)).sum(axis=1)
    np.testing.assert_allclose(mean, fitted.expected_purchases(5).to_numpy(), rtol=1e-9)


def test_simulated_purchases_match_the_expectation(donations, fitted):
    rng = np.random.default_rng(5)
    params = {k: np.full((50_000, 1), float(v)) for k, v in fitted.params_.items()}
    rows = donations.iloc[[0, 5, 20]]
    data = [rows[c].to_numpy(float) for c in ("frequency", "recency", "n_periods")]
    counts = bgbb.simulate_purchases(params, *data, t=5, rng=rng)
    expected = bgbb.expected_purchases(draw(fitted.params_), *data, t=5)[0]
    se = counts.std(axis=0) / np.sqrt(len(counts))
    assert np.all(np.abs(counts.mean(axis=0) - expected) < 4 * se)


# ---------------------------------------------------------------------------- stability
@st.composite
def histories(draw_):
    n = draw_(st.integers(0, 200))
    tx = draw_(st.integers(0, n))
    x = 0 if tx == 0 else draw_(st.integers(1, tx))
    return float(x), float(tx), float(n)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(alpha=st.floats(1e-2, 1e2), beta=st.floats(1e-2, 1e2), gamma=st.floats(1e-2, 1e2),
       delta=st.floats(1e-2, 1e2), history=histories(), m1=st.integers(0, 500), m2=st.integers(0, 500))
def test_stable_for_extreme_histories_and_parameters(ll_fn, alpha, beta, gamma, delta, history, m1, m2):
    x, tx, n = (np.array([v]) for v in history)
    ll = ll_fn(alpha, beta, gamma, delta, x, tx, n)
    assert np.isfinite(ll).all()
    params = draw({"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta})
    # the one expression gives the same value evaluated by PyTensor (the fits) and numpy (the predictions)
    np.testing.assert_allclose(bgbb._log_likelihood(np, params, x, tx, n)[0][0], ll, rtol=1e-12, atol=1e-10)
    for future in (0, 1, 10):
        alive = bgbb.probability_alive(params, x, tx, n, t=future)
        assert np.isfinite(alive).all() and np.all((alive >= 0) & (alive <= 1 + 1e-12))
    lo, hi = sorted((m1, m2))
    e_lo = bgbb.expected_purchases(params, x, tx, n, t=lo)
    e_hi = bgbb.expected_purchases(params, x, tx, n, t=hi)
    assert np.isfinite(e_lo).all() and np.isfinite(e_hi).all()
    assert np.all(e_lo >= 0) and np.all(e_hi >= e_lo * (1 - 1e-9)) and np.all(e_hi <= hi + 1e-9)


# ---------------------------------------------------------------------------- discrete backtest
def holdout_gifts(summary: pd.DataFrame, params: dict, years, seed: int) -> pd.DataFrame:
    """Gifts in ``years`` drawn from each donor's BG/BB posterior at ``params`` (FHS 2010, §2): alive
    at n with P(alive), ``p ~ Beta(α+x, β+n−x)``, ``θ ~ Beta(γ, δ+n)``; each year she dies at its
    start with probability θ, else gives with probability p."""
    rng = np.random.default_rng(seed)
    x, tx, n = (summary[c].to_numpy(float) for c in ("frequency", "recency", "n_periods"))
    alive = rng.random(len(x)) < bgbb.probability_alive({k: np.array(v) for k, v in params.items()}, x, tx, n)
    p = rng.beta(params["alpha"] + x, params["beta"] + n - x)
    theta = rng.beta(params["gamma"], params["delta"] + n)
    rows = []
    for year in years:
        alive &= rng.random(len(x)) >= theta
        gives = alive & (rng.random(len(x)) < p)
        rows.append(pd.DataFrame({"donor": summary.index[gives], "date": f"{year}-06-15", "gift": 5.0}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def donations_backtest(donations):
    """The donations histories 1995-2001 (lifetimes ships the calibration table only: the holdout
    2002-2006 is drawn from the published fit's posterior) through ``discrete_backtest``."""
    from clvmodels import discrete_backtest

    calibration = donations_log(donations)
    summary = bgbb_summary(load_transactions(calibration, customer_id="donor", timestamp="date", amount="gift"),
                           observation_end="2001-12-31")
    gifts = holdout_gifts(summary, PUBLISHED, range(2002, 2007), seed=7)
    log = load_transactions(pd.concat([calibration, gifts]), customer_id="donor", timestamp="date", amount="gift")
    return log, gifts, discrete_backtest(log, calibration_end="2001-12-31", t=5, seed=3)


def test_backtest_total_equals_lifetimes_and_tracks_the_holdout(donations, donations_backtest):
    from lifetimes import BetaGeoBetaBinomFitter

    _, gifts, res = donations_backtest
    assert res.model_names == ["BG/BB", "no change"]
    row = res.totals.set_index("model").loc["BG/BB"]
    assert row["actual"] == len(gifts) == 12_801 == res.data["holdout_transactions"].iloc[0]
    # an independent lifetimes fit on the same calibration table predicts the same holdout total
    lf = BetaGeoBetaBinomFitter().fit(donations["frequency"], donations["recency"], donations["n_periods"],
                                      weights=donations["weights"])
    theirs = lf.conditional_expected_number_of_purchases_up_to_time(
        5, donations["frequency"], donations["recency"], donations["n_periods"]) @ donations["weights"]
    assert row["predicted"] == pytest.approx(float(theirs), rel=1e-5)
    assert row["predicted"] == pytest.approx(12_884.2, abs=0.5)
    assert row["error_pct"] == pytest.approx(0.65, abs=0.01)                     # +0.65%
    assert row["inside"] and row["lower"] < row["plugin_lower"] < row["actual"] < row["plugin_upper"] < row["upper"]
    params = res.parameters.query("statistic == 'estimate'").set_index("parameter")["value"]
    for k, v in PUBLISHED.items():
        assert params[k] == pytest.approx(v, abs=6e-4), k


def test_backtest_bgbb_beats_no_change(donations_backtest):
    _, _, res = donations_backtest
    table = res.table("purchases")
    assert table.loc["BG/BB", "mae"] == pytest.approx(0.708, abs=1e-3)
    assert table.loc["no change", "mae"] == pytest.approx(0.997, abs=1e-3)
    assert table.loc["BG/BB", "rmse"] < 0.75 * table.loc["no change", "rmse"]
    # "no change" ignores drop-out: it over-forecasts the holdout total by 60%
    assert table.loc["no change", "total_error_pct"] == pytest.approx(60.24, abs=0.01)
    assert abs(table.loc["BG/BB", "coverage_90"] - 0.9) < 0.01
    assert set(res.best("purchases")) == {"BG/BB"}


def test_backtest_tracking_and_conditional_expectations(donations_backtest):
    _, _, res = donations_backtest
    holdout = res.tracking[res.tracking["phase"] == "holdout"]
    assert list(holdout["period_end"].dt.year) == [2002, 2003, 2004, 2005, 2006]
    assert holdout["actual"].sum() == 12_801
    np.testing.assert_allclose(holdout["predicted"], holdout["actual"], rtol=0.03)
    cond = res.conditional[res.conditional["model"] == "BG/BB"]
    assert cond["customers"].sum() == 11_104
    np.testing.assert_allclose(cond["predicted"], cond["actual"], atol=0.1)
    assert (cond["predicted"] * cond["customers"]).sum() == pytest.approx(12_884.2, abs=0.5)


def test_backtest_report_has_the_bgbb_rows(donations_backtest, tmp_path):
    from clvmodels import compare_report
    from clvmodels.report import SECTIONS

    _, _, res = donations_backtest
    text = compare_report(res, tmp_path / "donations.html").read_text()
    assert all(f'<section id="{s}">' in text for s in SECTIONS)
    assert text.count('<td class="name">BG/BB</td>') == 2            # metrics and totals tables
    assert f'<td class="best">{res.table().loc["BG/BB", "mae"]:.3f}</td>' in text
    assert "predicted total 12,884 purchases vs actual 12,801 purchases (<b>+0.6%</b>, within the ±10% limit)" in text
    assert "discrete transaction opportunities" in text and "Plot not available" not in text


def test_backtest_arguments(donations_backtest):
    from clvmodels import BetaGeoModel, backtest, discrete_backtest

    log = donations_backtest[0]
    with pytest.raises(ClvDataError, match="discrete_backtest"):
        backtest(log, BetaGeoBetaBinomModel(), calibration_end="2001-12-31")
    with pytest.raises(ClvDataError, match="continuous-time"):
        discrete_backtest(log, BetaGeoModel(), calibration_end="2001-12-31")
    with pytest.raises(ClvDataError, match="falls inside the period 2001"):
        discrete_backtest(log, calibration_end="2001-06-30")
    with pytest.raises(ClvDataError, match="after the last transaction"):
        discrete_backtest(log, calibration_end="2001-12-31", t=6)


# ---------------------------------------------------------------------------- contract
def test_intervals_and_contract(donations, fitted):
    out = fitted.expected_purchases(5, donations, interval=0.9, n_draws=200, seed=0)
    assert np.all((out["mean_lower"] <= out["mean_median"]) & (out["mean_median"] <= out["mean_upper"]))
    model = BetaGeoBetaBinomModel(penalizer=0.0)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.expected_purchases(3, donations)
    with pytest.raises(ClvDataError):
        fitted.expected_purchases(2.5)


@pytest.mark.parametrize("row, message", [
    ({"frequency": 2, "recency": 1, "n_periods": 6}, "frequency <= recency"),
    ({"frequency": 1, "recency": 7, "n_periods": 6}, "recency <= n_periods"),
    ({"frequency": 0, "recency": 3, "n_periods": 6}, "recency 0"),
    ({"frequency": 1, "recency": 2.5, "n_periods": 6}, "integers"),
])
def test_bad_histories_raise_clear_errors(row, message):
    frame = pd.DataFrame([row, {"frequency": 1, "recency": 2, "n_periods": 6}])
    with pytest.raises(ClvDataError, match=message):
        BetaGeoBetaBinomModel().fit(frame)


# ---------------------------------------------------------------------------- Bayesian fit
@pytest.mark.slow
def test_short_nuts_agrees_with_the_mle(donations, fitted):
    from clvmodels import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BetaGeoBetaBinomModel(seed=4, progressbar=False).fit(
            donations, weights=donations["weights"], method="nuts", draws=300, tune=300, chains=2)
    assert model.diagnostics_["divergences"] == 0 and max(model.diagnostics_["r_hat"].values()) < 1.05
    for k in NAMES:
        sd = model.posterior_draws_[k].std()
        assert abs(model.params_[k] - fitted.params_[k]) < 3 * sd, k


def test_save_and_load_round_trip(tmp_path, donations, fitted):
    from clvmodels.models.persistence import load_model, save_model

    save_model(fitted, tmp_path / "bgbb")
    loaded = load_model(tmp_path / "bgbb")
    assert type(loaded) is BetaGeoBetaBinomModel
    pd.testing.assert_series_equal(loaded.expected_purchases(5, donations), fitted.expected_purchases(5, donations))
