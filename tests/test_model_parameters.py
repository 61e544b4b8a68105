"""Model settings and inputs checked where they are used (issue #12, item 10): the penalizer and the
Bayesian draws/tune/chains at fit time (nothing in ``__init__``), and Gamma-Gamma's mean spend, which
is never turned into a negative expected spend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import BetaGeoModel, ClvDataError, GammaGammaModel
from clvmodels.models import gamma_gamma
from clvmodels.models.settings import check_count, check_penalizer


# ---------------------------------------------------------------------------- settings
@pytest.mark.parametrize("penalizer", [-1, -1e-9, float("nan"), float("inf"), "0.1", None, True, [0.1]])
def test_invalid_penalizer_is_refused_at_fit_not_in_init(cdnow_rfm, penalizer):
    model = BetaGeoModel(penalizer=penalizer)  # scikit-learn convention: __init__ stores, fit checks
    assert model.get_params()["penalizer"] is penalizer
    with pytest.raises(ClvDataError, match=r"penalizer must be a finite number >= 0.*got"):
        model.fit(cdnow_rfm)
    assert not model.is_fitted
    with pytest.raises(ClvDataError, match="penalizer"):
        GammaGammaModel(penalizer=penalizer).fit(cdnow_rfm[cdnow_rfm["frequency"] > 0])


def test_valid_penalizers_pass_unchanged():
    assert check_penalizer(0) == 0.0 and check_penalizer(np.float32(0.5)) == 0.5 and check_penalizer(3) == 3.0


@pytest.mark.parametrize("settings, name", [
    ({"draws": 0}, "draws"), ({"draws": 2.5}, "draws"), ({"draws": "100"}, "draws"), ({"draws": None}, "draws"),
    ({"chains": 0}, "chains"), ({"chains": True}, "chains"), ({"chains": float("nan")}, "chains"),
    ({"tune": -1}, "tune"), ({"tune": 10.0}, "tune"),
])
@pytest.mark.parametrize("method", ["nuts", "advi", "map"])
def test_invalid_sampling_settings_are_refused_at_fit(cdnow_rfm, settings, name, method):
    pytest.importorskip("pymc")
    with pytest.raises(ClvDataError, match=rf"{name} must be an integer >= [01], got"):
        BetaGeoModel(**settings).fit(cdnow_rfm, method=method)
    if None in settings.values():
        return  # fit(draws=None) means the constructor's setting
    # the same values given to fit (they override the constructor's) are checked too
    with pytest.raises(ClvDataError, match=rf"{name} must be an integer >= [01]"):
        BetaGeoModel().fit(cdnow_rfm, method=method, **settings)


def test_counts_accept_numpy_integers_and_tune_zero():
    assert check_count("draws", np.int64(5), 1) == 5 and check_count("tune", 0, 0) == 0


def test_maximum_likelihood_ignores_sampling_settings(cdnow_rfm):
    """draws/tune/chains are settings of the Bayesian fits only: an MLE fit does not read them."""
    model = BetaGeoModel(draws=0, tune=-1).fit(cdnow_rfm)
    assert model.params_["r"] == pytest.approx(0.2426, abs=1e-4)


# ---------------------------------------------------------------------------- Gamma-Gamma mean spend
def _with(cdnow_rfm, rows, monetary_value):
    out = cdnow_rfm.copy()
    out.iloc[rows, out.columns.get_loc("monetary_value")] = monetary_value
    return out


def test_negative_mean_spend_is_refused_not_predicted_negative(cdnow_rfm, cdnow_fits):
    """Issue #12 item 10: expected_spend returned a negative spend for a negative mean."""
    bg, gg = cdnow_fits
    repeat = np.flatnonzero(cdnow_rfm["frequency"].to_numpy() > 0)[:2]
    bad = _with(cdnow_rfm, repeat, -30.0)
    with pytest.raises(ClvDataError, match=r"must not be negative in column 'monetary_value' \(2 rows\)") as info:
        gg.expected_spend(bad)
    assert str(bad.index[repeat[0]]) in str(info.value)  # the examples show the customers
    # the formula itself never returns a negative spend either (it is what clv and scoring call)
    with pytest.raises(ClvDataError, match=r"column 'monetary_value' \(2 rows\)"):
        gamma_gamma.expected_spend(gg.params_, bad["frequency"].to_numpy(float), bad["monetary_value"].to_numpy(float))
    with pytest.raises(ClvDataError, match="monetary_value"):
        clv.clv(bg, gg, bad, period_length=4.0)
    # customers without repeat purchases too: nonsense input (also rejected by batch scoring)
    once = np.flatnonzero(cdnow_rfm["frequency"].to_numpy() == 0)[:1]
    with pytest.raises(ClvDataError, match=r"\(1 row\)"):
        gg.expected_spend(_with(cdnow_rfm, once, -1.0))


def test_zero_mean_spend_gets_the_limit_of_the_formula(cdnow_rfm, cdnow_fits):
    """Repeat customers whose transactions were all worth 0 (CDNOW master has some) are scored: the
    prediction is the formula's positive limit m -> 0, p gamma / (p x + q - 1)."""
    _, gg = cdnow_fits
    zero = pd.DataFrame({"frequency": [0, 1, 10], "monetary_value": [0.0, 0.0, 0.0]})
    p, q, g = gg.params_[["p", "q", "gamma"]]
    np.testing.assert_allclose(gg.expected_spend(zero).to_numpy(), p * g / (p * zero["frequency"] + q - 1), rtol=1e-12)


def test_customers_without_repeat_purchases_get_the_population_mean(cdnow_rfm, cdnow_fits):
    _, gg = cdnow_fits
    once = np.flatnonzero(cdnow_rfm["frequency"].to_numpy() == 0)[:2]
    p, q, g = gg.params_[["p", "q", "gamma"]]
    np.testing.assert_allclose(gg.expected_spend(cdnow_rfm.iloc[once]).to_numpy(), p * g / (q - 1), rtol=1e-12)


def test_expected_spend_is_positive_for_valid_inputs(cdnow_rfm, cdnow_fits):
    _, gg = cdnow_fits
    spend = gg.expected_spend(cdnow_rfm)
    assert spend.gt(0).all() and len(spend) == len(cdnow_rfm)
    tiny = pd.DataFrame({"frequency": [1, 50], "monetary_value": [1e-300, 1e-300]})
    assert gg.expected_spend(tiny).gt(0).all()
