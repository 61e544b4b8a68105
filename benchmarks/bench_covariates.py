"""Benchmark: maximum-likelihood fits with customer covariates on large simulated bases (issue 14).

BG/NBD and Pareto/NBD with two covariates on the purchase process and the same two on the drop-out
process, on ``--customers`` customers (default 1M) simulated exactly from each model with known
coefficients: ``channel`` (0/1, 40% ones) and ``region`` (0..3), the histories to the day (a 12-week
acquisition cohort observed for 52 weeks, in weeks). Each fit runs in a fresh process and reports its
wall time, peak memory (max RSS) and the number of distinct rows the likelihood is evaluated on
(``(frequency, recency, T)`` plus the covariates: customers of one history and one covariate profile
are one weighted term). The same fit without covariates runs beside it, and the recovered
coefficients are printed against the true ones.

Goal (issue 14): each fit with covariates under 30 s and 3 GiB on 2 cores, for 1M customers.

Usage::

    python benchmarks/bench_covariates.py                     # 1M customers
    python benchmarks/bench_covariates.py --customers 100000  # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: True parameters and coefficients (on the covariates' own scale).
TRUTH = {
    "bgnbd": ({"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5},
              {"alpha:channel": 0.4, "alpha:region": -0.1, "a:channel": -0.3, "a:region": 0.1,
               "b:channel": 0.2, "b:region": 0.0}),
    "pnbd": ({"r": 0.55, "alpha": 10.0, "s": 0.6, "beta": 12.0},
             {"alpha:channel": 0.4, "alpha:region": -0.1, "beta:channel": -0.3, "beta:region": 0.1}),
}

CHILD = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
import clvmodels as clv
path, model, with_cov = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rfm = pd.read_parquet(path)
cls = {"bgnbd": clv.BetaGeoModel, "pnbd": clv.ParetoNBDModel}[model]
kw = dict(purchase_covariates=["channel", "region"], dropout_covariates=["channel", "region"]) if with_cov else {}
start = time.perf_counter()
m = cls(**kw).fit(rfm)
seconds = time.perf_counter() - start
coefs = {} if not with_cov else {k: float(v) for k, v in m.summary()["user_estimate"].items() if ":" in k} \
    if "user_estimate" in m.summary() else {k: float(v) for k, v in m.coefficients_.items()}
print(json.dumps({"seconds": seconds, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "n_unique": int(m.n_unique_), "converged": bool(m.converged_),
                  "params": {k: float(v) for k, v in m.params_.items()}, "coefs": coefs}))
"""


def simulate(model: str, n: int, seed: int = 0) -> pd.DataFrame:
    """Exact draws of the calibration histories of ``n`` customers with covariates."""
    rng = np.random.default_rng(seed)
    params, coefs = TRUTH[model]
    cov = pd.DataFrame({"channel": (rng.random(n) < 0.4).astype(float), "region": rng.integers(0, 4, n).astype(float)})

    def scaled(name, sign):
        return params[name] * np.exp(sign * sum(coefs.get(f"{name}:{c}", 0.0) * cov[c].to_numpy() for c in cov))

    T = 52.0 - np.floor(rng.uniform(0, 12 * 7, n)) / 7            # acquired over 12 weeks, to the day
    lam = rng.gamma(params["r"], 1.0 / scaled("alpha", -1.0))
    if model == "bgnbd":
        # arrivals in (0, T]: K ~ Poisson(λT); the lifetime ends at purchase N ~ Geometric(p)
        p = rng.beta(scaled("a", 1.0), scaled("b", 1.0))
        K = rng.poisson(lam * T)
        x = np.minimum(rng.geometric(np.clip(p, 1e-12, 1.0)), K)
    else:
        # alive for min(T, τ), τ ~ Exponential(μ), μ ~ Gamma(s, β_i); K arrivals while alive
        mu = rng.gamma(params["s"], 1.0 / scaled("beta", -1.0))
        T_alive = np.minimum(T, rng.exponential(1.0 / mu))
        K = rng.poisson(lam * T_alive)
        x = K
        T_span = T_alive
    # the x-th of K uniform arrival times over the span: Beta(x, K − x + 1), to the day
    span = T if model == "bgnbd" else T_span
    tx = np.where(x > 0, span * rng.beta(np.maximum(x, 1), np.maximum(K - x, 0) + 1), 0.0)
    tx = np.minimum(np.floor(tx * 7) / 7, T)
    rfm = pd.DataFrame({"frequency": x.astype(float), "recency": tx, "T": T}).join(cov)
    rfm.index = pd.Index([f"c{i}" for i in range(n)], name="customer_id").astype(str)
    return rfm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--models", nargs="+", default=["bgnbd", "pnbd"], choices=list(TRUTH))
    args = parser.parse_args()
    src = Path(__file__).resolve().parents[1] / "src"
    print(f"MLE with 2 purchase + 2 drop-out covariates, {args.customers:,} simulated customers "
          "(goal: < 30 s, < 3 GiB with covariates)")
    print(f"{'model':<8} {'covariates':<11} {'seconds':>8} {'peak GiB':>9} {'distinct rows':>14} {'converged':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            path = Path(tmp) / f"{model}.parquet"
            simulate(model, args.customers).to_parquet(path)
            fitted = {}
            for with_cov in (False, True):
                proc = subprocess.run([sys.executable, "-c", CHILD, str(path), model, str(int(with_cov))],
                                      capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)},
                                      timeout=3600)
                if proc.returncode:
                    print(f"{model}: failed\n{proc.stderr[-2000:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                fitted[with_cov] = r
                print(f"{model:<8} {'yes' if with_cov else 'no':<11} {r['seconds']:>8.1f} {r['peak_gib']:>9.2f} "
                      f"{r['n_unique']:>14,} {str(r['converged']):>10}")
            if True in fitted:
                params, coefs = TRUTH[model]
                print(f"  {model} parameters: " + ", ".join(f"{k} {v:.3f} (true {params[k]})"
                                                           for k, v in fitted[True]["params"].items()))
                print(f"  {model} coefficients: " + ", ".join(
                    f"{k} {v:.3f} (true {coefs.get(k, 0.0)})" for k, v in fitted[True]["coefs"].items()))


if __name__ == "__main__":
    main()
