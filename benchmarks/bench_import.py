"""Benchmark: how long a fresh process takes to start clvmodels (issue 15: under 1 s on 2 cores).

Each case runs in a fresh ``python -c`` process and is timed from outside (wall clock, best and
median of ``--repeat`` runs, interleaved over the cases so that a busy machine slows all alike):

* ``python``: the interpreter alone (the floor);
* ``import clvmodels``: the package (its names are loaded on first use, PEP 562);
* ``clvmodels --help``: the command's help (``python -m clvmodels.cli --help``);
* ``+ BetaGeoModel``: ``import clvmodels`` and the first use of a model class (numpy, pandas,
  scipy.special: what an MLE fit needs);
* ``+ load_transactions``: the first use of the data loader;
* ``+ backtest``: the first use of ``clvmodels.backtest`` (scikit-learn's baselines, scipy.stats);
* ``+ compare_report``: the report (matplotlib);
* ``import pandas``: for scale, what every real use of the package pays.

``--src OTHER_SRC`` adds a column for another source tree (e.g. an older checkout's ``src``), side by
side. ``-X importtime`` breaks a case down: ``python -X importtime -c "import clvmodels"``.

Usage::

    python benchmarks/bench_import.py                 # 5 runs per case (about a minute)
    python benchmarks/bench_import.py --quick         # 2 runs
    python benchmarks/bench_import.py --src /tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

SRC = Path(__file__).resolve().parent.parent / "src"

CASES = {
    "python": "pass",
    "import clvmodels": "import clvmodels",
    "clvmodels --help": None,  # python -m clvmodels.cli --help
    "+ BetaGeoModel": "import clvmodels; clvmodels.BetaGeoModel",
    "+ load_transactions": "import clvmodels; clvmodels.load_transactions",
    "+ backtest": "import clvmodels; clvmodels.backtest",
    "+ compare_report": "import clvmodels; clvmodels.compare_report",
    "import pandas": "import pandas",
}


def run_once(code: str | None, src: Path) -> float:
    args = ["-m", "clvmodels.cli", "--help"] if code is None else ["-c", code]
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 runs per case")
    parser.add_argument("--src", type=Path, help="another source tree to time side by side")
    args = parser.parse_args(argv)
    repeat = 2 if args.quick else args.repeat
    trees = {"this tree": SRC} | ({"--src": args.src.resolve()} if args.src else {})
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for case, code in CASES.items():
            for tree, src in trees.items():
                times.setdefault((case, tree), []).append(run_once(code, src))
    rows = [{"case": case, "tree": tree, "best_s": min(t), "median_s": statistics.median(t)}
            for (case, tree), t in times.items()]
    table = pd.DataFrame(rows).pivot(index="case", columns="tree", values=["best_s", "median_s"])
    table = table.reindex(list(CASES))
    print(f"fresh-process start times, {repeat} runs each, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
