"""Benchmark: the data layer of time-varying covariates, beside the plain RFM summary, in one run.

For each number of weekly periods (52, 104, 208 by default) it simulates one log of 100k BG/NBD
customers (``simulate_seasonal``: first purchases over the first two weeks, so the customers x weeks
of the calibration windows are about ``100k x periods``, 10M at 104 weeks) with a calendar of two
covariates (a yearly Fourier term and a holiday window), then runs, each in a fresh subprocess:

* ``rfm``: ``rfm_summary`` alone (the no-covariate baseline);
* ``calendar``: ``covariate_calendar`` + ``timevarying_summary`` (the calendar shared by all customers);
* ``panel``: ``covariate_panel`` (validating a customers x weeks table of the same two covariates) +
  ``timevarying_summary``;

and prints the wall and CPU time (on a shared machine the CPU time is the steadier) and the peak memory (the child's peak resident set size, ``ru_maxrss``, and
its increase over the inputs already in memory: the log, and the panel table for ``panel``), the number
of pieces built, and the scaling with the number of periods. Each child runs once on 1,000 customers
before the timed run (imports and first-call costs are not timed). Timings on a shared machine are noisy.

Usage::

    python benchmarks/bench_timevarying_data.py            # 52, 104, 208 weeks, 100k customers
    python benchmarks/bench_timevarying_data.py --quick    # 10k customers, 52 and 104 weeks (seconds)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SRC = Path(__file__).resolve().parents[1] / "src"
CASES = ("rfm", "calendar", "panel")


def rss_mib() -> float:
    """Peak resident set size of this process so far (MiB; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def make_inputs(n_customers: int, weeks: int, seed: int = 0):
    """The log and its calendar (two covariates over ``weeks`` weeks from 2024-01-01)."""
    from clvmodels.datasets import simulate_seasonal
    from clvmodels.timevarying import fourier_terms, holiday_windows

    periods = pd.date_range("2024-01-01", periods=weeks + 1, freq="7D")
    christmas = [f"{y}-12-25" for y in range(2024, periods[-1].year + 1)]
    calendar = pd.concat([fourier_terms(periods), holiday_windows(periods, christmas, before=20)], axis=1)
    calendar = calendar[["fourier_sin1", "holiday"]]
    log, _ = simulate_seasonal(n_customers, calendar, purchase_coefficients={"fourier_sin1": 0.3, "holiday": 0.7},
                               cohort_length=2.0, observation_length=float(weeks), seed=seed)
    return log, calendar


def panel_table(calendar: pd.DataFrame, customers) -> pd.DataFrame:
    """A customers x periods panel holding the calendar's values (every customer over the whole grid)."""
    import numpy as np

    n, g = len(customers), len(calendar)
    table = pd.DataFrame({"customer_id": np.repeat(np.asarray(customers), g),
                          "period": np.tile(calendar.index.to_numpy(), n)})
    for c in calendar.columns:
        table[c] = np.tile(calendar[c].to_numpy(), n)
    return table


def child(case: str, path: str) -> dict:
    from clvmodels import rfm_summary
    from clvmodels.timevarying import covariate_calendar, covariate_panel, timevarying_summary

    log = pd.read_pickle(path + ".log.pkl")
    calendar = pd.read_pickle(path + ".calendar.pkl")
    end = log.attrs["observation_end"]
    small_ids = log["customer_id"].drop_duplicates().iloc[:1000]
    small = log[log["customer_id"].isin(small_ids)]

    def run(frame, table):
        if case == "rfm":
            return rfm_summary(frame, end, truncate=True), None
        path_ = covariate_calendar(calendar) if table is None else covariate_panel(table, freq="7D")
        return timevarying_summary(frame, path_, end, truncate=True)

    run(small, None if case != "panel" else panel_table(calendar, small_ids.unique()))   # warm-up
    table = panel_table(calendar, log["customer_id"].unique()) if case == "panel" else None
    before = current_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    rfm, summary = run(log, table)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mib": rss_mib(), "over_inputs_mib": rss_mib() - before,
            "customers": len(rfm), "pieces": 0 if summary is None else len(summary.pieces.length)}


def main() -> None:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--weeks", type=int, nargs="+", default=[52, 104, 208])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.quick:
        args.customers, args.weeks = 10_000, [52, 104]
    sys.path.insert(0, str(SRC))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weeks in args.weeks:
            log, calendar = make_inputs(args.customers, weeks)
            path = str(Path(tmp) / f"w{weeks}")
            log.to_pickle(path + ".log.pkl")
            calendar.to_pickle(path + ".calendar.pkl")
            for case in CASES:
                res = subprocess.run([sys.executable, __file__, "--child", case, path], capture_output=True, text=True,
                                     env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
                if res.returncode:
                    raise SystemExit(res.stderr)
                out = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append({"weeks": weeks, "case": case, "log_rows": len(log), **out})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.customers:,} customers, 2 time-varying covariates, weekly grid; wall and CPU time (s), peak memory (MiB)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    wide = table.pivot(index="weeks", columns="case", values="cpu_seconds")
    print("\nCPU seconds by number of weeks (scaling: time / time at the fewest weeks)")
    print(pd.concat([wide, (wide / wide.iloc[0]).add_suffix(" x")], axis=1).to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
