"""Pieces shared by the benchmarks that run each case in a child process and compare with PyMC-Marketing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd


def run_child(script: str, python: str, args, src: Path, timeout: float, env: dict | None = None) -> dict:
    """Run ``script --child *args`` in ``python`` with ``src`` (a clvmodels source tree) on the path; its
    last stdout line is a JSON dict. A timeout or failure gives ``{"error": ...}`` instead."""
    cmd = [python, str(Path(script).resolve()), "--child", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(src), **(env or {})}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def print_speedups(table: pd.DataFrame, group: str, theirs: str, ours: str, columns) -> None:
    """Per value of ``group``: ``theirs`` / ``ours`` (rows named by the ``library`` column) of each time column."""
    for name in table[group].unique():
        sub = table[table[group] == name].set_index("library")
        if theirs not in sub.index or ours not in sub.index:
            continue
        for col in columns:
            ratio = sub.loc[theirs, col] / sub.loc[ours, col]
            print(f"{name}: {theirs} / {ours}, {col}: {ratio:.1f}x")
