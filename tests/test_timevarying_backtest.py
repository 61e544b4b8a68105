"""Backtests, reports with time-varying covariates (issue #16): a seasonal log where the model with
the calendar should forecast the holdout and its weekly tracking better than the same model without."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import simulate_seasonal
from clvmodels.datasets.simulate import DEFAULT_SEASONAL_EFFECTS
from clvmodels.errors import ClvDataError

COLUMNS = ["holiday", "fourier_sin1", "fourier_cos1"]
CUTOFF = "2025-05-05"     # week 70 of 104: a Christmas in calibration and one in the holdout
N_SAMPLES = 300


@pytest.fixture(scope="module")
def seasonal():
    log, calendar = simulate_seasonal(4000, observation_length=104, cohort_length=12, seed=3)
    path = clv.covariate_calendar(calendar)
    models = {"BG/NBD": clv.BetaGeoModel(), "BG/NBD + calendar": clv.BetaGeoModel(purchase_time_varying=COLUMNS)}
    # 300 simulated futures per customer, 50 parameter draws: the predictive scores' Monte Carlo is small
    # beside the customers' sampling error (below), and the fixture stays quick
    result = clv.backtest(log, models, calibration_end=CUTOFF, time_varying=path, baselines={}, n_samples=N_SAMPLES,
                          n_draws=50)
    return log, path, result


def _holdout_weekly_error(result, name):
    h = result.tracking[(result.tracking["model"] == name) & (result.tracking["phase"] == "holdout")]
    return float((h["actual"] - h["predicted"]).abs().mean())


def test_the_calendar_beats_the_stationary_model_on_the_holdout(seasonal):
    _, _, result = seasonal
    errors = result.table("purchases")["total_error_pct"]
    assert abs(errors["BG/NBD + calendar"]) < 5 < abs(errors["BG/NBD"])
    plain, calendar = (_holdout_weekly_error(result, n) for n in ("BG/NBD", "BG/NBD + calendar"))
    assert calendar < 0.6 * plain
    # the tracking shows the holidays: expected weekly purchases in December above November's
    tr = result.tracking[result.tracking["model"] == "BG/NBD + calendar"].set_index("period_end")["predicted"]
    assert tr["2025-12-09":"2025-12-22"].mean() > 1.5 * tr["2025-11-03":"2025-11-24"].mean()
    flat = result.tracking[result.tracking["model"] == "BG/NBD"].set_index("period_end")["predicted"]
    assert flat["2025-12-09":"2025-12-22"].mean() < flat["2025-11-03":"2025-11-24"].mean()
    # the cumulative tracking ends at the holdout total of the cohort's repeat purchases
    last = result.tracking[result.tracking["model"] == "BG/NBD + calendar"].iloc[-1]
    assert last["actual_cumulative"] == pytest.approx(result.tracking.loc[
        result.tracking["model"] == "BG/NBD + calendar", "actual"].sum())


def test_the_coefficients_recover_the_truth(seasonal):
    _, _, result = seasonal
    p = result.parameters
    p = p[(p["model"] == "BG/NBD + calendar")].pivot_table(index="parameter", columns="statistic", values="value")
    truth = {"holiday": DEFAULT_SEASONAL_EFFECTS["holiday"], "fourier_sin1": DEFAULT_SEASONAL_EFFECTS["fourier_sin1"],
             "fourier_cos1": 0.0}
    for column, gamma in truth.items():
        row = p.loc[f"tv_purchase:{column}"]
        assert abs(row["user_estimate"] - gamma) < 3 * row["user_se"], column


def test_predictive_intervals_along_the_path_are_calibrated(seasonal):
    """The calendar model's predictive distributions, simulated along the path, are scored like any
    model's: per-customer coverage near nominal, finite scores, and its holdout total inside its 90%
    interval where the model without the calendar (15% high) misses."""
    _, _, result = seasonal
    w = result.warnings
    assert not w["message"].str.contains("not available with time-varying").any()
    assert not ((w["model"] == "BG/NBD + calendar") & (w["category"] == "PredictiveWarning")).any()
    n = int(result.data["customers"].iloc[0])
    for target in ("purchases", "value", "clv"):
        table = result.table(target)
        row = table.loc["BG/NBD + calendar"]
        # each customer's randomised PIT falls in the central interval with probability `level` under a
        # calibrated model: the binomial sd over n = 4000 customers is sqrt(level (1 - level) / n)
        # (0.0047 at 90%); 4 sd, plus 0.01 for the simulated pmfs' Monte Carlo (300 futures each) and the
        # fitted parameters
        for level in (0.5, 0.8, 0.9):
            tolerance = 4 * np.sqrt(level * (1 - level) / n) + 0.01
            assert abs(row[f"coverage_{round(100 * level)}"] - level) < tolerance, (target, level)
        scores = ["coverage_50", "coverage_80", "coverage_90", "crps"] + (["log_score"] if target == "purchases" else
                                                                          ["expected_coverage_90"])
        assert np.all(np.isfinite(table[scores].to_numpy(dtype=float))), target
    purchases = result.table("purchases")
    # the simulated pmf's scores are those of the exact pmf to Monte Carlo error: the same data, nearly the
    # same forecasts (the models differ by the calendar's 0.8% vs 15% in the total, not per customer)
    assert abs(purchases.loc["BG/NBD + calendar", "log_score"] - purchases.loc["BG/NBD", "log_score"]) < 0.02
    assert abs(purchases.loc["BG/NBD + calendar", "crps"] - purchases.loc["BG/NBD", "crps"]) < 0.01
    # the PIT of every customer is in the predictions, for the report's calibration plots
    preds = result.predictions[result.predictions["model"] == "BG/NBD + calendar"]
    for target in ("purchases", "value", "clv"):
        pit = preds[f"pit_{target}"].to_numpy()
        assert np.all((pit >= 0) & (pit <= 1))
        assert abs(np.mean(pit) - 0.5) < 4 * np.sqrt(1 / 12 / n) + 0.01
    assert np.all(np.isfinite(preds[["purchases", "value", "clv"]].to_numpy()))
    # discounted at 1% a month over 34 weeks: below the undiscounted value, by less than 10%
    assert np.all(preds["clv"] <= preds["value"] + 1e-9) and preds["clv"].sum() > 0.9 * preds["value"].sum()
    # the holdout totals: the calendar's 90% intervals hold the actual totals, the stationary model's miss
    totals = result.totals.set_index(["model", "target"])
    for target in ("purchases", "value", "clv"):
        calendar, plain = totals.loc[("BG/NBD + calendar", target)], totals.loc[("BG/NBD", target)]
        assert calendar["lower"] <= calendar["actual"] <= calendar["upper"] and bool(calendar["inside"]), target
        assert not bool(plain["inside"]) and plain["actual"] < plain["lower"], target
        assert calendar["lower"] < calendar["predicted"] < calendar["upper"]
        # the simulated futures' mean total is the expected total, to Monte Carlo error
        sd = (calendar["upper"] - calendar["lower"]) / (2 * 1.645)
        assert abs(calendar["simulated_mean"] - calendar["predicted"]) < 4 * sd / np.sqrt(N_SAMPLES) + 1e-9 * sd
    row = totals.loc[("BG/NBD + calendar", "purchases")]
    # futures independent between customers (the "plugin"): narrower than with the shared parameter draws
    assert row["lower"] <= row["plugin_lower"] < row["actual"] < row["plugin_upper"] <= row["upper"]
    assert sorted(result.settings["time_varying"]) == sorted(COLUMNS)
    assert result.settings["time_varying_models"] == ["BG/NBD + calendar"]


def test_simulated_scores_are_reproducible_without_a_spend_model(seasonal):
    """Purchases only (no value simulation to share): the pmfs are simulated alone; the same seed gives
    the same numbers, another seed other ones (the scores are Monte Carlo estimates)."""
    log, path, _ = seasonal
    few = log[log["customer_id"].isin(log["customer_id"].unique()[:800])]
    models = {"BG/NBD + calendar": clv.BetaGeoModel(purchase_time_varying=COLUMNS)}
    args = dict(calibration_end=CUTOFF, time_varying=path, baselines={}, spend_model=False, n_samples=100, n_draws=20)
    runs = [clv.backtest(few, models, seed=s, **args) for s in (5, 5, 6)]
    tables = [r.table("purchases") for r in runs]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(runs[0].totals, runs[1].totals)
    assert tables[0].loc["BG/NBD + calendar", "crps"] != tables[2].loc["BG/NBD + calendar", "crps"]
    row = tables[0].loc["BG/NBD + calendar"]
    assert np.all(np.isfinite(row[["coverage_90", "log_score", "crps"]].to_numpy(dtype=float)))
    # 800 customers: coverage within 4 binomial sd (0.011) plus Monte Carlo (100 futures)
    assert abs(row["coverage_90"] - 0.9) < 4 * np.sqrt(0.09 / 800) + 0.02
    assert runs[0].totals["inside"].notna().all()


def test_the_holdout_forecast_is_the_models_forecast_along_the_path(seasonal):
    log, path, result = seasonal
    ch, summary = clv.timevarying_holdout(log, path, CUTOFF, truncate=True)
    model = result.models[(CUTOFF, "BG/NBD + calendar")]
    t = float(ch["duration_holdout"].iloc[0])
    direct = model.expected_purchases(t, ch, time_varying=summary, future=clv.timevarying.future_exposure(ch, path, t))
    preds = result.predictions[result.predictions["model"] == "BG/NBD + calendar"]
    np.testing.assert_allclose(preds["purchases"].to_numpy(), direct.to_numpy(), rtol=1e-12)


def test_time_varying_inputs_are_checked(seasonal):
    log, path, _ = seasonal
    with pytest.raises(ClvDataError, match="time_varying=covariate_calendar"):
        clv.backtest(log, clv.BetaGeoModel(purchase_time_varying=["holiday"]), calibration_end=CUTOFF, baselines={})
    with pytest.raises(ClvDataError, match="no model has time-varying covariates"):
        clv.backtest(log, clv.BetaGeoModel(), calibration_end=CUTOFF, baselines={}, time_varying=path)
    short = clv.covariate_calendar(clv.holiday_windows(pd.date_range("2024-01-01", "2025-06-30", freq="7D"),
                                                       ["2024-12-25"], before=20))
    with pytest.raises(ClvDataError, match="prediction window"):
        clv.backtest(log, clv.BetaGeoModel(purchase_time_varying=["holiday"]), calibration_end=CUTOFF,
                     baselines={}, time_varying=short, spend_model=False)


def test_the_likelihood_ratio_test_compares_the_calendar_with_the_plain_model(seasonal):
    _, _, result = seasonal
    tests = result.covariate_tests().set_index("model")
    row = tests.loc["BG/NBD + calendar"]
    plain, calendar = (result.models[(CUTOFF, n)] for n in ("BG/NBD", "BG/NBD + calendar"))
    assert row["without"] == "BG/NBD" and row["df"] == 3
    assert row["statistic"] == pytest.approx(2 * (calendar.log_likelihood_ - plain.log_likelihood_))
    assert row["p_value"] < 1e-10


def test_the_report_shows_the_calendar(seasonal, tmp_path):
    _, _, result = seasonal
    from clvmodels.report import calendar_effects, tracking_errors

    text = clv.compare_report(result, tmp_path / "report.html").read_text()
    model = result.models[(CUTOFF, "BG/NBD + calendar")]
    holiday = model.summary().loc["tv_purchase:holiday"]
    factor = f"{np.exp(holiday['user_estimate']):.2f}x as fast when holiday = 1 as when holiday = 0"
    assert 1.8 < np.exp(holiday["user_estimate"]) < 2.25        # the truth: exp(0.7) = 2.01
    sentences = calendar_effects(model)
    assert sentences[0].startswith(f"Purchases run {factor} (95% interval")
    assert "per unit of fourier_sin1" in sentences[1] and len(sentences) == 3
    summary = text[text.index('<section id="summary">'):text.index('<section id="data">')]
    covariates = text[text.index('<section id="covariates">'):text.index('<section id="glossary">')]
    tracking = text[text.index('<section id="tracking">'):text.index('<section id="conditional">')]
    assert factor in summary and factor in covariates
    # both scales of the coefficients, and what they multiply
    assert f"{holiday['estimate']:.3f}" in covariates and f"{holiday['user_estimate']:.3f}" in covariates
    assert "the purchase rate while the covariate holds" in covariates
    # the tracking: one plot per kind with both models, and the error table with and without the calendar
    errors = tracking_errors(result)
    assert errors.loc["BG/NBD + calendar", "holdout"] < errors.loc["BG/NBD", "holdout"]
    assert "with and without the calendar" in tracking and tracking.count("<img") == 2
    for name in ("BG/NBD", "BG/NBD + calendar"):
        assert f"{errors.loc[name, 'holdout']:.3f}" in tracking
    assert "Time-varying covariate" in text[text.index('<section id="glossary">'):]


def test_tracking_weights_count_customers_sharing_a_path(seasonal):
    _, path, result = seasonal
    model = result.models[(CUTOFF, "BG/NBD + calendar")]
    born = pd.to_datetime(["2024-01-03", "2024-02-20"])
    days = ((born - pd.Timestamp("1970-01-01")).days.to_numpy() / 7.0)
    boundaries = days.min() + np.arange(1.0, 90.0)
    t = boundaries[-1] - days
    weighted = model.expected_tracking(clv.timevarying.new_customer_exposure(path, born, t), days, boundaries,
                                       weights=[3, 1])
    repeated = np.array([0, 0, 0, 1])
    rows = model.expected_tracking(clv.timevarying.new_customer_exposure(path, born[repeated], t[repeated]),
                                   days[repeated], boundaries)
    np.testing.assert_allclose(weighted.to_numpy(), rows.to_numpy(), rtol=1e-12)
    assert weighted.sum() > 0


def test_a_panel_equal_to_the_calendar_gives_the_calendars_backtest(seasonal):
    log, path, result = seasonal
    calendar = pd.DataFrame(path.values, columns=list(path.columns), index=path.periods)
    ids = log["customer_id"].unique()
    panel = pd.concat({c: calendar for c in ids}, names=["customer_id", "period"]).reset_index()
    models = {"BG/NBD + calendar": clv.BetaGeoModel(purchase_time_varying=COLUMNS)}
    by_panel = clv.backtest(log, models, calibration_end=CUTOFF, time_varying=clv.covariate_panel(panel),
                            baselines={}, spend_model=False, n_samples=20, n_draws=5)  # (few futures: not compared)
    mine = result.predictions[result.predictions["model"] == "BG/NBD + calendar"]
    np.testing.assert_allclose(by_panel.predictions["purchases"].to_numpy(), mine["purchases"].to_numpy(), rtol=1e-9)
    tracking = result.tracking[result.tracking["model"] == "BG/NBD + calendar"]
    np.testing.assert_allclose(by_panel.tracking["predicted"].to_numpy(), tracking["predicted"].to_numpy(), rtol=1e-9)


def test_an_unidentified_calendar_effect_is_said_so_not_given_a_factor(seasonal, monkeypatch):
    """A boundary fit's interval (from 0x to an overflowing factor) is no effect to report in words."""
    import copy

    from clvmodels.report import calendar_effects

    _, _, result = seasonal
    model = copy.deepcopy(result.models[(CUTOFF, "BG/NBD + calendar")])
    table = model.summary()
    lower = [c for c in table.columns if c.startswith("user_lower_")][0]
    upper = lower.replace("lower", "upper")
    table.loc["tv_purchase:holiday", [lower, upper]] = [-800.0, 800.0]     # exp overflows: unbounded
    monkeypatch.setattr(model, "summary", lambda *a, **k: table)
    sentences = calendar_effects(model)
    assert sentences[0].startswith("The effect of holiday on the purchase rate is not identified")
    assert "inf" not in " ".join(sentences) and sentences[1].startswith("Purchases run")


def test_tracking_with_static_and_time_varying_covariates(seasonal):
    """A model with a static covariate and the calendar has its tracking curve: each customer at her own
    parameters along her path, customers sharing a first day and a profile computed once."""
    log, path, _ = seasonal
    ids = log["customer_id"].drop_duplicates().to_numpy()
    rng = np.random.default_rng(0)
    customers = pd.DataFrame({"customer_id": ids, "vip": rng.integers(0, 2, len(ids)).astype(float)})
    model = clv.BetaGeoModel(purchase_covariates=["vip"], purchase_time_varying=COLUMNS)
    result = clv.backtest(log, {"both": model}, calibration_end=CUTOFF, time_varying=path, covariates=customers,
                          baselines={}, spend_model=False, n_samples=20, n_draws=5)
    assert not result.warnings["message"].str.contains("No tracking series").any()
    tracking = result.tracking[result.tracking["model"] == "both"]
    fitted = result.models[(CUTOFF, "both")]
    # one row per customer, by her own first day, path and profile
    first = log.groupby("customer_id")["timestamp"].min().dt.normalize()
    first = first[first < pd.Timestamp(CUTOFF)]
    days = (first - pd.Timestamp("1970-01-01")).dt.days.to_numpy() / 7.0
    edges = (tracking["period_end"] - pd.Timestamp("1970-01-01")).dt.days.to_numpy() / 7.0
    boundaries = np.r_[edges[0] - 1.0, edges]
    pieces = clv.timevarying.new_customer_exposure(path, first.to_numpy(), boundaries[-1] - days)
    profile = customers.set_index("customer_id").loc[first.index].reset_index(drop=True)
    one_by_one = fitted.expected_tracking(pieces, days, boundaries, covariates=profile)
    np.testing.assert_allclose(tracking["predicted"].to_numpy(), one_by_one.to_numpy()[1:], rtol=1e-9)
    other = fitted.expected_tracking(pieces, days, boundaries, covariates=profile.assign(vip=1.0 - profile["vip"]))
    assert not np.allclose(other.to_numpy(), one_by_one.to_numpy(), rtol=1e-3)
    with pytest.raises(ClvDataError, match="covariates="):
        fitted.expected_tracking(pieces, days, boundaries)
