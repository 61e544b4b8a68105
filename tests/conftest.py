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
