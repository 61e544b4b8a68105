"""Cross-check and benchmark of fits with covariates against PyMC-Marketing, in one run (issue 14).

On customers simulated with two covariates on each process (``channel`` 0/1 and ``region`` 0..3,
``bench_covariates.simulate``), each fit in a fresh process:

* **MAP with flat priors** in PyMC-Marketing 1.3 (``HalfFlat`` on the population parameters, ``Flat``
  on the coefficients: its MAP is then the maximum-likelihood estimate) against clvmodels' MLE, for
  BG/NBD and Pareto/NBD. Both parametrise the covariates alike (``α_i = α e^{−γ·z}``; BG/NBD
  ``a_i = a e^{γ_a·z}``, ``b_i = b e^{γ_b·z}``; Pareto/NBD ``β_i = β e^{−γ_β·z}``), on the user's
  columns, so every parameter and coefficient is compared: the largest relative difference of the
  parameters and the largest absolute difference of the coefficients (goal: agreement to 1%).
* **NUTS, 4 chains x 1,000 draws** (1,000 tuning steps), BG/NBD with the two covariates on both
  processes: clvmodels (its default priors: Normal(0, 1) on the standardised coefficients) and
  PyMC-Marketing's ``BetaGeoModel`` (its defaults), wall time including compilation, and each
  posterior mean's distance from clvmodels' MLE (goal: clvmodels at least 3x faster, its posterior
  means within 5% of the MLE).

PyMC-Marketing runs from the environment of ``--pmm-python`` (default ``.venv-pmm``; see
``bench_bayes.py``), clvmodels from this checkout.

Usage::

    python benchmarks/bench_covariates_pmm.py                   # 10k customers
    python benchmarks/bench_covariates_pmm.py --parts map --customers 5000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import _common  # benchmarks/_common.py
from bench_covariates import TRUTH, simulate

ROOT = Path(__file__).resolve().parent.parent
COVARIATES = ["channel", "region"]
#: clvmodels' coefficient name -> PyMC-Marketing's variable (and index in it)
PMM_NAMES = {
    "bgnbd": {"r": ("r", None), "alpha": ("alpha_scale", None), "a": ("a_scale", None), "b": ("b_scale", None),
              "alpha:channel": ("purchase_coefficient_alpha", 0), "alpha:region": ("purchase_coefficient_alpha", 1),
              "a:channel": ("dropout_coefficient_a", 0), "a:region": ("dropout_coefficient_a", 1),
              "b:channel": ("dropout_coefficient_b", 0), "b:region": ("dropout_coefficient_b", 1)},
    "pnbd": {"r": ("r", None), "alpha": ("alpha_scale", None), "s": ("s", None), "beta": ("beta_scale", None),
             "alpha:channel": ("purchase_coefficient", 0), "alpha:region": ("purchase_coefficient", 1),
             "beta:channel": ("dropout_coefficient", 0), "beta:region": ("dropout_coefficient", 1)},
}


def child_clvmodels(model: str, path: str, method: str) -> dict:
    import time
    import warnings

    import pandas as pd

    import clvmodels as clv

    warnings.simplefilter("ignore")
    rfm = pd.read_csv(path, index_col=0)
    cls = {"bgnbd": clv.BetaGeoModel, "pnbd": clv.ParetoNBDModel}[model]
    start = time.perf_counter()
    m = cls(purchase_covariates=COVARIATES, dropout_covariates=COVARIATES, progressbar=False)
    m.fit(rfm, **({} if method == "mle" else dict(method="nuts", draws=1000, tune=1000, chains=4)))
    seconds = time.perf_counter() - start
    table = m.summary()
    base = table.columns[0]                       # the estimate (MLE) or posterior mean
    user = f"user_{base}" if f"user_{base}" in table else base
    est = {k: float(table.loc[k, user if ":" in k else base]) for k in table.index}
    # clvmodels' parameters are at the covariates' means (standardised z = 0); PyMC-Marketing's scales
    # at raw covariates 0: θ_raw = θ exp(−sign Σ_c γ_c mean_c), with the coefficients on the user's scale
    from clvmodels.models.covariates import CovariateDesign

    means = {c.name: c.mean for c in CovariateDesign.from_dict(m.covariates_).columns}
    for param, sign, names in m._covariate_link().terms:
        est[param] *= float(np.exp(-sign * sum(est[f"{param}:{n}"] * means[n] for n in names)))
    return {"seconds": seconds, "estimates": est}


def child_pmm(model: str, path: str, method: str) -> dict:
    import time
    import warnings

    import pandas as pd
    from pymc_extras.prior import Prior
    from pymc_marketing.clv import BetaGeoModel, ParetoNBDModel

    warnings.simplefilter("ignore")
    rfm = pd.read_csv(path, index_col=0)
    data = rfm.reset_index(drop=True).assign(customer_id=np.arange(len(rfm)))
    config = {"purchase_covariate_cols": COVARIATES, "dropout_covariate_cols": COVARIATES}
    if method == "map":   # flat priors: the MAP is the maximum-likelihood estimate
        flat = {k: Prior("HalfFlat") for k in (("r", "alpha", "a", "b") if model == "bgnbd" else ("r", "alpha", "s", "beta"))}
        config.update(flat, purchase_coefficient=Prior("Flat"), dropout_coefficient=Prior("Flat"))
    cls = {"bgnbd": BetaGeoModel, "pnbd": ParetoNBDModel}[model]
    start = time.perf_counter()
    m = cls(data=data, model_config=config) if "data" in cls.__init__.__code__.co_varnames else cls(model_config=config)
    kwargs = dict(method="map") if method == "map" else dict(method="mcmc", draws=1000, tune=1000, chains=4,
                                                             random_seed=1, progressbar=False)
    idata = m.fit(**kwargs) if "data" in cls.__init__.__code__.co_varnames else m.fit(data, **kwargs)
    seconds = time.perf_counter() - start
    post = idata.posterior
    out = {}
    for ours, (var, i) in PMM_NAMES[model].items():
        if var not in post:
            continue
        v = post[var].mean(("chain", "draw")).values
        out[ours] = float(v if i is None else np.ravel(v)[i])
    return {"seconds": seconds, "estimates": out}


def compare(ours: dict, theirs: dict) -> tuple[float, float]:
    """Largest relative difference of the parameters, largest absolute difference of the coefficients."""
    rel = max(abs(theirs[k] / ours[k] - 1.0) for k in theirs if ":" not in k)
    coef = max((abs(theirs[k] - ours[k]) for k in theirs if ":" in k), default=float("nan"))
    return rel, coef


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--parts", default="map,nuts", help="map (MAP vs MLE), nuts (NUTS timing)")
    parser.add_argument("--pmm-python", default=str(ROOT / ".venv-pmm" / "bin" / "python"))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        lib, model, path, method = args.child
        print(json.dumps((child_clvmodels if lib == "clvmodels" else child_pmm)(model, path, method)))
        return
    parts = args.parts.split(",")
    have_pmm = Path(args.pmm_python).exists()
    print(f"{args.customers:,} simulated customers, covariates {COVARIATES} on both processes")

    def run(lib, model, path, method):
        python = sys.executable if lib == "clvmodels" else args.pmm_python
        src = ROOT / "src" if lib == "clvmodels" else ROOT / "benchmarks"
        return _common.run_child(__file__, python, [lib, model, str(path), method], src, args.timeout)

    with tempfile.TemporaryDirectory() as tmp:
        for model in ("bgnbd", "pnbd"):
            path = Path(tmp) / f"{model}.csv"
            simulate(model, args.customers).to_csv(path)
            if "map" not in parts:
                continue
            mle = run("clvmodels", model, path, "mle")
            print(f"{model}: clvmodels MLE {mle.get('seconds', float('nan')):.1f} s "
                  f"{ {k: round(v, 4) for k, v in mle.get('estimates', {}).items()} }  (truth {TRUTH[model]})")
            if have_pmm:
                pmm = run("pmm", model, path, "map")
                if "estimates" in pmm and "estimates" in mle:
                    rel, coef = compare(mle["estimates"], pmm["estimates"])
                    print(f"{model}: PyMC-Marketing MAP (flat priors) {pmm['seconds']:.1f} s: largest relative difference of "
                          f"the parameters {rel:.2%}, of the coefficients {coef:.4f} (absolute)")
                else:
                    print(f"{model}: PyMC-Marketing MAP failed: {pmm.get('error', pmm)}")
        if "nuts" in parts:
            path = Path(tmp) / "bgnbd.csv"
            if not path.exists():
                simulate("bgnbd", args.customers).to_csv(path)
            mle = run("clvmodels", "bgnbd", path, "mle")
            for lib in ("clvmodels",) + (("pmm",) if have_pmm else ()):
                res = run(lib, "bgnbd", path, "nuts" if lib == "clvmodels" else "mcmc")
                if "estimates" not in res:
                    print(f"NUTS BG/NBD, {lib}: failed: {res.get('error', res)}")
                    continue
                rel, coef = compare(mle["estimates"], res["estimates"])
                print(f"NUTS BG/NBD 4 x 1,000, {lib}: {res['seconds']:.1f} s; posterior means vs clvmodels' MLE: "
                      f"parameters within {rel:.1%}, coefficients within {coef:.3f}")


if __name__ == "__main__":
    main()
