"""Benchmark: Bayesian fits with PyTensor's ``blas__ldflags`` set empty by clvmodels (no BLAS search,
no warning; :mod:`clvmodels.models.environment`) against PyTensor's own search, as before.

With pip's numpy and scipy the search finds nothing PyTensor can link (their OpenBLAS exports renamed
symbols), warns, and settles on the empty flags: the compiled code is the same, so the fits must take
the same time, minus the search. Each case runs in a fresh process (``--child``) and times, on the
CDNOW sample's 39-week calibration summary: the first and a second MAP of Pareto/NBD (its graph
optimises a matrix product, which is what triggers the search) and of BG/NBD, and a short NUTS fit
of BG/NBD (nutpie; 2 chains x 200 draws after 200 tuning steps), first and second. "search" first
reads ``pytensor.config.blas__ldflags``, which runs PyTensor's search as any PyTensor use did before.
Compiled modules are cached on disk, so run it twice and read the second table when comparing.

Usage::

    python benchmarks/bench_blas.py              # 2 runs of each setting, interleaved (a few minutes)
    python benchmarks/bench_blas.py --repeat 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child  # noqa: E402

SRC = Path(__file__).resolve().parent.parent / "src"


def child(setting: str) -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        import pytensor

        if setting == "search":
            pytensor.config.blas__ldflags  # noqa: B018  (PyTensor's own search, as before)
        out = {"setting": setting, "import_and_search_s": time.perf_counter() - t0}
        import clvmodels as clv
        from clvmodels.datasets import cdnow_summary

        rfm = cdnow_summary(with_spend=True)
        rfm.attrs["time_unit"] = "W"
        for name, make, method in [("pnbd_map", clv.ParetoNBDModel, "map"), ("bgnbd_map", clv.BetaGeoModel, "map"),
                                   ("bgnbd_nuts", lambda: clv.BetaGeoModel(draws=200, tune=200, chains=2,
                                                                            progressbar=False), "nuts")]:
            for run in ("first", "second"):
                start = time.perf_counter()
                make().fit(rfm, method=method)
                out[f"{name}_{run}_s"] = time.perf_counter() - start
    out["blas_warning"] = any("BLAS" in str(w.message) for w in caught)
    out["ldflags"] = pytensor.config.blas__ldflags
    print(json.dumps(out))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    rows = []
    for _ in range(args.repeat):
        for setting in ("search", "clvmodels"):
            rows.append(run_child(__file__, sys.executable, [setting], SRC, timeout=1800))
    table = pd.DataFrame(rows)
    times = [c for c in table.columns if c.endswith("_s")]
    print(table.groupby("setting")[times].min().T.round(3).to_string())
    print(table.groupby("setting")[["blas_warning", "ldflags"]].first().to_string())


if __name__ == "__main__":
    main()
