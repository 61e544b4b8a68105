"""Saved models: identical predictions after loading, no pickle, clear errors for bad files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------- untrusted directories
def _forge(path: Path, change, name: str = "model.json") -> None:
    """Change a model.json / bundle.json as someone without the signing key could: the checksum
    recomputed, the signature (if any) kept."""
    doc = json.loads((path / name).read_text())
    doc.pop("checksum")
    change(doc)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    doc["checksum"] = "sha256:" + hashlib.sha256(text).hexdigest()
    (path / name).write_text(json.dumps(doc))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["../secret.nc", "/ABS", "sub/posterior.nc", "..", ".", "", "a\\b", "posterior.nc\x00"])
def test_file_names_outside_the_directory_are_refused(saved, name, monkeypatch):
    """Issue #12 item 7: paths in the file list were joined unchecked (``../../etc/passwd`` was opened
    and hashed). A file outside the directory with the right SHA-256 is still refused, unopened."""
    outside = saved.parent / "secret.nc"
    outside.write_bytes((saved / "posterior.nc").read_bytes())
    target = name.replace("/ABS", str(outside))
    _forge(saved, lambda d: d["files"].update({target: _sha(outside)}))
    opened, real_open = [], os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(Path(path)) or real_open(path, *a, **k))
    with pytest.raises(ModelFileError, match=r"not a plain file name inside the model directory.*tampered with"):
        load_model(saved)
    assert opened == [saved / "model.json"]  # nothing else opened, let alone hashed


def test_symlinked_files_are_refused(saved):
    outside = saved.parent / "elsewhere.nc"
    (saved / "posterior.nc").rename(outside)
    (saved / "posterior.nc").symlink_to(outside)  # same bytes, same checksum: still refused
    with pytest.raises(ModelFileError, match=r"posterior\.nc' is a symbolic link.*tampered with"):
        load_model(saved)
    (saved / "posterior.nc").unlink()
    outside.rename(saved / "posterior.nc")
    load_model(saved)
    (saved / "model.json").rename(saved.parent / "model.json")
    (saved / "model.json").symlink_to(saved.parent / "model.json")
    with pytest.raises(ModelFileError, match=r"model\.json' is a symbolic link"):
        load_model(saved)


def test_a_fifo_or_directory_in_place_of_a_file_is_refused_without_blocking(saved):
    (saved / "posterior.nc").unlink()
    os.mkfifo(saved / "posterior.nc")
    with pytest.raises(ModelFileError, match="not a regular file"):
        load_model(saved)
    (saved / "posterior.nc").unlink()
    (saved / "posterior.nc").mkdir()
    with pytest.raises(ModelFileError, match="posterior.nc"):
        load_model(saved)


@pytest.mark.parametrize("role", ["../spend", "/tmp/x", "Purchase", "a" * 33, "", "p-1", "1st", "spend/"])
def test_bundle_role_names_are_a_fixed_pattern(fitted, tmp_path, role):
    with pytest.raises(ClvDataError, match="role names must be 1 to 32 lower-case letters"):
        save_models({role: fitted[0]}, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    save_models({"purchase": fitted[0]}, tmp_path / "b")
    _forge(tmp_path / "b", lambda d: d.update(models=[role]), "bundle.json")
    with pytest.raises(ModelFileError, match=r"bundle\.json' lists an invalid role.*tampered with"):
        load_models(tmp_path / "b")


def test_symlinked_bundle_member_is_refused(fitted, tmp_path):
    save_models({"purchase": fitted[0], "spend": fitted[1]}, tmp_path / "b")
    (tmp_path / "b" / "spend").rename(tmp_path / "outside")
    (tmp_path / "b" / "spend").symlink_to(tmp_path / "outside")
    with pytest.raises(ModelFileError, match=r"spend' is a symbolic link.*tampered with"):
        load_models(tmp_path / "b")


def test_bundle_member_swapped_for_another_model_is_refused(fitted, rfm, tmp_path):
    """Each member is intact on its own; bundle.json records which model.json belongs to it."""
    save_models({"purchase": fitted[0], "spend": fitted[1]}, tmp_path / "b")
    other = clv.BetaGeoModel().fit(rfm.iloc[:500])
    other.save(tmp_path / "other")
    shutil.rmtree(tmp_path / "b" / "purchase")
    shutil.copytree(tmp_path / "other", tmp_path / "b" / "purchase")
    load_model(tmp_path / "b" / "purchase")  # a valid model by itself
    with pytest.raises(ModelFileError, match=r"differs from the model its bundle recorded"):
        load_models(tmp_path / "b")
    _forge(tmp_path / "b", lambda d: d["model_checksums"].pop("purchase"), "bundle.json")
    with pytest.raises(ModelFileError, match=r"invalid model_checksums"):
        load_models(tmp_path / "b")


def test_bundles_without_member_checksums_still_load(fitted, tmp_path):
    """Bundles written before bundle.json recorded its models' checksums."""
    save_models({"purchase": fitted[0]}, tmp_path / "b", metadata={"horizon": 12})
    _forge(tmp_path / "b", lambda d: d.pop("model_checksums"), "bundle.json")
    models, meta = load_models(tmp_path / "b")
    assert models["purchase"].params_.equals(fitted[0].params_) and meta == {"horizon": 12}


def test_oversized_model_json_is_refused_before_parsing(saved, monkeypatch):
    doc = json.loads((saved / "model.json").read_text())
    (saved / "model.json").write_text(json.dumps(doc) + " " * persistence.MAX_JSON_BYTES)
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed an oversized file"))
    with pytest.raises(ModelFileError, match=r"more than the 16,777,216 clvmodels reads.*tampered with"):
        load_model(saved)


@pytest.mark.parametrize("depth", [persistence.MAX_JSON_DEPTH, 100_000])
def test_deeply_nested_model_json_is_refused(saved, depth):
    """Just over the limit (checksum valid), and far beyond what Python's JSON parser can recurse into."""
    f = saved / "model.json"
    text = f.read_text()
    assert '"fitted": {' in text
    f.write_text(text.replace('"fitted": {', '"fitted": {"deep_": ' + "[" * depth + "]" * depth + ", ", 1))
    if depth < 1000:
        _forge(saved, lambda d: None)
    with pytest.raises(ModelFileError, match=r"nested deeper than the 64 levels.*tampered with"):
        load_model(saved)


def test_save_refuses_what_load_would_refuse(fitted, tmp_path):
    deep = {}
    for _ in range(persistence.MAX_JSON_DEPTH):
        deep = {"x": deep}
    with pytest.raises(ClvDataError, match="nested 6[0-9] deep, more than loading accepts"):
        save_models({"purchase": fitted[0]}, tmp_path / "b", metadata=deep)
    with pytest.raises(ClvDataError, match="penalizer must be a finite number"):
        clv.BetaGeoModel(penalizer=-1).save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- parameters in the file
def _set_param(name, value):
    def change(doc):
        doc["fitted"]["params_"]["__series__"]["values"]["__ndarray__"]["data"][
            doc["fitted"]["params_"]["__series__"]["index"].index(name)] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set_param("r", -1.0), r"invalid value of parameter 'r': -1\.0"),
    (_set_param("alpha", 0.0), r"invalid value of parameter 'alpha': 0\.0"),
    (_set_param("a", {"__float__": "nan"}), r"invalid value of parameter 'a': nan"),
    (_set_param("b", {"__float__": "inf"}), r"invalid value of parameter 'b': inf"),
    (_set_param("r", "abc"), r"params_|malformed"),
    (lambda d: d["fitted"]["params_"]["__series__"].update(index=["r", "alpha", "a", "x"]), r"params_ \['r', 'alpha', 'a', 'x'\]"),
    (lambda d: d["fitted"].update(params_={"r": 1.0}), "params_"),
    (lambda d: d["fitted"].pop("params_"), "no fitted parameters"),
    (lambda d: d["fitted"].update(covariance_=[[1.0]]), "covariance_"),
    (lambda d: d["fitted"]["covariance_"]["__ndarray__"]["data"].__setitem__(1, 5.0), "not a covariance matrix"),
    (lambda d: d["fitted"].update(method_="magic"), "method_ = 'magic'"),
    (lambda d: d["fitted"].update(n_customers_=-3), "negative count n_customers_"),
    (lambda d: d["fitted"].update(time_unit_=7), "time_unit_ = 7"),
    (lambda d: d["fitted"].update(expected_purchases="x"), "sets the attribute 'expected_purchases'"),
    (lambda d: d["fitted"].update(__class__="x"), "sets the attribute '__class__'"),
    (lambda d: d["fitted"].update(posterior_draws_={"r": [1.0]}), "posterior_draws_ in the JSON"),
    (lambda d: d["fitted"].update(covariance_={"__ndarray__": {"dtype": "|O", "shape": [1], "data": [1]}}), "malformed"),
    (lambda d: d["fitted"].update(covariance_={"__ndarray__": {"dtype": "<f8", "shape": [7], "data": [1]}}), "malformed"),
    (lambda d: d["fitted"].update(covariance_={"__ndarray__": []}), "malformed"),
    (lambda d: d["params"].update(penalizer=-1), "invalid setting .*penalizer"),
    (lambda d: d["params"].update(draws=0.5), "invalid setting .*draws"),
    (lambda d: d["params"].update(method="pickle"), "invalid setting .*method"),
    (lambda d: d.update(files={"posterior.nc": "not a digest"}), "invalid SHA-256"),
    (lambda d: d.update(files=[]), "lacks 'files'"),
    (lambda d: d.update(posterior_variables=["r", "r", "a", "b"]), "posterior variables"),
    (lambda d: d.update(format_version="1"), "invalid format_version"),
])
def test_invalid_contents_of_model_json_are_refused_at_load(saved, change, message):
    """Issue #12 item 9: invalid parameters in a model file exited 1 with a traceback (or loaded a
    model that crashed later); now each is a ModelFileError naming what is wrong."""
    _forge(saved, change)
    with pytest.raises(ModelFileError, match=message):
        load_model(saved)


@pytest.mark.parametrize("change", [
    lambda d: d.update({"class": "X" * 1_000_000}),
    lambda d: d.update(format_version=[[0] * 100_000]),
    lambda d: d["params"].update({"y" * 100_000: 1}),
    lambda d: d["params"].update(penalizer=[-1] * 100_000),
    lambda d: d["fitted"].update({"x" * 100_000 + "_": 1}),
])
def test_messages_quote_values_from_the_file_briefly(saved, change):
    _forge(saved, change)
    with pytest.raises(ModelFileError) as info:
        load_model(saved)
    assert len(str(info.value)) < 800


def test_posterior_draws_with_nan_are_refused(saved):
    import xarray as xr

    with xr.open_dataset(saved / "posterior.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    ds["alpha"][3] = np.nan
    (saved / "posterior.nc").unlink()
    ds.to_netcdf(saved / "posterior.nc", engine="h5netcdf")
    _forge(saved, lambda d: d["files"].update({"posterior.nc": _sha(saved / "posterior.nc")}))
    with pytest.raises(ModelFileError, match=r"invalid posterior draw of parameter 'alpha': nan"):
        load_model(saved)


def test_garbage_netcdf_with_a_matching_checksum_is_refused(saved):
    (saved / "idata.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    _forge(saved, lambda d: d["files"].update({"idata.nc": _sha(saved / "idata.nc")}))
    with pytest.raises(ModelFileError, match=r"idata\.nc' cannot be read"):
        load_model(saved)


# ---------------------------------------------------------------------------- signatures
KEY = "correct horse battery staple"


def test_signed_models_load_only_with_the_key(fitted, tmp_path, monkeypatch):
    monkeypatch.setenv(persistence.KEY_ENV, KEY)
    fitted[0].save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["signature"].startswith("hmac-sha256:") and len(doc["signature"]) == 12 + 64
    assert load_model(tmp_path / "m").params_.equals(fitted[0].params_)
    monkeypatch.setenv(persistence.KEY_ENV, KEY + "!")
    with pytest.raises(ModelFileError, match=r"signature that does not match the key in CLVMODELS_MODEL_KEY.*tampered"):
        load_model(tmp_path / "m")
    monkeypatch.delenv(persistence.KEY_ENV)
    assert load_model(tmp_path / "m").params_.equals(fitted[0].params_)  # without the key: checksums only


def test_with_the_key_a_forged_or_unsigned_model_is_refused(fitted, tmp_path, monkeypatch):
    monkeypatch.setenv(persistence.KEY_ENV, KEY)
    fitted[0].save(tmp_path / "m")
    _forge(tmp_path / "m", _set_param("r", 5.0))  # a valid model, its checksum recomputed
    with pytest.raises(ModelFileError, match="signature that does not match"):
        load_model(tmp_path / "m")
    monkeypatch.delenv(persistence.KEY_ENV)
    assert load_model(tmp_path / "m").params_["r"] == 5.0  # checksums alone do not see it
    fitted[0].save(tmp_path / "unsigned")
    monkeypatch.setenv(persistence.KEY_ENV, KEY)
    with pytest.raises(ModelFileError, match=r"is not signed although CLVMODELS_MODEL_KEY is set.*tampered"):
        load_model(tmp_path / "unsigned")
    _forge(tmp_path / "unsigned", lambda d: d.update(signature="hmac-sha256:" + "0" * 64))
    with pytest.raises(ModelFileError, match="signature that does not match"):
        load_model(tmp_path / "unsigned")


def test_signature_covers_the_netcdf_files_and_bundle_members(rfm, fitted, tmp_path, monkeypatch):
    monkeypatch.setenv(persistence.KEY_ENV, KEY)
    _with_posterior(clv.BetaGeoModel().fit(rfm), n_draws=20).save(tmp_path / "m")
    data = bytearray((tmp_path / "m" / "posterior.nc").read_bytes())
    data[-10] ^= 1
    (tmp_path / "m" / "posterior.nc").write_bytes(bytes(data))
    _forge(tmp_path / "m", lambda d: d["files"].update({"posterior.nc": _sha(tmp_path / "m" / "posterior.nc")}))
    with pytest.raises(ModelFileError, match="signature that does not match"):
        load_model(tmp_path / "m")
    save_models({"purchase": fitted[0], "spend": fitted[1]}, tmp_path / "b", metadata={"horizon": 12})
    assert load_models(tmp_path / "b")[1] == {"horizon": 12}
    _forge(tmp_path / "b", lambda d: d["metadata"].update(horizon=120), "bundle.json")
    with pytest.raises(ModelFileError, match=r"bundle\.json' has a signature that does not match"):
        load_models(tmp_path / "b")


@pytest.mark.parametrize("key", ["", "short"])
def test_a_short_key_is_refused(fitted, tmp_path, monkeypatch, key):
    monkeypatch.setenv(persistence.KEY_ENV, key)
    with pytest.raises(ClvDataError, match="CLVMODELS_MODEL_KEY is set but has [05] characters: use a secret of at least 16"):
        fitted[0].save(tmp_path / "m")


@pytest.mark.slow
def test_cli_refuses_a_tampered_or_unsigned_model_with_exit_2(fitted, rfm, tmp_path, monkeypatch):
    """As a user runs it: `clvmodels score` exits 2 with a one-line reason, not 1 with a traceback."""
    import subprocess
    import sys

    save_models({"purchase": fitted[0], "spend": fitted[1]}, tmp_path / "model")
    rfm.head(50).rename_axis("customer_id").reset_index().to_csv(tmp_path / "rfm.csv", index=False)
    exe = Path(sys.executable).parent / "clvmodels"
    command = ([str(exe)] if exe.exists() else [sys.executable, "-m", "clvmodels.cli"]) + [
        "score", str(tmp_path / "model"), str(tmp_path / "rfm.csv"), "--out", str(tmp_path / "scores.csv")]
    _forge(tmp_path / "model" / "purchase", _set_param("r", {"__float__": "nan"}))
    res = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "differs from the model its bundle recorded" in res.stderr, res.stderr
    digest = _sha(tmp_path / "model" / "purchase" / "model.json")
    _forge(tmp_path / "model", lambda d: d["model_checksums"].update(purchase=digest), "bundle.json")
    res = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "invalid value of parameter 'r': nan" in res.stderr and "Traceback" not in res.stderr
    save_models({"purchase": fitted[0], "spend": fitted[1]}, tmp_path / "model")  # intact, unsigned
    res = subprocess.run(command, capture_output=True, text=True, timeout=300,
                         env={**os.environ, persistence.KEY_ENV: KEY})
    assert res.returncode == 2 and "is not signed although CLVMODELS_MODEL_KEY is set" in res.stderr, res.stderr
    assert not (tmp_path / "scores.csv").exists()
    res = subprocess.run(command, capture_output=True, text=True, timeout=300)  # without the key: checksums only
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(tmp_path / "scores.csv")) == 50


@pytest.mark.slow
def test_cli_scores_a_signed_model_with_worker_processes(fitted, rfm, tmp_path, monkeypatch):
    """With the key set, `score --jobs 2` hands the models to its workers as a signed bundle too."""
    import subprocess
    import sys

    monkeypatch.setenv(persistence.KEY_ENV, KEY)
    save_models({"purchase": fitted[0], "spend": fitted[1]}, tmp_path / "model")
    rfm.rename_axis("customer_id").reset_index().to_parquet(tmp_path / "rfm.parquet")
    exe = Path(sys.executable).parent / "clvmodels"
    command = ([str(exe)] if exe.exists() else [sys.executable, "-m", "clvmodels.cli"]) + [
        "score", str(tmp_path / "model"), str(tmp_path / "rfm.parquet"), "--out", str(tmp_path / "scores.parquet"),
        "--jobs", "2", "--chunk-rows", "1000", "--allow-rejects"]
    res = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert len(scores) == len(rfm) and scores["clv"].notna().all()


def test_spark_ships_only_the_bundles_regular_files_after_checking_it(fitted, tmp_path):
    """The Spark path reads the bundle on the driver: it is checked there as load_models checks it,
    and a link in it is neither read nor shipped to the executors."""
    from clvmodels.spark import _model_files

    save_models({"purchase": fitted[0]}, tmp_path / "b")
    (tmp_path / "secret.txt").write_text("password")
    (tmp_path / "b" / "notes.txt").symlink_to(tmp_path / "secret.txt")
    files, loaded = _model_files(tmp_path / "b")
    assert sorted(files) == ["bundle.json", "purchase/model.json"]
    assert list(loaded) == ["purchase"]
    _forge(tmp_path / "b" / "purchase", _set_param("r", -2.0))
    with pytest.raises(ModelFileError, match="differs from the model its bundle recorded"):
        _model_files(tmp_path / "b")
