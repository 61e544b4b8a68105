"""Issue #16: predictive distributions with time-varying covariates, by exact simulation along the
customers' covariate paths (BG/NBD in operational time, Pareto/NBD with its drop-out clock), and
P(alive) at a future time along the path. Checked against exact simulations of the model (the
holdout of :func:`tv_pieces.simulate`), the closed-form expectations, and the static model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import BetaGeoModel, GammaGammaModel, ParetoNBDModel
from clvmodels.exposure import ExposurePieces, TimeVaryingSummary
from clvmodels.predictive import predictive_purchases

from test_timevarying_models import BG, CASES, COLUMNS, known_model, z_weekly
from tv_pieces import grid_pieces, simulate, summary_of

HOLDOUT = 26.0


def exact(model):
    """``model`` at its parameters with no parameter uncertainty (draws are the point)."""
    k = len(model.param_names) + len(getattr(model, "time_varying_coefficients_", ()))
    model.covariance_ = np.zeros((k, k))
    model.time_unit_ = "W"
    return model


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def holdout(request):
    """Customers simulated over a calibration window and a 26-week holdout along a seasonal and
    holiday calendar, the model at the simulation's parameters, their summary and future pieces."""
    kind, cls, params, gp, gd = request.param
    n = 4000
    birth = np.random.default_rng(20).uniform(0, 30, n)
    T = 52.0 - birth
    rfm, times, future, alive = simulate(kind, params, birth, T, COLUMNS, z_weekly, gp, gd, seed=21, holdout=HOLDOUT)
    model = exact(known_model(cls, params, gp, gd))
    summary = summary_of(rfm, birth, COLUMNS, z_weekly, times)
    ahead = grid_pieces(birth, T + HOLDOUT, COLUMNS, z_weekly, start=T)
    return model, rfm, summary, ahead, future


def test_predictive_purchases_match_the_expectation_and_the_holdout(holdout):
    model, rfm, summary, ahead, future = holdout
    frame = predictive_purchases(model, HOLDOUT, rfm, interval=0.8, time_varying=summary, future=ahead,
                                 n_samples=400, seed=3, n_draws=5)
    assert list(frame.columns) == ["mean", "median", "lower", "upper", "p_zero"]
    expected = model.expected_purchases(HOLDOUT, rfm, time_varying=summary, future=ahead).to_numpy()
    # the mean of the simulated futures is the expectation, to Monte Carlo error (per customer and in total)
    n, mc = len(rfm), frame.attrs["draws"]["mc_se_mean"]
    assert np.all(np.abs(frame["mean"].to_numpy() - expected) < 5 * mc)
    se_total = np.sqrt(n * np.var(future) / 400)
    assert abs(frame["mean"].sum() - expected.sum()) < 4 * se_total
    # calibrated against the exact holdout: P(no purchase) and the interval's coverage
    zero = (future == 0).astype(float)
    p0 = frame["p_zero"].to_numpy()
    assert abs(zero.sum() - p0.sum()) < 4 * np.sqrt(np.sum(p0 * (1 - p0)))
    inside = (frame["lower"].to_numpy() <= future) & (future <= frame["upper"].to_numpy())
    assert 0.8 - 3 * np.sqrt(0.16 / n) < inside.mean() < 0.99
    # ... and the upper tail is not too wide: counts at or above the upper end occur at least 10% of the time
    assert (future >= frame["upper"].to_numpy()).mean() > 0.1 - 3 * np.sqrt(0.09 / n)


def test_predictive_clv_mean_is_the_expected_clv(holdout):
    model, rfm, summary, ahead, _ = holdout
    spend_rng = np.random.default_rng(7)
    rfm = rfm.assign(monetary_value=np.where(rfm["frequency"] > 0, spend_rng.gamma(4.0, 6.0, len(rfm)), 0.0))
    spend = exact(GammaGammaModel().fit(rfm[rfm["frequency"] > 0]))
    args = dict(horizon=6, period_length=4.0, discount_rate=0.01, time_varying=summary, future=ahead)
    expected = clv.clv(model, spend, rfm, **args)
    # the model has no parameter uncertainty: a few draws give the same law, faster (each draw's
    # clocks and P(alive) are evaluated once per chunk)
    pred = clv.clv(model, spend, rfm, **args, interval=0.9, n_samples=300, seed=4, n_draws=5)
    assert list(pred.columns[:4]) == ["mean", "median", "lower", "upper"]
    samples = clv.simulate_clv(model, spend, rfm, horizon=6, period_length=4.0, discount_rate=0.01,
                               time_varying=summary, future=ahead, n_samples=300, seed=4, n_draws=5).to_numpy()
    np.testing.assert_allclose(pred["mean"].to_numpy(), samples.mean(axis=0), rtol=1e-12)
    se = np.sqrt(np.sum(samples.var(axis=0)) / 300)
    assert abs(pred["mean"].sum() - expected.sum()) < 4 * se
    assert np.all(pred["lower"] <= pred["median"]) and np.all(pred["median"] <= pred["upper"])
    assert np.all((samples <= pred["upper"].to_numpy()).mean(axis=0) >= 0.95)
    assert np.all((samples >= pred["lower"].to_numpy()).mean(axis=0) >= 0.95)


def constant(rfm, values, end, start=None):
    """Pieces over ``[start, end]`` of each customer with a covariate ``c`` constant in time."""
    pieces = grid_pieces(np.zeros(len(rfm)), end, ["c"], lambda k: np.zeros(len(k)),
                         cut=rfm["recency"].to_numpy() if start is None else None, start=start)
    return ExposurePieces(("c",), pieces.customer, pieces.start, pieces.length, values[pieces.customer][:, None],
                          len(rfm))


@pytest.mark.parametrize("cls", [BetaGeoModel, ParetoNBDModel])
def test_probability_alive_later_equals_the_static_covariate(cls, holdout):
    """A covariate constant in time on the purchase process (and for Pareto/NBD on the drop-out one)
    is the static covariate: P(alive) at ``T + 10`` along the path equals the static model's."""
    rfm = holdout[1]
    values = np.random.default_rng(6).normal(0.0, 0.8, len(rfm))
    dropout = cls is ParetoNBDModel
    static = cls(purchase_covariates=["c"], **({"dropout_covariates": ["c"]} if dropout else {}))
    static = static.fit(rfm.assign(c=values))
    varying = cls(purchase_time_varying=["c"], **({"dropout_time_varying": ["c"]} if dropout else {}))
    T = rfm["T"].to_numpy()
    summary = TimeVaryingSummary(constant(rfm, values, T), (rfm["frequency"].to_numpy() * values)[:, None])
    varying = varying.fit(rfm, time_varying=summary)
    assert varying.log_likelihood_ == pytest.approx(static.log_likelihood_, abs=1e-7)
    later = varying.probability_alive(rfm, at=10.0, time_varying=summary, future=constant(rfm, values, T + 10, T))
    np.testing.assert_allclose(later, static.probability_alive(rfm.assign(c=values), at=10.0), rtol=1e-5)
    now = varying.probability_alive(rfm, time_varying=summary)
    assert np.all(later <= now + 1e-12) and (later < now - 1e-3).mean() > 0.5


def test_probability_alive_later_follows_the_drop_out_clock(holdout):
    """P(alive at T + h) for the simulated customers: at most P(alive at T), falling with h, and for
    Pareto/NBD faster in weeks whose drop-out multiplier is high."""
    model, rfm, summary, ahead, _ = holdout
    now = model.probability_alive(rfm, time_varying=summary).to_numpy()
    later = [model.probability_alive(rfm, time_varying=summary, at=h, future=ahead).to_numpy() for h in (5.0, 20.0)]
    assert np.all(later[0] <= now + 1e-12) and np.all(later[1] <= later[0] + 1e-12)
    if isinstance(model, BetaGeoModel):
        # BG/NBD drops out only at purchases: the survival is the model's at the operational times
        params = model.params_.to_dict()
        static = exact(BetaGeoModel())
        static.params_ = pd.Series(params)
        assert not np.allclose(later[1], static.probability_alive(rfm, at=20.0))
    with pytest.raises(clv.ClvDataError, match="future"):
        model.probability_alive(rfm, time_varying=summary, at=5.0)
    # the static closed forms are refused, never evaluated without the covariates
    from clvmodels.predictive import active_customers, purchase_pmf

    for call in (lambda: purchase_pmf(model, 5.0, 10, rfm), lambda: active_customers(model, rfm)):
        with pytest.raises(clv.ClvDataError, match="no closed form .* time-varying"):
            call()
    with pytest.raises(clv.ClvDataError, match="not available along a covariate path"):
        model.expected_time_to_next_purchase(rfm)


def test_static_bgnbd_is_unchanged_by_the_own_boundaries():
    """The per-customer boundaries of the BG/NBD simulation (operational time) with the same boundaries for
    everyone draw what the shared boundaries draw (the same law; the totals agree to MC error)."""
    from clvmodels.models.bgnbd import simulate_purchases

    params = {k: np.full((2000, 1), v) for k, v in BG.items()}
    x, tx, T = np.array([0.0, 2.0, 5.0]), np.array([0.0, 10.0, 30.0]), np.array([40.0, 40.0, 40.0])
    bounds = np.array([4.0, 8.0, 20.0])
    shared = simulate_purchases(params, x, tx, T, t=bounds, rng=np.random.default_rng(1))
    own = simulate_purchases(params, x, tx, T, t=np.tile(bounds, (3, 1)), rng=np.random.default_rng(2))
    assert shared.shape == own.shape == (2000, 3, 3)
    se = np.sqrt((shared.var(axis=0) + own.var(axis=0)) / 2000)
    assert np.all(np.abs(shared.mean(axis=0) - own.mean(axis=0)) < 4.5 * se + 1e-9)


def test_simulated_futures_refuse_zero_parameter_draws(holdout):
    """The along-the-path simulation checks n_draws as the static one does (it once divided by it)."""
    model, rfm, summary, ahead, _ = holdout
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        predictive_purchases(model, HOLDOUT, rfm, interval=0.8, time_varying=summary, future=ahead, n_samples=50,
                             seed=3, n_draws=0)
