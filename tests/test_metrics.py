"""Metric maths on synthetic inputs: hand-computed values, independent reference formulas, invariants."""

import numpy as np
import pytest
from scipy import stats

from clvmodels import metrics as M
from clvmodels.errors import ClvDataError


def poisson_pmf(lam, n_max):
    pmf = stats.poisson.pmf(np.arange(n_max + 1)[None, :], np.asarray(lam, dtype=float)[:, None])
    return np.column_stack([pmf, np.clip(1 - pmf.sum(axis=1), 0, None)])


def test_point_errors_and_total_by_hand():
    actual, predicted = [0, 2, 4], [1, 1, 7]
    e = M.point_errors(actual, predicted)
    assert e["mae"] == pytest.approx(5 / 3)
    assert e["rmse"] == pytest.approx(np.sqrt(11 / 3))
    assert e["bias"] == pytest.approx(1.0)
    assert M.total_error_pct(actual, predicted) == pytest.approx(50.0)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ClvDataError, match="differ in length"):
        M.point_errors([1, 2], [1])
    with pytest.raises(ClvDataError, match="non-finite"):
        M.point_errors([1, np.nan], [1, 2])
    with pytest.raises(ClvDataError, match="sum"):
        M.log_score(np.array([[0.5, 0.2, 0.1]]), [1])
    with pytest.raises(ClvDataError, match="shape"):
        M.crps_pmf(np.array([[0.5, 0.5]]), [1, 2])


def test_spearman_matches_scipy_and_is_nan_for_constant_forecasts():
    rng = np.random.default_rng(1)
    a, p = rng.poisson(2, 500), rng.gamma(2, size=500)
    assert M.spearman(a, p) == pytest.approx(stats.spearmanr(a, p).statistic, abs=1e-12)
    assert np.isnan(M.spearman(a, np.ones(500)))


def test_top_share_by_hand_and_ties_shared_pro_rata():
    actual = np.array([10.0, 0.0, 5.0, 5.0])
    assert M.top_share(actual, [4, 3, 2, 1], 0.5) == pytest.approx(0.5)
    assert M.top_share(actual, [1, 2, 3, 4], 0.5) == pytest.approx(0.5)
    assert M.top_share(actual, [4, 1, 3, 2], 0.5) == pytest.approx(0.75)
    # a constant forecast selects everyone with the same weight: its share equals the fraction
    assert M.top_share(actual, [1, 1, 1, 1], 0.25) == pytest.approx(0.25)
    # a tie straddling the cut: customers 2 and 3 tied, one of the two slots left
    assert M.top_share(actual, [9, 0, 5, 5], 0.5) == pytest.approx((10 + 0.5 * 10) / 20)


def _gini_reference(actual, predicted):
    """The usual normalised Gini (Kaggle's formula), for forecasts without ties."""
    def g(a, p):
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(a[order]) / a.sum()
        return cum.sum() / len(a) - (len(a) + 1) / (2 * len(a))
    return g(actual, predicted) / g(actual, actual)


def test_gini_matches_the_reference_formula_and_its_limits():
    rng = np.random.default_rng(2)
    a = rng.gamma(0.5, 10, size=2000)
    p = a * rng.lognormal(0, 1, size=2000)
    # the reference uses left Riemann sums; ours trapezoids: they differ by O(1/n)
    assert M.gini(a, p) == pytest.approx(_gini_reference(a, p), abs=2e-3)
    assert M.gini(a, a) == pytest.approx(1.0)
    assert M.gini(a, np.ones_like(a)) == pytest.approx(0.0, abs=1e-12)
    assert M.gini(a, -a) == pytest.approx(-1.0)


def test_gains_curve_ends_and_agrees_with_top_share():
    rng = np.random.default_rng(3)
    a, p = rng.poisson(1, 1000).astype(float), rng.random(1000)
    x, captured = M.gains_curve(a, p, n_points=11)
    assert captured[0] == 0 and captured[-1] == pytest.approx(1.0)
    assert np.all(np.diff(captured) >= -1e-12)
    assert captured[1] == pytest.approx(M.top_share(a, p, 0.1))
    assert captured[2] == pytest.approx(M.top_share(a, p, 0.2))


def test_randomized_pit_is_uniform_and_coverage_nominal_for_calibrated_counts():
    rng = np.random.default_rng(4)
    lam = rng.gamma(0.7, 1.5, size=20_000)
    y = rng.poisson(lam)
    pit = M.randomized_pit(poisson_pmf(lam, 60), y, seed=5)
    assert stats.kstest(pit, "uniform").pvalue > 0.01
    for level, cov in M.pit_coverage(pit).items():
        assert cov == pytest.approx(level, abs=0.015)
    assert M.pit_histogram(pit).sum() == pytest.approx(1.0)
    # a forecast too low everywhere pushes PIT values to 1
    biased = M.randomized_pit(poisson_pmf(lam / 3, 60), y, seed=5)
    assert np.mean(biased > 0.9) > 0.2


def test_pit_is_reproducible_with_a_seed():
    pmf = poisson_pmf([0.5, 2.0, 3.0], 20)
    assert np.array_equal(M.randomized_pit(pmf, [0, 1, 5], seed=7), M.randomized_pit(pmf, [0, 1, 5], seed=7))


def test_log_score_by_hand():
    pmf = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.7, 0.1]])
    assert M.log_score(pmf, [1, 2]) == pytest.approx(-(np.log(0.3) + np.log(0.7)) / 2)
    # an impossible outcome: floored at 1e-300, or at a simulated pmf's resolution
    assert M.log_score(pmf, [3, 2]) == pytest.approx(-(np.log(1e-300) + np.log(0.7)) / 2)
    assert M.log_score(pmf, [3, 2], floor=0.5 / 100) == pytest.approx(-(np.log(0.005) + np.log(0.7)) / 2)


def test_sample_pmf_counts_the_samples_and_scores_as_the_samples_do():
    samples = np.array([[0, 2], [1, 7], [0, 3], [0, 2]])
    pmf = M.sample_pmf(samples, 3)          # columns 0, 1, 2 and ">= 3"
    np.testing.assert_allclose(pmf, [[0.75, 0.25, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
    rng = np.random.default_rng(1)
    draws = rng.poisson(2.0, size=(200, 30))
    y = rng.poisson(2.0, size=30)
    big = M.sample_pmf(draws, int(draws.max()) + 1)     # nothing in the tail column: the samples' own law
    assert M.crps_pmf(big, y) == pytest.approx(M.crps_samples(draws, y), rel=1e-12)
    np.testing.assert_allclose(M.randomized_pit(big, y, seed=3), M.pit_samples(draws, y, seed=3), atol=1e-12)
    with pytest.raises(ClvDataError, match="non-negative counts"):
        M.sample_pmf(-samples, 3)


def test_crps_of_a_point_mass_is_the_absolute_error_and_matches_samples():
    point = np.zeros((2, 6))
    point[0, 0] = 1.0  # all mass at 0
    point[1, 3] = 1.0  # all mass at 3
    assert M.crps_pmf(point, [2, 3]) == pytest.approx((2 + 0) / 2)
    assert M.crps_samples(np.array([[0.0, 3.0]] * 5), [2, 3]) == pytest.approx(1.0)
    rng = np.random.default_rng(6)
    lam = rng.gamma(1.0, 2.0, size=300)
    y = rng.poisson(lam)
    samples = rng.poisson(lam, size=(4000, 300)).astype(float)
    assert M.crps_pmf(poisson_pmf(lam, 80), y) == pytest.approx(M.crps_samples(samples, y), rel=0.02)


def test_crps_samples_spread_formula_against_brute_force():
    rng = np.random.default_rng(8)
    s, y = rng.normal(size=(50, 3)), rng.normal(size=3)
    brute = np.mean([np.mean(np.abs(s[:, i] - y[i])) - 0.5 * np.mean(np.abs(s[:, i, None] - s[None, :, i]))
                     for i in range(3)])
    assert M.crps_samples(s, y) == pytest.approx(brute, rel=1e-12)


def test_total_pmf_equals_direct_convolution():
    rng = np.random.default_rng(9)
    pmf = rng.dirichlet(np.ones(5), size=7)
    direct = np.array([1.0])
    for row in pmf:
        direct = np.convolve(direct, row)
    support, probs = M.total_pmf(pmf, tail=0)
    full = np.zeros(len(direct))
    full[support] = probs
    np.testing.assert_allclose(full, direct, atol=1e-14)
    # weights count identical customers
    support, probs = M.total_pmf(pmf[:2], weights=[3, 1], tail=0)
    direct = np.convolve(np.convolve(np.convolve(pmf[0], pmf[0]), pmf[0]), pmf[1])
    full = np.zeros(len(direct))
    full[support] = probs
    np.testing.assert_allclose(full, direct, atol=1e-14)


def test_total_pmf_of_many_poisson_customers_is_poisson_of_the_sum():
    rng = np.random.default_rng(10)
    lam = rng.gamma(0.5, 2, size=20_000)
    support, probs = M.total_pmf(poisson_pmf(lam, 80))
    np.testing.assert_allclose(probs, stats.poisson.pmf(support, lam.sum()), atol=1e-10)
    lo, hi = M.interval_from_pmf(support, probs, 0.9)
    assert (lo, hi) == tuple(stats.poisson.ppf([0.05, 0.95], lam.sum()))


def test_pit_samples_and_total_interval_samples():
    rng = np.random.default_rng(11)
    mu = rng.gamma(2, 1, size=3000)
    samples = rng.exponential(mu, size=(400, 3000))
    y = rng.exponential(mu)
    assert stats.kstest(M.pit_samples(samples, y, seed=1), "uniform").pvalue > 0.01
    # point masses: a forecast of 0 for sure, actual 0, gives a uniform PIT over (0, 1)
    zero = M.pit_samples(np.zeros((10, 5000)), np.zeros(5000), seed=2)
    assert 0.45 < zero.mean() < 0.55
    mean, lo, hi = M.total_interval_samples(np.ones((100, 4)) * np.arange(100)[:, None], 0.9)
    assert mean == pytest.approx(4 * 49.5) and lo == pytest.approx(4 * 4.95) and hi == pytest.approx(4 * 94.05)
