"""Benchmark: scoring with customer covariates against scoring without, side by side (issue 14).

``--customers`` customers (default 1M) simulated exactly from BG/NBD and from Pareto/NBD with two
categorical covariates on each process (``channel``: 2 levels, ``region``: 4 levels; the simulation
of ``bench_covariates.py``, 8 covariate profiles) and a spend per purchase from Gamma-Gamma whose
``γ`` depends on them. Each model is fitted by MLE with the covariates (2 purchase + 2 drop-out;
Gamma-Gamma with the 2 as spend covariates) and without, then each scoring task runs in a fresh
process, which reports its wall time and peak memory (max RSS, the customers' table and the models
included):

* ``expected_purchases(t=10, interval=0.9, n_draws=200)``
* ``probability_alive(interval=0.9, n_draws=200)``
* ``clv(kind="expected", interval=0.9, n_draws=200)`` over 12 months with Gamma-Gamma

The ratio column is the wall time with covariates over the time without (``cpu ratio``: the same
for the process's CPU time, steadier on a busy machine). Goal (issue 14): at most 2x. Predictions are
evaluated once per distinct row (history, and with covariates history and covariate profile) and
per draw, so the ratio follows the ratio of distinct rows, which the data sets (2.1x here at 1M
customers, 1.5x at 300k); ``ms/1k rows`` shows the time per distinct row of each path. Timings on a
shared machine are noisy; ``--repeat`` keeps the fastest of several runs of each task.

Usage::

    python benchmarks/bench_covariates_scoring.py                     # 1M customers
    python benchmarks/bench_covariates_scoring.py --customers 100000  # a quick check
    python benchmarks/bench_covariates_scoring.py --continuous         # every customer her own profile
    python benchmarks/bench_covariates_scoring.py --src OLD/src        # another version of clvmodels
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import _common  # benchmarks/_common.py
from bench_covariates import TRUTH, simulate

COVARIATES = ["channel", "region"]
#: Gamma-Gamma's spend: ``ν ~ Gamma(q, γ_i)``, ``γ_i = γ exp(Σ δ_k z_k)``, mean spend ``p ν``.
SPEND = {"p": 6.0, "q": 4.0, "gamma": 15.0, "gamma:channel": 0.2, "gamma:region": -0.05}
TASKS = {
    "expected_purchases": "pm.expected_purchases(10, rfm, interval=0.9, n_draws=200, seed=1)",
    "probability_alive": "pm.probability_alive(rfm, interval=0.9, n_draws=200, seed=1)",
    "clv_expected": "clv.clv(pm, gg, rfm, horizon=12, period_length=4.345, discount_rate=0.01, interval=0.9, "
                    "kind='expected', n_draws=200, seed=1)",
}


def continuous(rfm, seed: int = 2):
    """The covariates made continuous (a little noise on each value): every customer her own profile."""
    rng = np.random.default_rng(seed)
    return rfm.assign(**{c: rfm[c] + rng.normal(0.0, 0.1, len(rfm)) for c in COVARIATES})


def with_spend(rfm, seed: int = 1):
    """Average spend per repeat purchase from Gamma-Gamma (0 for customers without repeat purchases)."""
    rng = np.random.default_rng(seed)
    gamma = SPEND["gamma"] * np.exp(sum(SPEND[f"gamma:{c}"] * rfm[c].to_numpy() for c in COVARIATES))
    nu = rng.gamma(SPEND["q"], 1.0 / gamma)
    x = np.maximum(rfm["frequency"].to_numpy(), 1.0)
    mean = rng.gamma(SPEND["p"] * x, 1.0 / (nu * x))
    return rfm.assign(monetary_value=np.where(rfm["frequency"] > 0, mean, 0.0))


def child(args) -> None:
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")
    import pandas as pd

    import clvmodels as clv

    stage, data, models = args[0], Path(args[1]), Path(args[2])
    rfm = pd.read_parquet(data)
    if stage == "fit":
        cls = {"bgnbd": clv.BetaGeoModel, "pnbd": clv.ParetoNBDModel}[args[3]]
        spenders = rfm[rfm["frequency"] > 0]
        seconds = {}
        for cov in (False, True):
            kw = dict(purchase_covariates=COVARIATES, dropout_covariates=COVARIATES) if cov else {}
            start = time.perf_counter()
            cls(**kw).fit(rfm).save(models / f"purchase_{int(cov)}")
            clv.GammaGammaModel(spend_covariates=COVARIATES if cov else None).fit(spenders).save(models / f"spend_{int(cov)}")
            seconds[str(cov)] = time.perf_counter() - start
        print(json.dumps(seconds))
        return
    task, cov = args[3], args[4]
    pm, gg = clv.load_model(models / f"purchase_{cov}"), clv.load_model(models / f"spend_{cov}")
    start, cpu = time.perf_counter(), time.process_time()
    eval(TASKS[task], {"clv": clv, "pm": pm, "gg": gg, "rfm": rfm})
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu,
                      "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--models", nargs="+", default=["bgnbd", "pnbd"], choices=list(TRUTH))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each task; the fastest is reported")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--continuous", action="store_true",
                        help="continuous covariates (noise added): every customer her own profile")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                        help="the clvmodels source tree to time (default: this checkout's), e.g. an older commit's")
    args = parser.parse_args()
    src = args.src.resolve()
    kind = "continuous" if args.continuous else "categorical"
    print(f"Scoring {args.customers:,} simulated customers with 200-draw 90% intervals: 2 purchase + 2 drop-out "
          f"(+ 2 spend) {kind} covariates against none (goal: ratio <= 2x); clvmodels from {src}")
    header = (f"{'model':<6} {'task':<19} {'profiles':>8} {'distinct rows':>19} {'s without':>10} {'s with':>8} "
              f"{'ratio':>6} {'cpu ratio':>9} {'ms/1k rows':>13} {'GiB without':>12} {'GiB with':>9}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            rfm = with_spend(simulate(model, args.customers))
            rfm = continuous(rfm) if args.continuous else rfm
            data, models = Path(tmp) / f"{model}.parquet", Path(tmp) / model
            rfm.to_parquet(data)
            fit = _common.run_child(__file__, sys.executable, ["fit", data, models, model], src, args.timeout)
            if "error" in fit:
                print(f"{model}: fit failed: {fit['error']}")
                continue
            histories = len(rfm.drop_duplicates(["frequency", "recency", "T"]))
            with_profiles = len(rfm.drop_duplicates(["frequency", "recency", "T", *COVARIATES]))
            profiles = len(rfm.drop_duplicates(COVARIATES))
            for task in args.tasks:
                result = {}
                for cov in (0, 1):
                    runs = [_common.run_child(__file__, sys.executable, ["score", data, models, task, cov], src,
                                              args.timeout) for _ in range(args.repeat)]
                    ok = [r for r in runs if "error" not in r]
                    result[cov] = min(ok, key=lambda r: r["seconds"]) if ok else runs[0]
                if any("error" in r for r in result.values()):
                    print(f"{model} {task}: failed: {[r.get('error') for r in result.values()]}")
                    continue
                per_row = f"{1e6 * result[0]['seconds'] / histories:.0f} / {1e6 * result[1]['seconds'] / with_profiles:.0f}"
                print(f"{model:<6} {task:<19} {profiles:>8} {f'{histories:,} / {with_profiles:,}':>19} "
                      f"{result[0]['seconds']:>10.1f} {result[1]['seconds']:>8.1f} "
                      f"{result[1]['seconds'] / result[0]['seconds']:>5.2f}x {result[1]['cpu'] / result[0]['cpu']:>8.2f}x "
                      f"{per_row:>13} {result[0]['peak_gib']:>12.2f} {result[1]['peak_gib']:>9.2f}", flush=True)
            print(f"{model}: MLE fits (purchase + spend) {fit['False']:.1f} s without, {fit['True']:.1f} s with covariates")
    print("distinct rows: customer histories without / with the covariate profile; ms/1k rows: wall time per "
          "thousand distinct rows, without / with (the work per row, which the profiles multiply)")


if __name__ == "__main__":
    main()
