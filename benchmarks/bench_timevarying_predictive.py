"""Benchmark: the predictive CLV (simulated futures) with time-varying covariates beside the same model
without them (issue 16).

A seasonal log (``datasets.simulate_seasonal``: a yearly Fourier wave and a Christmas window) of
``--customers`` customers over 80 weeks; BG/NBD and Pareto/NBD fitted by MLE with the calendar's two
columns on the purchase process (and the holiday on Pareto/NBD's drop-out) and without; then
``clv(..., interval=0.9)`` over ``--horizon`` weekly periods with ``--samples`` futures sharing
``--draws`` parameter draws. The time-varying simulation evaluates each draw's clocks and P(alive)
once per chunk of customers (Pareto/NBD: its drop-out integral), so its cost grows with the draws;
the table shows both and the mean CLV of each (the calendar moves it).

Usage::

    python benchmarks/bench_timevarying_predictive.py                     # 5,000 customers
    python benchmarks/bench_timevarying_predictive.py --customers 20000 --draws 50
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import clvmodels as clv
from clvmodels.datasets import simulate_seasonal
from clvmodels.timevarying import covariate_calendar, future_exposure, timevarying_summary

COLUMNS = ["holiday", "fourier_sin1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    log, calendar = simulate_seasonal(args.customers, seed=1, observation_length=80, model="pareto_nbd",
                                      purchase_coefficients={"holiday": 0.8, "fourier_sin1": 0.3},
                                      dropout_coefficients={"holiday": 0.5})
    weeks = pd.date_range(calendar.index[-1] + pd.Timedelta("7D"), periods=args.horizon + 4, freq="7D")
    ahead = clv.holiday_windows(weeks, ["2025-12-25"], before=21).assign(
        fourier_sin1=clv.fourier_terms(weeks)["fourier_sin1"], fourier_cos1=0.0)
    path = covariate_calendar(pd.concat([calendar, ahead[calendar.columns]]).rename_axis("period"), columns=COLUMNS)
    rfm, summary = timevarying_summary(log, path, time_unit="W")
    future = future_exposure(rfm, path, args.horizon)
    spend = clv.GammaGammaModel().fit(rfm[rfm["frequency"] > 0])
    rows = []
    for name, cls, dropout in (("BG/NBD", clv.BetaGeoModel, {}),
                               ("Pareto/NBD", clv.ParetoNBDModel, {"dropout_time_varying": ["holiday"]})):
        for calendar_used in (False, True):
            model = cls(purchase_time_varying=COLUMNS, **dropout) if calendar_used else cls()
            model.fit(rfm, **({"time_varying": summary} if calendar_used else {}))
            paths = {"time_varying": summary, "future": future} if calendar_used else {}
            start = time.perf_counter()
            pred = clv.clv(model, spend, rfm, horizon=args.horizon, period="W", interval=0.9,
                           n_samples=args.samples, n_draws=args.draws, seed=0, **paths)
            rows.append({"model": name, "calendar": calendar_used, "seconds": time.perf_counter() - start,
                         "mean_clv": pred["mean"].mean(), "mean_upper": pred["upper"].mean()})
    table = pd.DataFrame(rows)
    print(f"{args.customers:,} customers x {args.samples:,} futures ({args.draws} draws), {args.horizon} weekly periods")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for name in table["model"].unique():
        sub = table[table["model"] == name].set_index("calendar")["seconds"]
        print(f"{name}: with the calendar / without: {sub[True] / sub[False]:.1f}x")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
