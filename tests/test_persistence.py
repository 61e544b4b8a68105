"""Saved models: identical predictions after loading, no pickle, clear errors for bad files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import cdnow_summary
from clvmodels.errors import ClvDataError, ModelFileError
from clvmodels.models import persistence
from clvmodels.models.persistence import load_model, load_models, model_classes, save_models


@pytest.fixture(scope="module")
def rfm():
    frame = cdnow_summary(with_spend=True)
    frame.attrs["time_unit"] = "W"
    return frame


@pytest.fixture(scope="module")
def fitted(rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clv.BetaGeoModel().fit(rfm), clv.GammaGammaModel(exclude_invalid=True).fit(rfm)


def test_mle_roundtrip_gives_identical_predictions(fitted, rfm, tmp_path):
    bgnbd, gg = fitted
    bgnbd.save(tmp_path / "bgnbd")
    gg.save(tmp_path / "gg")
    b2, g2 = load_model(tmp_path / "bgnbd"), load_model(tmp_path / "gg")
    assert type(b2) is clv.BetaGeoModel and type(g2) is clv.GammaGammaModel
    # the published CDNOW estimates survive, bit for bit
    assert b2.params_.equals(bgnbd.params_)
    assert b2.params_["r"] == pytest.approx(0.2426, abs=1e-4) and b2.params_["b"] == pytest.approx(2.426, abs=1e-3)
    assert np.array_equal(b2.covariance_, bgnbd.covariance_)
    for attr in ("log_likelihood_", "aic_", "bic_", "converged_", "n_customers_", "n_unique_", "time_unit_",
                 "method_", "fingerprint_"):
        assert getattr(b2, attr) == getattr(bgnbd, attr), attr
    assert g2.n_excluded_ == gg.n_excluded_ and g2.correlation_ == gg.correlation_
    assert b2.get_params() == bgnbd.get_params() and g2.get_params() == gg.get_params()
    assert not hasattr(b2, "rfm_")
    pd.testing.assert_series_equal(b2.expected_purchases(39, rfm), bgnbd.expected_purchases(39), check_exact=True)
    pd.testing.assert_series_equal(b2.probability_alive(rfm), bgnbd.probability_alive(), check_exact=True)
    pd.testing.assert_frame_equal(b2.expected_purchases(39, rfm, interval=0.9, n_draws=200, seed=3),
                                  bgnbd.expected_purchases(39, interval=0.9, n_draws=200, seed=3), check_exact=True)
    pd.testing.assert_series_equal(g2.expected_spend(rfm), gg.expected_spend(), check_exact=True)
    kw = dict(horizon=12, time_unit="M", discount_rate=0.01, interval=0.9, n_draws=100, seed=1)
    pd.testing.assert_frame_equal(clv.clv(b2, g2, rfm, **kw), clv.clv(bgnbd, gg, rfm, **kw), check_exact=True)


def test_files_are_json_and_netcdf_only(fitted, tmp_path):
    fitted[0].save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["model.json"]
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["format"] == "clvmodels-model" and doc["format_version"] == persistence.FORMAT_VERSION
    assert doc["class"] == "BetaGeoModel" and doc["package_version"] == clv.__version__
    assert doc["fitted"]["time_unit_"] == "W" and doc["fitted"]["fingerprint_"].startswith("sha256:")


def test_loaded_model_without_training_frame_says_to_pass_rfm(fitted, tmp_path):
    fitted[0].save(tmp_path / "m")
    with pytest.raises(ClvDataError, match="loaded from a file.*rfm="):
        load_model(tmp_path / "m").expected_purchases(10)


def test_fingerprint_ignores_row_order_and_tracks_data(rfm):
    a = clv.BetaGeoModel().fit(rfm)
    b = clv.BetaGeoModel().fit(rfm.sample(frac=1.0, random_state=1))
    c = clv.BetaGeoModel().fit(rfm.iloc[1:])
    assert a.fingerprint_ == b.fingerprint_ != c.fingerprint_


def _with_posterior(model, n_draws=400, chains=2):
    """Attach a posterior (draws and an ArviZ DataTree) as a Bayesian fit would."""
    from arviz_base import from_dict

    draws = model.parameter_draws(n_draws * chains, seed=0)
    model.posterior_draws_ = draws
    model.idata_ = from_dict({
        "posterior": {k: v.reshape(chains, n_draws) for k, v in draws.items()},
        "sample_stats": {"diverging": np.zeros((chains, n_draws), dtype=bool),
                         "tree_depth": np.full((chains, n_draws), 3, dtype=np.int64)},
    })
    return model


def test_posterior_and_idata_roundtrip(rfm, tmp_path):
    model = _with_posterior(clv.BetaGeoModel().fit(rfm))
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["idata.nc", "model.json", "posterior.nc"]
    loaded = load_model(tmp_path / "m")
    assert list(loaded.posterior_draws_) == list(model.posterior_draws_)
    for k, v in model.posterior_draws_.items():
        assert np.array_equal(loaded.posterior_draws_[k], v)
    assert loaded.idata_.identical(model.idata_)
    pd.testing.assert_frame_equal(loaded.expected_purchases(39, rfm, interval=0.9, n_draws=100, seed=2),
                                  model.expected_purchases(39, interval=0.9, n_draws=100, seed=2), check_exact=True)


@pytest.mark.slow
def test_bayesian_fit_roundtrip(rfm, tmp_path):
    """A real ADVI fit (posterior draws and DataTree from PyMC) and a MAP fit (no draws)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        advi = clv.BetaGeoModel(draws=100, chains=2, seed=1, progressbar=False).fit(rfm, method="advi")
        map_ = clv.BetaGeoModel(seed=1, progressbar=False).fit(rfm, method="map")
    for name, model in (("advi", advi), ("map", map_)):
        model.save(tmp_path / name)
        loaded = load_model(tmp_path / name)
        assert loaded.method_ == name and loaded.params_.equals(model.params_)
        pd.testing.assert_frame_equal(loaded.probability_alive(rfm, interval=0.8, n_draws=50, seed=1),
                                      model.probability_alive(interval=0.8, n_draws=50, seed=1), check_exact=True)
    assert load_model(tmp_path / "map").posterior_draws_ is None
    assert load_model(tmp_path / "advi").idata_.identical(advi.idata_)


def test_every_model_class_roundtrips_its_parameters(tmp_path):
    classes = model_classes()
    assert {"BetaGeoModel", "GammaGammaModel"} <= set(classes)
    for name, cls in classes.items():
        model = cls(penalizer=0.5, draws=123, priors={k: ("HalfNormal", {"sigma": 2.0}) for k in cls.param_names})
        model.save(tmp_path / name)
        loaded = load_model(tmp_path / name)
        assert type(loaded) is cls and loaded.get_params() == model.get_params(), name
        assert not loaded.is_fitted


def test_pymc_priors_are_kept_as_text_only(tmp_path):
    pm = pytest.importorskip("pymc")
    model = clv.BetaGeoModel(priors={"r": pm.Gamma.dist(2.0, 1.0)})
    model.save(tmp_path / "m")
    with pytest.warns(UserWarning, match="priors"):
        loaded = load_model(tmp_path / "m")
    assert loaded.priors is None


def test_bundle_roundtrip(fitted, tmp_path):
    bgnbd, gg = fitted
    save_models({"purchase": bgnbd, "spend": gg}, tmp_path / "b", metadata={"horizon": 12, "model": "bgnbd+gg"})
    models, meta = load_models(tmp_path / "b")
    assert list(models) == ["purchase", "spend"] and meta == {"horizon": 12, "model": "bgnbd+gg"}
    assert models["spend"].params_.equals(gg.params_)
    with pytest.raises(ModelFileError, match="load_models"):
        load_model(tmp_path / "b")
    bgnbd.save(tmp_path / "single")
    with pytest.raises(ModelFileError, match="load_model"):
        load_models(tmp_path / "single")


# ---------------------------------------------------------------------------- damaged files
@pytest.fixture
def saved(rfm, tmp_path):
    path = tmp_path / "m"
    _with_posterior(clv.BetaGeoModel().fit(rfm), n_draws=50).save(path)
    return path


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="No saved model"):
        load_model(tmp_path / "nothing")


def test_edited_model_json_fails_checksum(saved):
    f = saved / "model.json"
    f.write_text(f.read_text().replace('"method_": "mle"', '"method_": "nuts"'))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(saved)


def test_truncated_model_json(saved):
    f = saved / "model.json"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(saved)


@pytest.mark.parametrize("name", ["posterior.nc", "idata.nc"])
def test_truncated_or_missing_netcdf(saved, name):
    f = saved / name
    data = f.read_bytes()
    f.write_bytes(data[:-100])
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(saved)
    f.unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_model(saved)


def _rewrite(path: Path, change) -> None:
    """Change model.json and give it a valid checksum (a file written by another version)."""
    doc = json.loads((path / "model.json").read_text())
    doc.pop("checksum")
    change(doc)
    persistence._write_json(doc, path / "model.json")


def test_newer_format_version_is_refused(saved):
    _rewrite(saved, lambda d: d.update(format_version=persistence.FORMAT_VERSION + 1, package_version="9.0"))
    with pytest.raises(ModelFileError, match=r"clvmodels 9\.0 .*newer.*Upgrade"):
        load_model(saved)


def test_unknown_class_is_refused_without_importing_anything(saved):
    _rewrite(saved, lambda d: d.update({"class": "os.system"}))
    with pytest.raises(ModelFileError, match="does not know"):
        load_model(saved)


def test_not_a_model_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text('{"hello": 1}')
    with pytest.raises(ModelFileError, match="not a clvmodels-model file"):
        load_model(tmp_path / "m")


# ---------------------------------------------------------------------------- atomic writes
def test_save_replaces_a_model_and_refuses_other_directories(fitted, rfm, tmp_path):
    bgnbd, gg = fitted
    path = tmp_path / "m"
    bgnbd.save(path)
    clv.BetaGeoModel().fit(rfm.iloc[:1000]).save(path)
    assert load_model(path).n_customers_ == 1000
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ClvDataError, match="Refusing to overwrite"):
        bgnbd.save(other)
    assert (other / "cat.jpg").read_bytes() == b"meow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "photos"]  # no temporary leftovers


def test_failed_save_leaves_the_previous_model(fitted, tmp_path, monkeypatch):
    bgnbd, _ = fitted
    path = tmp_path / "m"
    bgnbd.save(path)
    before = (path / "model.json").read_bytes()

    def crash(doc, target):
        target.write_text("{partial")
        raise OSError("disk full")

    monkeypatch.setattr(persistence, "_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        bgnbd.save(path)
    assert (path / "model.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_interrupted_replace_is_reported(fitted, tmp_path):
    """A crash between moving the old version aside and renaming the new one: the error says where."""
    path = tmp_path / "m"
    fitted[0].save(path)
    path.rename(tmp_path / ".m.old-1234abcd")
    with pytest.raises(ModelFileError, match=r"previous version at .*\.m\.old-1234abcd"):
        load_model(path)
