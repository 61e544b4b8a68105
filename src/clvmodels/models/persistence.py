"""Saving and loading models: JSON and netCDF files that execute no code when read (no pickle).

A saved model is a directory::

    MODEL_DIR/
        model.json      format and package version, class name, constructor parameters
                        (``get_params()``; priors given as PyMC objects are kept as
                        text only), fitted attributes (params_,
                        covariance_, log_likelihood_, converged_, time_unit_, fingerprint_, ...),
                        the SHA-256 of every other file, and its own checksum
        posterior.nc    posterior_draws_ (Bayesian fits): one variable per parameter, dim "draw"
        idata.nc        idata_ (Bayesian fits): the ArviZ DataTree, netCDF4 groups via h5netcdf

The class is looked up by name among the known model classes (every :class:`~clvmodels.models.base.CLVModel` subclass
defined in ``clvmodels`` plus those passed to :func:`register_model_class`): loading never imports
a module or runs code named by the file. Floats are written with Python's shortest round-trip
representation, so a loaded model gives bit-identical predictions. The training frame (``rfm_``)
is not stored: pass the customers to score to a loaded model's predictions.

Several models that belong together (a purchase and a spend model) are saved as a *bundle*: a
directory with ``bundle.json`` and one model directory per role (:func:`save_models`,
:func:`load_models`). All writes are atomic (a temporary directory renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ClvDataError, ModelFileError
from ..io import atomic_directory, leftover_versions
from .._version import __version__
from .registry import model_classes, register_model_class  # noqa: F401  (part of this module's API)

FORMAT = "clvmodels-model"
BUNDLE_FORMAT = "clvmodels-bundle"
#: Version of the file layout written by this module; files with a higher version are refused.
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
BUNDLE_FILE = "bundle.json"
POSTERIOR_FILE = "posterior.nc"
IDATA_FILE = "idata.nc"
#: Fitted attributes not stored in model.json: the training frame, and the draws (netCDF files).
_NOT_IN_JSON = {"rfm_", "posterior_draws_", "idata_"}

# ---------------------------------------------------------------------------- JSON encoding
def _encode(value, where: str):
    """JSON-ready form of ``value``; tagged objects for arrays, Series, tuples and non-finite floats."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: arrays of dtype {value.dtype} cannot be saved")
        flat = [_encode(v, where) for v in value.ravel().tolist()]
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": list(value.shape), "data": flat}}
    if isinstance(value, pd.Series):
        return {"__series__": {"index": [_encode(i, where) for i in value.index.tolist()],
                               "values": _encode(value.to_numpy(), where), "name": _encode(value.name, where)}}
    if isinstance(value, pd.DataFrame):
        return {"__frame__": {"index": [_encode(i, where) for i in value.index.tolist()],
                              "columns": [_encode(c, where) for c in value.columns.tolist()],
                              "data": [_encode(value[c].to_numpy(), where) for c in value.columns]}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__items__": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    raise TypeError(f"{where}: values of type {type(value).__name__} cannot be saved")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag == "__float__":
            return float(body)
        if tag == "__ndarray__":
            data = [_decode(v) for v in body["data"]]
            return np.array(data, dtype=np.dtype(body["dtype"])).reshape(body["shape"])
        if tag == "__series__":
            return pd.Series(_decode(body["values"]), index=[_decode(i) for i in body["index"]],
                             name=_decode(body["name"]))
        if tag == "__frame__":
            columns = [_decode(c) for c in body["columns"]]
            return pd.DataFrame({c: _decode(d) for c, d in zip(columns, body["data"])},
                                index=[_decode(i) for i in body["index"]], columns=columns)
        if tag == "__tuple__":
            return tuple(_decode(v) for v in body)
        if tag == "__items__":
            return {_as_key(_decode(k)): _decode(v) for k, v in body}
    return {k: _decode(v) for k, v in value.items()}


def _as_key(k):
    return tuple(k) if isinstance(k, list) else k


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _package_version() -> str:
    return __version__


def _write_json(doc: dict, path: Path) -> None:
    body = dict(doc)
    body["checksum"] = "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest()
    path.write_text(json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _read_json(path: Path, expected_format: str) -> dict:
    """Read and check a model.json / bundle.json: parseable, intact, our format, a version we know."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelFileError(f"{str(path)!r} is missing: the model directory is incomplete.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"Cannot read {str(path)!r}: {exc}.") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"{str(path)!r} is not valid JSON (corrupted or truncated: {exc}). Save the model again."
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != expected_format:
        raise ModelFileError(f"{str(path)!r} is not a {expected_format} file.")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} was written by clvmodels {doc.get('package_version', '?')} in file format "
            f"version {version}, newer than this clvmodels ({_package_version()}) reads (up to "
            f"{FORMAT_VERSION}). Upgrade clvmodels to load it."
        )
    checksum = doc.pop("checksum", None)
    if checksum != "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest():
        raise ModelFileError(f"{str(path)!r} fails its checksum: the file was modified or corrupted.")
    return doc


# ---------------------------------------------------------------------------- one model
def _write_model(model: "CLVModel", directory: Path) -> None:
    """Write ``model`` into the (empty) ``directory``."""
    name = type(model).__name__
    if model_classes().get(name) is not type(model):
        raise ClvDataError(
            f"{name} is not a known model class, so it could not be loaded back: register it with "
            "clvmodels.models.persistence.register_model_class first."
        )
    params = {}
    for key, value in model.get_params().items():
        try:
            params[key] = _encode(value, key)
        except TypeError:
            if key != "priors":
                raise ClvDataError(f"Cannot save this {name}: its parameter {key}={value!r} is not "
                                   "a number, string, list or dict.") from None
            # PyMC objects or functions: kept as text only (the fitted priors_ records them too)
            params[key] = {"__unsaved__": repr(value)}
    fitted = {}
    for attr, value in vars(model).items():
        if not attr.endswith("_") or attr.startswith("_") or attr == "rfm_":
            continue
        if attr in _NOT_IN_JSON and value is not None:
            continue  # the draws go to netCDF files
        try:
            fitted[attr] = _encode(value, attr)
        except TypeError as exc:
            warnings.warn(f"{name}.{attr} is not saved ({exc}); predictions do not depend on it.",
                          UserWarning, stacklevel=3)
    files = {}
    posterior = getattr(model, "posterior_draws_", None)
    posterior_names = None
    if posterior is not None:
        import xarray as xr

        posterior_names = list(posterior)
        ds = xr.Dataset({k: ("draw", np.asarray(v, dtype=float).ravel()) for k, v in posterior.items()})
        ds.to_netcdf(directory / POSTERIOR_FILE, engine="h5netcdf")
        files[POSTERIOR_FILE] = _sha256_file(directory / POSTERIOR_FILE)
    idata = getattr(model, "idata_", None)
    if idata is not None:
        idata.to_netcdf(directory / IDATA_FILE, engine="h5netcdf")
        files[IDATA_FILE] = _sha256_file(directory / IDATA_FILE)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": _package_version(),
        "class": name,
        "params": params,
        "fitted": fitted,
        "posterior_variables": posterior_names,
        "files": files,
    }
    _write_json(doc, directory / MODEL_FILE)


def save_model(model: "CLVModel", path) -> None:
    """Save ``model`` to the directory ``path`` atomically (see the module docstring for the layout).

    An existing saved model at ``path`` is replaced; any other non-empty directory is refused.
    """
    if not callable(getattr(model, "get_params", None)):
        raise TypeError(f"Expected a CLVModel, got {type(model).__name__}.")
    with atomic_directory(path, marker_files=(MODEL_FILE, BUNDLE_FILE)) as tmp:
        _write_model(model, tmp)


def _missing_message(path: Path) -> str:
    msg = f"No saved model at {str(path)!r}."
    old = leftover_versions(path)
    if old:
        msg += f" An interrupted save left the previous version at {str(old[-1])!r}."
    return msg


def _read_model(path: Path) -> "CLVModel":
    if not path.is_dir():
        raise ModelFileError(_missing_message(path))
    if (path / BUNDLE_FILE).exists() and not (path / MODEL_FILE).exists():
        raise ModelFileError(f"{str(path)!r} holds several models (a bundle): load it with clvmodels.load_models.")
    doc = _read_json(path / MODEL_FILE, FORMAT)
    classes = model_classes()
    cls = classes.get(doc.get("class"))
    if cls is None:
        raise ModelFileError(
            f"{str(path)!r} holds a {doc.get('class')!r}, which this clvmodels does not know "
            f"(known: {sorted(classes)}). Upgrade clvmodels or register the class."
        )
    for name, digest in doc["files"].items():
        file = path / name
        if not file.is_file():
            raise ModelFileError(f"{str(file)!r} is missing: the model directory is incomplete.")
        if _sha256_file(file) != digest:
            raise ModelFileError(f"{str(file)!r} fails its checksum: the file is corrupted or truncated.")
    params = {}
    for key, value in doc["params"].items():
        if isinstance(value, dict) and set(value) == {"__unsaved__"}:
            warnings.warn(f"{cls.__name__} was saved with {key}={value['__unsaved__']} (PyMC objects "
                          f"cannot be saved): the loaded model has {key}=None, so refitting it uses the "
                          "defaults. Its fitted values and predictions are unaffected.", UserWarning, stacklevel=3)
            value = None
        params[key] = _decode(value)
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{str(path)!r}: its parameters do not fit {cls.__name__} ({exc}).") from exc
    for attr, value in _decode(doc["fitted"]).items():
        setattr(model, attr, value)
    if POSTERIOR_FILE in doc["files"]:
        import xarray as xr

        with xr.open_dataset(path / POSTERIOR_FILE, engine="h5netcdf") as ds:
            model.posterior_draws_ = {k: ds[k].to_numpy().copy() for k in doc["posterior_variables"]}
    if IDATA_FILE in doc["files"]:
        import xarray as xr

        tree = xr.open_datatree(path / IDATA_FILE, engine="h5netcdf")
        try:
            tree.load()
        finally:
            tree.close()
        model.idata_ = tree
    return model


def load_model(path) -> "CLVModel":
    """Load a model saved with :meth:`CLVModel.save` / :func:`save_model`.

    Raises
    ------
    ModelFileError
        The directory or a file is missing, a file is corrupted or truncated (checksums), or the
        file format is newer than this clvmodels reads.
    """
    return _read_model(Path(path))


# ---------------------------------------------------------------------------- bundles
def save_models(models: dict[str, "CLVModel"], path, metadata: dict | None = None) -> None:
    """Save several models (e.g. ``{"purchase": bgnbd, "spend": gg}``) as one bundle, atomically.

    ``metadata``: JSON-able settings stored alongside (e.g. the command that fitted them).
    """
    if not models:
        raise ClvDataError("No models to save.")
    for role in models:
        if not role.isidentifier():
            raise ClvDataError(f"Model role names must be identifiers, got {role!r}.")
    with atomic_directory(path, marker_files=(MODEL_FILE, BUNDLE_FILE)) as tmp:
        for role, model in models.items():
            (tmp / role).mkdir()
            _write_model(model, tmp / role)
        doc = {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
               "package_version": _package_version(), "models": list(models),
               "metadata": _encode(metadata or {}, "metadata")}
        _write_json(doc, tmp / BUNDLE_FILE)


def load_models(path) -> tuple[dict[str, "CLVModel"], dict]:
    """Load a bundle saved with :func:`save_models`: ``({role: model}, metadata)``."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(_missing_message(path))
    if (path / MODEL_FILE).exists() and not (path / BUNDLE_FILE).exists():
        raise ModelFileError(f"{str(path)!r} holds a single model: load it with clvmodels.load_model.")
    doc = _read_json(path / BUNDLE_FILE, BUNDLE_FORMAT)
    return {role: _read_model(path / role) for role in doc["models"]}, _decode(doc["metadata"])
