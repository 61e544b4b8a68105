"""Shared fixtures (keep small; add yours below)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def cdnow_sample_raw() -> pd.DataFrame:
    """The CDNOW 1/10 sample as shipped (columns customer_id, date, quantity, amount)."""
    from clvmodels.datasets import load_cdnow

    return load_cdnow(sample=True)


@pytest.fixture(scope="session")
def cdnow_master_raw() -> pd.DataFrame:
    """The CDNOW master log as shipped (23,570 customers)."""
    from clvmodels.datasets import load_cdnow

    return load_cdnow(sample=False)


@pytest.fixture(scope="session")
def cdnow_sample_log(cdnow_sample_raw) -> pd.DataFrame:
    """The CDNOW sample through :func:`clvmodels.load_transactions` (its duplicate-row warning silenced)."""
    from clvmodels import load_transactions

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_transactions(cdnow_sample_raw, timestamp="date")


@pytest.fixture(scope="session")
def cdnow_rfm() -> pd.DataFrame:
    """The CDNOW sample's published calibration summary, with mean spend (2,357 customers)."""
    from clvmodels.datasets import cdnow_summary

    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="session")
def cdnow_fits(cdnow_rfm):
    """BG/NBD and Gamma-Gamma (repeat buyers) fitted by maximum likelihood on :func:`cdnow_rfm`."""
    from clvmodels import BetaGeoModel, GammaGammaModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BetaGeoModel().fit(cdnow_rfm), GammaGammaModel(exclude_invalid=True).fit(cdnow_rfm)
