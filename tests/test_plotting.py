"""Plot functions: they return figures whose drawn data are the numbers they claim to show."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

matplotlib.use("Agg")

import clvmodels as clv  # noqa: E402
from clvmodels import metrics as M  # noqa: E402
from clvmodels.datasets import cdnow_summary  # noqa: E402
from clvmodels.errors import ClvDataError  # noqa: E402


@pytest.fixture(scope="module")
def bgnbd():
    return clv.BetaGeoModel().fit(cdnow_summary())


def _tracking():
    weeks = pd.date_range("1997-01-07", periods=6, freq="7D")
    rows = []
    for name, scale in (("A", 1.0), ("B", 1.2)):
        actual = np.array([1.0, 3, 4, 5, 4, 3])
        predicted = np.array([1.5, 2.5, 4, 4.5, 4.2, 3.5]) * scale
        rows.append(pd.DataFrame({"cutoff": "1997-02-04", "model": name, "period_end": weeks,
                                  "t": np.arange(-3, 3.0), "actual": actual, "predicted": predicted,
                                  "actual_cumulative": actual.cumsum(), "predicted_cumulative": predicted.cumsum(),
                                  "phase": ["calibration"] * 4 + ["holdout"] * 2}))
    return pd.concat(rows, ignore_index=True)


def test_plot_tracking_draws_the_series():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    frame = _tracking()
    fig = clv.plot_tracking(frame)
    assert isinstance(fig, Figure) and plt.get_fignums() == before  # no pyplot state
    lines = fig.axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), frame.query("model == 'A'")["actual"])
    np.testing.assert_allclose(lines[2].get_ydata(), frame.query("model == 'B'")["predicted"])
    cum = clv.plot_tracking(frame, cumulative=True, models=["B"])
    np.testing.assert_allclose(cum.axes[0].get_lines()[1].get_ydata(),
                               frame.query("model == 'B'")["predicted_cumulative"])
    with pytest.raises(ClvDataError, match="Unknown cutoff"):
        clv.plot_tracking(frame, cutoff="2000-01-01")


def test_plot_conditional_expectations_into_given_axes():
    frame = pd.DataFrame({"cutoff": "c", "model": "A", "frequency": ["0", "1", "7+"], "customers": [5, 3, 1],
                          "actual": [0.2, 0.8, 5.0], "predicted": [0.25, 0.7, 4.5]})
    fig = Figure()
    ax = fig.subplots()
    assert clv.plot_conditional_expectations(frame, ax=ax) is fig
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.25, 0.7, 4.5])


def test_probability_alive_matrix_is_the_models_p_alive(bgnbd):
    fig = clv.plot_probability_alive_matrix(bgnbd, max_frequency=10, max_recency=38, T=38)
    values = np.asarray(fig.axes[0].get_images()[0].get_array())
    assert values.shape == (11, 60)
    np.testing.assert_allclose(values[0], 1.0)  # BG/NBD: no repeat purchase, never seen to drop out
    rec = np.linspace(0, 38, 60)
    grid = pd.DataFrame({"frequency": 4, "recency": rec, "T": 38.0})
    np.testing.assert_allclose(values[4], bgnbd.probability_alive(grid))
    assert np.all(np.diff(values[4]) > 0)  # a later last purchase: more likely alive
    # defaults from the training data
    default = clv.plot_probability_alive_matrix(bgnbd)
    assert np.asarray(default.axes[0].get_images()[0].get_array()).shape[0] == cdnow_summary()["frequency"].max() + 1


def test_frequency_recency_matrix_is_the_models_expectation(bgnbd):
    fig = clv.plot_frequency_recency_matrix(bgnbd, t=10, max_frequency=5, max_recency=30, T=30)
    values = np.asarray(fig.axes[0].get_images()[0].get_array())
    grid = pd.DataFrame({"frequency": 3, "recency": np.linspace(0, 30, 60), "T": 30.0})
    np.testing.assert_allclose(values[3], bgnbd.expected_purchases(10, grid))
    with pytest.raises(ClvDataError, match="cannot exceed"):
        clv.plot_frequency_recency_matrix(bgnbd, max_frequency=5, max_recency=40, T=30)


def _predictions(with_pit=True):
    rng = np.random.default_rng(0)
    n = 2000
    lam = rng.gamma(1, 1, n)
    y = rng.poisson(lam)
    frames = []
    for name, pred in (("model", lam), ("flat", np.full(n, lam.mean()))):
        f = pd.DataFrame({"cutoff": "c", "customer_id": np.arange(n), "model": name, "frequency": 0,
                          "actual_purchases": y, "purchases": pred, "actual_value": y * 10.0, "value": pred * 10})
        if with_pit and name == "model":
            pmf = stats.poisson.pmf(np.arange(40)[None, :], lam[:, None])
            pmf = np.column_stack([pmf, 1 - pmf.sum(axis=1)])
            f["pit_purchases"] = M.randomized_pit(pmf, y, seed=1)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def test_plot_calibration_shows_the_pit_histogram_and_coverage():
    preds = _predictions()
    fig = clv.plot_calibration(preds)
    bars = [p.get_height() for p in fig.axes[0].patches]
    pit = preds.query("model == 'model'")["pit_purchases"]
    np.testing.assert_allclose(bars, M.pit_histogram(pit))
    cov = fig.axes[1].get_lines()[0]
    np.testing.assert_allclose(cov.get_ydata(), list(M.pit_coverage(pit).values()))
    with pytest.raises(ClvDataError, match="No PIT"):
        clv.plot_calibration(_predictions(with_pit=False))


def test_plot_lift_curves_are_the_gains():
    preds = _predictions(with_pit=False)
    fig = clv.plot_lift(preds, target="value")
    lines = fig.axes[0].get_lines()
    assert lines[0].get_ydata()[-1] == pytest.approx(1.0)  # perfect ranking
    part = preds.query("model == 'model'")
    np.testing.assert_allclose(lines[1].get_ydata(), M.gains_curve(part["actual_value"], part["value"])[1])


def test_plot_totals_marks_a_miss_in_red():
    totals = pd.DataFrame({"cutoff": "c", "model": ["m", "b"], "kind": ["model", "baseline"], "target": "purchases",
                           "actual": 100.0, "predicted": [80.0, 120.0], "lower": [70.0, np.nan],
                           "upper": [90.0, np.nan], "inside": pd.array([False, pd.NA], dtype="boolean")})
    fig = clv.plot_totals(totals)
    markers = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"]
    assert markers[0].get_markeredgecolor() == "red" and markers[1].get_markeredgecolor() != "red"
    with pytest.raises(ClvDataError, match="no value totals"):
        clv.plot_totals(totals, target="value")


# ---------------------------------------------------------------------------- period transactions, history, CLV
def test_period_transactions_are_the_models_pmf_summed_over_customers(bgnbd):
    """Expected customers with k repeat purchases: Σ_i P(X(T_i) = k) of FHL 2005 eq. (8) at the
    fitted parameters, each customer over her own age; the last bar pools 7 and more."""
    from clvmodels.models.bgnbd import probability_new

    rfm = cdnow_summary()
    table = clv.plotting.period_transactions(bgnbd, rfm)
    par = bgnbd.params_
    pmf = probability_new(par["r"], par["alpha"], par["a"], par["b"], rfm["T"].to_numpy()[:, None], np.arange(7.0))
    expected = np.append(pmf.sum(axis=0), len(rfm) - pmf.sum())
    np.testing.assert_allclose(table["expected"], expected, rtol=1e-8)
    np.testing.assert_array_equal(table["observed"], np.bincount(np.minimum(rfm["frequency"], 7)))
    assert list(table.index) == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    fig = clv.plot_period_transactions(bgnbd, rfm)
    bars = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(bars, np.r_[table["observed"], table["expected"]])
    assert abs(table["expected"].sum() - len(rfm)) < 1e-6 and (table["expected"] - table["observed"]).abs().max() < 30


@pytest.fixture(scope="module")
def cdnow_log():
    import warnings

    from clvmodels.datasets import load_cdnow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = clv.load_transactions(load_cdnow(sample=True), timestamp="date")
    rfm = clv.rfm_summary(log, observation_end="1997-09-30", time_unit="W", truncate=True)
    return log, rfm, clv.BetaGeoModel().fit(rfm)


def test_history_alive_right_after_each_purchase_is_the_models_p_alive(cdnow_log):
    log, rfm, model = cdnow_log
    cid = rfm["frequency"].idxmax()
    frame = clv.plotting.history_alive(model, log, cid)
    days = np.unique(log.loc[log["customer_id"].astype(str) == str(cid), "timestamp"].dt.normalize())
    days = days[days <= np.datetime64("1997-09-30")]
    weeks = (days - days[0]) / np.timedelta64(7, "D")
    after = frame[frame["purchase"]]
    assert len(after) == len(days) == rfm.loc[cid, "frequency"] + 1
    histories = pd.DataFrame({"frequency": np.arange(len(days)), "recency": weeks, "T": weeks})
    np.testing.assert_allclose(after["p_alive"], model.probability_alive(histories), rtol=1e-12)
    # at the end of observation: her RFM row's P(alive)
    assert frame["T"].iloc[-1] == pytest.approx(rfm.loc[cid, "T"])
    assert frame["p_alive"].iloc[-1] == pytest.approx(model.probability_alive(rfm.loc[[cid]]).iloc[0], rel=1e-12)
    fig = clv.plot_history_alive(model, log, cid)
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), frame["p_alive"])
    with pytest.raises(ClvDataError, match="no transaction"):
        clv.plotting.history_alive(model, log, "no such customer")


def test_plot_clv_distribution_shows_the_concentration():
    values = np.random.default_rng(0).gamma(0.5, 40, 1000)
    fig = clv.plot_clv_distribution(values)
    hist, con = fig.axes
    assert sum(p.get_height() for p in hist.patches) == 1000
    np.testing.assert_allclose(con.get_lines()[0].get_ydata(), M.gains_curve(values, values, n_points=1001)[1])
    top10 = np.sort(values)[::-1][:100].sum() / values.sum()
    marker = [ln for ln in con.get_lines() if ln.get_marker() == "o"][1]
    assert marker.get_ydata()[0] == pytest.approx(top10, rel=1e-3)


def test_legends_sit_outside_the_axes():
    """A legend never covers data: it lies right of the axes."""
    totals = pd.DataFrame({"cutoff": "c", "model": ["m", "b"], "kind": ["model", "baseline"], "target": "purchases",
                           "actual": 100.0, "predicted": [80.0, 120.0], "lower": [70.0, np.nan],
                           "upper": [90.0, np.nan], "inside": pd.array([False, pd.NA], dtype="boolean")})
    for fig in (clv.plot_totals(totals), clv.plot_lift(_predictions(with_pit=False)), clv.plot_tracking(_tracking())):
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent()
        assert legend.x0 >= ax.get_window_extent().x1
