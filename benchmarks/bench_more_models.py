"""Benchmark: Pareto/NBD, MBG/NBD, BG/BB and sBG fits and predictions, clvmodels vs lifetimes, in one run.

Data sets:

* Pareto/NBD and MBG/NBD: the CDNOW summary (2,357 customers) and a log simulated with
  ``clvmodels.datasets.simulate`` (CDNOW-like BG/NBD + Gamma-Gamma, 78 weeks, summarised by day in
  weeks) of ``--sizes`` customers;
* BG/BB: the donations table (11,104 donors as 22 weighted rows) and the same donors one row each;
* sBG: the 'regular' and 'high end' survivor tables of Fader & Hardie 2007 (lifetimes has no sBG).

For each: the fit (clvmodels *cold*, the first fit of the model class in this process, and *warm*,
a second fit; lifetimes' ``fit``), and predictions for every customer with each library's own fit
(conditional expected purchases, P(alive)). Prediction times are the best of ``--repeat`` runs.
The table gives seconds side by side, the speed-up (lifetimes over clvmodels warm), the largest
relative difference of the estimates, and how many of lifetimes' predictions are not finite.

Usage::

    python benchmarks/bench_more_models.py             # CDNOW and 100k simulated customers (minutes)
    python benchmarks/bench_more_models.py --quick     # CDNOW and 5k customers, 1 repeat
    python benchmarks/bench_more_models.py --sizes 20k 200k
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

HORIZON = 39.0


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "KM" else text) * mult)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def best_of(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        seconds, out = timed(fn)
        best = min(best, seconds)
    return best, out


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def row(model, data, task, ours, theirs=None, note=""):
    return {"model": model, "data": data, "task": task, "clvmodels_s": ours,
            "lifetimes_s": np.nan if theirs is None else theirs,
            "speedup": np.nan if theirs is None or not ours else theirs / ours, "note": note}


def purchase_model_rows(name, ours_cls, theirs_cls, names, rfm, data_label, repeat):
    x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    out = []
    cold, model = timed(lambda: ours_cls().fit(rfm))
    warm, model = timed(lambda: ours_cls().fit(rfm))
    lt_fit, lt = timed(lambda: theirs_cls().fit(x, tx, T))
    diff = rel_diff(model.params_[list(names)], lt.params_[list(names)])
    ll_note = f"unique rows {model.n_unique_:,}; max rel. diff of estimates {diff:.1e}"
    out.append(row(name, data_label, "fit (cold)", cold, None, "first fit of the process"))
    out.append(row(name, data_label, "fit (warm)", warm, lt_fit, ll_note))
    t_e, e = best_of(lambda: model.expected_purchases(HORIZON, rfm), repeat)
    t_le, le = best_of(lambda: lt.conditional_expected_number_of_purchases_up_to_time(HORIZON, x, tx, T), repeat)
    le = np.asarray(le, dtype=float)
    out.append(row(name, data_label, f"E[purchases {HORIZON:g}]", t_e, t_le,
                   f"lifetimes non-finite: {int((~np.isfinite(le)).sum()):,}"))
    t_a, a = best_of(lambda: model.probability_alive(rfm), repeat)
    t_la, la = best_of(lambda: lt.conditional_probability_alive(x, tx, T), repeat)
    la = np.asarray(la, dtype=float)
    out.append(row(name, data_label, "P(alive)", t_a, t_la, f"lifetimes non-finite: {int((~np.isfinite(la)).sum()):,}"))
    t_i, _ = timed(lambda: model.expected_purchases(HORIZON, rfm, interval=0.9, n_draws=100, seed=0))
    out.append(row(name, data_label, "E[purchases] 90% interval, 100 draws", t_i, None, "lifetimes: no equivalent"))
    return out


def bgbb_rows(repeat):
    from lifetimes import BetaGeoBetaBinomFitter

    import clvmodels as clv
    from clvmodels.datasets import load_donations

    d = load_donations().rename(columns={"periods": "n_periods"})
    each = d.loc[d.index.repeat(d["weights"])].reset_index(drop=True)
    out = []
    for label, frame, w in (("donations, 22 weighted rows", d, d["weights"]), ("donations, 11,104 rows", each, None)):
        cold, model = timed(lambda: clv.BetaGeoBetaBinomModel().fit(frame, weights=w))
        warm, model = timed(lambda: clv.BetaGeoBetaBinomModel().fit(frame, weights=w))
        cols = [frame[c].to_numpy() for c in ("frequency", "recency", "n_periods")]
        lt_fit, lt = timed(lambda: BetaGeoBetaBinomFitter().fit(*cols, weights=None if w is None else w.to_numpy()))
        names = ["alpha", "beta", "gamma", "delta"]
        out.append(row("BG/BB", label, "fit (cold)", cold, None, "first fit of the process"))
        out.append(row("BG/BB", label, "fit (warm)", warm, lt_fit,
                       f"max rel. diff of estimates {rel_diff(model.params_[names], lt.params_[names]):.1e}"))
        t_e, _ = best_of(lambda: model.expected_purchases(5, frame), repeat)
        t_le, _ = best_of(lambda: lt.conditional_expected_number_of_purchases_up_to_time(5, *cols), repeat)
        out.append(row("BG/BB", label, "E[purchases next 5]", t_e, t_le))
        t_a, _ = best_of(lambda: model.probability_alive(frame, future=1), repeat)
        t_la, _ = best_of(lambda: lt.conditional_probability_alive(1, *cols), repeat)
        out.append(row("BG/BB", label, "P(alive next)", t_a, t_la))
    return out


def sbg_rows(repeat):
    import clvmodels as clv

    tables = {"regular": [1000, 631, 468, 382, 326, 289, 262, 241],
              "high end": [1000, 869, 743, 653, 593, 551, 517, 491]}
    out = []
    for label, survivors in tables.items():
        cold, model = timed(lambda: clv.ShiftedBetaGeoModel().fit_survivors(survivors))
        warm, model = timed(lambda: clv.ShiftedBetaGeoModel().fit_survivors(survivors))
        out.append(row("sBG", label, "fit (cold)", cold, None, "first fit of the process"))
        out.append(row("sBG", label, "fit (warm)", warm, None,
                       f"alpha={model.params_['alpha']:.3f}, beta={model.params_['beta']:.3f}, "
                       f"LL={model.log_likelihood_:.1f}"))
        t_d, _ = best_of(lambda: model.derl(np.arange(50), 0.1, interval=0.9, n_draws=1000, seed=0), repeat)
        out.append(row("sBG", label, "DERL, 50 tenures, 90% interval", t_d, None, "lifetimes: no sBG"))
    return out


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CDNOW and 5k customers, 1 repeat")
    parser.add_argument("--sizes", nargs="*", default=None, help="simulated sizes, e.g. 100k 1M")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in (args.sizes or (["5k"] if args.quick else ["100k"]))]
    repeat = 1 if args.quick else args.repeat

    warnings.simplefilter("ignore")
    from lifetimes import ModifiedBetaGeoFitter, ParetoNBDFitter

    import clvmodels as clv
    from clvmodels.datasets import cdnow_summary, simulate

    datasets = [("CDNOW 2,357", cdnow_summary())]
    for n in sizes:
        log = simulate(n, seed=2026)
        datasets.append((f"simulated {n:,}",
                         clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W")))
    rows = []
    for label, rfm in datasets:
        rows += purchase_model_rows("Pareto/NBD", clv.ParetoNBDModel, ParetoNBDFitter, ("r", "alpha", "s", "beta"),
                                    rfm, label, repeat)
        rows += purchase_model_rows("MBG/NBD", clv.ModifiedBetaGeoModel, ModifiedBetaGeoFitter,
                                    ("r", "alpha", "a", "b"), rfm, label, repeat)
    rows += bgbb_rows(repeat)
    rows += sbg_rows(repeat)
    table = pd.DataFrame(rows)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 80,
                           "display.float_format", lambda v: f"{v:.3g}"):
        print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
