"""Benchmark: BG/NBD + Gamma-Gamma fits and predictions, clvmodels vs lifetimes, in one run.

Data sets: the CDNOW summary (2,357 customers) and logs simulated from BG/NBD + Gamma-Gamma with the
CDNOW parameters (``clvmodels.datasets.simulate``, 78 weeks, summarised by day in weeks): 100k and
1M customers by default. Each (library, data set) runs in a fresh subprocess, so that the first fit
of a process is really the first:

* clvmodels: ``BetaGeoModel().fit`` and ``GammaGammaModel(exclude_invalid=True).fit``, *cold*
  (the first fit of the process; nothing is compiled: the MLE evaluates its objective and exact
  gradient with dual numbers) and *warm* (a second fit);
  the fit time includes validating the frame and compressing it to unique rows;
* lifetimes: ``BetaGeoFitter().fit`` on every customer (*unweighted*), and on the unique
  ``(frequency, recency, T)`` rows with their counts as weights (*weighted*; the time includes
  that compression with pandas); ``GammaGammaFitter().fit`` on the customers with repeat purchases;
* predictions for every customer, given each library's own fit: conditional expected purchases
  over 39 weeks, P(alive), expected spend, and 12-month CLV at 1%/month (a month of 4.345 weeks,
  lifetimes' ``customer_lifetime_value``).

Prediction times are the best of ``--repeat`` runs. The table gives seconds side by side and the
speed-up (lifetimes' time over clvmodels' warm time; for the BG/NBD fit, over lifetimes' unweighted
fit). The estimates of both libraries are compared as a sanity check.

Usage::

    python benchmarks/bench_models.py              # CDNOW, 100k and 1M customers (a few minutes)
    python benchmarks/bench_models.py --quick      # CDNOW and 20k customers (under a minute)
    python benchmarks/bench_models.py --sizes 1M
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
import pandas as pd

HORIZON_WEEKS = 39.0
MONTH_WEEKS = 4.345


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "KM" else text) * mult)


def label(n: int) -> str:
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def make_rfm(n: int | None, path: Path) -> int:
    """Write the RFM frame (frequency, recency, T, monetary_value; weeks) of a data set to ``path``."""
    import clvmodels as clv
    from clvmodels.datasets import cdnow_summary, simulate

    if n is None:
        rfm = cdnow_summary(with_spend=True)
    else:
        log = simulate(n, seed=2026)
        rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W")
    rfm.to_parquet(path)
    return len(rfm)


def best_of(fn, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ---------------------------------------------------------------------------- child processes
def run_clvmodels(path: str, repeat: int) -> dict:
    import clvmodels as clv

    rfm = pd.read_parquet(path)
    res = {}
    res["bgnbd_fit_cold"], model = timed(lambda: clv.BetaGeoModel().fit(rfm))
    res["bgnbd_fit_warm"], model = timed(lambda: clv.BetaGeoModel().fit(rfm))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res["gg_fit_cold"], spend = timed(lambda: clv.GammaGammaModel(exclude_invalid=True).fit(rfm))
        res["gg_fit_warm"], spend = timed(lambda: clv.GammaGammaModel(exclude_invalid=True).fit(rfm))
    res["expected_purchases"], ep = best_of(lambda: model.expected_purchases(HORIZON_WEEKS, rfm), repeat)
    res["probability_alive"], pa = best_of(lambda: model.probability_alive(rfm), repeat)
    res["expected_spend"], es = best_of(lambda: spend.expected_spend(rfm), repeat)
    res["clv"], value = best_of(lambda: clv.clv(model, spend, rfm, horizon=12, period="M", discount_rate=0.01,
                                                period_length=MONTH_WEEKS), repeat)
    res["params"] = {**model.params_.to_dict(), **{f"gg_{k}": v for k, v in spend.params_.items()}}
    res["n_unique"] = int(model.n_unique_)
    res["checksums"] = [float(ep.sum()), float(pa.sum()), float(es.sum()), float(value.sum())]
    return res


def run_lifetimes(path: str, repeat: int) -> dict:
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    rfm = pd.read_parquet(path)
    x, tx, T, m = (rfm[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    res = {}
    res["bgnbd_fit"], bgf = timed(lambda: BetaGeoFitter().fit(x, tx, T))

    def weighted():
        counts = rfm.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
        return BetaGeoFitter().fit(counts["frequency"].to_numpy(), counts["recency"].to_numpy(),
                                   counts["T"].to_numpy(), weights=counts["n"].to_numpy())

    res["bgnbd_fit_weighted"], _ = timed(weighted)
    repeat_buyers = x > 0
    res["gg_fit"], ggf = timed(lambda: GammaGammaFitter().fit(x[repeat_buyers], m[repeat_buyers]))
    res["expected_purchases"], ep = best_of(
        lambda: bgf.conditional_expected_number_of_purchases_up_to_time(HORIZON_WEEKS, x, tx, T), repeat)
    res["probability_alive"], pa = best_of(lambda: bgf.conditional_probability_alive(x, tx, T), repeat)
    res["expected_spend"], es = best_of(lambda: ggf.conditional_expected_average_profit(rfm["frequency"],
                                                                                        rfm["monetary_value"]), repeat)
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
    res["clv"], value = best_of(lambda: ggf.customer_lifetime_value(
        bgf, rfm["frequency"], rfm["recency"], rfm["T"], rfm["monetary_value"], time=12, discount_rate=0.01,
        freq="W"), repeat)
    res["params"] = {**bgf.params_.to_dict(), **{f"gg_{k if k != 'v' else 'gamma'}": v for k, v in ggf.params_.items()}}
    res["checksums"] = [float(np.sum(ep)), float(np.sum(pa)), float(np.sum(es)), float(np.sum(value))]
    return res


def child(library: str, path: str, repeat: int, out: str) -> None:
    res = run_clvmodels(path, repeat) if library == "clvmodels" else run_lifetimes(path, repeat)
    Path(out).write_text(json.dumps(res))


def run_child(library: str, path: Path, repeat: int, env: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run([sys.executable, __file__, "--child", library, str(path), str(repeat), out],
                       check=True, env=env)
        return json.loads(Path(out).read_text())
    finally:
        os.unlink(out)


# ---------------------------------------------------------------------------- report
def fmt(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:9.3f}"


def report(name: str, n: int, ours: dict, theirs: dict) -> list[str]:
    rows = [
        ("BG/NBD fit", ours["bgnbd_fit_cold"], ours["bgnbd_fit_warm"], theirs["bgnbd_fit"], theirs["bgnbd_fit_weighted"]),
        ("Gamma-Gamma fit", ours["gg_fit_cold"], ours["gg_fit_warm"], theirs["gg_fit"], None),
        ("expected purchases (39 w)", None, ours["expected_purchases"], theirs["expected_purchases"], None),
        ("P(alive)", None, ours["probability_alive"], theirs["probability_alive"], None),
        ("expected spend", None, ours["expected_spend"], theirs["expected_spend"], None),
        ("CLV (12 months, 1%/month)", None, ours["clv"], theirs["clv"], None),
    ]
    lines = []
    for step, cold, warm, lt, ltw in rows:
        speedup = lt / warm if warm > 0 else float("inf")
        lines.append(f"{name:>8} {n:>10,} {step:<27}{fmt(cold)} {fmt(warm)} {fmt(lt)} {fmt(ltw):>9} {speedup:8.1f}x")
    ours_total = sum(ours[k] for k in ("expected_purchases", "probability_alive", "expected_spend", "clv"))
    theirs_total = sum(theirs[k] for k in ("expected_purchases", "probability_alive", "expected_spend", "clv"))
    lines.append(f"{name:>8} {n:>10,} {'all four predictions':<27}{'':9} {fmt(ours_total)} {fmt(theirs_total)} "
                 f"{'':>9} {theirs_total / ours_total:8.1f}x")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CDNOW and 20k simulated customers")
    parser.add_argument("--sizes", default=None, help="comma-separated simulated sizes, e.g. 100k,1M")
    parser.add_argument("--repeat", type=int, default=3, help="prediction timings: best of this many runs")
    parser.add_argument("--child", nargs=4, metavar=("LIBRARY", "PATH", "REPEAT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        library, path, repeat, out = args.child
        child(library, path, int(repeat), out)
        return 0

    sizes = [parse_size(s) for s in (args.sizes or ("20k" if args.quick else "100k,1M")).split(",")]
    datasets = [("CDNOW", None)] + [(label(n), n) for n in sizes]
    header = (f"{'data':>8} {'customers':>10} {'step':<27}{'ours cold':>9} {'ours warm':>9} {'lifetimes':>9} "
              f"{'lt weighted':>11} {'speed-up':>8}")
    lines, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, n in datasets:
            path = Path(tmp) / f"{name}.parquet"
            start = time.perf_counter()
            n_rows = make_rfm(n, path)
            print(f"[{name}] {n_rows:,} customers prepared in {time.perf_counter() - start:.1f} s", flush=True)
            ours = run_child("clvmodels", path, args.repeat, dict(os.environ))
            theirs = run_child("lifetimes", path, args.repeat, dict(os.environ))
            lines += report(name, n_rows, ours, theirs)
            rel = max(abs(ours["params"][k] / theirs["params"][k] - 1) for k in ours["params"])
            sums = max(abs(a / b - 1) for a, b in zip(ours["checksums"], theirs["checksums"]))
            checks.append(f"{name}: {ours['n_unique']:,} unique (x, t_x, T) rows; largest relative difference "
                          f"of the 7 estimates {rel:.1e}; of the prediction totals {sums:.1e}")
    print()
    print(header)
    print("-" * len(header))
    print("\n".join(lines))
    print("\nTimes in seconds. 'ours cold': the first fit of a fresh process.")
    print("Speed-up: lifetimes / ours warm (the BG/NBD fit: over lifetimes' unweighted fit; "
          "'lt weighted' includes the pandas compression).")
    print("\n".join(checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
