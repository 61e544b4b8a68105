"""Messy transaction logs shared by the tests that run several engines on the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvmodels.datasets import simulate


def messy_log(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """String ids with odd characters, same-day and same-timestamp repeats, refunds, hours."""
    rng = np.random.default_rng(seed)
    base = simulate(n, seed=seed, customer_prefix="c-", observation_length=30, cohort_length=10)
    ids = base["customer_id"].to_numpy(dtype=object)
    odd = rng.random(len(ids)) < 0.2
    ids[odd] = np.char.add(" Ü/é'\"", ids[odd].astype(str)).astype(object)  # quotes, unicode, spaces
    log = pd.DataFrame({"cust": ids, "when": base["timestamp"].to_numpy(), "value": base["amount"].to_numpy()})
    # same-day repeats and exact duplicates
    extra = log.sample(frac=0.3, random_state=seed).copy()
    extra["when"] = extra["when"] + pd.to_timedelta(rng.integers(0, 3 * 3600, len(extra)), unit="s")
    dups = log.sample(frac=0.05, random_state=seed + 1)
    # refunds: partial, full, larger than the purchase (refunds before any purchase: messiest_log)
    ref = log.sample(frac=0.1, random_state=seed + 2).copy()
    ref["value"] = -ref["value"] * rng.choice([0.5, 1.0, 1.5], len(ref))
    ref["when"] = ref["when"] + pd.to_timedelta(rng.choice([0, 3600 * 30]), unit="s")
    out = pd.concat([log, extra, dups, ref], ignore_index=True)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def messiest_log(seed: int = 0) -> pd.DataFrame:
    """messy_log plus refunds before any purchase of their customer, in a time zone with DST."""
    log = messy_log(seed)
    first = log.groupby("cust")["when"].transform("min")
    orphans = log.loc[log["value"] > 0].sample(7, random_state=seed).assign(value=-2.5)
    orphans["when"] = first.loc[orphans.index] - pd.Timedelta(hours=5)
    out = pd.concat([log, orphans], ignore_index=True)
    # DuckDB's time-zone-aware timestamps hold microseconds
    out["when"] = out["when"].dt.floor("us").dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    return out


def degenerate_log(seed: int = 0, n: int = 400, *, repeats: bool = True) -> pd.DataFrame:
    """One acquisition day, one purchase rate for everyone, no drop-out and amounts without customer
    heterogeneity (``repeats=False``: one purchase each, nothing else): the data identify neither a
    drop-out process nor BG/NBD's or Gamma-Gamma's heterogeneity, so their estimates go to a boundary."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        days = np.sort(np.r_[0.0, rng.uniform(1, 360, rng.poisson(2.0) if repeats else 0)])
        rows += [(f"c{i}", d, a) for d, a in zip(days, rng.gamma(2.0, 20.0, len(days)))]
    log = pd.DataFrame(rows, columns=["customer_id", "day", "amount"])
    log["timestamp"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(log.pop("day"), unit="D")
    if not repeats:  # first purchases over the year instead of one day
        log["timestamp"] += pd.to_timedelta(rng.uniform(0, 300, len(log)), unit="D")
    return log
