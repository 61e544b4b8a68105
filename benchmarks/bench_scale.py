"""Scale benchmark: summarize, fit (MLE) and score with 90% intervals, clvmodels vs lifetimes.

Builds transaction logs with :func:`clvmodels.datasets.simulate` (BG/NBD + Gamma-Gamma at the CDNOW
parameters, 78 weeks, staggered 12-week cohort: about 2.8 transactions per customer) written to
Parquet in chunks, then times each step in its own process and reports its wall time and peak
memory (max RSS of the process):

* clvmodels: the ``clvmodels`` command as a batch job would run it: ``summarize --engine duckdb``,
  ``fit --model bgnbd+gg --method mle``, ``score --interval 0.9`` (200 parameter draws, 12 monthly
  periods, chunked, one worker process per core);
* lifetimes: ``summary_data_from_transaction_data``, ``BetaGeoFitter``/``GammaGammaFitter``, and
  point predictions plus ``customer_lifetime_value`` (lifetimes has no per-customer intervals),
  up to ``--lifetimes-max`` customers or until ``--timeout``.

Goals (2 cores, 24 GiB): 10M customers end to end (summarize + fit + score with intervals) under
10 minutes, peak memory under 8 GiB.

Usage::

    python benchmarks/bench_scale.py --quick          # 20k customers: a check that it runs
    python benchmarks/bench_scale.py                  # 100k, 1M, 10M customers
    python benchmarks/bench_scale.py --sizes 100000 1000000 --lifetimes-max 1000000
    python benchmarks/bench_scale.py --sizes 10000000 --busier 6   # 10M customers, 56M transactions
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_SECONDS = 600
GOAL_PEAK_GIB = 8.0

LIFETIMES_SUMMARY = """
import sys, warnings; warnings.simplefilter("ignore")
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
log = pd.read_parquet(sys.argv[1])
s = summary_data_from_transaction_data(log, "customer_id", "timestamp", "amount", freq="D")
s.to_parquet(sys.argv[2])
"""

LIFETIMES_FIT = """
import sys, warnings, json; warnings.simplefilter("ignore")
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
s = pd.read_parquet(sys.argv[1])
b = BetaGeoFitter().fit(s.frequency, s.recency, s["T"])
r = s[(s.frequency > 0) & (s.monetary_value > 0)]
g = GammaGammaFitter().fit(r.frequency, r.monetary_value)
json.dump({"bg": b.params_.to_dict(), "gg": g.params_.to_dict()}, open(sys.argv[2], "w"))
"""

LIFETIMES_SCORE = """
import sys, warnings, json; warnings.simplefilter("ignore")
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
s = pd.read_parquet(sys.argv[1])
p = json.load(open(sys.argv[2]))
b = BetaGeoFitter(); b.params_ = pd.Series(p["bg"])
b.predict = b.conditional_expected_number_of_purchases_up_to_time  # lifetimes sets this alias in fit
g = GammaGammaFitter(); g.params_ = pd.Series(p["gg"])
month = 365.25 / 12
out = pd.DataFrame({
    "expected_purchases": b.conditional_expected_number_of_purchases_up_to_time(12 * month, s.frequency, s.recency, s["T"]),
    "probability_alive": b.conditional_probability_alive(s.frequency, s.recency, s["T"]),
    "expected_spend": g.conditional_expected_average_profit(s.frequency, s.monetary_value),
    "clv": g.customer_lifetime_value(b, s.frequency, s.recency, s["T"], s.monetary_value, time=12,
                                     freq="D", discount_rate=0.01),
})
out.to_parquet(sys.argv[3])
"""


def write_log(path: Path, n_customers: int, busier: float = 1.0, chunk: int = 1_000_000, seed: int = 0) -> int:
    """Simulate ``n_customers`` in chunks (distinct ids and seeds) into one Parquet file; rows written.

    ``busier``: customers buy that many times as often as CDNOW's (alpha divided by it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clvmodels.datasets import simulate
    from clvmodels.datasets.simulate import DEFAULT_PURCHASE

    writer = None
    rows = 0
    try:
        for start in range(0, n_customers, chunk):
            n = min(chunk, n_customers - start)
            log = simulate(n, alpha=DEFAULT_PURCHASE["alpha"] / busier, seed=seed + start // chunk)
            log["customer_id"] = log["customer_id"].to_numpy(dtype=np.int64) + start
            table = pa.Table.from_pandas(log, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            rows += len(log)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants (worker processes) now."""
    try:
        import psutil

        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or the process just ended
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except Exception:  # noqa: BLE001 - ended meanwhile
            pass
    return total


def timed(cmd: list[str], timeout: float) -> tuple[float, float, str]:
    """Run ``cmd``; wall seconds, peak memory (GiB) and 'ok' / 'failed' / 'timeout'.

    The peak is the larger of the process's max RSS (the kernel's, exact for one process) and the
    largest sum of the RSS of the process and its worker processes, sampled every 50 ms.
    """
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = "ok"
    deadline = start + timeout
    tree_peak = 0
    while True:
        pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, code, usage = os.wait4(proc.pid, 0)
            status = "timeout"
            break
        tree_peak = max(tree_peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(code) if status == "ok" else None
    if status == "ok" and proc.returncode != 0:
        status = f"failed ({proc.returncode})"
        sys.stderr.write(err[-2000:])
    return wall, max(usage.ru_maxrss * 1024, tree_peak) / 1024**3, status  # ru_maxrss is in KiB on Linux


def bench_size(n: int, workdir: Path, args) -> list[dict]:
    d = workdir / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "log.parquet"
    t = time.monotonic()
    rows = write_log(log, n, args.busier)
    print(f"# {n:,} customers: {rows:,} transactions simulated in {time.monotonic() - t:.1f} s", flush=True)
    clvmodels = [str(Path(sys.executable).parent / "clvmodels")]
    if not Path(clvmodels[0]).exists():
        clvmodels = [sys.executable, "-m", "clvmodels.cli"]
    results = []
    steps = [
        ("summarize (DuckDB)", clvmodels + ["summarize", str(log), "--out", str(d / "rfm.parquet"), "--engine",
                                            "duckdb", "-q"]),
        ("fit MLE bgnbd+gg", clvmodels + ["fit", str(d / "rfm.parquet"), "--model", "bgnbd+gg", "--out",
                                          str(d / "model"), "-q"]),
        ("score, 90% intervals", clvmodels + ["score", str(d / "model"), str(d / "rfm.parquet"), "--out",
                                              str(d / "scores.parquet"), "--horizon", "12", "--period", "M",
                                              "--interval", "0.9", "--draws", str(args.draws),
                                              "--jobs", str(args.jobs), "-q"]),
    ]
    total, peak, all_ok = 0.0, 0.0, True
    for name, cmd in steps:
        wall, rss, status = timed(cmd, args.timeout)
        results.append(dict(n=n, tool="clvmodels", step=name, wall=wall, peak=rss, status=status))
        total += wall
        peak = max(peak, rss)
        all_ok &= status == "ok"
        print(f"  clvmodels {name:<24} {wall:8.1f} s {rss:6.2f} GiB  {status}", flush=True)
        if status != "ok":
            break
    results.append(dict(n=n, tool="clvmodels", step="end to end", wall=total, peak=peak,
                        status="ok" if all_ok else "incomplete"))
    if n <= args.lifetimes_max:
        lt = [
            ("summarize", [sys.executable, "-c", LIFETIMES_SUMMARY, str(log), str(d / "lt_rfm.parquet")]),
            ("fit MLE bgnbd+gg", [sys.executable, "-c", LIFETIMES_FIT, str(d / "lt_rfm.parquet"),
                                  str(d / "lt_params.json")]),
            ("score, point only", [sys.executable, "-c", LIFETIMES_SCORE, str(d / "lt_rfm.parquet"),
                                   str(d / "lt_params.json"), str(d / "lt_scores.parquet")]),
        ]
        total, peak, all_ok = 0.0, 0.0, True
        for name, cmd in lt:
            wall, rss, status = timed(cmd, args.timeout)
            results.append(dict(n=n, tool="lifetimes", step=name, wall=wall, peak=rss, status=status))
            total += wall
            peak = max(peak, rss)
            all_ok &= status == "ok"
            print(f"  lifetimes {name:<24} {wall:8.1f} s {rss:6.2f} GiB  {status}", flush=True)
            if status != "ok":
                break
        results.append(dict(n=n, tool="lifetimes", step="end to end", wall=total, peak=peak,
                            status="ok" if all_ok else "incomplete"))
    else:
        results.append(dict(n=n, tool="lifetimes", step="end to end", wall=float("nan"), peak=float("nan"),
                            status=f"skipped (> --lifetimes-max {args.lifetimes_max:,})"))
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small size (20k customers): checks that it runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--busier", type=float, default=1.0,
                        help="customers buy this many times as often as CDNOW's (1: ~2.8 transactions per "
                             "customer; 6: ~5.6, i.e. 56M transactions for 10M customers)")
    parser.add_argument("--draws", type=int, default=200, help="parameter draws for the intervals (200)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="scoring worker processes (default: the number of cores)")
    parser.add_argument("--lifetimes-max", type=int, default=1_000_000,
                        help="largest size run with lifetimes (1,000,000)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per step before it is stopped")
    parser.add_argument("--workdir", help="where the logs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    sizes = [20_000] if args.quick else args.sizes
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="clv-bench-scale-"))
    print(f"# clvmodels scale benchmark, {os.cpu_count()} cores; files in {workdir}", flush=True)
    rows = []
    for n in sizes:
        rows += bench_size(n, workdir, args)
    import pandas as pd

    table = pd.DataFrame(rows)
    print("\n## Wall time (s) and peak memory (GiB) per step\n")
    print("| customers | tool | step | wall s | peak GiB | status |\n|---:|---|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['tool']} | {r['step']} | {r['wall']:.1f} | {r['peak']:.2f} | {r['status']} |")
    e2e = table[(table["tool"] == "clvmodels") & (table["step"] == "end to end")]
    print(f"\nGoal: 10M customers end to end < {GOAL_SECONDS} s with peak < {GOAL_PEAK_GIB} GiB.")
    for r in e2e.itertuples():
        line = f"  {r.n:>12,} customers: {r.wall:7.1f} s, {r.peak:.2f} GiB"
        if r.n >= 10_000_000:
            ok = r.wall < GOAL_SECONDS and r.peak < GOAL_PEAK_GIB and r.status == "ok"
            line += " -> goal " + ("met" if ok else "NOT met")
        print(line)
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
