"""Benchmark: the first maximum-likelihood fit in a fresh process, clvmodels vs lifetimes, in one run.

The first fit is what a data scientist in a notebook sees. Each (library, model) runs in a fresh
subprocess that times, in order:

* ``import``: ``from clvmodels import BetaGeoModel`` or ``from lifetimes import BetaGeoFitter`` (the
  model's class; numpy, pandas and scipy included: both libraries import them. ``import clvmodels``
  alone loads nothing: its names load on first use, so the class is what a user's import costs);
* ``first``: the first fit of the process, on the CDNOW summary (2,357 customers; read from a file
  the parent writes, so that the lifetimes process never imports clvmodels);
* ``warm``: a second fit of a new estimator on the same data.

Models: BG/NBD (``BetaGeoModel`` vs ``BetaGeoFitter``), Gamma-Gamma (``GammaGammaModel`` vs
``GammaGammaFitter``, on the customers with repeat purchases), Pareto/NBD (``ParetoNBDModel`` vs
``ParetoNBDFitter``) and MBG/NBD (``ModifiedBetaGeoModel`` vs ``ModifiedBetaGeoFitter``), each with
its library's defaults. Every time is the best of ``--repeat`` runs, interleaved (run 1 of every
pair, then run 2, ...), so that a busy machine slows both libraries alike. The ratio is lifetimes'
time over clvmodels' (above 1: clvmodels is faster); the estimates of both libraries are compared
as a sanity check.

Usage::

    python benchmarks/bench_first_fit.py               # 4 models x 2 libraries x 3 runs (a few minutes)
    python benchmarks/bench_first_fit.py --repeat 1 --models bgnbd gg
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

#: model key: (display name, clvmodels class, lifetimes class, spend model)
MODELS = {
    "bgnbd": ("BG/NBD", "BetaGeoModel", "BetaGeoFitter", False),
    "gg": ("Gamma-Gamma", "GammaGammaModel", "GammaGammaFitter", True),
    "pareto": ("Pareto/NBD", "ParetoNBDModel", "ParetoNBDFitter", False),
    "mbgnbd": ("MBG/NBD", "ModifiedBetaGeoModel", "ModifiedBetaGeoFitter", False),
}
LIBRARIES = ("clvmodels", "lifetimes")


def child(library: str, model: str, path: str) -> None:
    """Time import, first fit and warm fit in this (fresh) process; print them as JSON."""
    _, ours, theirs, spend = MODELS[model]
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    lib = __import__(library)
    cls = getattr(lib, ours if library == "clvmodels" else theirs)   # clvmodels loads a name's module here
    t_import = time.perf_counter() - t0

    import pandas as pd

    rfm = pd.read_parquet(path)
    if spend:
        rfm = rfm[rfm["frequency"] > 0]

    def fit():
        if library == "clvmodels":
            m = cls().fit(rfm)
            return m.params_.to_numpy().tolist()
        m = cls()
        if spend:
            m.fit(rfm["frequency"], rfm["monetary_value"])
        else:
            m.fit(rfm["frequency"], rfm["recency"], rfm["T"])
        return [float(v) for v in m.params_.to_numpy()]

    t0 = time.perf_counter()
    params = fit()
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit()
    t_warm = time.perf_counter() - t0
    print(json.dumps({"import": t_import, "first": t_first, "warm": t_warm, "params": params}))


def run_child(library: str, model: str, path: Path, src: Path) -> dict:
    env_path = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, __file__, "--child", library, model, str(path)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": env_path}, timeout=600)
    if out.returncode:
        raise RuntimeError(f"{library} {model} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per (library, model); the best counts")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    src = Path(__file__).resolve().parents[1] / "src"
    sys.path.insert(0, str(src))
    from clvmodels.datasets.cdnow import cdnow_summary

    best: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cdnow.parquet"
        cdnow_summary(with_spend=True).to_parquet(path)
        for _ in range(args.repeat):
            for model in args.models:
                for library in LIBRARIES:
                    res = run_child(library, model, path, src)
                    old = best.get((library, model))
                    best[(library, model)] = res if old is None else {
                        **old, **{k: min(old[k], res[k]) for k in ("import", "first", "warm")}}

    print(f"First MLE fit on the CDNOW summary in a fresh process: best of {args.repeat}, interleaved; "
          "seconds; ratio = lifetimes / clvmodels\n")
    header = ("| model | import clvmodels | import lifetimes | first fit clvmodels | first fit lifetimes | ratio "
              "| warm fit clvmodels | warm fit lifetimes | ratio | max rel. param. diff |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for model in args.models:
        ours, theirs = best[("clvmodels", model)], best[("lifetimes", model)]
        diff = max(abs(a / b - 1) for a, b in zip(ours["params"], theirs["params"]))
        print(f"| {MODELS[model][0]} | {ours['import']:.2f} | {theirs['import']:.2f} | {ours['first']:.3f} | "
              f"{theirs['first']:.3f} | {theirs['first'] / ours['first']:.1f}x | {ours['warm']:.3f} | "
              f"{theirs['warm']:.3f} | {theirs['warm'] / ours['warm']:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
