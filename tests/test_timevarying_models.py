"""Time-varying covariates (issue #16): likelihoods, fits, gradients and forecasts of the models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvmodels import BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel
from clvmodels.errors import ClvDataError
from clvmodels.exposure import ExposurePieces, TimeVaryingSummary
from clvmodels.models import timevarying
from clvmodels.validation import validate_columns

from tv_pieces import grid_pieces, simulate, summary_of

COLUMNS = ["season", "holiday"]
BG = dict(r=0.8, alpha=4.0, a=0.6, b=2.5)
PNBD = dict(r=0.8, alpha=4.0, s=0.7, beta=12.0)


def z_weekly(k):
    """A seasonal wave and a holiday every 10th week, by calendar week ``k``."""
    k = np.asarray(k, float)
    return np.c_[np.sin(2 * np.pi * k / 13.0), (k % 10 == 0).astype(float)]


def cohort(n=1500, seed=1):
    rng = np.random.default_rng(seed)
    birth = rng.uniform(0, 30, n)
    return birth, 60.0 - birth


@pytest.fixture(scope="module")
def bg_data():
    birth, T = cohort()
    rfm, times = simulate("bgnbd", BG, birth, T, COLUMNS, z_weekly, [0.5, 0.8], seed=2)
    return rfm, birth, times


@pytest.fixture(scope="module")
def pnbd_data():
    birth, T = cohort(seed=3)
    rfm, times = simulate("pnbd", PNBD, birth, T, COLUMNS, z_weekly, [0.5, 0.8], [0.4, -0.6], seed=4)
    return rfm, birth, times


def processes(cls, dropout=COLUMNS) -> dict:
    """The time-varying covariates of ``cls``: both columns on the purchase process and, for
    Pareto/NBD, ``dropout`` on the drop-out process."""
    out = {"purchase_time_varying": COLUMNS}
    if cls is ParetoNBDModel:
        out["dropout_time_varying"] = dropout
    return out


def truth(cls) -> dict:
    return PNBD if cls is ParetoNBDModel else BG


def objective_of(model, rfm, summary):
    """The fit's objective ``theta -> (nll, grad)`` of an unfitted ``model`` (static covariates learned)."""
    data = model._fit_arrays(rfm)
    design = model._learn_covariates(rfm)
    if design is not None:
        data.update(design.transform(rfm))
        model.covariates_ = design.to_dict()
    setup = timevarying.fit_setup(model, timevarying.processes_of(model, summary), summary, data, np.ones(len(rfm)))
    f = setup.objective(0.0)
    return (lambda theta: f(theta, float(len(rfm)), 0.0)), setup.names


def constant_summary(rfm, values, column="c"):
    """Pieces over each customer's [0, T] (cut at the recency) with a covariate constant in time."""
    pieces = grid_pieces(np.zeros(len(rfm)), rfm["T"].to_numpy(), [column],
                         lambda k: np.zeros(len(k)), cut=rfm["recency"].to_numpy())
    z = values[pieces.customer][:, None]
    pieces = ExposurePieces((column,), pieces.customer, pieces.start, pieces.length, z, len(rfm))
    return TimeVaryingSummary(pieces, (rfm["frequency"].to_numpy() * values)[:, None])


@pytest.mark.parametrize("cls", [BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel])
def test_constant_in_time_equals_static_covariate(cls, bg_data):
    rfm, _, _ = bg_data
    values = np.random.default_rng(5).normal(1.0, 0.7, len(rfm))
    table = rfm.assign(c=values)
    static = cls(purchase_covariates=["c"]).fit(table)
    varying = cls(purchase_time_varying=["c"]).fit(rfm, time_varying=constant_summary(rfm, values))
    assert varying.log_likelihood_ == pytest.approx(static.log_likelihood_, abs=1e-8)
    assert static.converged_ and varying.converged_
    gs, gv = static.summary().loc["alpha:c", "user_estimate"], varying.summary().loc["tv_purchase:c", "user_estimate"]
    assert gv == pytest.approx(gs, rel=1e-6)
    # the baselines differ by the standardisation's shift (customers' mean vs exposure-weighted mean)
    ms = static.covariates_["columns"][0]["mean"]
    mv = varying.time_varying_["means"][0]
    assert varying.params_["alpha"] * np.exp(gv * mv) == pytest.approx(static.params_["alpha"] * np.exp(gs * ms), rel=1e-6)
    for p in set(cls.param_names) - {"alpha"}:
        assert varying.params_[p] == pytest.approx(static.params_[p], rel=1e-6)


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_zero_coefficients_give_the_model_without_covariates(cls, bg_data):
    rfm, birth, times = bg_data
    kwargs = processes(cls, ["season"])
    model = cls(**kwargs)
    f, names = objective_of(model, rfm, summary_of(rfm, birth, COLUMNS, z_weekly, times))
    theta = np.log(np.array(list(truth(cls).values())))
    nll, _ = f(np.r_[theta, np.zeros(len(names))])
    data = validate_columns(rfm, cls.data_columns)
    plain = cls.log_likelihood(dict(zip(cls.param_names, np.exp(theta))), data, np)
    assert -nll * len(rfm) == pytest.approx(float(plain.sum()), rel=1e-12)


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_refining_the_grid_leaves_the_fit_unchanged(cls, bg_data):
    rfm, birth, times = bg_data
    kwargs = processes(cls, ["holiday"])
    weekly = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    daily = summary_of(rfm, birth, COLUMNS, lambda k: z_weekly(np.floor(np.asarray(k) / 7)), times, step=1 / 7)
    assert len(daily.pieces.length) > 5 * len(weekly.pieces.length)
    f_week, names = objective_of(cls(**kwargs), rfm, weekly)
    f_day, _ = objective_of(cls(**kwargs), rfm, daily)
    theta = np.r_[np.log(list(truth(cls).values())), 0.3 * np.ones(len(names))]
    (v1, g1), (v2, g2) = f_week(theta), f_day(theta)
    assert v2 == pytest.approx(v1, rel=1e-11)
    np.testing.assert_allclose(g2, g1, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("cls", [BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel])
def test_gradient_is_finite_differences(cls, bg_data):
    rfm, birth, times = bg_data
    table = rfm.assign(c=np.random.default_rng(6).normal(size=len(rfm)))
    kwargs = processes(cls, ["season"])
    f, names = objective_of(cls(purchase_covariates=["c"], dropout_covariates=["c"], **kwargs), table,
                            summary_of(rfm, birth, COLUMNS, z_weekly, times))
    k = len(cls.param_names)
    rng = np.random.default_rng(7)
    n_static = 2 if cls is ParetoNBDModel else 3
    theta = np.r_[np.log(list(truth(cls).values())), rng.normal(0, 0.3, n_static + len(names))]
    _, grad = f(theta)
    h = 1e-6
    numeric = np.array([(f(theta + h * e)[0] - f(theta - h * e)[0]) / (2 * h) for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    assert len(theta) == k + n_static + len(names)


def test_bgnbd_recovers_the_seasonal_and_holiday_effects(bg_data):
    rfm, birth, times = bg_data
    model = BetaGeoModel(purchase_time_varying=COLUMNS).fit(rfm, time_varying=summary_of(rfm, birth, COLUMNS, z_weekly, times))
    table = model.summary()
    assert model.converged_
    for name, truth in (("tv_purchase:season", 0.5), ("tv_purchase:holiday", 0.8)):
        assert abs(table.loc[name, "user_estimate"] - truth) < 3 * table.loc[name, "user_se"]
    for p in ("r", "a", "b"):
        assert abs(table.loc[p, "estimate"] - BG[p]) < 3 * table.loc[p, "se"]


def test_errors_name_what_to_do(bg_data):
    rfm, birth, times = bg_data
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    with pytest.raises(ClvDataError, match="time_varying=summary"):
        BetaGeoModel(purchase_time_varying=COLUMNS).fit(rfm)
    with pytest.raises(ClvDataError, match="purchase_time_varying"):
        BetaGeoModel().fit(rfm, time_varying=summary)
    with pytest.raises(ClvDataError, match="dropout"):
        BetaGeoModel(dropout_time_varying=COLUMNS).fit(rfm, time_varying=summary)
    with pytest.raises(ClvDataError, match="not among the pieces"):
        BetaGeoModel(purchase_time_varying=["promo"]).fit(rfm, time_varying=summary)
    with pytest.raises(ClvDataError, match="do not cover"):
        BetaGeoModel(purchase_time_varying=COLUMNS).fit(rfm.assign(T=rfm["T"] + 1), time_varying=summary)


def test_pnbd_recovers_purchase_and_dropout_effects(pnbd_data):
    rfm, birth, times = pnbd_data
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    model = ParetoNBDModel(purchase_time_varying=COLUMNS, dropout_time_varying=COLUMNS).fit(rfm, time_varying=summary)
    table = model.summary()
    assert model.converged_
    truth = {"tv_purchase:season": 0.5, "tv_purchase:holiday": 0.8, "tv_dropout:season": 0.4,
             "tv_dropout:holiday": -0.6}
    for name, value in truth.items():
        assert abs(table.loc[name, "user_estimate"] - value) < 3 * table.loc[name, "user_se"], name
    for p in ("r", "s"):
        assert abs(table.loc[p, "estimate"] - PNBD[p]) < 3 * table.loc[p, "se"], p


# ---------------------------------------------------------------------------- forecasts
def known_model(cls, params, purchase, dropout=None):
    """A model "fitted" at known parameters, its covariates unstandardised (means 0, scales 1)."""
    kwargs = {"purchase_time_varying": COLUMNS}
    linked = {"purchase": tuple(COLUMNS)}
    coefficients = {f"tv_purchase:{c}": g for c, g in zip(COLUMNS, purchase)}
    if dropout is not None:
        kwargs["dropout_time_varying"] = COLUMNS
        linked["dropout"] = tuple(COLUMNS)
        coefficients.update({f"tv_dropout:{c}": g for c, g in zip(COLUMNS, dropout)})
    model = cls(**kwargs)
    model.params_ = pd.Series(params)[list(cls.param_names)]
    model.time_varying_ = timevarying.TimeVaryingDesign(linked, tuple(COLUMNS), (0.0, 0.0), (1.0, 1.0)).to_dict()
    model.time_varying_coefficients_ = pd.Series(coefficients)
    return model


CASES = [("bgnbd", BetaGeoModel, BG, [0.5, 0.8], None), ("pnbd", ParetoNBDModel, PNBD, [0.5, 0.8], [0.4, -0.6])]


@pytest.mark.parametrize("kind, cls, params, gp, gd", CASES)
def test_new_customer_expectation_matches_simulation(kind, cls, params, gp, gd):
    n, t = 20000, 40.0
    birth = np.random.default_rng(8).uniform(0, 26, n)
    rfm, _ = simulate(kind, params, birth, np.full(n, t), COLUMNS, z_weekly, gp, gd, seed=9)
    model = known_model(cls, params, gp, gd)
    expected = model.expected_purchases_new_customer(t, future=grid_pieces(birth, np.full(n, t), COLUMNS, z_weekly))
    simulated = rfm["frequency"].to_numpy()
    se = simulated.std() * np.sqrt(n)
    assert abs(simulated.sum() - expected.sum()) < 4 * se
    # the calendar matters: without it the expectation is off by many MC errors
    static = cls.new_customer_formula(params, t=t) * n
    assert abs(simulated.sum() - static) > 6 * se


@pytest.mark.parametrize("kind, cls, params, gp, gd", CASES)
def test_conditional_forecasts_match_simulation(kind, cls, params, gp, gd):
    n, holdout = 20000, 26.0
    birth = np.random.default_rng(10).uniform(0, 30, n)
    T = 52.0 - birth
    rfm, times, future, alive = simulate(kind, params, birth, T, COLUMNS, z_weekly, gp, gd, seed=11, holdout=holdout)
    model = known_model(cls, params, gp, gd)
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    ahead = grid_pieces(birth, T + holdout, COLUMNS, z_weekly, start=T)
    p_alive = model.probability_alive(rfm, time_varying=summary).to_numpy()
    expected = model.expected_purchases(holdout, rfm, time_varying=summary, future=ahead).to_numpy()
    assert abs(p_alive.sum() - alive.sum()) < 4 * np.sqrt(np.sum(p_alive * (1 - p_alive)))
    se = np.std(future - expected) * np.sqrt(n)
    assert abs(future.sum() - expected.sum()) < 4 * se
    # per frequency group, too (the history enters through the clocks)
    for group in (rfm["frequency"] == 0, rfm["frequency"].between(1, 3), rfm["frequency"] > 3):
        g = group.to_numpy()
        assert abs(future[g].sum() - expected[g].sum()) < 4 * np.std(future[g] - expected[g]) * np.sqrt(g.sum())


@pytest.mark.parametrize("kind, cls, params, gp, gd", CASES)
def test_tracking_curve_matches_simulation(kind, cls, params, gp, gd):
    n, end = 8000, 60.0
    birth = np.random.default_rng(12).uniform(0, 20, n)
    rfm, times = simulate(kind, params, birth, end - birth, COLUMNS, z_weekly, gp, gd, seed=13)
    model = known_model(cls, params, gp, gd)
    boundaries = np.arange(1.0, end + 1.0)
    curve = model.expected_tracking(grid_pieces(birth, end - birth, COLUMNS, z_weekly), birth, boundaries)
    calendar = np.concatenate([birth[i] + times[i] for i in range(n)])
    counts = np.histogram(calendar, bins=np.r_[0.0, boundaries])[0]
    per_customer = [np.histogram(birth[i] + times[i], bins=[0, 30, end])[0] for i in range(n)]
    per_customer = np.array(per_customer)
    for half, sl in enumerate((slice(0, 30), slice(30, 60))):
        se = per_customer[:, half].std() * np.sqrt(n)
        assert abs(counts[sl].sum() - curve.iloc[sl].sum()) < 4 * se
    # the holiday weeks show in the curve and in the data alike
    holidays = (np.floor(boundaries - 1) % 10 == 0)
    assert curve[holidays].mean() > 1.3 * curve[~holidays].mean()
    assert counts[holidays].mean() > 1.3 * counts[~holidays].mean()


def test_forecast_intervals_from_parameter_draws(bg_data):
    rfm, birth, times = bg_data
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    model = BetaGeoModel(purchase_time_varying=COLUMNS).fit(rfm, time_varying=summary)
    ahead = grid_pieces(birth, rfm["T"].to_numpy() + 13, COLUMNS, z_weekly, start=rfm["T"].to_numpy())
    point = model.expected_purchases(13, future=ahead)
    frame = model.expected_purchases(13, future=ahead, interval=0.9, n_draws=200, seed=1)
    assert list(frame.columns) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert np.all(frame["mean_lower"] < point) and np.all(point < frame["mean_upper"])
    assert frame["mean"].to_numpy() == pytest.approx(point.to_numpy(), rel=0.05)
    # the default summary is the training one; P(alive) is a probability
    alive = model.probability_alive()
    assert alive.between(0, 1).all() and alive.to_numpy() == pytest.approx(
        model.probability_alive(rfm, time_varying=summary).to_numpy(), rel=1e-14)
    with pytest.raises(ClvDataError, match="future"):
        model.expected_purchases(13)
    with pytest.raises(ClvDataError, match="part of the forecast window"):
        model.expected_purchases(20, future=ahead)


# ---------------------------------------------------------------------------- saving, Bayesian fits
@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_save_and_load_keep_the_design_and_coefficients(cls, bg_data, tmp_path):
    from clvmodels import load_model

    rfm, birth, times = bg_data
    table = rfm.assign(c=np.random.default_rng(14).normal(size=len(rfm)))
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    kwargs = {"dropout_time_varying": ["holiday"]} if cls is ParetoNBDModel else {}
    model = cls(purchase_covariates=["c"], purchase_time_varying=COLUMNS, **kwargs).fit(table, time_varying=summary)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.summary(), model.summary())
    ahead = grid_pieces(birth, rfm["T"].to_numpy() + 10, COLUMNS, z_weekly, start=rfm["T"].to_numpy())
    np.testing.assert_array_equal(loaded.expected_purchases(10, table, time_varying=summary, future=ahead),
                                  model.expected_purchases(10, future=ahead))
    with pytest.raises(ClvDataError, match="time_varying=TimeVaryingSummary"):
        loaded.probability_alive(table)


@pytest.mark.parametrize("cls", [BetaGeoModel, pytest.param(ParetoNBDModel, marks=pytest.mark.slow)])
def test_symbolic_likelihood_and_gradient_equal_the_mle_objective(cls, bg_data):
    import pytensor
    import pytensor.tensor as pt

    rfm, birth, times = bg_data
    rfm, birth, times = rfm.iloc[:300].reset_index(drop=True), birth[:300], times[:300]
    table = rfm.assign(c=np.random.default_rng(15).normal(size=len(rfm)))
    kwargs = processes(cls, COLUMNS)
    model = cls(purchase_covariates=["c"], **kwargs)
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    f, names = objective_of(model, table, summary)
    setup = timevarying.fit_setup(model, timevarying.processes_of(model, summary), summary,
                                  {**model._fit_arrays(table), **model.covariate_data(table)}, np.ones(len(rfm)))
    link, k = model._covariate_link(), len(cls.param_names)
    theta = pt.dvector("theta")
    params = {n: pt.exp(theta[i]) for i, n in enumerate(cls.param_names)}
    params.update(link.coefficients([theta[k + j] for j in range(link.n_free)]))
    ll = setup.symbolic_log_likelihood(params, {n: theta[k + link.n_free + j] for j, n in enumerate(names)})
    g = pytensor.function([theta], [ll, pytensor.grad(ll, theta)])
    at = np.r_[np.log(list(truth(cls).values())),
               np.random.default_rng(16).normal(0, 0.3, link.n_free + len(names))]
    value, grad = g(at)
    nll, ngrad = f(at)
    assert value == pytest.approx(-nll * len(rfm), rel=1e-12)
    np.testing.assert_allclose(grad, -ngrad * len(rfm), rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_nuts_and_map_agree_with_the_mle(bg_data):
    rfm, birth, times = bg_data
    rfm, birth, times = rfm.iloc[:600].reset_index(drop=True), birth[:600], times[:600]
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    mle = BetaGeoModel(purchase_time_varying=COLUMNS).fit(rfm, time_varying=summary)
    nuts = BetaGeoModel(purchase_time_varying=COLUMNS, draws=300, tune=300, chains=2, seed=3).fit(
        rfm, time_varying=summary, method="nuts")
    table, reference = nuts.summary(), mle.summary()
    for name in ("r", "alpha", "tv_purchase:season", "tv_purchase:holiday"):
        assert abs(table.loc[name, "mean"] - reference.loc[name, "estimate"]) < reference.loc[name, "se"], name
    assert table.loc["tv_purchase:season", "user_mean"] == pytest.approx(
        table.loc["tv_purchase:season", "mean"] / mle.time_varying_["scales"][0])
    saved = nuts.expected_purchases(5, future=grid_pieces(birth, rfm["T"].to_numpy() + 5, COLUMNS, z_weekly,
                                                          start=rfm["T"].to_numpy()))
    assert np.all(np.isfinite(saved))
    fitted_map = BetaGeoModel(purchase_time_varying=COLUMNS).fit(rfm, time_varying=summary, method="map")
    for name in ("r", "tv_purchase:season", "tv_purchase:holiday"):
        value = fitted_map.params_.get(name, fitted_map.time_varying_coefficients_.get(name))
        assert abs(value - reference.loc[name, "estimate"]) < 0.5 * reference.loc[name, "se"], name


@pytest.mark.parametrize("kind, cls, params", [("bgnbd", BetaGeoModel, BG), ("pnbd", ParetoNBDModel, PNBD)])
def test_clv_without_effects_is_the_static_clv_and_has_intervals(kind, cls, params, bg_data):
    from clvmodels import GammaGammaModel, clv

    rfm, birth, times = bg_data
    rng = np.random.default_rng(17)
    rfm = rfm.assign(monetary_value=np.where(rfm["frequency"] > 0, rng.gamma(4.0, 10.0, len(rfm)), 0.0))
    rfm.attrs["time_unit"] = "W"
    spend = GammaGammaModel().fit(rfm[rfm["frequency"] > 0])
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    T = rfm["T"].to_numpy()
    ahead = grid_pieces(birth, T + 60, COLUMNS, z_weekly, start=T)
    flat = known_model(cls, params, [0.0, 0.0], [0.0, 0.0] if cls is ParetoNBDModel else None)
    flat.time_unit_ = "W"
    static = cls()
    static.params_, static.time_unit_ = flat.params_, "W"
    expected = clv(static, spend, rfm, horizon=12, period="M", discount_rate=0.01)
    got = clv(flat, spend, rfm, horizon=12, period="M", discount_rate=0.01, time_varying=summary, future=ahead)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    seasonal = known_model(cls, params, [0.5, 0.8], [0.4, -0.6] if cls is ParetoNBDModel else None)
    seasonal.time_unit_ = "W"
    moved = clv(seasonal, spend, rfm, horizon=12, period="M", discount_rate=0.01, time_varying=summary, future=ahead)
    assert not np.allclose(moved, expected, rtol=0.01)
    fitted = cls(purchase_time_varying=COLUMNS).fit(rfm, time_varying=summary)
    frame = clv(fitted, spend, rfm, horizon=12, interval=0.9, kind="expected", n_draws=100, seed=2, future=ahead)
    point = clv(fitted, spend, rfm, horizon=12, future=ahead)
    assert frame.attrs["uncertainty"].startswith("expected")
    assert np.all(frame["mean_lower"] <= point + 1e-12) and np.all(point <= frame["mean_upper"] + 1e-12)
    # the predictive CLV is simulated along the paths (tests/test_timevarying_predictive.py)
    predictive = clv(fitted, spend, rfm, horizon=12, interval=0.9, n_samples=50, n_draws=5, seed=2, future=ahead)
    assert predictive.attrs["uncertainty"].startswith("predictive")
    assert np.all(predictive["lower"] <= predictive["upper"])


def test_threaded_pareto_kernel_equals_one_thread(pnbd_data, monkeypatch):
    from clvmodels.models import pnbd_timevarying

    rfm, birth, times = pnbd_data
    f, names = objective_of(ParetoNBDModel(**processes(ParetoNBDModel)), rfm, summary_of(rfm, birth, COLUMNS, z_weekly, times))
    theta = np.r_[np.log(list(PNBD.values())), np.full(len(names), 0.2)]
    one = f(theta)
    monkeypatch.setattr(pnbd_timevarying, "THREADED_PIECES", 10)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})   # three threads
    threaded = f(theta)
    assert threaded[0] == one[0]
    np.testing.assert_array_equal(threaded[1], one[1])


def test_short_pieces_rule_equals_the_doubling_rule():
    """The few-node rule of a piece (its error bound below 1e-14) gives the static kernel's value and
    gradient, and declines (NaN) a piece too steep for it, which then takes the doubling rule."""
    from clvmodels.models import pnbd_timevarying as ptv
    from clvmodels.models.pnbd_integral import _POS, _WEIGHT, _row

    rng = np.random.default_rng(3)
    used, declined = 0, 0
    for _ in range(3000):
        p, q = rng.choice([0.5, 2.0, 8.0, 60.0]) * rng.uniform(0.5, 1.5), rng.uniform(1.1, 3.0)
        at, bt, ell = 10 ** rng.uniform(-1, 3), 10 ** rng.uniform(-1, 3), 10 ** rng.uniform(-2, 1)
        short, row = np.zeros((1, 4)), np.zeros((1, 4))
        value = ptv._short_piece(p, at, q, bt, ell, *ptv._SHORT, short, True)
        exact = _row(p, at, q - 1.0, bt, 0.0, 0.0, ell, _POS, _WEIGHT, row, 0, True)
        if np.isnan(value):
            declined += 1
            continue
        used += 1
        assert value == pytest.approx(exact, rel=1e-13, abs=1e-12)
        np.testing.assert_allclose(short, row, rtol=1e-10, atol=1e-12)
    assert used > 1500 and declined > 100
    # a short week after a large clock takes few nodes; a steep one (exponent 500, alpha 1) is declined
    assert not np.isnan(ptv._short_piece(1.6, 40.0, 1.7, 60.0, 1.0, *ptv._SHORT, np.zeros((1, 4)), False))
    assert np.isnan(ptv._short_piece(500.0, 1.0, 1.7, 60.0, 1.0, *ptv._SHORT, np.zeros((1, 4)), False))


def test_time_varying_fit_starts_from_the_static_optimum(bg_data):
    """The first start of a time-varying fit is the fit without its time-varying covariates."""
    from clvmodels.models.mle import static_optimum
    from clvmodels.models.optimize import starting_points

    rfm = bg_data[0]
    model = BetaGeoModel(**processes(BetaGeoModel))
    data = model._fit_arrays(rfm)
    w = np.ones(len(rfm))
    theta = static_optimum(model, data, w, None, 0.0, starting_points(model, data, w, None))
    static = BetaGeoModel().fit(rfm)
    np.testing.assert_allclose(np.exp(theta), static.params_.to_numpy(), rtol=1e-5)


@pytest.fixture(scope="module")
def same_day_cohort():
    """Pareto/NBD customers born on three calendar days: those alike in (frequency, recency, T) and
    birth day have the same pieces, and one likelihood term."""
    rng = np.random.default_rng(5)
    birth = rng.integers(0, 3, 2000).astype(float)
    rfm, times = simulate("pnbd", PNBD, birth, 40.0 - birth, COLUMNS, z_weekly, [0.5, 0.8], [0.4, -0.6], seed=6,
                          step=1.0)
    return rfm, birth, times


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_alike_customers_are_one_weighted_row(cls, same_day_cohort):
    """A fit merges customers with the same history and covariate path (their purchase times' covariates
    averaged): its objective and gradient are those of the customers one by one."""
    rfm, birth, times = same_day_cohort
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    model = cls(**processes(cls))
    data = model._fit_arrays(rfm)
    w = np.ones(len(rfm))
    setup = timevarying.fit_setup(model, timevarying.processes_of(model, summary), summary, data, w)
    assert len(setup.w) < 0.7 * len(rfm) and setup.w.sum() == len(rfm)
    full = timevarying.Exposure.of_summary(setup.design, summary, data["frequency"], data["recency"], data["T"])
    structure = model.likelihood_structure()
    merged = setup.objective(0.0)
    single = timevarying.objective(structure, structure.time_varying_model, setup.design, full, data, w)
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = np.r_[np.log(list(truth(cls).values())), rng.normal(0.0, 0.3, len(setup.names))]
        (v1, g1), (v2, g2) = merged(theta, len(rfm), 0.0), single(theta, len(rfm), 0.0)
        np.testing.assert_allclose(v1, v2, rtol=1e-11)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * np.max(np.abs(g2)))
    fitted = cls(**processes(cls)).fit(rfm, time_varying=summary)
    assert fitted.n_unique_ == len(setup.w) and fitted.n_customers_ == len(rfm)


def test_exposure_groups_are_exact_whatever_the_hashes(same_day_cohort, monkeypatch):
    """Customers are merged only when their pieces agree one by one: pieces in another order are another
    path, and a hash that collides for everybody (forced) merges nobody wrongly."""
    rfm, birth, times = same_day_cohort
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    model = ParetoNBDModel(**processes(ParetoNBDModel))
    data = model._fit_arrays(rfm)
    design = timevarying.TimeVaryingDesign.learn(summary.pieces, timevarying.processes_of(model, summary))
    exposure = timevarying.Exposure.of_summary(design, summary, data["frequency"], data["recency"], data["T"])

    def agree(group):
        """Every group's customers have the same data row and the same pieces."""
        for g in np.unique(group):
            members = np.flatnonzero(group == g)
            lead = members[0]
            pieces = [exposure.pieces_of(np.array([i]))[0] for i in members]
            for i, p in zip(members, pieces):
                assert all(data[k][i] == data[k][lead] for k in data)
                np.testing.assert_array_equal(exposure.length[p], exposure.length[pieces[0]])
                np.testing.assert_array_equal(exposure.z[p], exposure.z[pieces[0]])

    honest = timevarying.exposure_groups(data, exposure)
    assert honest.max() + 1 < 0.7 * len(rfm)
    agree(honest[:300])
    monkeypatch.setattr("clvmodels.data.splitmix64", lambda values: np.zeros(len(values), dtype=np.uint64))
    colliding = timevarying.exposure_groups(data, exposure)
    agree(colliding[:300])
    # two customers with the same pieces in the other order are two paths
    two = {k: np.zeros(2) for k in data}
    pieces = ExposurePieces(("a",), np.array([0, 0, 1, 1]), np.array([0.0, 1.0, 0.0, 1.0]), np.ones(4),
                            np.array([[1.0], [2.0], [2.0], [1.0]]), 2)
    swapped = timevarying.Exposure(np.array([0, 0, 1, 1]), pieces.start, pieces.length, pieces.z,
                                   np.zeros(4, dtype=bool), np.zeros((2, 1)), 2)
    assert len(set(timevarying.exposure_groups(two, swapped))) == 2
