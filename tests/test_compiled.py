"""The compile cache of the Bayesian fits (models/compiled.py) is never stale.

A fit reusing a compiled model (other data, another cutoff, other prior values) must give exactly what
a fit with a fresh compile gives: with the same seed, the same draws (NUTS) or the same mode (MAP).
A change of structure (a prior's distribution, the model class) must compile anew. Sampling is tiny
(2 chains x 100 draws): these tests check identity, not convergence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import clvmodels as clv
from clvmodels.datasets import cdnow_summary, load_cdnow
from clvmodels.models import bayes, compiled

SHORT = dict(draws=100, tune=100, chains=2)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rfm():
    return cdnow_summary(with_spend=True)


@pytest.fixture(scope="module")
def cutoff():
    """Another cutoff of CDNOW: the log to 1997-06-30 (other rows, other lengths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the log's 21 duplicate rows
        return clv.rfm_summary(load_cdnow(), observation_end="1997-06-30", truncate=True, timestamp="date")


def nuts(model, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(data, method="nuts", **SHORT, **kwargs)


def draws(model):
    return np.column_stack([model.posterior_draws_[k] for k in model.param_names])


def fresh(make, data, **kwargs):
    """The fit of ``make()`` on ``data`` with an empty cache (so compiled for it alone)."""
    compiled.clear_cache()
    return nuts(make(), data, **kwargs)


@pytest.mark.slow
def test_refit_on_another_cutoff_reuses_the_compile_and_matches_a_fresh_one(rfm, cutoff):
    compiled.clear_cache()
    nuts(clv.BetaGeoModel(seed=3, progressbar=False), rfm)
    (entry,) = compiled._CACHE.values()
    sampler = entry.functions["nutpie"]
    reused = nuts(clv.BetaGeoModel(seed=3, progressbar=False), cutoff)
    assert compiled.cache_size() == 1 and entry.functions["nutpie"] is sampler  # nothing compiled again
    again = fresh(lambda: clv.BetaGeoModel(seed=3, progressbar=False), cutoff)
    np.testing.assert_array_equal(draws(reused), draws(again))
    # and the first data set after the second: the inputs really are replaced, not appended
    back = nuts(clv.BetaGeoModel(seed=3, progressbar=False), rfm)
    np.testing.assert_array_equal(draws(back), draws(fresh(lambda: clv.BetaGeoModel(seed=3, progressbar=False), rfm)))
    # a sanity check that the test can fail: another seed gives other draws
    assert not np.array_equal(draws(back), draws(nuts(clv.BetaGeoModel(seed=4, progressbar=False), rfm)))


@pytest.mark.slow
def test_other_prior_values_reuse_the_compile_other_distributions_do_not(rfm):
    compiled.clear_cache()
    nuts(clv.BetaGeoModel(seed=5, progressbar=False), rfm)
    tight = {"r": ("HalfNormal", {"sigma": 0.01})}  # a value only: same structure as the default prior of r
    reused = nuts(clv.BetaGeoModel(seed=5, progressbar=False, priors=tight), rfm)
    assert compiled.cache_size() == 1
    assert reused.params_["r"] < 0.15  # the new value is what the sampler used (the MLE is 0.243)
    again = fresh(lambda: clv.BetaGeoModel(seed=5, progressbar=False, priors=tight), rfm)
    np.testing.assert_array_equal(draws(reused), draws(again))

    gamma = {"r": ("Gamma", {"alpha": 2.0, "beta": 8.0})}  # another distribution: another structure
    nuts(clv.BetaGeoModel(seed=5, progressbar=False), rfm)
    other = nuts(clv.BetaGeoModel(seed=5, progressbar=False, priors=gamma), rfm)
    assert compiled.cache_size() == 2
    np.testing.assert_array_equal(draws(other), draws(fresh(lambda: clv.BetaGeoModel(seed=5, progressbar=False,
                                                                                        priors=gamma), rfm)))


@pytest.mark.slow
def test_another_model_class_on_the_same_columns_compiles_its_own(rfm):
    compiled.clear_cache()
    nuts(clv.BetaGeoModel(seed=6, progressbar=False), rfm)
    mbg = nuts(clv.ModifiedBetaGeoModel(seed=6, progressbar=False), rfm)
    assert compiled.cache_size() == 2
    np.testing.assert_array_equal(draws(mbg), draws(fresh(lambda: clv.ModifiedBetaGeoModel(seed=6, progressbar=False),
                                                          rfm)))


@pytest.mark.slow
def test_map_reuses_its_compiled_log_posterior(rfm, cutoff):
    compiled.clear_cache()
    clv.BetaGeoModel().fit(rfm, method="map")
    (entry,) = compiled._CACHE.values()
    log_post = entry.functions["map"]
    reused = clv.BetaGeoModel().fit(cutoff, method="map")
    assert entry.functions["map"] is log_post
    compiled.clear_cache()
    again = clv.BetaGeoModel().fit(cutoff, method="map")
    np.testing.assert_allclose(reused.params_, again.params_, rtol=1e-12)
    assert reused.log_posterior_ == pytest.approx(again.log_posterior_, rel=1e-12)
    assert not np.allclose(reused.params_, clv.BetaGeoModel().fit(rfm, method="map").params_, rtol=1e-3)


def test_dist_and_function_priors_are_not_cached(rfm):
    import pymc as pm

    compiled.clear_cache()
    for prior in (pm.HalfNormal.dist(sigma=2.0), lambda name: pm.HalfNormal(name, sigma=2.0)):
        model = clv.BetaGeoModel(priors={"r": prior}).fit(rfm, method="map")
        assert compiled.cache_size() == 0
        assert model.params_["r"] == pytest.approx(0.243, rel=0.05)


@pytest.mark.parametrize("cls", [clv.GammaGammaModel, clv.BetaGeoModel, clv.ModifiedBetaGeoModel])
@pytest.mark.slow
def test_cached_wrappers_give_nutpies_own_draws(rfm, cls):
    """compile_nutpie's own (disk-cached) C-callable wrappers sample exactly as nutpie's, model after
    model: BG/NBD and MBG/NBD read the same columns, and neither may load the other's wrapper."""
    import nutpie

    from clvmodels.models.rows import compress

    u, w = compress(cls()._data_arrays(rfm[rfm["frequency"] > 0]))
    pymc_model = bayes.build_pymc_model(cls, u, w, bayes.resolve_priors(cls, None, u, w))
    ours, theirs = compiled.compile_nutpie(pymc_model), nutpie.compile_pymc_model(pymc_model, backend="numba")
    assert ours.compiled_logp_func._cache.__class__.__name__ == "FunctionCache"  # ours, cached on disk
    a, b = (nutpie.sample(m, draws=50, tune=50, chains=2, seed=7, progress_bar=False) for m in (ours, theirs))
    for k in cls.param_names:
        np.testing.assert_array_equal(a.posterior[k].values, b.posterior[k].values)


CHILD = """
import json, sys, warnings
import clvmodels as clv
from clvmodels.datasets import load_cdnow
warnings.simplefilter("ignore")
rfm = clv.rfm_summary(load_cdnow(), observation_end="1997-06-30", truncate=True, timestamp="date")
m = clv.BetaGeoModel(seed=8, progressbar=False).fit(rfm, method="nuts", draws=100, tune=100, chains=2)
print(json.dumps({k: m.posterior_draws_[k].tolist() for k in m.param_names}))
"""


@pytest.mark.slow
def test_a_reused_compile_matches_a_fresh_process(rfm, cutoff):
    compiled.clear_cache()
    nuts(clv.BetaGeoModel(seed=8, progressbar=False), rfm)
    reused = nuts(clv.BetaGeoModel(seed=8, progressbar=False), cutoff)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600,
                         check=True)
    child = json.loads(out.stdout.strip().splitlines()[-1])
    for k in reused.param_names:
        np.testing.assert_array_equal(reused.posterior_draws_[k], np.asarray(child[k]))
