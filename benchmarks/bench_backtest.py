"""Benchmark: a cold rolling-origin backtest, this checkout vs another one (e.g. an older commit), in one run.

The task of issue #18's acceptance: in a fresh process, ``import clvmodels``, load the CDNOW sample
log (2,357 customers) and run a 3-cutoff rolling-origin backtest (cutoffs 1997-08-05, 1997-09-02,
1997-09-30; 26-week holdouts) of BG/NBD, Pareto/NBD and MBG/NBD with the default spend model and
baselines (no change, RFM score, gradient boosting), every prediction the backtest makes included
(holdout totals with parameter uncertainty, predictive purchases and value, PIT, tracking).

Each side runs in its own fresh subprocess, ``--repeat`` times interleaved; the table gives the best
and the median seconds of ``import``, the backtest and the whole run, and the holdout totals predicted
for the last cutoff as a check that both sides computed the same thing.

Usage::

    python benchmarks/bench_backtest.py                               # this checkout only
    git worktree add /tmp/base a297ed4
    python benchmarks/bench_backtest.py --baseline-src /tmp/base/src   # side by side
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CUTOFF = "1997-09-30"


def child() -> dict:
    start = time.perf_counter()
    import clvmodels as clv
    from clvmodels.datasets.cdnow import load_cdnow

    imported = time.perf_counter()
    log = load_cdnow().rename(columns={"date": "timestamp"})
    models = {"BG/NBD": clv.BetaGeoModel(), "Pareto/NBD": clv.ParetoNBDModel(),
              "MBG/NBD": clv.ModifiedBetaGeoModel()}
    result = clv.backtest(log, models, calibration_end=CUTOFF, step=4, n_cutoffs=3, t=26)
    done = time.perf_counter()
    totals = result.totals
    last = totals[(totals["cutoff"] == totals["cutoff"].max()) & (totals["kind"] == "model")]
    check = {f"{m} {t}": round(float(v), 1) for m, t, v in zip(last["model"], last["target"], last["predicted"])}
    return {"import": imported - start, "backtest": done - imported, "total": done - start, "check": check}


def run_side(src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({src}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, help="src/ folder of another checkout to compare with")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()))
        return
    sides = {"this checkout": ROOT / "src"}
    if args.baseline_src:
        sides["baseline"] = args.baseline_src
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    for _ in range(args.repeat):
        for name, src in sides.items():
            runs[name].append(run_side(src))
    rows = []
    for name, results in runs.items():
        for key in ("import", "backtest", "total"):
            values = np.array([r[key] for r in results])
            rows.append({"side": name, "phase": key, "best_s": values.min(), "median_s": float(np.median(values))})
    print(f"3-cutoff rolling-origin backtest of BG/NBD + Pareto/NBD + MBG/NBD on the CDNOW sample log, "
          f"fresh process, {os.cpu_count()} cores, {args.repeat} runs each")
    print(pd.DataFrame(rows).pivot(index="phase", columns="side", values=["best_s", "median_s"]).round(2).to_string())
    for name, results in runs.items():
        print(f"{name}: predicted holdout totals at the last cutoff: {results[-1]['check']}")


if __name__ == "__main__":
    main()
