"""Fuzzing model.json and bundle.json (issue #12, items 7 and 9): whatever is changed in a manifest
(values, types, extra or missing keys, tagged objects, deep nesting, raw bytes), loading either
gives models with valid finite parameters or raises ModelFileError, never another exception."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clvmodels as clv
from clvmodels.datasets import cdnow_summary
from clvmodels.errors import ModelFileError
from clvmodels.models.persistence import load_model, load_models, save_models

TAGS = ["__float__", "__ndarray__", "__series__", "__frame__", "__tuple__", "__items__", "__unsaved__"]
FIELDS = ["dtype", "shape", "data", "index", "values", "name", "columns", "params_", "covariance_",
          "method_", "time_unit_", "n_customers_", "penalizer", "draws", "posterior.nc", "r", "alpha"]
SPECIAL = [{"__float__": "nan"}, {"__float__": "-inf"}, {"__float__": "1e308"}, {"__float__": []},
           {"__ndarray__": {"dtype": "|O", "shape": [1], "data": [1]}},
           {"__ndarray__": {"dtype": "<f8", "shape": [2, 2], "data": [1.0, 0.0, 0.0, 1.0]}},
           {"__ndarray__": {"dtype": "<M8[ns]", "shape": [1], "data": [0]}},
           {"__series__": {"index": ["r", "alpha", "a", "b"], "values": [1, 2, 3], "name": None}},
           {"__items__": [[[1, 2], 3], [{"a": 1}, 2]]}, {"__tuple__": 5}, "../../etc/passwd", "/etc/passwd",
           "posterior.nc", "0" * 64, -1, 0, 2**70, -0.0, 1e-320, True]

leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
          | st.sampled_from(SPECIAL).map(copy.deepcopy))  # a copy: mutations must not change SPECIAL
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(TAGS + FIELDS) | st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A fitted BG/NBD (MLE) and one with posterior draws and a DataTree, saved."""
    from arviz_base import from_dict

    rfm = cdnow_summary()
    rfm.attrs["time_unit"] = "W"
    root = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mle = clv.BetaGeoModel().fit(rfm)
        mle.save(root / "mle")
        save_models({"purchase": mle, "spend": clv.GammaGammaModel(exclude_invalid=True).fit(
            cdnow_summary(with_spend=True))}, root / "bundle", metadata={"horizon": 12, "model": "bgnbd+gg"})
        bayes = clv.BetaGeoModel().fit(rfm)
        bayes.posterior_draws_ = bayes.parameter_draws(40, seed=0)
        bayes.idata_ = from_dict({"posterior": {k: v.reshape(2, 20) for k, v in bayes.posterior_draws_.items()}})
        bayes.save(root / "bayes")
    return {"mle": root / "mle", "bayes": root / "bayes", "bundle": root / "bundle"}


def _mutate(data, doc):
    """Change one place of ``doc`` (chosen by walking down from the root): replace it, add a key or
    an item next to it, delete it, or bury it in nested lists."""
    node, parent, key = doc, None, None
    while isinstance(node, (dict, list)) and node and data.draw(st.integers(0, 9), label="descend") < 8:
        keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, data.draw(st.sampled_from(keys), label="key")
        node = node[key]
    action = data.draw(st.sampled_from(["replace", "add", "delete", "nest"]), label="action")
    if parent is None:
        return data.draw(json_values) if action == "replace" else doc
    if action == "replace":
        parent[key] = data.draw(json_values, label="value")
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(TAGS + FIELDS) | st.text(max_size=8), label="new key")] = \
            data.draw(json_values, label="value")
    elif action == "add":
        parent.insert(key, data.draw(json_values, label="value"))
    elif action == "delete":
        del parent[key]
    else:
        depth = data.draw(st.sampled_from([1, 5, 63, 64, 200, 5000]), label="depth")
        parent[key] = json.loads("[" * depth + json.dumps(node) + "]" * depth) if depth < 500 else \
            "[" * depth + "]" * depth  # too deep to build as a value: written as text below
    return doc


def _write(path: Path, doc, resign: bool, damage, name: str = "model.json") -> None:
    """Write ``doc`` as ``name``, with a recomputed checksum when ``resign`` (so that the checks
    behind the checksum are reached), and ``damage`` applied to the bytes."""
    if resign and isinstance(doc, dict):
        doc.pop("checksum", None)
        try:
            canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            doc["checksum"] = "sha256:" + hashlib.sha256(canonical).hexdigest()
        except (TypeError, ValueError, RecursionError):
            pass
    text = json.dumps(doc)
    deep = '"' + "[" * 5000 + "]" * 5000 + '"'
    text = text.replace(deep, deep[1:-1])  # the 5000-deep nesting as JSON, not as a string
    raw = text.encode()
    if damage is not None:
        position, byte = damage
        position %= max(len(raw), 1)
        raw = raw[:position] + bytes([byte]) + raw[position + 1:] if byte >= 0 else raw[:position]
    (path / name).write_bytes(raw)


def _check_loaded(model, param_names) -> None:
    if not model.is_fitted:
        return
    params = model.params_
    assert sorted(map(str, params.index)) == sorted(param_names)
    values = params.to_numpy(dtype=float)
    assert np.all(np.isfinite(values)) and np.all(values > 0), params
    draws = getattr(model, "posterior_draws_", None)
    if draws is not None:
        assert sorted(draws) == sorted(param_names)
        for v in draws.values():
            assert v.ndim == 1 and np.all(np.isfinite(v)) and np.all(v > 0)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                    HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.sampled_from(["mle", "mle", "mle", "bayes"]), n_changes=st.integers(1, 3),
       resign=st.sampled_from([True, True, True, False]),
       damage=st.none() | st.none() | st.tuples(st.integers(0, 10**6), st.integers(-1, 255)))
@pytest.mark.slow
def test_mutated_model_json_loads_validly_or_raises_model_file_error(saved_models, data, which, n_changes,
                                                                    resign, damage):
    source = saved_models[which]
    doc = json.loads((source / "model.json").read_text())
    for _ in range(n_changes):
        doc = _mutate(data, doc)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m"
        shutil.copytree(source, path)
        _write(path, doc, resign, damage)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = load_model(path)
        except ModelFileError:
            return
        _check_loaded(model, clv.BetaGeoModel.param_names)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                    HealthCheck.function_scoped_fixture])
@given(data=st.data(), n_changes=st.integers(1, 3), resign=st.sampled_from([True, True, True, False]),
       damage=st.none() | st.none() | st.tuples(st.integers(0, 10**6), st.integers(-1, 255)))
def test_mutated_bundle_json_loads_validly_or_raises_model_file_error(saved_models, data, n_changes, resign, damage):
    source = saved_models["bundle"]
    doc = json.loads((source / "bundle.json").read_text())
    for _ in range(n_changes):
        doc = _mutate(data, doc)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b"
        shutil.copytree(source, path)
        _write(path, doc, resign, damage, "bundle.json")
        try:
            models, metadata = load_models(path)
        except ModelFileError:
            return
        assert set(models) <= {"purchase", "spend"} and isinstance(metadata, dict)
        for model in models.values():
            _check_loaded(model, type(model).param_names)


def test_unchanged_files_load(saved_models):
    """The fuzzed files start valid: without a change both load, with their parameters."""
    for name in ("mle", "bayes"):
        model = load_model(saved_models[name])
        _check_loaded(model, clv.BetaGeoModel.param_names)
        assert model.params_["r"] == pytest.approx(0.2426, abs=1e-4)
    models, metadata = load_models(saved_models["bundle"])
    assert list(models) == ["purchase", "spend"] and metadata == {"horizon": 12, "model": "bgnbd+gg"}
