"""Predictive CLV benchmark: per-customer distribution of the discounted value over 12 monthly
periods (1,000 simulated futures, 90% interval, P(CLV = 0)), side by side with the value simulation
it extends.

Customers are drawn with replacement from the CDNOW sample's calibration histories (BG/NBD +
Gamma-Gamma fitted by MLE, parameter draws from the asymptotic normal: one per simulated future).
Each measurement runs in its own process and reports its wall time and peak memory (max RSS):

* ``predictive_clv``: :func:`clvmodels.predictive_clv`, purchases and spend simulated per month
  (12 periods), discounted at 1% a month, summarised chunk by chunk;
* ``predictive_value`` (reference: the simulation before per-period counts existed, one window of
  12 months, undiscounted, no period axis): :func:`clvmodels.predictive.predictive_value`.

Goal (issue 13): 1M customers, 12 monthly periods, 1,000 futures, 90% interval, under 5 minutes on
2 cores with peak memory under 4 GiB. The table extrapolates linearly in the number of customers
(the work is per customer and chunked, so time is linear and memory flat). Chunks are simulated by
one thread per CPU (numpy's random draws release the GIL). Wall time on a shared machine is noisy;
CPU seconds (user + system, all threads) are the load-independent measure: on 2 idle cores the wall
time is at least half of them.

Usage::

    python benchmarks/bench_predictive_clv.py                    # 100k customers
    python benchmarks/bench_predictive_clv.py --customers 20000  # a quick check
    python benchmarks/bench_predictive_clv.py --model pnbd       # Pareto/NBD (also mbgnbd)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

GOAL_SECONDS = 300
GOAL_PEAK_GIB = 4.0
GOAL_CUSTOMERS = 1_000_000

RUN = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
import clvmodels as clv
from clvmodels import predictive
from clvmodels.datasets import cdnow_summary

what, n, samples, seed, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
base = cdnow_summary(with_spend=True)
model = {"bgnbd": clv.BetaGeoModel, "mbgnbd": clv.ModifiedBetaGeoModel, "pnbd": clv.ParetoNBDModel}[name]().fit(base)
spend = clv.GammaGammaModel(exclude_invalid=True).fit(base)
rows = np.random.default_rng(seed).integers(len(base), size=n)
rfm = base.iloc[rows].reset_index(drop=True)
rfm.attrs = base.attrs
month = 365.25 / 12 / 7
start = time.perf_counter()
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
if what == "predictive_clv":
    out = clv.predictive_clv(model, spend, rfm, horizon=12, period_length=month, discount_rate=0.01,
                             interval=0.9, n_samples=samples, seed=seed)
else:
    out = predictive.predictive_value(model, spend, 12 * month, rfm, interval=0.9, n_samples=samples, seed=seed)
elapsed = time.perf_counter() - start
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_gib": peak, "mean_total": float(out["mean"].sum())}))
"""


def measure(what: str, n: int, samples: int, seed: int, model: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(RUN)
    proc = subprocess.run([sys.executable, f.name, what, str(n), str(samples), str(seed), model],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["bgnbd", "mbgnbd", "pnbd"], default="bgnbd",
                        help="purchase model (with Gamma-Gamma): BG/NBD, MBG/NBD or Pareto/NBD")
    args = parser.parse_args()
    scale = GOAL_CUSTOMERS / args.customers
    print(f"{args.model} + Gamma-Gamma, {args.customers:,} customers (CDNOW histories resampled), "
          f"{args.samples:,} futures, 90% interval; "
          f"extrapolated to {GOAL_CUSTOMERS:,} customers (goal: < {GOAL_SECONDS} s, < {GOAL_PEAK_GIB} GiB)")
    print(f"{'implementation':<44} {'seconds':>8} {'CPU s':>8} {'peak GiB':>9} {'1M: s':>7} {'1M: CPU s':>10} "
          f"{'mean total':>12}")
    rows = [("predictive_value (reference: 1 window)", "predictive_value"),
            ("predictive_clv (12 monthly periods, disc.)", "predictive_clv")]
    for label, what in rows:
        r = measure(what, args.customers, args.samples, args.seed, args.model)
        print(f"{label:<44} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['peak_gib']:>9.2f} "
              f"{r['seconds'] * scale:>7.0f} {r['cpu_seconds'] * scale:>10.0f} {r['mean_total']:>12,.0f}")


if __name__ == "__main__":
    main()
