"""Benchmark: MBG/CNBD-k on simulated regular buyers: RFM summary with ``litt``, MLE with ``k`` chosen
among 1..4 by likelihood, and expected purchases for every customer (no Python library has the
model; BTYDplus is R). The issue's goal: the fit of 1M customers under 30 s.

Usage::

    python benchmarks/bench_cnbd.py              # 1M customers (MBG/CNBD-3, 40 weeks)
    python benchmarks/bench_cnbd.py --quick      # 50k customers
    python benchmarks/bench_cnbd.py --sizes 200k 1M
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

TRUE = dict(r=3.0, alpha=6.0, a=1.0, b=3.0)


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "KM" else text) * mult)


def run(n: int) -> dict:
    import clvmodels as clv
    from clvmodels.datasets import simulate

    log = simulate(n, **TRUE, k=3, drop_at_first=True, cohort_length=12, observation_length=40, seed=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rfm = clv.rfm_summary(clv.load_transactions(log), observation_end=log.attrs["observation_end"],
                              time_unit="W", litt=True)
    summary = time.perf_counter()
    model = clv.ModifiedBetaGeoCNBDModel(max_k=4).fit(rfm)
    fit = time.perf_counter()
    model.expected_purchases(t=39.0)
    done = time.perf_counter()
    return {"customers": n, "transactions": len(log), "summary_s": summary - start, "fit_k1..4_s": fit - summary,
            "k": model.k_, "distinct_rows": model.n_unique_, "expected_purchases_s": done - fit}


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50k customers")
    parser.add_argument("--sizes", nargs="*", default=None, help="simulated sizes, e.g. 200k 1M")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes] if args.sizes else [50_000 if args.quick else 1_000_000]
    table = pd.DataFrame([run(n) for n in sizes]).set_index("customers")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    return table


if __name__ == "__main__":
    main()
