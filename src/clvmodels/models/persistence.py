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
:func:`load_models`), which also records the checksum of each role's ``model.json``. All writes
are atomic (a temporary directory renamed into place).

Model directories are not trusted. Loading opens only the files named in ``model.json`` that are
plain file names (no path separators, no ``..``) of regular files directly inside the model
directory, never through a symbolic link; bundle roles are names of at most 32 lower-case letters,
digits and underscores (a directory of the bundle, not a link); ``model.json`` and ``bundle.json``
may hold at most :data:`MAX_JSON_BYTES` bytes nested at most :data:`MAX_JSON_DEPTH` deep; fitted
parameters must be finite and positive and the settings valid. Anything else is refused with a
:class:`~clvmodels.errors.ModelFileError` saying what is wrong.

Checksums detect corruption, not tampering: whoever can write the directory can recompute them.
For tamper evidence, set the environment variable ``CLVMODELS_MODEL_KEY`` (:data:`KEY_ENV`) to a
secret of at least 16 characters: ``save`` then signs each ``model.json`` and ``bundle.json`` (an
HMAC-SHA256 of the whole document, which includes the SHA-256 of every other file, and for a bundle
those of its models), and while it is set ``load`` refuses files that are unsigned or whose
signature does not match. The key protects against changes by anyone who does not hold it (a
swapped parameter, a replaced netCDF file, a model from another bundle); it does not encrypt
anything (the files stay readable), does not stop a key holder, and does not prevent an older
model signed with the same key from being put back in place of a newer one.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ClvDataError, ModelFileError
from ..io import atomic_directory, leftover_versions
from .._version import __version__
from .registry import model_classes, register_model_class  # noqa: F401  (part of this module's API)
from .settings import check_count, check_penalizer

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
#: Environment variable holding the key that signs and verifies model files (see the module docstring).
KEY_ENV = "CLVMODELS_MODEL_KEY"
#: Shortest key accepted in :data:`KEY_ENV`.
MIN_KEY_LENGTH = 16
#: Largest model.json / bundle.json read (bytes), and the deepest nesting of their JSON.
MAX_JSON_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 64
#: Names a bundle's roles may have (each is a directory of the bundle).
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_FITTED_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}_")

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
            dtype = np.dtype(body["dtype"])
            if dtype.kind not in "biuf":
                raise TypeError(f"arrays of dtype {dtype} are not saved by clvmodels")
            data = [_decode(v) for v in body["data"]]
            return np.array(data, dtype=dtype).reshape(body["shape"])
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


# ---------------------------------------------------------------------------- untrusted files
def _short(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: values from a file go into messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _tampered(path: Path, problem: str) -> ModelFileError:
    """The error for a model directory that is not as clvmodels writes it."""
    return ModelFileError(f"{str(path)!r} {problem}: the model directory may have been tampered with. "
                          "Do not use it; save the model again from a trusted copy.")


def _model_key() -> bytes | None:
    """The signing key in :data:`KEY_ENV`, or None when it is not set."""
    key = os.environ.get(KEY_ENV)
    if key is None:
        return None
    if len(key) < MIN_KEY_LENGTH:
        raise ClvDataError(f"{KEY_ENV} is set but has {len(key)} characters: use a secret of at least "
                           f"{MIN_KEY_LENGTH}, or unset it to save and load models without signatures.")
    return key.encode()


def _signature(key: bytes, doc: dict) -> str:
    """HMAC-SHA256 of the canonical JSON of ``doc`` (which lists the other files' SHA-256)."""
    return "hmac-sha256:" + hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()


def _json_depth(value) -> int:
    """Nesting depth of a parsed JSON value (a scalar: 0, ``[1]``: 1, ``{"a": [1]}``: 2), without recursion."""
    depth, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return depth


def _write_json(doc: dict, path: Path) -> None:
    """Write ``doc`` with its checksum, and its signature when :data:`KEY_ENV` is set."""
    body = dict(doc)
    key = _model_key()
    if key is not None:
        body["signature"] = _signature(key, doc)
    depth = _json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise ClvDataError(f"Cannot save {path.name}: it would be nested {depth} deep, more than loading "
                           f"accepts ({MAX_JSON_DEPTH} levels). Save flatter metadata.")
    body["checksum"] = "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()
    text = json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n"
    if len(text) > MAX_JSON_BYTES:
        raise ClvDataError(f"Cannot save {path.name}: it would hold {len(text):,} bytes, more than loading "
                           f"accepts ({MAX_JSON_BYTES:,}). Save smaller metadata.")
    path.write_text(text, encoding="utf-8")


def _read_member(directory: Path, name: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``name`` directly inside ``directory``, never through a link;
    at most ``limit`` bytes."""
    path = directory / name
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise _tampered(path, "is a symbolic link (clvmodels never writes links)")
        with open(os.open(path, flags), "rb") as fh:
            info = os.fstat(fh.fileno())  # of what was opened, whatever lstat saw
            if not stat.S_ISREG(info.st_mode):
                raise _tampered(path, "is not a regular file")
            if limit is not None and info.st_size > limit:
                raise _tampered(path, f"holds {info.st_size:,} bytes, more than the {limit:,} clvmodels reads")
            return fh.read() if limit is None else fh.read(limit)
    except FileNotFoundError:
        raise ModelFileError(f"{str(path)!r} is missing: the model directory is incomplete.") from None
    except OSError as exc:
        raise ModelFileError(f"Cannot read {str(path)!r}: {exc}.") from exc


def _member_directory(bundle: Path, role: str) -> Path:
    """The model directory of ``role`` in ``bundle``: a directory of it, not a link."""
    path = bundle / role
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise ModelFileError(f"{str(path)!r} is missing: the bundle is incomplete.") from None
    if stat.S_ISLNK(mode):
        raise _tampered(path, "is a symbolic link (clvmodels never writes links)")
    if not stat.S_ISDIR(mode):
        raise _tampered(path, "is not a directory")
    return path


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _read_json(directory: Path, name: str, expected_format: str, digest: str | None = None) -> dict:
    """Read and check a model.json / bundle.json: bounded, parseable, intact (its checksum, and
    ``digest``, the SHA-256 its bundle recorded, if given), signed when :data:`KEY_ENV` is set,
    our format, a version we know."""
    path = directory / name
    raw = _read_member(directory, name, MAX_JSON_BYTES)
    if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
        raise _tampered(path, "differs from the model its bundle recorded (bundle.json checksums)")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise _tampered(path, f"is nested deeper than the {MAX_JSON_DEPTH} levels clvmodels reads") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, out-of-range numbers
        raise ModelFileError(
            f"{str(path)!r} is not valid JSON (corrupted or truncated: {exc}). Save the model again."
        ) from exc
    if _json_depth(doc) > MAX_JSON_DEPTH:
        raise _tampered(path, f"is nested deeper than the {MAX_JSON_DEPTH} levels clvmodels reads")
    if not isinstance(doc, dict) or doc.get("format") != expected_format:
        raise ModelFileError(f"{str(path)!r} is not a {expected_format} file.")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _tampered(path, f"has an invalid format_version {_short(version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} was written by clvmodels {str(doc.get('package_version', '?'))[:40]} in file format "
            f"version {version}, newer than this clvmodels ({__version__}) reads (up to "
            f"{FORMAT_VERSION}). Upgrade clvmodels to load it."
        )
    checksum = doc.pop("checksum", None)
    if checksum != "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest():
        raise ModelFileError(f"{str(path)!r} fails its checksum: the file was modified or corrupted.")
    signature = doc.pop("signature", None)
    key = _model_key()
    if key is not None and signature is None:
        raise _tampered(path, f"is not signed although {KEY_ENV} is set (if it was saved without the key, "
                              "save it again with the key set)")
    if key is not None and not (isinstance(signature, str)
                                and hmac.compare_digest(signature.encode(), _signature(key, doc).encode())):
        raise _tampered(path, f"has a signature that does not match the key in {KEY_ENV} (or it was signed "
                              "with another key)")
    return doc


# ---------------------------------------------------------------------------- one model
def _write_model(model: object, directory: Path) -> None:
    """Write ``model`` into the (empty) ``directory``."""
    name = type(model).__name__
    if model_classes().get(name) is not type(model):
        raise ClvDataError(
            f"{name} is not a known model class, so it could not be loaded back: register it with "
            "clvmodels.models.persistence.register_model_class first."
        )
    _check_settings(type(model), model.get_params())  # a model that could not be loaded back
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
        if not attr.endswith("_") or attr.startswith("_") or attr in _TRAINING_DATA:
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
        "package_version": __version__,
        "class": name,
        "params": params,
        "fitted": fitted,
        "posterior_variables": posterior_names,
        "files": files,
    }
    _write_json(doc, directory / MODEL_FILE)


def save_model(model: object, path) -> None:
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


def _decoded(value, where: Path, what: str):
    """:func:`_decode` of an untrusted value: a malformed tagged object is a ModelFileError."""
    try:
        return _decode(value)
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        raise _tampered(where, f"holds a malformed {what} ({type(exc).__name__}: {str(exc)[:200]})") from None


def _check_settings(cls: type, params: dict) -> None:
    """Check the constructor settings that a fit checks (penalizer, method, draws, tune, chains)."""
    if "penalizer" in params:
        check_penalizer(params["penalizer"])
    for name, minimum in (("draws", 1), ("tune", 0), ("chains", 1)):
        if name in params:
            check_count(name, params[name], minimum)
    method = params.get("method", cls.methods[0])
    if not isinstance(method, str) or method.lower() not in cls.methods:
        raise ClvDataError(f"method must be one of {cls.methods}, got {_short(method)}.")


def _positive_values(values, what: str, where: Path) -> None:
    """Refuse parameter values that are not finite positive numbers, naming the first bad one."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf" or array.size == 0:
        raise _tampered(where, f"holds {what} that are not numbers ({array.dtype}, {array.size} values)")
    bad = ~(np.isfinite(array) & (array > 0))
    if bad.any():
        raise _tampered(where, f"holds an invalid {what}: {array[bad].ravel()[0].item()!r} ({int(bad.sum()):,} "
                               "value(s) not finite and positive; every parameter of these models is)")


def _check_params(cls: type, params, where: Path) -> None:
    """``params_``: a Series of finite positive numbers indexed by exactly the model's parameters."""
    if not isinstance(params, pd.Series) or sorted(map(str, params.index)) != sorted(cls.param_names) \
            or len(params) != len(cls.param_names):
        got = list(params.index) if isinstance(params, pd.Series) else type(params).__name__
        raise _tampered(where, f"holds params_ {_short(got)}, not the parameters {list(cls.param_names)} of {cls.__name__}")
    for name, value in params.items():
        _positive_values(value, f"value of parameter {name!r}", where)


def _check_covariates(cls: type, fitted: dict, where: Path) -> int:
    """``covariates_`` (a valid design of ``cls``'s covariate processes) with ``coefficients_`` (finite,
    one per coefficient); returns the number of free coefficients (0 without covariates)."""
    if "covariates_" not in fitted:
        if "coefficients_" in fitted:
            raise _tampered(where, "holds coefficients_ without the covariates_ they belong to")
        return 0
    from .covariates import CovariateDesign, CovariateLink

    try:
        design = CovariateDesign.from_dict(fitted["covariates_"])
        if not set(design.processes) <= set(cls.covariate_links):
            raise ClvDataError(f"processes {sorted(design.processes)} are not those of {cls.__name__}")
        link = CovariateLink.build(cls.covariate_links, design)
    except (ClvDataError, AttributeError, TypeError) as exc:
        raise _tampered(where, f"holds an invalid covariates_ ({str(exc)[:200]})") from None
    coefs = fitted.get("coefficients_")
    if not isinstance(coefs, pd.Series) or sorted(map(str, coefs.index)) != sorted(link.coefficient_names) \
            or np.asarray(coefs).dtype.kind != "f" or not np.all(np.isfinite(coefs.to_numpy())):
        raise _tampered(where, f"holds coefficients_ that are not finite values of {list(link.coefficient_names)}")
    return link.n_free


def _check_time_varying(cls: type, fitted: dict, where: Path) -> int:
    """``time_varying_`` (a valid time-varying design of processes ``cls`` links) with
    ``time_varying_coefficients_`` (finite, one per coefficient); returns their number (0 without)."""
    if "time_varying_" not in fitted:
        if "time_varying_coefficients_" in fitted:
            raise _tampered(where, "holds time_varying_coefficients_ without the time_varying_ design they belong to")
        return 0
    from .timevarying import TimeVaryingDesign

    try:
        design = TimeVaryingDesign.from_dict(fitted["time_varying_"])
        tv_model = getattr(cls, "time_varying_model", None)
        if tv_model is None or not set(design.processes) <= set(tv_model.processes):
            raise ClvDataError(f"processes {sorted(design.processes)} are not time-varying processes of {cls.__name__}")
    except (ClvDataError, AttributeError, TypeError) as exc:
        raise _tampered(where, f"holds an invalid time_varying_ ({str(exc)[:200]})") from None
    coefs = fitted.get("time_varying_coefficients_")
    if not isinstance(coefs, pd.Series) or list(map(str, coefs.index)) != list(design.coefficient_names) \
            or np.asarray(coefs).dtype.kind != "f" or not np.all(np.isfinite(coefs.to_numpy())):
        raise _tampered(where, "holds time_varying_coefficients_ that are not finite values of "
                               f"{list(design.coefficient_names)}")
    return len(design.coefficient_names)


#: Fitted attributes holding the training data (not saved: predictions on a loaded model name their customers).
_TRAINING_DATA = ("rfm_", "time_varying_summary_")


def _check_covariance(cls: type, cov, where: Path, n_coefficients: int = 0) -> None:
    """``covariance_``: a k x k float matrix (k: the parameters and free covariate coefficients), all NaN
    (no standard errors) or symmetric positive semi-definite."""
    k = len(cls.param_names) + n_coefficients
    if not isinstance(cov, np.ndarray) or cov.shape != (k, k) or cov.dtype.kind != "f":
        raise _tampered(where, f"holds a covariance_ that is not a {k} x {k} matrix of floats")
    if np.isnan(cov).all():
        return
    finite = np.isfinite(cov).all()
    if not (finite and np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() >= -1e-9 * np.abs(cov).max()):
        raise _tampered(where, "holds a covariance_ that is not a covariance matrix (finite, symmetric, "
                               "positive semi-definite)")


#: Types of the fitted attributes that predictions and scoring read (others are informative only).
_FITTED_TYPES = {"converged_": bool, "n_customers_": int, "n_unique_": int, "n_excluded_": int,
                 "time_unit_": (str, type(None)), "fingerprint_": str, "log_likelihood_": (int, float),
                 "aic_": (int, float), "bic_": (int, float), "correlation_": (int, float)}


def _load_fitted(cls: type, saved, where: Path) -> dict:
    """The fitted attributes of model.json, decoded and checked."""
    fitted = _decoded(saved, where, "fitted attribute")
    for attr, value in fitted.items():
        if not isinstance(attr, str) or not _FITTED_NAME.fullmatch(attr) or hasattr(cls, attr) or attr in _TRAINING_DATA:
            raise _tampered(where, f"sets the attribute {_short(attr)}, which clvmodels never saves")
        expected = _FITTED_TYPES.get(attr)
        if attr in ("posterior_draws_", "idata_") and value is not None:
            raise _tampered(where, f"holds {attr} in the JSON (clvmodels saves them as netCDF files)")
        if expected is not None and (not isinstance(value, expected) or
                                     (isinstance(value, bool) and expected is not bool)):
            raise _tampered(where, f"holds {attr} = {_short(value)}, not of the type clvmodels saves")
        if expected is int and value < 0:
            raise _tampered(where, f"holds a negative count {attr} = {_short(value)}")
    if fitted and "params_" not in fitted:
        raise _tampered(where, "holds fitted attributes but no fitted parameters (params_)")
    if "params_" in fitted:
        _check_params(cls, fitted["params_"], where)
    n_coefficients = _check_covariates(cls, fitted, where) + _check_time_varying(cls, fitted, where)
    if "covariance_" in fitted:
        _check_covariance(cls, fitted["covariance_"], where, n_coefficients)
    method = fitted.get("method_", cls.methods[0])
    if method not in cls.methods:
        raise _tampered(where, f"holds method_ = {_short(method)}, not a fit method of {cls.__name__}")
    return fitted


def _load_params(cls: type, saved, where: Path) -> dict:
    """The constructor parameters of model.json, decoded and checked as a fit checks them."""
    params = {}
    for key, value in saved.items():
        if isinstance(value, dict) and set(value) == {"__unsaved__"}:
            warnings.warn(f"{cls.__name__} was saved with {key}={value['__unsaved__']} (PyMC objects "
                          f"cannot be saved): the loaded model has {key}=None, so refitting it uses the "
                          "defaults. Its fitted values and predictions are unaffected.", UserWarning, stacklevel=4)
            value = None
        params[key] = _decoded(value, where, f"parameter {_short(key)}")
    try:
        _check_settings(cls, params)
    except ClvDataError as exc:
        raise _tampered(where, f"holds an invalid setting ({exc})") from None
    return params


def _load_posterior(cls: type, data: bytes, names, where: Path, coefficients=()) -> dict[str, np.ndarray]:
    """posterior_draws_ from the (checksummed) bytes of posterior.nc: one finite positive draw per
    parameter and draw (and one finite draw per covariate coefficient), equally many of each."""
    import xarray as xr

    expected = sorted([*cls.param_names, *coefficients])
    if not isinstance(names, list) or sorted(map(str, names)) != expected:
        raise _tampered(where, f"lists the posterior variables {_short(names)}, not the parameters "
                               f"{expected} of {cls.__name__}")
    try:
        with xr.open_dataset(io.BytesIO(data), engine="h5netcdf") as ds:
            draws = {k: ds[k].to_numpy().copy() for k in names}
    except Exception as exc:  # noqa: BLE001 (whatever the netCDF reader raises on a bad file)
        raise _tampered(where.parent / POSTERIOR_FILE, f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    if len({v.shape for v in draws.values()}) != 1 or next(iter(draws.values())).ndim != 1:
        raise _tampered(where.parent / POSTERIOR_FILE, "holds draws of different shapes, not one draw per parameter")
    for k, v in draws.items():
        if k in coefficients:
            if not np.all(np.isfinite(v)):
                raise _tampered(where.parent / POSTERIOR_FILE, f"holds non-finite draws of coefficient {k!r}")
            continue
        _positive_values(v, f"posterior draw of parameter {k!r}", where.parent / POSTERIOR_FILE)
    return draws


def _load_idata(data: bytes, where: Path):
    """idata_ (the ArviZ DataTree) from the (checksummed) bytes of idata.nc."""
    import xarray as xr

    try:
        tree = xr.open_datatree(io.BytesIO(data), engine="h5netcdf")
        try:
            tree.load()
        finally:
            tree.close()
    except Exception as exc:  # noqa: BLE001 (whatever the netCDF reader raises on a bad file)
        raise _tampered(where.parent / IDATA_FILE, f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    return tree


def _read_files(directory: Path, files, where: Path) -> dict[str, bytes]:
    """The files listed in model.json (plain names of regular files inside ``directory``), each
    checked against its SHA-256."""
    for name, digest in files.items():  # every name checked before any file is opened
        if not _FILE_NAME.fullmatch(name) or ".." in name:
            raise _tampered(where, f"lists the file {_short(name)}, which is not a plain file name inside the "
                                   "model directory")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise _tampered(where, f"gives the file {_short(name)} an invalid SHA-256 {_short(digest)}")
    contents = {}
    for name, digest in files.items():
        contents[name] = _read_member(directory, name)
        if hashlib.sha256(contents[name]).hexdigest() != digest:
            raise ModelFileError(f"{str(directory / name)!r} fails its checksum: the file is corrupted, "
                                 "truncated or was modified.")
    return contents


#: The entries of model.json and their types.
_MODEL_KEYS = {"class": str, "params": dict, "fitted": dict, "files": dict, "posterior_variables": (list, type(None))}


def _read_model(path: Path, digest: str | None = None) -> object:
    if not path.is_dir():
        raise ModelFileError(_missing_message(path))
    if (path / BUNDLE_FILE).exists() and not (path / MODEL_FILE).exists():
        raise ModelFileError(f"{str(path)!r} holds several models (a bundle): load it with clvmodels.load_models.")
    doc = _read_json(path, MODEL_FILE, FORMAT, digest)
    where = path / MODEL_FILE
    for key, kind in _MODEL_KEYS.items():
        if not isinstance(doc.get(key), kind):
            raise _tampered(where, f"lacks {key!r} or holds a {type(doc.get(key)).__name__} there")
    classes = model_classes()
    cls = classes.get(doc["class"])
    if cls is None:
        raise ModelFileError(
            f"{str(path)!r} holds a {_short(doc['class'])}, which this clvmodels does not know "
            f"(known: {sorted(classes)}). Upgrade clvmodels or register the class."
        )
    contents = _read_files(path, doc["files"], where)
    params = _load_params(cls, doc["params"], where)
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ModelFileError(f"{str(path)!r}: its parameters do not fit {cls.__name__} ({str(exc)[:200]}).") from exc
    for attr, value in _load_fitted(cls, doc["fitted"], where).items():
        setattr(model, attr, value)
    if POSTERIOR_FILE in contents:
        coefficients = tuple(map(str, getattr(model, "coefficients_", pd.Series(dtype=float)).index)) + tuple(
            map(str, getattr(model, "time_varying_coefficients_", pd.Series(dtype=float)).index))
        model.posterior_draws_ = _load_posterior(cls, contents[POSTERIOR_FILE], doc["posterior_variables"], where,
                                                 coefficients)
    if IDATA_FILE in contents:
        model.idata_ = _load_idata(contents[IDATA_FILE], where)
    return model


def load_model(path) -> object:
    """Load a model saved with :meth:`CLVModel.save` / :func:`save_model`.

    Raises
    ------
    ModelFileError
        The directory or a file is missing, a file is corrupted or truncated (checksums), the file
        format is newer than this clvmodels reads, the directory is not as clvmodels writes it
        (files outside it or links, invalid parameters, oversized or deeply nested JSON), or
        :data:`KEY_ENV` is set and the model is unsigned or signed with another key.
    """
    return _read_model(Path(path))


# ---------------------------------------------------------------------------- bundles
def _check_role(role) -> None:
    if not isinstance(role, str) or not ROLE_NAME.fullmatch(role):
        raise ClvDataError(f"Model role names must be 1 to 32 lower-case letters, digits and underscores, "
                           f"starting with a letter (e.g. 'purchase'), got {_short(role)}.")


def save_models(models: dict[str, object], path, metadata: dict | None = None) -> None:
    """Save several models (e.g. ``{"purchase": bgnbd, "spend": gg}``) as one bundle, atomically.

    ``metadata``: JSON-able settings stored alongside (e.g. the command that fitted them). Role names
    are 1 to 32 lower-case letters, digits and underscores, starting with a letter.
    """
    if not models:
        raise ClvDataError("No models to save.")
    for role in models:
        _check_role(role)
    with atomic_directory(path, marker_files=(MODEL_FILE, BUNDLE_FILE)) as tmp:
        for role, model in models.items():
            (tmp / role).mkdir()
            _write_model(model, tmp / role)
        doc = {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
               "package_version": __version__, "models": list(models),
               "model_checksums": {role: _sha256_file(tmp / role / MODEL_FILE) for role in models},
               "metadata": _encode(metadata or {}, "metadata")}
        _write_json(doc, tmp / BUNDLE_FILE)


def load_models(path) -> tuple[dict[str, object], dict]:
    """Load a bundle saved with :func:`save_models`: ``({role: model}, metadata)``.

    Raises ModelFileError as :func:`load_model` does, and for role names that are not plain names
    of the bundle's directories or models that differ from those the bundle recorded.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(_missing_message(path))
    if (path / MODEL_FILE).exists() and not (path / BUNDLE_FILE).exists():
        raise ModelFileError(f"{str(path)!r} holds a single model: load it with clvmodels.load_model.")
    doc = _read_json(path, BUNDLE_FILE, BUNDLE_FORMAT)
    where = path / BUNDLE_FILE
    roles = doc.get("models")
    if not isinstance(roles, list) or not roles or len(set(map(repr, roles))) != len(roles):
        raise _tampered(where, f"lists the models {_short(roles)}, not a list of distinct role names")
    for role in roles:
        try:
            _check_role(role)
        except ClvDataError as exc:
            raise _tampered(where, f"lists an invalid role ({exc})") from None
    checksums = doc.get("model_checksums")
    if checksums is None:
        checksums = {}  # a bundle written before bundle.json recorded its models' checksums
    elif not isinstance(checksums, dict) or set(checksums) != set(roles) or \
            not all(isinstance(v, str) and _DIGEST.fullmatch(v) for v in checksums.values()):
        raise _tampered(where, "holds invalid model_checksums (one SHA-256 per role)")
    metadata = _decoded(doc.get("metadata", {}), where, "metadata")
    if not isinstance(metadata, dict):
        raise _tampered(where, f"holds metadata of type {type(metadata).__name__}, not a dict")
    return {role: _read_model(_member_directory(path, role), checksums.get(role)) for role in roles}, metadata
