"""Predictive CLV: exact simulation of purchases per period for every purchase model, spend per
period, the discounted value's distribution per customer and per segment, and ``clv(kind=...)``.

References: the per-period counts add up to the closed-form expectations ``E[Y(t_i) | history]``
at every boundary (Monte Carlo agreement), and their totals to the model's predictive pmf; the
simulated discounted value's mean is the expected CLV; the segment totals are the sums over
customers of the same futures.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import ClvDataError
from clvmodels.clv import clv_periods
from clvmodels.datasets import cdnow_summary
from clvmodels.models.draws import EXPECTED, PREDICTIVE, interval_frame
from clvmodels.models.purchase import alive_in_periods, period_boundaries, split_over_lifetime, split_over_periods

BOUNDS = np.array([4.0, 13.0, 26.0, 39.0])


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="module")
def fits(rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"BG/NBD": clv.BetaGeoModel().fit(rfm), "MBG/NBD": clv.ModifiedBetaGeoModel().fit(rfm),
                "Pareto/NBD": clv.ParetoNBDModel().fit(rfm),
                "GG": clv.GammaGammaModel(exclude_invalid=True).fit(rfm)}


@pytest.fixture(scope="module")
def bgbb():
    from clvmodels.datasets import load_donations

    donations = load_donations().rename(columns={"periods": "n_periods"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return donations, clv.BetaGeoBetaBinomModel().fit(donations, weights=donations["weights"])


def _histories(rfm, model):
    """A few distinct histories: heavy, light, one-off and no repeat purchase."""
    rows = rfm.sort_values("frequency").iloc[[0, 1000, 2000, 2300, -1]]
    return {k: rows[k].to_numpy(float) for k in model.data_columns}


# ---------------------------------------------------------------------------- simulation per period
@pytest.mark.parametrize("name", ["BG/NBD", "MBG/NBD", "Pareto/NBD"])
def test_counts_per_period_add_up_to_the_expected_purchases(fits, rfm, name):
    """Cumulative simulated counts at each boundary agree with E[Y(t_i) | history] (4 Monte Carlo
    standard errors), and the totals follow the predictive pmf at the last boundary."""
    model = fits[name]
    data = _histories(rfm, model)
    n = 40_000
    params = {k: np.full((n, 1), v) for k, v in model.params_.items()}
    counts = model.simulate_purchases_formula(params, **data, t=BOUNDS, rng=np.random.default_rng(1))
    assert counts.shape == (n, 5, len(BOUNDS)) and counts.min() >= 0
    cumulative = np.cumsum(counts, axis=-1)
    for i, b in enumerate(BOUNDS):
        expected = model.expected_purchases_formula(dict(model.params_), **data, t=b)
        se = cumulative[..., i].std(axis=0) / np.sqrt(n)
        assert np.all(np.abs(cumulative[..., i].mean(axis=0) - expected) < 4 * se + 1e-12)
    pmf = model.purchase_pmf_formula(dict(model.params_), **data, t=BOUNDS[-1], n_max=3)
    for k in range(3):
        share = np.mean(cumulative[..., -1] == k, axis=0)
        assert np.all(np.abs(share - pmf[:, k]) < 4 * np.sqrt(pmf[:, k] * (1 - pmf[:, k]) / n) + 1e-3)


def test_a_number_t_is_the_one_period_case(fits, rfm):
    """A window ``t`` returns counts without a period axis, distributed as the sum over periods."""
    model = fits["Pareto/NBD"]
    data = _histories(rfm, model)
    params = {k: np.full((20_000, 1), v) for k, v in model.params_.items()}
    one = model.simulate_purchases_formula(params, **data, t=39.0, rng=np.random.default_rng(2))
    per = model.simulate_purchases_formula(params, **data, t=BOUNDS, rng=np.random.default_rng(3))
    assert one.shape == (20_000, 5)
    np.testing.assert_allclose(one.mean(axis=0), per.sum(axis=-1).mean(axis=0), rtol=0.08, atol=0.01)
    # same seed, same draws
    again = model.simulate_purchases_formula(params, **data, t=BOUNDS, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(per, again)


def test_bgbb_counts_per_period(bgbb):
    """BG/BB: per-period transactions never exceed the opportunities in the period, and their
    cumulative means agree with E[X(n, n+t_i)] (FHS 2010 eq. 13)."""
    donations, model = bgbb
    rows = donations.iloc[::5]
    data = {k: rows[k].to_numpy(float) for k in model.data_columns}
    bounds = np.array([1.0, 3.0, 6.0])
    n = 40_000
    params = {k: np.full((n, 1), v) for k, v in model.params_.items()}
    counts = model.simulate_purchases_formula(params, **data, t=bounds, rng=np.random.default_rng(4))
    assert counts.shape == (n, len(rows), 3)
    assert np.all(counts <= np.diff(bounds, prepend=0.0).astype(int))
    cumulative = np.cumsum(counts, axis=-1)
    for i, b in enumerate(bounds):
        expected = model.expected_purchases_formula(dict(model.params_), **data, t=b)
        se = cumulative[..., i].std(axis=0) / np.sqrt(n)
        assert np.all(np.abs(cumulative[..., i].mean(axis=0) - expected) < 4 * se + 1e-12)
    with pytest.raises(ClvDataError, match="whole"):
        model.simulate_purchases_formula(params, **data, t=np.array([1.5, 3.0]), rng=np.random.default_rng(0))


def test_purchases_before_dropout_is_beta_geometric():
    """min(N, G) by inversion of the beta-geometric survival has the law of drawing p ~ Beta(a, b),
    then G ~ Geometric(p)."""
    from clvmodels.models.bgnbd import purchases_before_dropout

    rng = np.random.default_rng(8)
    m = 200_000
    for a, b, n in ((0.8, 2.5, 6), (3.0, 0.7, 3), (0.2, 20.0, 40)):
        counts = np.full(m, n)
        k = purchases_before_dropout(counts, np.full(m, a), np.full(m, b), rng)
        reference = np.minimum(counts, rng.geometric(rng.beta(a, b, m)))
        assert k.min() >= 1 and k.max() <= n
        for j in range(1, n + 1):
            p, q = np.mean(k == j), np.mean(reference == j)
            assert abs(p - q) < 5 * np.sqrt(max(q, 1e-4) / m) * np.sqrt(2)


def test_split_over_periods_is_multinomial_on_both_paths():
    """Event by event (small totals) and by conditional binomials (large totals) give the same
    multinomial shares, and every split adds up to its total."""
    rng = np.random.default_rng(5)
    weights = np.array([1.0, 3.0, 0.0, 6.0])
    for total in (3, 500):
        n = np.full(20_000, total)
        counts = split_over_periods(n, weights, rng)
        assert np.array_equal(counts.sum(axis=1), n) and np.all(counts[:, 2] == 0)
        np.testing.assert_allclose(counts.mean(axis=0) / total, weights / weights.sum(), atol=0.01)
    # per-row exposures (e.g. time alive in each period)
    rows = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    counts = split_over_periods(np.array([7, 9]), rows, rng)
    assert counts[0].tolist() == [7, 0, 0] and counts[1, 2] == 0 and counts[1].sum() == 9
    # many rows of different exposures, some with none (and no events): each row's own shares
    kinds = np.array([[1.0, 3.0, 0.0, 6.0], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 2.0, 0.0]])
    which = np.arange(30_000) % 3
    counts = split_over_periods(np.where(which == 1, 0, 5), kinds[which], rng)
    assert np.all(counts[which == 1] == 0) and np.all(counts[which != 1].sum(axis=1) == 5)
    for k in (0, 2):
        np.testing.assert_allclose(counts[which == k].mean(axis=0) / 5, kinds[k] / kinds[k].sum(), atol=0.01)
    # discrete: a uniform subset of the opportunities
    opportunities = np.array([[2.0, 3.0, 0.0]])
    counts = split_over_periods(np.full(1, 4), np.repeat(opportunities, 1, axis=0), rng, discrete=True)
    assert counts.sum() == 4 and counts[0, 0] <= 2 and counts[0, 1] <= 3 and counts[0, 2] == 0


def test_split_over_lifetime_is_the_split_over_the_time_alive():
    """Events of a process that stops at a lifetime: uniform over the time alive, so the same
    multinomial shares as :func:`split_over_periods` with the time alive in each period."""
    rng = np.random.default_rng(8)
    bounds = np.array([1.0, 3.0, 4.0, 8.0])
    lifetime = np.tile([0.5, 3.5, 100.0], 20_000)
    for total in (4, 300):     # event by event, and by conditional binomials
        n = np.full(lifetime.size, total)
        counts = split_over_lifetime(n, bounds, lifetime, rng)
        assert np.array_equal(counts.sum(axis=1), n)
        for k in range(3):
            exposure = alive_in_periods(bounds, lifetime[k:k + 1])[0]
            np.testing.assert_allclose(counts[k::3].mean(axis=0) / total, exposure / exposure.sum(), atol=0.01)
        assert np.all(counts[0::3, 1:] == 0) and np.all(counts[1::3, 3] == 0)


def test_period_boundaries_are_checked():
    assert period_boundaries(5.0)[1] is True
    bounds, scalar = period_boundaries([1, 2, 3])
    assert not scalar and bounds.dtype == float
    for bad in ([2.0, 1.0], [0.0, 1.0], [[1.0]], []):
        with pytest.raises(ClvDataError):
            period_boundaries(bad)


def test_spend_per_period_shares_the_customer_spend_rate(fits, rfm):
    """Gamma-Gamma per period: Gamma(n p, ν) with one ν per customer and future, so the mean is
    n E[Z | history] per period and the periods' spends are positively correlated."""
    spend = fits["GG"]
    row = rfm[rfm["frequency"] > 2].iloc[:1]
    n = 200_000
    params = {k: np.full((n, 1), v) for k, v in spend.params_.items()}
    counts = np.broadcast_to(np.array([1, 0, 2]), (n, 1, 3))
    out = spend.simulate_spend_formula(params, row["frequency"].to_numpy(float),
                                       row["monetary_value"].to_numpy(float), n_transactions=counts,
                                       rng=np.random.default_rng(6))
    assert out.shape == (n, 1, 3) and np.all(out[..., 1] == 0) and np.all(out[..., [0, 2]] > 0)
    mean = spend.expected_spend(row).iloc[0]
    np.testing.assert_allclose(out[:, 0, [0, 2]].mean(axis=0), [mean, 2 * mean], rtol=0.02)
    assert np.corrcoef(out[:, 0, 0], out[:, 0, 2])[0, 1] > 0.05


# ---------------------------------------------------------------------------- predictive CLV
@pytest.mark.parametrize("name", ["BG/NBD", "MBG/NBD", "Pareto/NBD"])
@pytest.mark.slow
def test_predictive_clv_mean_is_the_expected_clv(fits, rfm, name):
    """The simulated mean (with parameter draws) agrees with the expected CLV averaged over the same
    kind of draws, customer by customer within Monte Carlo error and in total within 2%; P(CLV = 0)
    is the predictive P(no purchase by HΔ)."""
    model, spend = fits[name], fits["GG"]
    sub = rfm.iloc[::9]
    kw = dict(horizon=6, period_length=4.345, discount_rate=0.02)
    pred = clv.predictive_clv(model, spend, sub, interval=0.9, n_samples=4000, seed=0, **kw)
    assert list(pred.columns) == ["mean", "median", "lower", "upper", "p_zero", "mean_purchases"]
    assert pred.attrs["uncertainty"] == PREDICTIVE and pred.attrs["interval"] == 0.9
    expected = clv.clv(model, spend, sub, interval=0.9, kind="expected", n_draws=4000, seed=1, **kw)
    assert pred["mean"].sum() == pytest.approx(expected["mean"].sum(), rel=0.02)
    np.testing.assert_allclose(pred["mean"], expected["mean"], rtol=0.25, atol=2.0)
    assert np.all(pred["lower"] <= pred["median"]) and np.all(pred["median"] <= pred["upper"])
    # the predictive interval is far wider than the expected value's
    assert (pred["upper"] - pred["lower"]).mean() > 3 * (expected["mean_upper"] - expected["mean_lower"]).mean()
    p0 = clv.predictive.purchase_pmf(model, 6 * 4.345, 1, sub, n_draws=500, seed=2)[:, 0]
    np.testing.assert_allclose(pred["p_zero"], p0, atol=0.04)


@pytest.mark.slow
def test_discounting_and_reproducibility(fits, rfm):
    """No discount: the discounted value is the holdout-style total spend over HΔ (same mean as
    predictive_value); a discount lowers every customer's value; the same seed gives the same
    futures, another seed others."""
    model, spend = fits["BG/NBD"], fits["GG"]
    sub = rfm.iloc[:300]
    flat = clv.simulate_clv(model, spend, sub, horizon=4, period_length=10.0, discount_rate=0.0, n_samples=3000,
                            seed=3)
    assert flat.shape == (3000, 300)
    value = clv.predictive.predictive_value(model, spend, 40.0, sub, n_samples=3000, seed=4)
    assert flat.mean(axis=0).sum() == pytest.approx(value["mean"].sum(), rel=0.03)
    discounted = clv.simulate_clv(model, spend, sub, horizon=4, period_length=10.0, discount_rate=0.1,
                                  n_samples=3000, seed=3)
    # the same futures (same seed), each period's spend divided by (1.1)^i
    assert np.all(discounted <= flat + 1e-9) and np.all(discounted >= flat / 1.1**4 - 1e-9)
    np.testing.assert_array_equal(discounted, clv.simulate_clv(model, spend, sub, horizon=4, period_length=10.0,
                                                               discount_rate=0.1, n_samples=3000, seed=3))
    assert not np.array_equal(discounted, clv.simulate_clv(model, spend, sub, horizon=4, period_length=10.0,
                                                           discount_rate=0.1, n_samples=3000, seed=5))


def test_predictive_clv_streams_in_bounded_chunks(fits, rfm, monkeypatch):
    """With a small chunk budget the customers are simulated in many chunks, by several threads or
    one with the same result; summaries stay valid."""
    import clvmodels.predictive as P

    monkeypatch.setattr(P, "CHUNK_ELEMENTS", 50_000)
    model, spend = fits["BG/NBD"], fits["GG"]
    sub = rfm.iloc[:500]
    chunks = list(clv.clv.__globals__["discounted_chunks"](model, spend, sub, bounds=BOUNDS,
                                                            factors=np.ones(4), n_samples=1000, seed=0))
    assert len(chunks) > 10 and all(len(c[0]) <= 50_000 // (1000 * 4) for c in chunks)
    # every customer once; equal histories in one chunk, so each chunk's P(alive) is per distinct history
    positions = np.concatenate([c[0] for c in chunks])
    np.testing.assert_array_equal(np.sort(positions), np.arange(len(sub)))
    key = sub[["frequency", "recency", "T"]].to_numpy()[positions]
    assert np.all(np.diff(np.lexsort(key.T[::-1])) == 1)
    pred = clv.predictive_clv(model, spend, sub, horizon=12, period_length=4.345, n_samples=1000, seed=0)
    assert np.all(np.isfinite(pred.to_numpy()))
    # each chunk has its own stream: threads change nothing
    for jobs in (1, 3):
        again = clv.predictive_clv(model, spend, sub, horizon=12, period_length=4.345, n_samples=1000, seed=0,
                                   jobs=jobs)
        pd.testing.assert_frame_equal(again, pred)


def test_bgbb_predictive_clv(bgbb, fits):
    """BG/BB with a Gamma-Gamma spend model: whole periods of opportunities, at most one
    transaction per opportunity, and the mean agrees with the expected value (which used to fail:
    both models name a parameter ``gamma``, once refused as a clash though never merged)."""
    donations, model = bgbb
    rows = donations.assign(monetary_value=np.where(donations["frequency"] > 0, 40.0, 0.0))
    spend = fits["GG"]
    kw = dict(horizon=3, period_length=2.0, discount_rate=0.05)
    pred = clv.clv(model, spend, rows, interval=0.8, n_samples=2000, seed=0, **kw)
    expected = clv.clv(model, spend, rows, **kw)
    assert pred.attrs["uncertainty"] == PREDICTIVE
    assert pred["mean"].sum() == pytest.approx(expected.sum(), rel=0.03)
    assert np.all(pred["mean_purchases"] <= 6)


@pytest.mark.slow
def test_total_value_is_the_sum_of_the_customers_futures(fits, rfm):
    """Segment totals come from the same futures as the per-customer numbers: with the same seed
    their means add up exactly; the whole base's interval is wider than independent customers'
    would give (shared parameter draws) and holds its mean."""
    model, spend = fits["BG/NBD"], fits["GG"]
    kw = dict(horizon=12, period_length=4.345, discount_rate=0.01, n_samples=1000, seed=7)
    per = clv.predictive_clv(model, spend, rfm, **kw)
    segments = pd.Series(np.where(rfm["frequency"] > 0, "repeat", "one-off"), index=rfm.index)
    totals = clv.total_value(model, spend, rfm, segments=segments, **kw)
    assert list(totals.index) == ["one-off", "repeat"] and totals.attrs["uncertainty"] == PREDICTIVE
    assert list(totals.columns) == ["n_customers", "mean", "median", "lower", "upper"]
    assert totals["n_customers"].sum() == len(rfm)
    for label, group in per.groupby(segments):
        assert totals.loc[label, "mean"] == pytest.approx(group["mean"].sum(), rel=1e-12)
    whole = clv.total_value(model, spend, rfm, **kw)
    assert list(whole.index) == ["all"] and whole["mean"].iloc[0] == pytest.approx(per["mean"].sum(), rel=1e-12)
    assert whole["lower"].iloc[0] < whole["mean"].iloc[0] < whole["upper"].iloc[0]
    samples = clv.simulate_clv(model, spend, rfm, **kw)
    assert samples.columns.equals(rfm.index) and samples.index.name == "sample"  # labelled by customer id
    samples = samples.to_numpy()
    np.testing.assert_allclose(np.quantile(samples.sum(axis=1), [0.05, 0.95]),
                               whole[["lower", "upper"]].to_numpy()[0], rtol=1e-9)
    independent = np.sqrt(samples.var(axis=0).sum())
    assert samples.sum(axis=1).std() > independent
    # a column name works as segments too, and bad labels are refused
    by_column = clv.total_value(model, spend, rfm.assign(seg=segments), segments="seg", **kw)
    pd.testing.assert_frame_equal(by_column, totals)
    with pytest.raises(ClvDataError, match="one label per customer"):
        clv.total_value(model, spend, rfm, segments=np.zeros(3), **kw)


def test_value_forecast_is_predictive_clv_and_total_value_in_one_pass(fits, rfm):
    """One simulation gives the per-customer frame of predictive_clv and the totals of total_value
    (per segment and for the whole base), number for number with the same seed."""
    model, spend = fits["BG/NBD"], fits["GG"]
    kw = dict(horizon=6, period_length=4.345, discount_rate=0.01, n_samples=300, seed=11)
    segments = pd.Series(np.where(rfm["frequency"] > 2, "frequent", "rare"), index=rfm.index)
    customers, by_segment, total = clv.value_forecast(model, spend, rfm, segments=segments, **kw)
    pd.testing.assert_frame_equal(customers, clv.predictive_clv(model, spend, rfm, **kw))
    pd.testing.assert_frame_equal(by_segment, clv.total_value(model, spend, rfm, segments=segments, **kw))
    pd.testing.assert_frame_equal(total, clv.total_value(model, spend, rfm, **kw))
    assert by_segment["mean"].sum() == pytest.approx(total["mean"].iloc[0], rel=1e-12)


def test_active_customers_is_the_sum_of_p_alive_with_a_predictive_interval(fits, rfm):
    """The mean count is Σ P(alive) (up to Monte Carlo error); the interval holds both the
    Bernoulli (process) spread, sqrt(Σ p(1−p)), and the parameters' uncertainty."""
    from clvmodels.predictive import active_customers

    model = fits["BG/NBD"]
    p = model.probability_alive(rfm).to_numpy()
    out = active_customers(model, rfm, interval=0.9, n_samples=4000, seed=5)
    assert out.attrs["uncertainty"] == PREDICTIVE and list(out.index) == ["all"]
    assert out["n_customers"].iloc[0] == len(rfm)
    process_sd = np.sqrt(np.sum(p * (1 - p)))
    draws = model.parameter_draws(200, seed=0)
    params = {k: v[:, None] for k, v in draws.items()}
    counts = model.probability_alive_formula(params, **{c: rfm[c].to_numpy(float) for c in model.data_columns}).sum(1)
    total_sd = np.sqrt(process_sd**2 + counts.var())
    assert out["mean"].iloc[0] == pytest.approx(p.sum(), abs=4 * total_sd / np.sqrt(4000) + 1)
    width = out["upper"].iloc[0] - out["lower"].iloc[0]
    assert width == pytest.approx(2 * 1.645 * total_sd, rel=0.15)
    assert width > 2 * 1.645 * process_sd
    again = active_customers(model, rfm, interval=0.9, n_samples=4000, seed=5)
    pd.testing.assert_frame_equal(out, again)


# ---------------------------------------------------------------------------- clv(kind=...) and names
def test_clv_interval_is_predictive_by_default_and_named(fits, rfm):
    model, spend = fits["BG/NBD"], fits["GG"]
    sub = rfm.iloc[:50]
    kw = dict(horizon=12, period_length=4.345, interval=0.9, seed=0)
    default = clv.clv(model, spend, sub, **kw)
    assert default.attrs["uncertainty"] == PREDICTIVE
    assert {"lower", "upper", "median", "p_zero"} <= set(default.columns)
    expected = clv.clv(model, spend, sub, kind="expected", n_draws=300, **kw)
    assert expected.attrs["uncertainty"] == EXPECTED
    assert list(expected.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    with pytest.raises(ValueError, match="kind"):
        clv.clv(model, spend, sub, kind="plugin", **kw)
    point = clv.clv(model, spend, sub, horizon=12, period_length=4.345)
    assert isinstance(point, pd.Series) and point.name == "clv"


def test_interval_frame_names_the_interval_after_its_kind():
    cols = {"mean": [1.0], "median": [1.0], "lower": [0.5], "upper": [2.0], "p_zero": [0.1]}
    pred = interval_frame(cols, [0], 0.9, PREDICTIVE)
    assert list(pred.columns) == ["mean", "median", "lower", "upper", "p_zero"]
    exp = interval_frame(cols, [0], 0.9, EXPECTED)
    assert list(exp.columns) == ["mean", "mean_median", "mean_lower", "mean_upper", "p_zero"]
    assert exp.attrs == {"interval": 0.9, "uncertainty": EXPECTED}
    with pytest.raises(ValueError, match="uncertainty"):
        interval_frame(cols, [0], 0.9, "something else")


def test_clv_periods():
    bounds, factors = clv_periods(3, 4.0, 0.1)
    np.testing.assert_allclose(bounds, [4.0, 8.0, 12.0])
    np.testing.assert_allclose(factors, [1 / 1.1, 1 / 1.21, 1 / 1.331])


def test_formulas_of_the_draws_are_evaluated_once_per_distinct_draw(fits, rfm):
    """Futures share parameter draws (future i uses draw i mod n_draws) and customers histories:
    P(alive) evaluated once per distinct draw and history equals its evaluation on every row."""
    from clvmodels.models.pareto_nbd import probability_alive
    from clvmodels.models.purchase import per_distinct_draw

    model = fits["Pareto/NBD"]
    draws = model.parameter_draws(5, seed=0)
    params = {k: np.asarray(v)[np.arange(40) % 5][:, None] for k, v in draws.items()}
    data = _histories(rfm, model)
    args = (data["frequency"], data["recency"], data["T"])
    np.testing.assert_array_equal(per_distinct_draw(probability_alive, params, *args),
                                  probability_alive(params, *args))
    args = tuple(np.r_[a, a[::-1], a[:2]] for a in args)    # histories shared by several customers
    calls = []
    np.testing.assert_array_equal(
        per_distinct_draw(lambda p, *c: calls.append(c[0].size) or probability_alive(p, *c), params, *args),
        probability_alive(params, *args))
    assert calls == [len(np.unique(np.column_stack(args), axis=0))]
    # fewer distinct draws: the same mean within Monte Carlo error
    spend = fits["GG"]
    sub = rfm.iloc[::20]
    kw = dict(horizon=6, period_length=4.345, discount_rate=0.01, n_samples=2000, seed=0)
    few = clv.predictive_clv(model, spend, sub, n_draws=20, **kw)
    many = clv.predictive_clv(model, spend, sub, n_draws=2000, **kw)
    assert few["mean"].sum() == pytest.approx(many["mean"].sum(), rel=0.05)
