"""Benchmark: maximum-likelihood fits with time-varying covariates, from the log (issue 16).

BG/NBD (time-varying purchase covariates) and Pareto/NBD (the same two on the purchase and the
drop-out process) on ``--customers`` customers (default 100k) acquired in the first week and observed
for ``--weeks`` weeks (default 104: about 10M customer-weeks). The logs are drawn exactly from each
model by :func:`clvmodels.datasets.simulate_seasonal` over a weekly calendar of two covariates, a
yearly wave (``fourier_sin1``, :func:`~clvmodels.timevarying.fourier_terms`) and the three weeks up
to Christmas (``holiday``, :func:`~clvmodels.timevarying.holiday_windows`), with known coefficients.
Each case runs in a fresh process, which builds the summaries from the log
(:func:`~clvmodels.timevarying.timevarying_summary`: the RFM table and the pieces of constant
covariates) and fits; it reports both times, the peak memory (max RSS), the number of pieces and the
coefficients against the true ones. The same model without covariates (:func:`~clvmodels.rfm_summary`
and its fit) runs beside it on the same log. The fits run on distinct rows (``fit_rows``): customers
alike in history and covariate path (here: first purchase on the same day) are one weighted row.
Purchases on one day count once (the summaries' ``resolution="D"``): in the weeks of high rates a
few merge, which pulls the purchase coefficients a little below the truth (a few SE at 100k
customers; with ``resolution="h"`` they are within 2 SE).

Goal (issue 16): each fit with 2 time-varying covariates on 100k customers x 104 weeks under 60 s
and 4 GiB, including building the summaries. ``--weeks 52,104,208`` runs each length in turn (with
``--customers`` one number, or one per length) to show how the cost grows with the periods.

Usage::

    python benchmarks/bench_timevarying.py                                   # 100k customers, 104 weeks
    python benchmarks/bench_timevarying.py --weeks 52,104,208 --customers 100000,100000,50000
    python benchmarks/bench_timevarying.py --customers 20000 --weeks 52      # a quick check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START = "2024-01-01"
COLUMNS = ["fourier_sin1", "holiday"]
#: Per model: simulate_seasonal's name, true parameters, purchase and drop-out coefficients.
TRUTH = {
    "bgnbd": ("bgnbd", {"r": 0.6, "alpha": 5.0, "a": 0.8, "b": 2.5}, [0.4, 0.7], None),
    "pnbd": ("pareto_nbd", {"r": 0.6, "alpha": 5.0, "s": 0.6, "beta": 20.0}, [0.4, 0.7], [0.3, -0.4]),
}


def calendar(weeks: int) -> pd.DataFrame:
    """The weekly calendar from :data:`START` over ``weeks`` weeks and one more: the two covariates."""
    from clvmodels.timevarying import fourier_terms, holiday_windows

    periods = pd.date_range(START, periods=weeks + 2, freq="7D")
    christmas = [f"{y}-12-25" for y in range(periods[0].year, periods[-1].year + 1)]
    return pd.concat([fourier_terms(periods)[["fourier_sin1"]], holiday_windows(periods, christmas, before=20)],
                     axis=1)


def child(path: str, model: str, weeks: int, varying: bool) -> dict:
    """One case in this (fresh) process: build the summaries from the log, fit, report."""
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")
    import clvmodels as clv

    log = pd.read_pickle(path)
    end = pd.Timestamp(START) + pd.Timedelta(weeks=weeks)
    cls = {"bgnbd": clv.BetaGeoModel, "pnbd": clv.ParetoNBDModel}[model]
    start = time.perf_counter()
    kw, fit_kw, pieces = {}, {}, 0
    if varying:
        rfm, summary = clv.timevarying_summary(log, clv.covariate_calendar(calendar(weeks)), end, "W")
        pieces = len(summary.pieces.length)
        kw = {"purchase_time_varying": COLUMNS, **({"dropout_time_varying": COLUMNS} if model == "pnbd" else {})}
        fit_kw = {"time_varying": summary}
    else:
        rfm = clv.rfm_summary(log, end, "W")
    build = time.perf_counter() - start
    start = time.perf_counter()
    m = cls(**kw).fit(rfm, **fit_kw)
    seconds = time.perf_counter() - start
    table = m.summary()
    # coefficients on the user's scale of the covariates where the summary has one
    est, se = ((table[f"user_{c}"].fillna(table[c]) if f"user_{c}" in table else table[c]) for c in ("estimate", "se"))
    return {"customers": len(rfm), "build_s": build, "fit_s": seconds, "total_s": build + seconds,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "pieces": pieces,
            "converged": bool(m.converged_), "evaluations": int(m.optimizer_["n_evaluations"]),
            "fit_rows": int(m.n_unique_),
            "estimates": est.astype(float).to_dict(), "ses": se.astype(float).to_dict()}


def simulate_log(model: str, n: int, weeks: int, seed: int, path: Path) -> None:
    """The log of ``n`` customers over ``weeks`` weeks, drawn from ``model`` with :data:`TRUTH`, pickled."""
    from clvmodels.datasets import simulate_seasonal

    name, params, gp, gd = TRUTH[model]
    log, _ = simulate_seasonal(n, calendar(weeks), model=name, params=params,
                               purchase_coefficients=dict(zip(COLUMNS, gp)),
                               dropout_coefficients=None if gd is None else dict(zip(COLUMNS, gd)),
                               start=START, cohort_length=1.0, observation_length=float(weeks), seed=seed)
    log.to_pickle(path)


def truth_of(model: str) -> dict[str, float]:
    """The true values by the summary's names (parameters and coefficients)."""
    _, params, gp, gd = TRUTH[model]
    out = {**params, **{f"tv_purchase:{c}": g for c, g in zip(COLUMNS, gp)}}
    if gd is not None:
        out.update({f"tv_dropout:{c}": g for c, g in zip(COLUMNS, gd)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", default="100000", help="one number, or one per --weeks")
    parser.add_argument("--weeks", default="104", help="comma-separated observation lengths")
    parser.add_argument("--models", default="bgnbd,pnbd")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    weeks_list = [int(w) for w in args.weeks.split(",")]
    customers = [int(c) for c in args.customers.split(",")]
    customers = customers * len(weeks_list) if len(customers) == 1 else customers
    sys.path.insert(0, str(ROOT / "src"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weeks, n in zip(weeks_list, customers):
            for model in args.models.split(","):
                path = Path(tmp) / f"{model}-{weeks}.pkl"
                simulate_log(model, n, weeks, 1, path)
                for varying in (False, True):
                    out = run_child(__file__, sys.executable, [path, model, weeks, int(varying)], ROOT / "src",
                                    args.timeout)
                    rows.append({"model": model, "weeks": weeks, "covariates": "2 time-varying" if varying else "none",
                                 **out})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    cols = [c for c in ("model", "weeks", "customers", "covariates", "pieces", "fit_rows", "build_s", "fit_s", "total_s",
                        "peak_gib", "evaluations", "converged", "error") if c in table]
    print("\nTimes in s (build: the summaries from the log; fit: the MLE with its standard errors); "
          "peak = max RSS of the process; fit_rows: the distinct rows fitted (customers alike in history and "
          "path are one)")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    varying = table[table["covariates"] != "none"].dropna(subset=["pieces"]) if "pieces" in table else table[:0]
    for model, sub in varying.groupby("model"):
        if len(sub) > 1:
            per = sub["fit_s"] / sub["pieces"] * 1e6
            print(f"{model}: fit time per million pieces " + ", ".join(
                f"{w} weeks {v:.1f} s" for w, v in zip(sub["weeks"], per)))
    for row in rows:
        if row.get("estimates"):
            truth = truth_of(row["model"])
            print(f"{row['model']} {row['weeks']} weeks, {row['covariates']}: " + ", ".join(
                f"{k} {row['estimates'][k]:.3f} (SE {row['ses'][k]:.3f}; true {v})"
                for k, v in truth.items() if k in row["estimates"]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")))
    else:
        main()
