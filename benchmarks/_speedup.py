"""Speed-up lines shared by the benchmarks that compare clvmodels with PyMC-Marketing."""

from __future__ import annotations

import pandas as pd


def print_speedups(table: pd.DataFrame, group: str, theirs: str, ours: str, columns) -> None:
    """Per value of ``group``: ``theirs`` / ``ours`` (rows named by the ``library`` column) of each time column."""
    for name in table[group].unique():
        sub = table[table[group] == name].set_index("library")
        if theirs not in sub.index or ours not in sub.index:
            continue
        for col in columns:
            ratio = sub.loc[theirs, col] / sub.loc[ours, col]
            print(f"{name}: {theirs} / {ours}, {col}: {ratio:.1f}x")
