"""The CDNOW transaction logs (and other data files) shipped with the ``lifetimes`` package.

The files are read straight from the installed package folder, which ``pip install
"clvmodels[datasets]"`` provides: clvmodels never imports ``lifetimes`` (importing
``lifetimes.datasets`` needs ``pkg_resources``, which new Python environments lack).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from ..errors import ClvDataError


def data_path(name: str) -> Path:
    """Path of a data file shipped in ``lifetimes/datasets`` (e.g. ``"CDNOW_master.txt"``)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise ClvDataError("The CDNOW data sets come with the 'lifetimes' package, which is not installed: "
                           'pip install "clvmodels[datasets]" (or pip install lifetimes).')
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / name
    if not path.exists():
        raise ClvDataError(f"Data file {name!r} not found in {path.parent}.")
    return path


def load_cdnow(sample: bool = True) -> pd.DataFrame:
    """CDNOW transaction log: customers who first bought in Q1 1997, observed to 1998-06-30.

    Parameters
    ----------
    sample
        ``True`` (default): the papers' 1/10 sample, **2,357 customers** (6,919 records; ids
        1..2357 as in ``cdnow_customers_summary.csv``, the published tables' data); ``False``: the
        master log, **23,570 customers** (69,659 records), which ``clvmodels demo`` uses.

    Returns
    -------
    DataFrame with ``customer_id`` (int), ``date`` (datetime64), ``quantity`` (CDs) and
    ``amount`` (dollars), one row per transaction record (the sample has 21 exact duplicate
    rows, kept: :func:`~clvmodels.load_transactions` counts them). The time column is ``date``, as
    in the source files, not :func:`~clvmodels.load_transactions`' default ``timestamp``: load it with
    ``load_transactions(load_cdnow(), timestamp="date")``.
    """
    if sample:
        names = ["master_id", "customer_id", "date", "quantity", "amount"]
        df = pd.read_csv(data_path("CDNOW_sample.txt"), sep=r"\s+", header=None, names=names)
        df = df.drop(columns="master_id")
    else:
        names = ["customer_id", "date", "quantity", "amount"]
        df = pd.read_csv(data_path("CDNOW_master.txt"), sep=r"\s+", header=0, names=names)
    df["date"] = pd.to_datetime(df["date"].astype(str), format="%Y%m%d")
    return df


def cdnow_summary(with_spend: bool = False) -> pd.DataFrame:
    """The published CDNOW calibration summary (2,357 customers, 39 weeks, weeks; rounded to 2 d.p.).

    Columns ``frequency``, ``recency``, ``T`` and, with ``with_spend``, ``monetary_value``
    (``zbar`` of the source file), indexed by ``customer_id``.
    """
    if with_spend:
        df = pd.read_csv(data_path("cdnow_customers_summary_with_transactions.csv"))
        df = df.rename(columns={"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"})
    else:
        df = pd.read_csv(data_path("cdnow_customers_summary.csv")).rename(columns={"ID": "customer_id"})
    return df.set_index("customer_id")


def load_donations() -> pd.DataFrame:
    """Donations data (Fader, Hardie & Shang 2010): ``frequency``, ``recency``, ``periods``, ``weights``."""
    return pd.read_csv(data_path("donations.csv"))
