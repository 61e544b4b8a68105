"""P(alive) at a future date and discounted expected residual transactions (DERT), against closed
forms and independent numerical integrals: Pareto/NBD's DERT with the confluent hypergeometric ``U``
(Fader, Hardie & Lee 2005, "RFM and CLV", eq. 2), BG/NBD's and MBG/NBD's as ``E[λ/(δ+λp)]`` by 2-D
integration, the survivals by integrating over the drop-out probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import clvmodels as clv
from clvmodels.datasets import cdnow_summary

#: continuously compounded weekly rate of 15% a year (FHL 2005), and a large one
RATES = [np.log(1.15) / 52, 0.1]
HISTORIES = pd.DataFrame({"frequency": [0.0, 2.0, 7.0, 40.0, 1.0], "recency": [0.0, 30.4, 35.0, 38.0, 2.0],
                          "T": [38.9, 38.9, 38.9, 39.0, 70.0]})


@pytest.fixture(scope="module")
def fits():
    rfm = cdnow_summary()
    return {cls.__name__: cls().fit(rfm) for cls in (clv.BetaGeoModel, clv.ModifiedBetaGeoModel, clv.ParetoNBDModel)}


@pytest.mark.parametrize("rate", RATES)
def test_pareto_dert_equals_the_closed_form(fits, rate):
    model = fits["ParetoNBDModel"]
    r, alpha, s, beta = (model.params_[k] for k in ("r", "alpha", "s", "beta"))
    x, T = HISTORIES["frequency"].to_numpy(), HISTORIES["T"].to_numpy()
    z = rate * (beta + T)
    alive_dert = (r + x) / (alpha + T) * z ** s * special.hyperu(s, s, z) / rate
    expected = model.probability_alive(HISTORIES).to_numpy() * alive_dert
    np.testing.assert_allclose(model.dert(rate, HISTORIES).to_numpy(), expected, rtol=1e-9)


@pytest.mark.parametrize("name,shift", [("BetaGeoModel", 0.0), ("ModifiedBetaGeoModel", 1.0)])
def test_bg_dert_equals_the_expected_discounted_rate_over_lambda_and_p(fits, name, shift):
    """An alive (M)BG/NBD customer buys at rate λ until a purchase ends her lifetime (probability
    p each), so her discounted purchases are λ ∫ e^{−δt} e^{−λpt} dt = λ/(δ+λp): averaged over her
    posterior λ ~ Gamma(r+x, α+T), p ~ Beta(a, b+x(+1))."""
    model = fits[name]
    r, alpha, a, b = (model.params_[k] for k in ("r", "alpha", "a", "b"))
    rate = RATES[0]
    got = model.dert(rate, HISTORIES).to_numpy() / model.probability_alive(HISTORIES).to_numpy()
    for (x, _, T), value in list(zip(HISTORIES.to_numpy(), got))[2:3]:   # (each costs a 2-D quad)
        lam, p = stats.gamma(r + x, scale=1 / (alpha + T)), stats.beta(a, b + x + shift)
        inner = lambda q: integrate.quad(lambda u: u / (rate + u * q) * lam.pdf(u), 0, np.inf, epsabs=0, epsrel=1e-11)[0]  # noqa: E731
        want = integrate.quad(lambda q: inner(q) * p.pdf(q), 0, 1, epsabs=0, epsrel=1e-10, limit=200)[0]
        assert value == pytest.approx(want, rel=1e-7), (x, T)


@pytest.mark.parametrize("name,shift", [("BetaGeoModel", 0.0), ("ModifiedBetaGeoModel", 1.0)])
def test_bg_survival_integrates_the_drop_out_probability(fits, name, shift):
    model = fits[name]
    r, alpha, a, b = (model.params_[k] for k in ("r", "alpha", "a", "b"))
    for t in (0.5, 13.0, 52.0, 500.0):
        got = model.probability_alive(HISTORIES, at=t).to_numpy() / model.probability_alive(HISTORIES).to_numpy()
        for (x, _, T), value in zip(HISTORIES.to_numpy(), got):
            # E_λ[e^{−λpt}] = (1 + p t/(α+T))^−(r+x), then over p ~ Beta(a, b+x(+1))
            want = integrate.quad(lambda q: (1 + q * t / (alpha + T)) ** -(r + x) * stats.beta.pdf(q, a, b + x + shift),
                                  0, 1, epsabs=0, epsrel=1e-11)[0]
            assert value == pytest.approx(want, rel=1e-9), (t, x, T)


def test_pareto_survival_and_the_limits(fits):
    model = fits["ParetoNBDModel"]
    s, beta = model.params_["s"], model.params_["beta"]
    now = model.probability_alive(HISTORIES)
    later = model.probability_alive(HISTORIES, at=26.0)
    np.testing.assert_allclose(later, now * ((beta + HISTORIES["T"]) / (beta + HISTORIES["T"] + 26.0)) ** s, rtol=1e-13)
    for m in fits.values():
        p0, p1, p2 = (m.probability_alive(HISTORIES, at=t).to_numpy() for t in (0.0, 10.0, 1e6))
        np.testing.assert_allclose(p0, m.probability_alive(HISTORIES).to_numpy(), rtol=1e-12)
        assert np.all(p1 < p0) and np.all(p2 < p1)
    with pytest.raises(clv.ClvDataError):
        model.probability_alive(HISTORIES, at=-1.0)


def test_dert_intervals_and_errors(fits):
    model = fits["BetaGeoModel"]
    out = model.dert(RATES[0], HISTORIES, interval=0.9, seed=0)
    assert list(out.columns[:4]) == ["mean", "mean_median", "mean_lower", "mean_upper"]
    assert np.all(out["mean_lower"] <= out["mean_upper"])
    # more purchases and more recent: more residual transactions; a lower rate: more value
    point = model.dert(RATES[0], HISTORIES)
    assert point.iloc[2] > point.iloc[1] > point.iloc[0]
    assert np.all(model.dert(RATES[0] / 2, HISTORIES) > point)
    with pytest.raises(ValueError, match="discount_rate"):
        model.dert(0.0, HISTORIES)
