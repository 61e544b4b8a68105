"""Expected time to the next purchase (``expected_time_to_next_purchase``): against forward
simulations of each model's own process (independent of the formulas), Pareto/NBD's closed form
and GGompertz/NBD's quadrature against 30/40-digit integrals (and GGompertz/NBD at its Pareto/NBD
limit), CNBD-k at k = 1 against BG/NBD and MBG/NBD, and the clear error of a model without the
formula (BG/BB).

The Monte Carlo check is the tower property: over customers with similar histories, the mean of
``P(she buys again | history) × E[τ | τ < ∞, history]`` is the mean of ``τ 1{τ < ∞}`` observed after
the calibration end (within 4 standard errors; the simulation runs long enough that a later next
purchase is negligible)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import simulate
from clvmodels.errors import ModelKindError
from clvmodels.models.draws import quantiles

#: Regular-ish buyers with r > 2, so that even one-time buyers' waiting times have a finite variance.
TRUE = dict(r=3.0, alpha=6.0, a=1.0, b=3.0)
#: Calibration end and the end of the simulated log (weeks).
CALIBRATION, END = 40.0, 1500.0
GROUPS = [-1, 0, 1, 3, 6, 1000]


def _point(params: dict, k: int | None = None) -> dict:
    out = {n: np.array([[float(v)]]) for n, v in params.items()}
    return out if k is None else {**out, "k": np.array([[float(k)]])}


def _histories_and_waits(log: pd.DataFrame, start: str = "2024-01-01") -> pd.DataFrame:
    """Each customer's ``(x, t_x, T)`` at the calibration end (weeks, continuous) and ``τ``, the time
    from it to her first purchase after it (``inf`` if none in the log)."""
    weeks = (log["timestamp"] - pd.Timestamp(start)) / pd.Timedelta(weeks=1)
    frame = pd.DataFrame({"id": log["customer_id"].to_numpy(), "w": weeks.to_numpy()})
    before, after = frame[frame["w"] <= CALIBRATION], frame[frame["w"] > CALIBRATION]
    g = before.groupby("id")["w"]
    out = pd.DataFrame({"frequency": g.size() - 1.0, "recency": g.max() - g.min(), "T": CALIBRATION - g.min()})
    out["wait"] = (after.groupby("id")["w"].min() - CALIBRATION).reindex(out.index).fillna(np.inf)
    return out


def _assert_tower(h: pd.DataFrame, buys_again: np.ndarray, mean_wait: np.ndarray) -> None:
    """Per frequency group: the mean observed wait of the customers who bought again against
    ``Σ P_i m_i / Σ P_i`` (``P_i`` the probability that customer ``i`` buys again, ``m_i`` her
    expected wait given that she does), within 4 delta-method standard errors of the ratio."""
    bought = np.isfinite(h["wait"].to_numpy())
    wait = np.where(bought, h["wait"], 0.0)
    groups = pd.cut(h["frequency"], GROUPS).to_numpy()
    checked = 0
    for _, idx in pd.Series(np.arange(len(h))).groupby(groups, observed=True):
        if bought[idx].sum() < 300:
            continue
        observed = wait[idx].sum() / bought[idx].sum()
        predicted = np.sum(buys_again[idx] * mean_wait[idx]) / np.sum(buys_again[idx])
        residual = wait[idx] - observed * bought[idx]
        se = np.sqrt(np.sum(residual ** 2)) / bought[idx].sum()
        assert abs(predicted - observed) < 4 * se, (predicted, observed, se)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("cls,k", [(clv.BetaGeoModel, None), (clv.ModifiedBetaGeoModel, None),
                                   (clv.ModifiedBetaGeoCNBDModel, 3), (clv.BetaGeoCNBDModel, 2)])
def test_matches_a_forward_simulation_of_the_bg_family(cls, k):
    modified = cls in (clv.ModifiedBetaGeoModel, clv.ModifiedBetaGeoCNBDModel)
    log = simulate(40_000, **TRUE, k=k or 1, drop_at_first=modified, cohort_length=12, observation_length=END, seed=5)
    h = _histories_and_waits(log)
    args = [h[c].to_numpy() for c in ("frequency", "recency", "T")]
    params = _point(TRUE, k)
    alive = cls.probability_alive_formula(params, *args)[0]
    mean_wait = cls.next_purchase_time_formula(params, *args)[0]
    assert np.all(np.isfinite(mean_wait)) and np.all(mean_wait > 0)
    _assert_tower(h, alive, mean_wait)


def _buys_again_given_alive(p, A, survival):
    """``P(τ < ∞ | alive) = ∫_0^∞ E[λ e^{−λu}] S(u) du`` for ``λ ~ Gamma(p, A)`` and a lifetime of
    survival ``S`` (``survival(u)``, rows by nodes): ``∫_0^1 p (1−y)^{p−1} S(A y/(1−y)) dy``
    (``u = A y/(1−y)``) by 200-node Gauss-Legendre (``p >= 3`` here: smooth)."""
    y, w = np.polynomial.legendre.leggauss(200)
    y, w = (y + 1) / 2, w / 2
    p, A = np.asarray(p, float)[:, None], np.asarray(A, float)[:, None]
    with np.errstate(over="ignore"):      # S = (1 + inf)^−s = 0 far out
        return np.sum(w * p * (1 - y) ** (p - 1) * survival(A * y / (1 - y)), axis=1)


def _forward(n, r, alpha, lifetime, seed):
    """Customers drawn here (independent of the library): ``λ ~ Gamma(r, α)``, a lifetime from
    ``lifetime(rng, n)``, Poisson purchases while alive, acquired uniformly over the 12 weeks before
    ``CALIBRATION - 28``; the next purchase after ``T`` is the next Poisson event if it comes before
    death (memorylessness)."""
    rng = np.random.default_rng(seed)
    lam, life = rng.gamma(r, 1 / alpha, n), lifetime(rng, n)
    T = CALIBRATION - rng.uniform(0, 12, n)
    x = rng.poisson(lam * np.minimum(life, T))
    # the last of x uniform event times on (0, min(life, T)): the max of x uniforms
    tx = np.where(x > 0, np.minimum(life, T) * rng.random(n) ** (1 / np.maximum(x, 1)), 0.0)
    wait = rng.exponential(1 / lam)
    wait = np.where((life > T) & (T + wait < life), wait, np.inf)
    return pd.DataFrame({"frequency": x.astype(float), "recency": tx, "T": T, "wait": wait})


def test_pareto_nbd_matches_a_forward_simulation():
    r, alpha, s, beta = 3.0, 6.0, 1.5, 60.0
    h = _forward(40_000, r, alpha, lambda rng, n: rng.exponential(1 / rng.gamma(s, 1 / beta, n)), seed=11)
    params = _point(dict(r=r, alpha=alpha, s=s, beta=beta))
    args = [h[c].to_numpy() for c in ("frequency", "recency", "T")]
    alive = clv.ParetoNBDModel.probability_alive_formula(params, *args)[0]
    mean_wait = clv.ParetoNBDModel.next_purchase_time_formula(params, *args)[0]
    assert np.all(np.isfinite(mean_wait))
    B = (beta + h["T"].to_numpy())[:, None]
    buys_again = _buys_again_given_alive(r + h["frequency"], alpha + h["T"], lambda u: (1 + u / B) ** -s)
    _assert_tower(h, alive * buys_again, mean_wait)


def test_ggompertz_nbd_matches_a_forward_simulation():
    """Gompertz lifetimes that age (``b = 0.05`` a week): ``η ~ Gamma(s, β)``, lifetime
    ``ln(1 + E/η)/b`` with ``E ~ Exponential(1)``; alive at ``T`` her survival is
    ``(1 + κ (e^{bu} − 1))^−s`` with ``κ = e^{bT}/(β + e^{bT} − 1)`` (Bemmaor & Glady 2012)."""
    r, alpha, b, s, beta = 3.0, 6.0, 0.05, 1.5, 4.0
    h = _forward(40_000, r, alpha, lambda rng, n: np.log1p(rng.exponential(size=n) / rng.gamma(s, 1 / beta, n)) / b,
                 seed=12)
    params = _point(dict(r=r, alpha=alpha, b=b, s=s, beta=beta))
    args = [h[c].to_numpy() for c in ("frequency", "recency", "T")]
    alive = clv.GGompertzNBDModel.probability_alive_formula(params, *args)[0]
    mean_wait = clv.GGompertzNBDModel.next_purchase_time_formula(params, *args)[0]
    assert np.all(np.isfinite(mean_wait))
    kappa = np.exp(b * h["T"].to_numpy()) / (beta + np.expm1(b * h["T"].to_numpy()))
    buys_again = _buys_again_given_alive(r + h["frequency"], alpha + h["T"],
                                         lambda u: (1 + kappa[:, None] * np.expm1(b * u)) ** -s)
    _assert_tower(h, alive * buys_again, mean_wait)


@pytest.mark.parametrize("r,alpha,b,s,beta", [(3.0, 6.0, 0.05, 1.5, 2.0), (0.55, 10.58, 0.01, 0.6, 0.5),
                                              (0.3, 1.0, 1.0, 5.0, 300.0), (0.5, 5.0, 0.2, 50.0, 20.0)])
def test_ggompertz_nbd_equals_the_integral_and_tends_to_pareto_nbd(r, alpha, b, s, beta):
    """Against 30-digit integrals of ``u g(u)`` and ``g(u)`` (``g`` the defective density of the next
    purchase, the Gompertz survival times the Lomax density), and at ``b → 0`` with ``β/b`` fixed
    Pareto/NBD's closed form (histories with a repeat purchase: without one, ``r+s`` near 1 makes
    the mean hang on the far tail, where ``b = 1e-10`` still differs)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    x, T = np.array([0.0, 1.0, 7.0, 40.0, 200.0]), np.array([38.9, 38.9, 38.9, 39.0, 50.0])
    got = clv.GGompertzNBDModel.next_purchase_time_formula({"r": r, "alpha": alpha, "b": b, "s": s, "beta": beta}, x, x, T)
    for xi, Ti, value in zip(x, T, got):
        p, A = r + xi, alpha + Ti
        kappa = mp.e ** (b * Ti) / (beta + mp.e ** (b * Ti) - 1)

        def g(v):   # g(u) du with u = A (e^v − 1)
            return p * mp.exp(-p * v) * (1 + kappa * mp.expm1(b * A * mp.expm1(v))) ** -s

        pieces = [0, 0.5, 1, 2, 4, 8, 16, 32, 64]
        want = mp.quad(lambda v: A * mp.expm1(v) * g(v), pieces) / mp.quad(g, pieces)
        assert value == pytest.approx(float(want), rel=1e-9), (xi, Ti)
    tiny = 1e-10
    limit = clv.GGompertzNBDModel.next_purchase_time_formula({"r": r, "alpha": alpha, "b": tiny, "s": s,
                                                               "beta": tiny * beta / b}, x[1:], x[1:], T[1:])
    pareto = clv.ParetoNBDModel.next_purchase_time_formula({"r": r, "alpha": alpha, "s": s, "beta": beta / b},
                                                           x[1:], x[1:], T[1:])
    np.testing.assert_allclose(limit, pareto, rtol=1e-6)


@pytest.mark.parametrize("r,alpha,s,beta", [(0.55, 10.58, 0.61, 11.67), (0.55, 10.58, 0.61, 0.5),
                                            (2.0, 100.0, 3.0, 1.0), (0.3, 1.0, 5.0, 300.0)])
def test_pareto_nbd_closed_form_equals_the_integral(r, alpha, s, beta):
    """``E[τ 1{τ<∞}] / P(τ<∞)`` of an alive customer as two 40-digit integrals over the defective
    density ``g(u) = p/A (1+u/A)^−(p+1) (1+u/B)^−s`` of the next purchase time (in ``v = ln(1+u/A)``),
    on both sides of ``α = β`` (the formula's Pfaff branch), with heavy tails (``p+s`` near 1) and
    ``x = 200``."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    xs, Ts = np.array([0.0, 1.0, 7.0, 200.0, 2.0]), np.array([38.0, 5.0, 38.0, 50.0, 0.0])
    got = clv.ParetoNBDModel.next_purchase_time_formula({"r": r, "alpha": alpha, "s": s, "beta": beta}, xs, xs, Ts)
    for x, T, value in zip(xs, Ts, got):
        p, A, B = r + x, alpha + T, beta + T

        def g(v):   # g(u) du with u = A (e^v − 1)
            return p * mp.exp(-p * v) * (1 + A * mp.expm1(v) / B) ** -s

        pieces = [0, 1, 5, 20, 100, mp.inf]
        want = mp.quad(lambda v: A * mp.expm1(v) * g(v), pieces) / mp.quad(g, pieces)
        assert value == pytest.approx(float(want), rel=1e-10), (x, T)


def test_cnbd_at_k_1_is_bgnbd_and_mbgnbd():
    h = [np.array([0.0, 1.0, 4.0, 30.0]), np.array([0.0, 3.0, 20.0, 37.0]), np.array([39.0, 39.0, 30.0, 38.0])]
    params = dict(r=0.6, alpha=5.0, a=0.8, b=2.0)
    bg = clv.BetaGeoModel.next_purchase_time_formula(_point(params), *h)
    np.testing.assert_allclose(bg[0, 1:], (params["alpha"] + h[2][1:]) / (params["r"] + h[0][1:] - 1), rtol=1e-14)
    assert bg[0, 0] == np.inf            # r + x <= 1: E[1/λ] diverges
    for cls in (clv.BetaGeoCNBDModel, clv.ModifiedBetaGeoCNBDModel):
        np.testing.assert_allclose(cls.next_purchase_time_formula(_point(params, 1), *h), bg, rtol=1e-14)
    np.testing.assert_array_equal(clv.ModifiedBetaGeoModel.next_purchase_time_formula(_point(params), *h), bg)
    # regular buyers: a customer right after her purchase waits a whole Erlang-k cycle, one long
    # overdue is close to her next one
    cnbd = clv.ModifiedBetaGeoCNBDModel.next_purchase_time_formula(
        _point(TRUE, 4), np.array([10.0, 10.0]), np.array([30.0, 20.0]), np.array([30.0, 30.0]))[0]
    assert cnbd[0] == pytest.approx(4 * (TRUE["alpha"] + 30) / (TRUE["r"] + 40 - 1), rel=1e-12)
    assert cnbd[1] < 0.5 * cnbd[0]


def test_the_method_on_fitted_models_and_the_models_without_it(cdnow_rfm, cdnow_fits):
    bg = cdnow_fits[0]
    out = bg.expected_time_to_next_purchase(cdnow_rfm)
    assert out.name == "expected_time_to_next_purchase" and out.index.equals(cdnow_rfm.index)
    one_time = (cdnow_rfm["frequency"] == 0).to_numpy()
    assert bg.params_["r"] < 1 and np.all(np.isinf(out[one_time])) and np.all(np.isfinite(out[~one_time]))
    x, T = cdnow_rfm["frequency"][~one_time], cdnow_rfm["T"][~one_time]
    np.testing.assert_allclose(out[~one_time], (bg.params_["alpha"] + T) / (bg.params_["r"] + x - 1), rtol=1e-12)
    band = bg.expected_time_to_next_purchase(cdnow_rfm[~one_time], interval=0.9, seed=0)
    assert np.all(band["mean_lower"] <= band["mean_upper"]) and np.all(band["mean_lower"] > 0)
    never = bg.expected_time_to_next_purchase(cdnow_rfm[one_time].head(5), interval=0.9, seed=0)
    assert np.all(np.isinf(never.to_numpy()))          # inf in every draw: inf, never inf − inf = NaN
    np.testing.assert_array_equal(quantiles(np.array([[1.0, 2.0], [np.inf, 4.0]]), [0.0, 0.5, 1.0]),
                                  [[1.0, 2.0], [np.inf, 3.0], [np.inf, 4.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pareto = clv.ParetoNBDModel().fit(cdnow_rfm)
    waits = pareto.expected_time_to_next_purchase(cdnow_rfm)
    assert np.all(np.isfinite(waits[~one_time])) and np.all(waits[~one_time] > 0)
    # a frequent buyer waits less than an occasional one of the same age
    frequent = pd.DataFrame({"frequency": [20.0, 2.0], "recency": [38.0, 38.0], "T": [39.0, 39.0]})
    assert np.diff(pareto.expected_time_to_next_purchase(frequent).to_numpy())[0] > 0
    bgbb = clv.BetaGeoBetaBinomModel()
    bgbb.params_ = pd.Series({"alpha": 1.2, "beta": 0.75, "gamma": 0.66, "delta": 2.78})
    with pytest.raises(ModelKindError, match="next_purchase_time"):
        bgbb.expected_time_to_next_purchase(cdnow_rfm)


def test_pareto_nbd_is_accurate_at_extreme_parameters_and_histories():
    """Parameters from 1e-3 to 1e3 and histories up to 10,000 purchases: never NaN, ``inf`` exactly
    where ``r+x+s <= 1``, and within 1e-5 of the 30-digit ``2F1`` ratio (scipy's ``2F1`` fails for
    parameters in the hundreds, e.g. ``s = 1000``: the quadrature fallback takes those)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    vals = [1e-3, 1.0, 1e3]
    x = np.array([0.0, 0.0, 1.0, 10.0, 1e4])
    T = np.array([0.0, 50.0, 1.0, 50.0, 1e4])
    for r, alpha, s, beta in itertools.product(vals, repeat=4):
        got = clv.ParetoNBDModel.next_purchase_time_formula({"r": r, "alpha": alpha, "s": s, "beta": beta}, x, x, T)
        assert not np.isnan(got).any()
        for xi, Ti, value in zip(x, T, got):
            p, A, B = r + xi, alpha + Ti, beta + Ti
            if p + s <= 1:
                assert value == np.inf
                continue
            c, w = p + s + 1, 1 - mp.mpf(A) / B
            want = A / (p + s - 1) * mp.hyp2f1(s, 2, c, w) / mp.hyp2f1(s, 1, c, w)
            assert value == pytest.approx(float(want), rel=1e-5), (r, alpha, s, beta, xi, Ti)


def test_ggompertz_nbd_is_finite_at_extreme_parameters():
    """``b`` from 1e-8 (the Pareto/NBD limit) to 10 a period, the other parameters 1e-3 or 1e3,
    histories up to 10,000 purchases: positive, finite (the Gompertz survival ends every tail) and
    without a floating-point warning."""
    x, T = np.array([0.0, 0.0, 1.0, 10.0, 1e4]), np.array([0.0, 50.0, 1.0, 50.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for r, alpha, s, beta in itertools.product([1e-3, 1e3], repeat=4):
            for b in (1e-8, 0.1, 10.0):
                got = clv.GGompertzNBDModel.next_purchase_time_formula(
                    {"r": r, "alpha": alpha, "b": b, "s": s, "beta": beta}, x, x, T)
                assert np.all(np.isfinite(got) & (got > 0)), (r, alpha, b, s, beta, got)
