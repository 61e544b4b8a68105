"""Predictive purchase distributions: this tree against a baseline tree, side by side in one run.

Cases (each timed in its own process, once with this tree's ``src`` and once with the baseline's):

* ``pmf-bgnbd``, ``pmf-pnbd``: :func:`clvmodels.predictive.predictive_purchases` (mean, p_zero and a
  90% predictive interval: the pmf and its quantiles) for customers simulated with
  :func:`clvmodels.datasets.simulate` (BG/NBD at the CDNOW estimates, 78 weeks), 52 weeks ahead,
  averaged over ``--draws`` asymptotic-normal parameter draws of the model fitted by maximum
  likelihood on the CDNOW sample's summary;
* ``posterior``: ``predictive_purchases`` for the CDNOW sample's summary (2,357 customers, 39 weeks
  ahead) of a BG/NBD model whose ``posterior_draws_`` are 4,000 asymptotic-normal draws (standing in
  for a 4 x 1,000 NUTS posterior), with the default ``n_draws`` (this tree: a seeded subsample of
  ``PREDICTIVE_DRAWS``, with its Monte Carlo error reported; the baseline: all 4,000 draws), and
  ``posterior-all`` with ``n_draws=4000`` on both sides.

Only the prediction is timed (not simulating, summarising or fitting). The baseline is any source
tree of clvmodels, e.g. the commit before this work::

    git worktree add /tmp/pmf-base a297ed4
    python benchmarks/bench_predictive.py --baseline-src /tmp/pmf-base/src            # 100k customers
    python benchmarks/bench_predictive.py --baseline-src /tmp/pmf-base/src --sizes 1000000

The baseline's Pareto/NBD pmf integrates per (draw, customer, count) and takes hours at these sizes:
it runs on ``--baseline-max`` customers at most and its time is extrapolated linearly in the number
of distinct histories (marked ``~``), or stops at ``--timeout`` (marked ``>``). Goals (issue 13, 2
cores): 200 draws, 1M customers: BG/NBD under 60 s, Pareto/NBD under 120 s; the 4 x 1,000 posterior
on the CDNOW sample under 10 s. Timings on a shared machine are noisy.

Measured on 2 cores shared with five other sessions (load average ~8; noisy, times up to ~2x
inflated), baseline a297ed4::

    case           customers distinct  draws  current s  baseline s  speed-up  max |diff|
    pmf-bgnbd         20,000    9,729    200        1.4        19.4       14x     1.8e-14
    pmf-bgnbd        100,000   42,471    200        7.0        >600
    pmf-bgnbd      1,000,000  216,878    200       12.7
    pmf-pnbd             500      334     20        0.1        12.5      176x     7.2e-11
    pmf-pnbd         100,000   42,471    200      117.6    ~25053.7      213x
    pmf-pnbd       1,000,000  216,878    200      191.0
    posterior          2,357    1,016    500        1.3        34.7       26x   (subsample)
    posterior-all      2,357    1,016   4000        9.7        35.5        4x     9.2e-14

Pareto/NBD's time is now ~75% ``probability_alive`` (the likelihood's 128-node quadrature of the
integral ``I``, once per draw and distinct history), ~20% the pmf recursion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOALS = {"pmf-bgnbd": (1_000_000, 60.0), "pmf-pnbd": (1_000_000, 120.0), "posterior": (2357, 10.0)}


# ---------------------------------------------------------------------------- worker (one side, one case)
def _fitted(name):
    import clvmodels as clv
    from clvmodels.datasets import cdnow_summary

    model = {"bgnbd": clv.BetaGeoModel, "pnbd": clv.ParetoNBDModel}[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(cdnow_summary())


def _customers(n):
    import clvmodels as clv
    from clvmodels.datasets import simulate

    return clv.rfm_summary(simulate(n, seed=0))[["frequency", "recency", "T"]]


def worker(case: str, n: int, draws: int, out: str) -> None:
    from clvmodels import predictive as P
    from clvmodels.datasets import cdnow_summary

    if case.startswith("pmf-"):
        model, rfm = _fitted(case[4:]), _customers(n)
        kwargs, t = {"n_draws": draws, "seed": 0}, 52.0
    else:
        model, rfm = _fitted("bgnbd"), cdnow_summary()
        model.posterior_draws_ = model.parameter_draws(4000, seed=1)
        kwargs, t = ({"seed": 0} if case == "posterior" else {"n_draws": 4000, "seed": 0}), 39.0
    start = time.perf_counter()
    frame = P.predictive_purchases(model, t, rfm, interval=0.9, **kwargs)
    seconds = time.perf_counter() - start
    np.savez(out, **{k: frame[k].to_numpy() for k in ("mean", "p_zero", "lower", "median", "upper")})
    distinct = len(rfm.drop_duplicates())
    print(json.dumps({"seconds": seconds, "customers": len(rfm), "distinct": distinct,
                      "draws": frame.attrs.get("draws", {}).get("n_draws", kwargs.get("n_draws", 4000)),
                      "mc_se_mean": frame.attrs.get("draws", {}).get("mc_se_mean")}))


# ---------------------------------------------------------------------------- driver
def run_side(src: str, case: str, n: int, draws: int, timeout: float, out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", case, "--n", str(n), "--draws", str(draws),
           "--out", out]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cell(result: dict, scale: float = 1.0) -> str:
    if "timeout" in result:
        return f">{result['timeout']:.0f}"
    if "error" in result:
        return "error"
    mark = "~" if scale != 1.0 else ""
    return f"{mark}{result['seconds'] * scale:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", help="src folder of the baseline tree (e.g. /tmp/pmf-base/src)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000], help="simulated customers")
    parser.add_argument("--draws", type=int, default=200, help="parameter draws for the pmf cases")
    parser.add_argument("--cases", nargs="+", default=["pmf-bgnbd", "pmf-pnbd", "posterior", "posterior-all"])
    parser.add_argument("--baseline-max", type=int, default=2_000,
                        help="at most this many customers for the baseline's Pareto/NBD pmf (time extrapolated)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per process")
    parser.add_argument("--quick", action="store_true", help="2,000 customers and 20 draws: a check that it runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.draws, args.out)
        return
    if args.quick:
        args.sizes, args.draws, args.baseline_max = [2_000], 20, 500
    current = str(HERE.parent / "src")
    print(f"current: {current}\nbaseline: {args.baseline_src or '(none)'}\ncores: {os.cpu_count()}\n")
    header = (f"{'case':<14}{'customers':>10}{'distinct':>9}{'draws':>7}{'current s':>11}{'baseline s':>12}"
              f"{'speed-up':>10}{'max |diff|':>12}{'MC se':>9}  goal")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            for n in (args.sizes if case.startswith("pmf-") else [2357]):
                cur_out, base_out = f"{tmp}/cur.npz", f"{tmp}/base.npz"
                cur = run_side(current, case, n, args.draws, args.timeout, cur_out)
                base, scale, diff = {}, 1.0, ""
                if args.baseline_src:
                    n_base = min(n, args.baseline_max) if case == "pmf-pnbd" else n
                    base = run_side(args.baseline_src, case, n_base, args.draws, args.timeout, base_out)
                    if "seconds" in base and "distinct" in cur:
                        scale = cur["distinct"] / base["distinct"] if n_base < n else 1.0
                    if "seconds" in base and "seconds" in cur and n_base == n:
                        a, b = np.load(cur_out), np.load(base_out)
                        diff = f"{max(np.abs(a[k] - b[k]).max() for k in a.files):.1e}"
                speed = (f"{base['seconds'] * scale / cur['seconds']:.0f}x"
                         if "seconds" in base and "seconds" in cur else "")
                goal = GOALS.get(case)
                goal_txt = ""
                if goal and "seconds" in cur:
                    projected = cur["seconds"] * (goal[0] / cur["customers"])
                    goal_txt = f"<{goal[1]:.0f}s at {goal[0]:,}: {'~' if goal[0] != cur['customers'] else ''}" \
                               f"{projected:.0f}s"
                se = cur.get("mc_se_mean")
                print(f"{case:<14}{cur.get('customers', n):>10,}{cur.get('distinct', 0):>9,}{cur.get('draws', ''):>7}"
                      f"{_cell(cur):>11}{_cell(base, scale) if base else '':>12}{speed:>10}{diff:>12}"
                      f"{'' if se is None else f'{se:.3f}':>9}  {goal_txt}", flush=True)
    print("\n~: extrapolated linearly (baseline: in distinct histories; goal: in customers). "
          "max |diff|: largest difference of mean, p_zero, median, lower, upper between the two sides "
          "(a subsample of the posterior on the current side for `posterior`). MC se: the current "
          "side's reported Monte Carlo standard error of the mean (largest over customers).")


if __name__ == "__main__":
    main()
