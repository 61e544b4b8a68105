"""Benchmark: Bayesian fits and per-customer intervals, clvmodels vs PyMC-Marketing, in one run.

Rows of the table (wall-clock seconds, each fit in a fresh subprocess so that compilation counts):

* NUTS on the CDNOW sample (2,357 customers, 39 weeks; ``--draws`` x ``--chains``, default 4 x 1,000
  after 1,000 tuning steps), BG/NBD and Gamma-Gamma:
  clvmodels with its default sampler (nutpie when installed), clvmodels with PyMC's sampler, and
  PyMC-Marketing's ``BetaGeoModel`` / ``GammaGammaModel`` (``fit(method="mcmc")``, its default
  sampler) with the same draws. The posterior means, the worst r_hat and the smallest bulk ESS are
  printed beside the times (a fast but poorly mixing sampler is no win: compare ESS per second).
* Pareto/NBD NUTS on the CDNOW sample, same draws: clvmodels (nutpie), clvmodels as of commit
  ``--baseline`` (default a297ed4: the parameters sampled directly under HalfNormal priors; its
  ``src`` is extracted with ``git archive`` into the temporary directory) and PyMC-Marketing's
  ``ParetoNBDModel``; with the posterior means against the MLE (``shift_se``: the largest
  ``|ln(posterior mean) − ln(MLE)|`` over the parameters, in the MLE's log-scale standard errors)
  and the mean number of leapfrog steps per draw (``mean_steps``).
* BG/NBD NUTS on 1M customers simulated from BG/NBD with the CDNOW parameters (summarised by day,
  in weeks): the unique-row compression makes the likelihood cost depend on the distinct
  ``(x, t_x, T)`` rows, not on the customers.
* Per-customer intervals (200 posterior draws) of expected purchases (39 weeks) and of 12-month
  CLV for 100k and 1M simulated customers.

PyMC-Marketing 1.3 requires pymc < 6.4, which clvmodels' environment has, so it runs from a separate
virtual environment, made once with::

    python3.12 -m venv .venv-pmm && .venv-pmm/bin/pip install pymc-marketing==1.3.0

(``--pmm-python PATH`` points elsewhere; without it the PyMC-Marketing rows are skipped).

Usage::

    python benchmarks/bench_bayes.py            # full sizes (about 10-15 minutes on 2 cores)
    python benchmarks/bench_bayes.py --quick    # 2 x 200 draws, 50k customers (a couple of minutes)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import _common  # benchmarks/_common.py
from _common import print_speedups

ROOT = Path(__file__).resolve().parent.parent


def _nuts_stats(draws: dict[str, np.ndarray], rhat: dict, ess: dict) -> dict:
    return {"means": {k: float(np.mean(v)) for k, v in draws.items()},
            "max_rhat": float(max(rhat.values())), "min_ess_bulk": float(min(ess.values()))}


# ---------------------------------------------------------------------------- child processes
def child_clvmodels(model: str, path: str, draws: int, tune: int, chains: int, sampler: str) -> dict:
    import clvmodels as clv

    rfm = pd.read_csv(path, index_col=0)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    if model == "bgnbd":
        m = clv.BetaGeoModel(random_seed=1, progressbar=False)
    elif model == "pnbd":
        m = clv.ParetoNBDModel(random_seed=1, progressbar=False)
    else:
        m = clv.GammaGammaModel(exclude_invalid=True, random_seed=1, progressbar=False)
    m.fit(rfm, method="nuts", draws=draws, tune=tune, chains=chains, nuts_sampler=sampler)
    seconds = time.perf_counter() - start
    d = m.diagnostics_
    out = {"seconds": seconds, "sampler": m.sampler_, "n_unique": m.n_unique_,
           **_nuts_stats(m.posterior_draws_, d["r_hat"], d["ess_bulk"]), "divergences": d["divergences"]}
    if model == "pnbd":
        stats = m.idata_.sample_stats
        out["mean_steps"] = float(np.asarray(stats["n_steps"].values).mean()) if "n_steps" in stats else None
    return out


def child_pmm(model: str, path: str, draws: int, tune: int, chains: int) -> dict:
    import arviz as az
    from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

    rfm = pd.read_csv(path, index_col=0)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    if model in ("bgnbd", "pnbd"):
        data = pd.DataFrame({"customer_id": np.arange(len(rfm)), "frequency": rfm["frequency"].to_numpy(),
                             "recency": rfm["recency"].to_numpy(), "T": rfm["T"].to_numpy()})
        if model == "bgnbd":
            m, names = BetaGeoModel(), ["r", "alpha", "a", "b"]
        else:
            from pymc_marketing.clv import ParetoNBDModel

            m, names = ParetoNBDModel(), ["r", "alpha", "s", "beta"]
    else:
        keep = (rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)
        sub = rfm[keep]
        data = pd.DataFrame({"customer_id": np.arange(len(sub)), "frequency": sub["frequency"].to_numpy(),
                             "monetary_value": sub["monetary_value"].to_numpy()})
        m = GammaGammaModel()
        names = ["p", "q", "v"]
    idata = m.fit(data, method="mcmc", progressbar=False, random_seed=1, draws=draws, tune=tune, chains=chains)
    seconds = time.perf_counter() - start
    post = idata.posterior
    draws_ = {k: np.asarray(post[k].values).ravel() for k in names if k in post}
    rhat = az.rhat(idata, var_names=list(draws_))
    ess = az.ess(idata, var_names=list(draws_))
    return {"seconds": seconds, "sampler": "pymc (PyMC-Marketing default)",
            **_nuts_stats(draws_, {k: float(rhat[k].values) for k in draws_},
                          {k: float(ess[k].values) for k in draws_})}


def child_intervals(path: str, draws: int, tune: int, chains: int, n_interval_draws: int) -> dict:
    """Fit BG/NBD by NUTS on a large simulated set, then time intervals for all its customers."""
    import clvmodels as clv

    rfm = pd.read_csv(path, index_col=0)
    warnings.simplefilter("ignore")
    out = {"n_customers": len(rfm)}
    start = time.perf_counter()
    bg = clv.BetaGeoModel(random_seed=1, progressbar=False).fit(rfm, method="nuts", draws=draws, tune=tune,
                                                                chains=chains)
    out["nuts_seconds"] = time.perf_counter() - start
    out["n_unique"] = bg.n_unique_
    out.update(_nuts_stats(bg.posterior_draws_, bg.diagnostics_["r_hat"], bg.diagnostics_["ess_bulk"]))
    gg = clv.GammaGammaModel(exclude_invalid=True, random_seed=1, progressbar=False).fit(
        rfm, method="nuts", draws=draws, tune=tune, chains=chains)
    start = time.perf_counter()
    bg.expected_purchases(39, interval=0.9, n_draws=n_interval_draws, seed=0)
    out["purchases_interval_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    clv.clv(bg, gg, rfm, horizon=12, period_length=4.345, discount_rate=0.01, interval=0.9,
            n_draws=n_interval_draws, seed=0)
    out["clv_interval_seconds"] = time.perf_counter() - start
    return out


def child_intervals_only(path: str, posterior_from: str, n_interval_draws: int) -> dict:
    """Intervals for every customer of ``path`` from the posterior of a fit on ``posterior_from``."""
    import clvmodels as clv

    warnings.simplefilter("ignore")
    rfm = pd.read_csv(path, index_col=0)
    fit_rfm = pd.read_csv(posterior_from, index_col=0)
    bg = clv.BetaGeoModel(random_seed=1, progressbar=False).fit(fit_rfm, method="nuts", draws=500, tune=500,
                                                                chains=2)
    gg = clv.GammaGammaModel(exclude_invalid=True, random_seed=1, progressbar=False).fit(
        fit_rfm, method="nuts", draws=500, tune=500, chains=2)
    out = {"n_customers": len(rfm)}
    start = time.perf_counter()
    bg.expected_purchases(39, rfm, interval=0.9, n_draws=n_interval_draws, seed=0)
    out["purchases_interval_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    clv.clv(bg, gg, rfm, horizon=12, period_length=4.345, discount_rate=0.01, interval=0.9,
            n_draws=n_interval_draws, seed=0)
    out["clv_interval_seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------- driver
def pareto_nbd_rows(tmp: Path, cdnow: Path, draws: int, tune: int, chains: int, args, have_pmm: bool) -> list[dict]:
    """Pareto/NBD NUTS on CDNOW: this checkout, the ``--baseline`` commit and PyMC-Marketing."""
    import clvmodels as clv

    rfm = pd.read_csv(cdnow, index_col=0)
    mle = clv.ParetoNBDModel().fit(rfm)
    log_mle, se = np.log(mle.params_.to_numpy()), np.sqrt(np.diag(mle.covariance_))
    entries = [("clvmodels (nutpie)", sys.executable, ROOT)]
    if args.baseline:
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        entries.append((f"clvmodels {args.baseline} (nutpie)", sys.executable, base))
    if have_pmm:
        entries.append(("PyMC-Marketing 1.3", args.pmm_python, ROOT))
    rows = []
    print(f"Pareto/NBD NUTS on CDNOW ({chains} x {draws}, {tune} tuning steps); MLE {mle.params_.round(3).to_dict()}",
          flush=True)
    for name, python, root in entries:
        kind = ["pmm"] if python == args.pmm_python else ["clvmodels"]
        child = [*kind, "pnbd", str(cdnow), draws, tune, chains] + ([] if kind == ["pmm"] else ["nutpie"])
        res = run_child(python, [str(c) for c in child], args.timeout, root)
        if "means" in res:
            means = np.log([res["means"][k] for k in ("r", "alpha", "s", "beta")])
            res["shift_se"] = float(np.max(np.abs(means - log_mle) / se))
        res.update(task="NUTS Pareto/NBD CDNOW", library=name)
        rows.append(res)
        print("  ", name, {k: v for k, v in res.items() if k not in ("task", "library")}, flush=True)
    return rows


def make_data(n: int | None, path: Path) -> int:
    import clvmodels as clv
    from clvmodels.datasets import cdnow_summary, simulate

    if n is None:
        rfm = cdnow_summary(with_spend=True)
    else:
        log = simulate(n, seed=2026)
        rfm = clv.rfm_summary(log, observation_end=log.attrs["observation_end"], time_unit="W")
    rfm.to_csv(path)
    return len(rfm)


def run_child(python: str, args: list[str], timeout: float, root: Path = ROOT) -> dict:
    """Run this script's ``--child`` in ``python`` with ``root/src`` (this checkout's, or a baseline's) first."""
    return _common.run_child(__file__, python, args, root / "src", timeout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small draws and sizes, to check the script")
    parser.add_argument("--pmm-python", default=str(ROOT / ".venv-pmm" / "bin" / "python"),
                        help="python of an environment with pymc-marketing (default .venv-pmm)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--parts", default="cdnow,pnbd,large,intervals",
                        help="comma-separated subset of: cdnow (NUTS on CDNOW), pnbd (Pareto/NBD NUTS on CDNOW), "
                             "large (NUTS + intervals on the large simulated set), intervals (intervals on the "
                             "medium set)")
    parser.add_argument("--baseline", default="a297ed4",
                        help="commit whose Pareto/NBD NUTS runs beside the current one (empty: skip)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "clvmodels":
            model, path, draws, tune, chains, sampler = rest
            out = child_clvmodels(model, path, int(draws), int(tune), int(chains), sampler)
        elif kind == "pmm":
            model, path, draws, tune, chains = rest
            out = child_pmm(model, path, int(draws), int(tune), int(chains))
        elif kind == "large":
            path, draws, tune, chains, n_int = rest
            out = child_intervals(path, int(draws), int(tune), int(chains), int(n_int))
        else:
            path, fit_path, n_int = rest
            out = child_intervals_only(path, fit_path, int(n_int))
        print(json.dumps(out))
        return 0

    draws, tune, chains = (200, 200, 2) if args.quick else (1000, 1000, 4)
    large, medium = (50_000, 10_000) if args.quick else (1_000_000, 100_000)
    n_interval_draws = 200
    have_pmm = Path(args.pmm_python).exists()
    import nutpie  # noqa: F401  (the default sampler: fail early if the benchmark env lacks it)

    parts = set(args.parts.split(","))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cdnow = tmp / "cdnow.csv"
        make_data(None, cdnow)
        models = ("bgnbd", "gg") if "cdnow" in parts else ()
        print(f"NUTS on CDNOW ({chains} chains x {draws} draws, {tune} tuning steps), each fit in a fresh process",
              flush=True)
        for model in models:
            entries = [("clvmodels (nutpie)", sys.executable, ["clvmodels", model, str(cdnow), draws, tune, chains,
                                                               "nutpie"]),
                       ("clvmodels (pymc)", sys.executable, ["clvmodels", model, str(cdnow), draws, tune, chains,
                                                             "pymc"])]
            if have_pmm:
                entries.append(("PyMC-Marketing 1.3", args.pmm_python, ["pmm", model, str(cdnow), draws, tune,
                                                                       chains]))
            for name, python, child in entries:
                res = run_child(python, [str(c) for c in child], args.timeout)
                res.update(task=f"NUTS {'BG/NBD' if model == 'bgnbd' else 'Gamma-Gamma'} CDNOW", library=name)
                rows.append(res)
                print("  ", name, model, {k: v for k, v in res.items() if k not in ("task", "library")}, flush=True)
        if "pnbd" in parts:
            rows.extend(pareto_nbd_rows(tmp, cdnow, draws, tune, chains, args, have_pmm))
        if "large" in parts:
            big = tmp / "large.csv"
            n_big = make_data(large, big)
            res = run_child(sys.executable, ["large", str(big), str(draws), str(tune), str(chains),
                                             str(n_interval_draws)], args.timeout)
            rows.append({"task": f"NUTS BG/NBD {n_big:,} customers", "library": "clvmodels (nutpie)",
                         "seconds": res.get("nuts_seconds"), **{k: v for k, v in res.items() if k != "nuts_seconds"}})
            print("  ", rows[-1], flush=True)
            for n_label, value in ((f"{n_big:,}", res),):
                rows.append({"task": f"intervals E[purchases] ({n_interval_draws} draws), {n_label} customers",
                             "library": "clvmodels", "seconds": value.get("purchases_interval_seconds")})
                rows.append({"task": f"intervals 12-month CLV ({n_interval_draws} draws), {n_label} customers",
                             "library": "clvmodels", "seconds": value.get("clv_interval_seconds")})
        if "intervals" in parts:
            mid = tmp / "medium.csv"
            n_mid = make_data(medium, mid)
            res = run_child(sys.executable, ["intervals", str(mid), str(cdnow), str(n_interval_draws)], args.timeout)
            rows.append({"task": f"intervals E[purchases] ({n_interval_draws} draws), {n_mid:,} customers",
                         "library": "clvmodels", "seconds": res.get("purchases_interval_seconds"), **res})
            rows.append({"task": f"intervals 12-month CLV ({n_interval_draws} draws), {n_mid:,} customers",
                         "library": "clvmodels", "seconds": res.get("clv_interval_seconds")})

    table = pd.DataFrame(rows)
    cols = [c for c in ("task", "library", "seconds", "max_rhat", "min_ess_bulk", "divergences", "mean_steps",
                        "shift_se", "n_unique", "error")
            if c in table]
    table = table[cols]
    if "min_ess_bulk" in table:
        table["ess_per_second"] = table["min_ess_bulk"] / table["seconds"]
    pd.set_option("display.width", 200)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    if have_pmm:
        print_speedups(table, "task", "PyMC-Marketing 1.3", "clvmodels (nutpie)", ("seconds",))
    else:
        print(f"(PyMC-Marketing rows skipped: no interpreter at {args.pmm_python}; see the module docstring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
