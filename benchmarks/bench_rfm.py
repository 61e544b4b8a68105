"""Benchmark: RFM summary of large transaction logs, clvmodels vs lifetimes, in one run.

For each size it builds one synthetic log (numpy, a few seconds), then runs, each in a fresh
subprocess,

* clvmodels: ``load_transactions`` (validation, duplicate count) + ``rfm_summary``;
* lifetimes: ``summary_data_from_transaction_data`` (``freq="D"``, with the monetary column);

``--repeat`` times (default 2, alternating which library goes first: on a virtual machine the
first process to touch fresh memory pages pays extra for them), and prints the best wall time and
the largest peak memory (the child's peak resident set size, ``ru_maxrss``, and its
increase over the input log already in memory) side by side, then checks that both gave the same
summary (frequency and recency/T in days exactly, monetary value to 1e-9 relative). Each child
imports its library and runs once on 1,000 rows before the timed run, so one-time costs (imports,
lazy initialisation) are not timed for either library.

The logs look like real ones: customer ids are integers, ``n_rows / 5`` customers each with at
least one purchase, first purchases staggered over a year, further purchases of a customer spread
uniformly between its first purchase and the end of a three-year window, timestamps to the second
(daily resolution merges same-day purchases), amounts Gamma-distributed in cents, rows in time
order. Sizes: 1M and 10M rows (2M customers at 10M), as in issue 2.

Usage::

    python benchmarks/bench_rfm.py              # 1M and 10M rows (a few minutes on 2 cores)
    python benchmarks/bench_rfm.py --quick      # 200k rows, a smoke test (seconds)
    python benchmarks/bench_rfm.py --sizes 1M   # chosen sizes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

START = np.datetime64("2020-01-01T00:00:00", "s")
WINDOW_DAYS = 3 * 365
OBSERVATION_END = "2022-12-31"  # the last day of the window


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "KM" else text) * mult)


def make_log(n_rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A synthetic log: ``n_rows // 5`` customers, each with at least one purchase (see module doc)."""
    rng = np.random.default_rng(seed)
    n_customers = max(n_rows // 5, 1)
    first = rng.uniform(0.0, 365.0, n_customers)  # staggered first purchases, in days from START
    extra = rng.integers(0, n_customers, n_rows - n_customers)
    later = first[extra] + rng.uniform(0.0, 1.0, extra.size) * (WINDOW_DAYS - first[extra])
    cust = np.concatenate([np.arange(n_customers), extra])
    seconds = (np.concatenate([first, later]) * 86_400).astype(np.int64)
    order = np.argsort(seconds, kind="stable")  # a real log is in time order
    return {
        "customer_id": cust[order],
        "timestamp": (START + seconds[order]).astype("datetime64[ns]"),
        "amount": np.round(rng.gamma(2.0, 20.0, n_rows), 2) + 0.01,
    }


# ---------------------------------------------------------------------------- child process
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(library: str, data_dir: str, out_path: str) -> None:
    import warnings

    import pandas as pd

    if library == "clvmodels":
        import clvmodels as clv
    else:
        from lifetimes.utils import summary_data_from_transaction_data
    arrays = {name: np.load(Path(data_dir) / f"{name}.npy") for name in ("customer_id", "timestamp", "amount")}
    df = pd.DataFrame(arrays, copy=False)  # no copy: the input is in memory once
    del arrays

    def summarise(frame):
        if library == "clvmodels":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicate-row warning
                log = clv.load_transactions(frame)
            return clv.rfm_summary(log, observation_end=OBSERVATION_END, time_unit="D")
        return summary_data_from_transaction_data(frame, "customer_id", "timestamp", "amount",
                                                  observation_period_end=OBSERVATION_END, freq="D")

    summarise(df.iloc[:1000])  # warm-up: first-call costs (lazy imports, caches) are not timed
    base_rss = _rss_bytes()  # libraries imported, input loaded: what the operation adds is its own
    t0 = time.perf_counter()
    res = summarise(df)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res[["frequency", "recency", "T", "monetary_value"]].astype(float).to_parquet(out_path)
    print(json.dumps({"wall_s": wall, "peak_rss": peak, "base_rss": base_rss, "n_customers": len(res)}))


def run_child(library: str, data_dir: str, out_path: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", library, "--data", data_dir, "--out", out_path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{library} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_same(ours_path: str, theirs_path: str) -> str:
    import pandas as pd

    ours = pd.read_parquet(ours_path)
    theirs = pd.read_parquet(theirs_path).reindex(ours.index)
    if len(ours) != len(theirs) or theirs.isna().any().any():
        return "DIFFERENT customers"
    exact = all((ours[c].to_numpy() == theirs[c].to_numpy()).all() for c in ("frequency", "recency", "T"))
    money = np.allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-9, atol=1e-9)
    return "same" if exact and money else "DIFFERENT values"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated row counts (e.g. 200k,1M,10M)")
    parser.add_argument("--quick", action="store_true", help="one small size (200k rows): a smoke test")
    parser.add_argument("--no-lifetimes", action="store_true", help="time clvmodels only")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs per library, alternating their order; the best wall time and the "
                        "largest peak memory are reported (default 2)")
    parser.add_argument("--child", choices=["clvmodels", "lifetimes"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.out)
        return 0

    sizes = [200_000] if args.quick else [parse_size(s) for s in args.sizes.split(",")]
    libraries = ["clvmodels"] + ([] if args.no_lifetimes else ["lifetimes"])
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; each run in a fresh subprocess, "
          f"best wall time of {args.repeat}; peak = child's max RSS (imported libraries included: "
          "clvmodels imports PyMC), +input = its increase over the loaded input log")
    header = f"{'rows':>11} {'customers':>10} {'library':>10} {'wall s':>8} {'peak GB':>8} {'+input GB':>9}  result"
    print(header)
    print("-" * len(header))
    failed = False
    for n_rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            log = make_log(n_rows)
            for name, arr in log.items():
                np.save(Path(tmp) / f"{name}.npy", arr)
            del log
            stats, outs = {}, {lib: str(Path(tmp) / f"{lib}.parquet") for lib in libraries}
            for rep in range(args.repeat):
                # alternate the order: on a virtual machine the first process to touch fresh memory pays for it
                for lib in (libraries if rep % 2 == 0 else libraries[::-1]):
                    run = run_child(lib, tmp, outs[lib])
                    best = stats.setdefault(lib, run)
                    best["wall_s"] = min(best["wall_s"], run["wall_s"])
                    best["peak_rss"] = max(best["peak_rss"], run["peak_rss"])
                    best["base_rss"] = min(best["base_rss"], run["base_rss"])
            verdict = check_same(outs["clvmodels"], outs["lifetimes"]) if "lifetimes" in stats else ""
            failed |= verdict.startswith("DIFFERENT")
            for lib in libraries:
                s = stats[lib]
                note = ""
                if lib == "lifetimes":
                    speedup = s["wall_s"] / stats["clvmodels"]["wall_s"]
                    mem = stats["clvmodels"]["peak_rss"] / s["peak_rss"]
                    note = (f"clvmodels {speedup:.1f}x faster, peak memory {mem:.2f}x lifetimes'; "
                            f"summaries {verdict}")
                print(f"{n_rows:>11,} {s['n_customers']:>10,} {lib:>10} {s['wall_s']:>8.2f} "
                      f"{s['peak_rss'] / 1e9:>8.2f} {(s['peak_rss'] - s['base_rss']) / 1e9:>9.2f}  {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
