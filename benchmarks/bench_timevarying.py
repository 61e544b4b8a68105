"""Benchmark: maximum-likelihood fits with time-varying covariates (issue 16).

BG/NBD (time-varying purchase covariates) and Pareto/NBD (the same two on the purchase and the
drop-out process) on ``--customers`` customers (default 100k) acquired in the first week and observed
for ``--weeks`` weeks (default 104: about 10M customer-weeks), simulated exactly from each model
with known coefficients over two calendar covariates: a seasonal wave ``sin(2πk/52)`` and a
holiday-week dummy (weeks 47-51 of each year). Each case runs in a fresh process, which builds the
summaries (pieces of constant covariates, cut at the recency, and the purchase sums; for now with the
tests' helper ``tests/tv_pieces.py``, which the data layer's builder replaces) and fits; it reports
both times, the peak memory (max RSS), the number of pieces and the recovered coefficients against
the true ones. The same model without covariates runs beside it on the same customers.

Goal (issue 16): each fit with 2 time-varying covariates on 100k customers x 104 weeks under 60 s
and 4 GiB, including building the summaries. The cost is linear in the number of pieces (customers x
periods): run ``--weeks 52`` and ``--weeks 208`` to see it.

Usage::

    python benchmarks/bench_timevarying.py                          # 100k customers, 104 weeks
    python benchmarks/bench_timevarying.py --customers 20000 --weeks 52   # a quick check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["season", "holiday"]
#: True parameters and coefficients (per unit of the covariates).
TRUTH = {
    "bgnbd": ({"r": 0.6, "alpha": 5.0, "a": 0.8, "b": 2.5}, [0.4, 0.7], None),
    "pnbd": ({"r": 0.6, "alpha": 5.0, "s": 0.6, "beta": 20.0}, [0.4, 0.7], [0.3, -0.4]),
}


def z_of_week(k):
    k = np.asarray(k, dtype=float)
    return np.c_[np.sin(2 * np.pi * k / 52.0), ((k % 52) >= 46) & ((k % 52) <= 50)].astype(float)


def child(path: str, model: str, varying: bool) -> dict:
    """One case in this (fresh) process: build the summaries, fit, report."""
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")
    sys.path.insert(0, str(ROOT / "tests"))
    import clvmodels as clv
    from tv_pieces import summary_of

    saved = np.load(path)
    rfm = pd.DataFrame({k: saved[k] for k in ("frequency", "recency", "T")})
    times = np.split(saved["times"], np.cumsum(rfm["frequency"].to_numpy().astype(int))[:-1])
    cls = {"bgnbd": clv.BetaGeoModel, "pnbd": clv.ParetoNBDModel}[model]
    start = time.perf_counter()
    kw, fit_kw, pieces = {}, {}, 0
    if varying:
        summary = summary_of(rfm, saved["birth"], COLUMNS, z_of_week, times)
        pieces = len(summary.pieces.length)
        kw = {"purchase_time_varying": COLUMNS, **({"dropout_time_varying": COLUMNS} if model == "pnbd" else {})}
        fit_kw = {"time_varying": summary}
    build = time.perf_counter() - start
    start = time.perf_counter()
    m = cls(**kw).fit(rfm, **fit_kw)
    seconds = time.perf_counter() - start
    table = m.summary()
    tv = [k for k in table.index if k.startswith("tv_")]
    return {"build_s": build, "fit_s": seconds, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "pieces": pieces, "converged": bool(m.converged_), "evaluations": int(m.optimizer_["n_evaluations"]),
            "coefs": {k: float(table.loc[k, "user_estimate"]) for k in tv},
            "ses": {k: float(table.loc[k, "user_se"]) for k in tv}}



def simulate_base(model: str, n: int, weeks: int, seed: int, path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tv_pieces import simulate

    params, gp, gd = TRUTH[model]
    birth = np.random.default_rng(seed).uniform(0, 1, n)
    rfm, times = simulate(model, params, birth, weeks - birth, COLUMNS, z_of_week, gp, gd, seed=seed)
    np.savez(path, frequency=rfm["frequency"].to_numpy(), recency=rfm["recency"].to_numpy(), T=rfm["T"].to_numpy(),
             birth=birth, times=np.concatenate(times) if times else np.zeros(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--models", default="bgnbd,pnbd")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            path = Path(tmp) / f"{model}.npz"
            simulate_base(model, args.customers, args.weeks, 1, path)
            for varying in (False, True):
                out = run_child(__file__, sys.executable, [path, model, int(varying)], ROOT / "src", args.timeout)
                rows.append({"model": model, "covariates": "2 time-varying" if varying else "none", **out})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    cols = [c for c in ("model", "covariates", "pieces", "build_s", "fit_s", "peak_gib", "evaluations", "converged",
                        "error") if c in table]
    print(f"\n{args.customers:,} customers x {args.weeks} weeks (times in s; peak = max RSS of the process)")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for row in rows:
        if row.get("coefs"):
            _, gp, gd = TRUTH[row["model"]]
            truth = dict(zip([f"tv_purchase:{c}" for c in COLUMNS], gp))
            if gd is not None:
                truth.update(zip([f"tv_dropout:{c}" for c in COLUMNS], gd))
            print(f"{row['model']}: " + ", ".join(f"{k} {row['coefs'][k]:.3f} (SE {row['ses'][k]:.3f}; true {v})"
                                                   for k, v in truth.items()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], sys.argv[3], sys.argv[4] == "1")))
    else:
        main()
