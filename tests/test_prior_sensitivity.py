"""The prior-sensitivity diagnostic of the Bayesian fits (clvmodels.models.prior_sensitivity)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels import PriorSensitivityWarning
from clvmodels.datasets import cdnow_summary, simulate
from clvmodels.models import prior_sensitivity as ps


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="module")
def weak_rfm():
    """100 customers acquired over 4 weeks and watched for 12: almost no sign of drop-out."""
    log = simulate(100, observation_length=12.0, cohort_length=4.0, seed=1)
    return clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W")


def _map_fit(cls, rfm, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cls(progressbar=False, **kwargs).fit(rfm, method="map")
    return model, [w for w in caught if issubclass(w.category, PriorSensitivityWarning)]


def test_table_reads_shift_and_sd_ratio_against_the_mle():
    # ln-scale posterior means 0.1 and ln(3) + 0.5, sds 0.2 and 0.1; MLE 1 and 3 with SEs 0.2 and 0.25
    table = ps.prior_sensitivity_table(["a", "b"], np.array([0.1, np.log(3.0) + 0.5]), np.array([0.2, 0.1]),
                                       np.array([1.0, 3.0]), np.array([0.2, 0.25]), True)
    np.testing.assert_allclose(table["prior_shift_se"], [0.5, 2.0])
    np.testing.assert_allclose(table["prior_sd_ratio"], [1.0, 0.4])
    np.testing.assert_allclose(table["mle"], [1.0, 3.0])
    assert table["prior_dominated"].tolist() == [False, True]
    # each threshold alone flags; a parameter without a finite MLE standard error is flagged
    shifted = ps.prior_sensitivity_table(["a"], np.array([1.01 * ps.SHIFT_MAX]), np.array([1.0]), np.array([1.0]),
                                         np.array([1.0]), True)
    narrow = ps.prior_sensitivity_table(["a"], np.array([0.0]), np.array([0.99 * ps.SD_RATIO_MIN]),
                                        np.array([1.0]), np.array([1.0]), True)
    unidentified = ps.prior_sensitivity_table(["a"], np.array([0.0]), np.array([1.0]), np.array([1.0]),
                                              np.array([np.nan]), False)
    assert shifted["prior_dominated"].all() and narrow["prior_dominated"].all()
    assert unidentified["prior_dominated"].all() and not unidentified.attrs["mle_converged"]


@pytest.mark.parametrize("cls, kwargs", [(clv.BetaGeoModel, {}), (clv.ParetoNBDModel, {}),
                                         (clv.GammaGammaModel, {"exclude_invalid": True})])
@pytest.mark.slow
def test_cdnow_is_data_dominated(rfm, cls, kwargs):
    model, caught = _map_fit(cls, rfm, **kwargs)
    assert not caught
    table = model.prior_sensitivity_
    assert list(table.index) == list(cls.param_names) and not table["prior_dominated"].any()
    # measured (MAP): |shift| <= 0.09 MLE standard errors for the rates and Gamma-Gamma, 0.22 for
    # Pareto/NBD's s and beta, 0.62 for BG/NBD's a and b (the joint concentration prior); sd ratio 0.88-1.00
    assert (table["prior_shift_se"].abs() < 0.7).all() and (table["prior_sd_ratio"] > 0.85).all()
    mle = cls(**kwargs).fit(rfm)
    np.testing.assert_allclose(table["mle"], mle.params_[list(cls.param_names)], rtol=1e-6)
    summary = model.summary()
    assert list(summary.columns[-4:]) == list(ps.COLUMNS)
    pd.testing.assert_series_equal(summary["prior_shift_se"], table["prior_shift_se"])


@pytest.mark.parametrize("cls", [clv.BetaGeoModel, clv.ParetoNBDModel])
def test_weak_drop_out_data_warn(weak_rfm, cls):
    model, caught = _map_fit(cls, weak_rfm)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "the prior, not the data, decides" in message and "priors=" in message
    table = model.prior_sensitivity_
    drop_out = ["a", "b"] if cls is clv.BetaGeoModel else ["s", "beta"]
    assert table.loc[drop_out, "prior_dominated"].all()


def test_weak_spend_data_warn():
    """Gamma-Gamma on 12 repeat customers: the prior decides the spend heterogeneity."""
    log = simulate(60, observation_length=12.0, cohort_length=4.0, seed=3)
    rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W")
    model, caught = _map_fit(clv.GammaGammaModel, rfm, exclude_invalid=True)
    assert len(caught) == 1 and model.prior_sensitivity_["prior_dominated"].any()


def test_the_table_is_saved_with_the_model(rfm, tmp_path):
    from clvmodels.models.persistence import load_model, save_model

    model, _ = _map_fit(clv.GammaGammaModel, rfm, exclude_invalid=True)
    save_model(model, tmp_path / "gg")
    loaded = load_model(tmp_path / "gg")
    np.testing.assert_allclose(loaded.prior_sensitivity_["prior_shift_se"], model.prior_sensitivity_["prior_shift_se"])
    assert list(loaded.summary().columns[-4:]) == list(ps.COLUMNS)
