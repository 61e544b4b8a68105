"""Benchmark: the compile tax of the Bayesian fits, side by side in one run, each case in a fresh process.

Rows of the tables (wall-clock seconds):

1. *Refit in the same process.* Two NUTS fits of one model in one process, on different data: the
   CDNOW summary (2,357 customers, 39 weeks), then the CDNOW log cut at 1997-12-31 (another cutoff).
   BG/NBD and Gamma-Gamma, ``--draws`` x ``--chains`` after ``--tune`` steps. Columns: the first fit,
   the second, and first / second (the target: at least 3x). With ``--baseline-src DIR`` the same
   runs with the package at ``DIR`` (e.g. a checkout before the compile cache) side by side. The row
   "cold caches" runs with an empty PyTensor compile directory (as the first process ever on a
   machine: nothing compiled yet, C or numba); the others find what earlier runs compiled.
2. *NUTS 4 x 1,000 on CDNOW in a fresh process* (1,000 tuning steps), clvmodels (nutpie, its
   default) against PyMC-Marketing 1.3 (``BetaGeoModel`` / ``GammaGammaModel``, ``fit(method="mcmc")``,
   its default sampler, PyMC's NUTS) with the same draws, tune and chains. Priors: clvmodels is
   given PyMC-Marketing's defaults where the two can state the same prior: ``r, p, q ~
   Weibull(2, 1)``, ``alpha`` and Gamma-Gamma's scale (``gamma``; PyMC-Marketing's ``v``)
   ``~ Weibull(2, 10)``. BG/NBD's drop-out shapes ``(a, b)``: both libraries put a uniform prior on
   the mean ``a/(a+b)``; the concentration ``a+b`` has PyMC-Marketing's ``Pareto(1, 1)`` (density
   ``k^-2`` on ``k >= 1``) and clvmodels' default ``(1+k)^-2`` on ``k > 0`` (the same tail, no cut
   at 1; clvmodels has no Pareto-with-cut joint spec). ``fit s`` is the fit alone (after importing
   the library: PyMC-Marketing's import loads PyMC, clvmodels' does not, so its fit also pays for
   importing PyMC, nutpie and ArviZ); ``process s`` is the whole child process from interpreter start
   (imports, reading the data, fitting, the posterior summary). Posterior means, the worst r_hat and
   the smallest bulk ESS are printed beside the times.

Beside wall-clock seconds, every row has the CPU seconds used (the process's threads and its
waited-for children, e.g. PyMC's chain processes): on a shared, loaded machine wall time swings with
the other load, CPU time much less (on an idle machine with as many cores as chains, wall time is
roughly CPU time / chains while sampling).

The numba compile of the sampler's wrappers is cached on disk (PyTensor's numba cache), so a
fresh process after the first one ever loads them: run the script twice to see the steady state (the
first run of a new model structure compiles and saves).

PyMC-Marketing 1.3 requires pymc < 6.4, so it runs from its own environment (``--pmm-python``,
default ``.venv-pmm/bin/python``; see ``bench_bayes.py``); without it those rows are skipped.

Usage::

    python benchmarks/bench_compile.py                      # 4 x 1,000 (several minutes on 2 cores)
    python benchmarks/bench_compile.py --quick              # 2 x 200, to check the script
    python benchmarks/bench_compile.py --baseline-src ../main/src
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import _common  # noqa: E402  (benchmarks/_common.py)
from _common import print_speedups  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: PyMC-Marketing 1.3's default priors, as clvmodels prior specs.
PMM_PRIORS = {"bgnbd": {"r": ("Weibull", {"alpha": 2.0, "beta": 1.0}), "alpha": ("Weibull", {"alpha": 2.0, "beta": 10.0})},
              "gg": {"p": ("Weibull", {"alpha": 2.0, "beta": 1.0}), "q": ("Weibull", {"alpha": 2.0, "beta": 1.0}),
                     "gamma": ("Weibull", {"alpha": 2.0, "beta": 10.0})}}


def _cpu() -> float:
    """CPU seconds used so far by this process (all its threads) and its waited-for children (PyMC's
    chain processes): unlike wall time, barely affected by other load on a shared machine."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _stats(draws: dict, rhat: dict, ess: dict) -> dict:
    return {"means": {k: round(float(np.mean(v)), 4) for k, v in draws.items()},
            "max_rhat": float(max(rhat.values())), "min_ess_bulk": float(min(ess.values()))}


# ---------------------------------------------------------------------------- child processes
def _clv_model(clv, model: str, priors: dict | None):
    if model == "bgnbd":
        return clv.BetaGeoModel(random_seed=1, progressbar=False, priors=priors)
    return clv.GammaGammaModel(exclude_invalid=True, random_seed=1, progressbar=False, priors=priors)


def child_refit(model: str, paths: list[str], draws: int, tune: int, chains: int) -> dict:
    """NUTS fits of ``model`` on each of ``paths`` in turn, in this one process."""
    import clvmodels as clv

    warnings.simplefilter("ignore")
    out = {"seconds": [], "cpu": []}
    for path in paths:
        rfm = pd.read_csv(path, index_col=0)
        start, cpu = time.perf_counter(), _cpu()
        m = _clv_model(clv, model, None).fit(rfm, method="nuts", draws=draws, tune=tune, chains=chains)
        out["seconds"].append(time.perf_counter() - start)
        out["cpu"].append(_cpu() - cpu)
    out["max_rhat"] = float(max(m.diagnostics_["r_hat"].values()))
    return out


def child_clvmodels(model: str, path: str, draws: int, tune: int, chains: int) -> dict:
    import clvmodels as clv

    rfm = pd.read_csv(path, index_col=0)
    warnings.simplefilter("ignore")
    start, cpu = time.perf_counter(), _cpu()
    m = _clv_model(clv, model, PMM_PRIORS[model]).fit(rfm, method="nuts", draws=draws, tune=tune, chains=chains)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    d = m.diagnostics_
    return {"seconds": seconds, "process_seconds": time.perf_counter() - START, "cpu": cpu, "process_cpu": _cpu(),
            **_stats(m.posterior_draws_, d["r_hat"], d["ess_bulk"])}


def child_pmm(model: str, path: str, draws: int, tune: int, chains: int) -> dict:
    import arviz as az
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    rfm = pd.read_csv(path, index_col=0)
    warnings.simplefilter("ignore")
    start, cpu = time.perf_counter(), _cpu()
    if model == "bgnbd":
        data = pd.DataFrame({"customer_id": np.arange(len(rfm)), "frequency": rfm["frequency"].to_numpy(),
                             "recency": rfm["recency"].to_numpy(), "T": rfm["T"].to_numpy()})
        m, names = BetaGeoModel(), ["r", "alpha", "a", "b"]
    else:
        sub = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
        data = pd.DataFrame({"customer_id": np.arange(len(sub)), "frequency": sub["frequency"].to_numpy(),
                             "monetary_value": sub["monetary_value"].to_numpy()})
        m, names = GammaGammaModel(), ["p", "q", "v"]
    idata = m.fit(data, method="mcmc", progressbar=False, random_seed=1, draws=draws, tune=tune, chains=chains)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    post = idata.posterior
    draws_ = {k: np.asarray(post[k].values).ravel() for k in names if k in post}
    rhat, ess = az.rhat(idata, var_names=list(draws_)), az.ess(idata, var_names=list(draws_))
    return {"seconds": seconds, "process_seconds": time.perf_counter() - START, "cpu": cpu, "process_cpu": _cpu(),
            **_stats(draws_, {k: float(rhat[k].values) for k in draws_}, {k: float(ess[k].values) for k in draws_})}


# ---------------------------------------------------------------------------- driver
def run_child(python: str, args: list, src: Path, timeout: float, env: dict | None = None) -> dict:
    return _common.run_child(__file__, python, args, src, timeout, env)


def make_data(tmp: Path) -> tuple[Path, Path]:
    import clvmodels as clv
    from clvmodels.datasets import cdnow_summary, load_cdnow

    full, cut = tmp / "cdnow.csv", tmp / "cdnow_1997-12-31.csv"
    cdnow_summary(with_spend=True).to_csv(full)
    clv.rfm_summary(load_cdnow(), observation_end="1997-12-31", truncate=True, timestamp="date").to_csv(cut)
    return full, cut


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 chains x 200 draws, to check the script")
    parser.add_argument("--pmm-python", default=str(ROOT / ".venv-pmm" / "bin" / "python"))
    parser.add_argument("--baseline-src", help="another clvmodels source tree (its src/) to run side by side")
    parser.add_argument("--parts", default="refit,cdnow", help="comma-separated subset of: refit, cdnow")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, model, *rest = args.child
        if kind == "refit":
            *paths, draws, tune, chains = rest
            out = child_refit(model, paths, int(draws), int(tune), int(chains))
        else:
            path, draws, tune, chains = rest
            fn = child_clvmodels if kind == "clvmodels" else child_pmm
            out = fn(model, path, int(draws), int(tune), int(chains))
        print(json.dumps(out))
        return 0

    draws, tune, chains = (200, 200, 2) if args.quick else (1000, 1000, 4)
    parts = set(args.parts.split(","))
    sources = [("clvmodels", ROOT / "src")]
    if args.baseline_src:
        sources.append((f"baseline ({args.baseline_src})", Path(args.baseline_src).resolve()))
    names = {"bgnbd": "BG/NBD", "gg": "Gamma-Gamma"}
    pd.set_option("display.width", 200)
    with tempfile.TemporaryDirectory() as tmp:
        full, cut = make_data(Path(tmp))
        if "refit" in parts:
            print(f"1. Two NUTS fits in one process ({chains} x {draws}, {tune} tune): CDNOW 39 weeks, then the "
                  "cutoff 1997-12-31", flush=True)
            rows = []
            for model in ("bgnbd", "gg"):
                # the first process ever (of this PyTensor and numba): an empty PyTensor compile directory
                cold = ("clvmodels, cold caches", ROOT / "src", {"PYTENSOR_FLAGS": f"base_compiledir={tmp}/cold-{model}"})
                for label, src, env in [(label, src, None) for label, src in sources] + [cold]:
                    res = run_child(sys.executable, ["refit", model, full, cut, draws, tune, chains], src, args.timeout,
                                    env)
                    first, second = (res.get("seconds") or [np.nan, np.nan])
                    cpu1, cpu2 = (res.get("cpu") or [np.nan, np.nan])
                    rows.append({"model": names[model], "code": label, "first fit s": first, "second fit s": second,
                                 "first / second": first / second, "first fit cpu s": cpu1, "second fit cpu s": cpu2,
                                 "first / second (cpu)": cpu1 / cpu2, "error": res.get("error", "")})
                    print("  ", rows[-1], flush=True)
            print("\n" + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:,.2f}") + "\n")
        if "cdnow" in parts:
            print(f"2. NUTS {chains} x {draws} ({tune} tune) on CDNOW, each fit in a fresh process", flush=True)
            have_pmm = Path(args.pmm_python).exists()
            rows = []
            for model in ("bgnbd", "gg"):
                entries = [(label, sys.executable, "clvmodels", src) for label, src in sources]
                if have_pmm:
                    entries.append(("PyMC-Marketing 1.3", args.pmm_python, "pmm", ROOT / "src"))
                for label, python, kind, src in entries:
                    res = run_child(python, [kind, model, full, draws, tune, chains], src, args.timeout)
                    rows.append({"model": names[model], "library": label, "fit s": res.get("seconds"),
                                 "process s": res.get("process_seconds"), "fit cpu s": res.get("cpu"),
                                 "process cpu s": res.get("process_cpu"), "max r_hat": res.get("max_rhat"),
                                 "min ESS bulk": res.get("min_ess_bulk"), "means": res.get("means"),
                                 "error": res.get("error", "")})
                    print("  ", rows[-1], flush=True)
            table = pd.DataFrame(rows)
            print("\n" + table.drop(columns="means").to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
            if have_pmm:
                print_speedups(table, "model", "PyMC-Marketing 1.3", "clvmodels",
                               ("fit s", "process s", "fit cpu s", "process cpu s"))
            else:
                print(f"(PyMC-Marketing rows skipped: no interpreter at {args.pmm_python})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
