"""Compiled Bayesian models, built once per model structure and reused across fits.

A Bayesian fit's PyMC model (:func:`~.bayes.build_pymc_model`) reads its data (each likelihood part's
distinct rows and weights) and the numeric hyperparameters of its spec priors through shared
inputs (``pm.Data``), so the model, and what is compiled from it (nutpie's sampler, the MAP's log
posterior and gradient), depends only on the model's *structure*: the model class, the data columns
(hence the likelihood parts), the priors' distributions and which of them are joint. The fits of one
structure share one :class:`CompiledModel`; a fit sets the shared inputs to its own values
(:meth:`CompiledModel.using`) and samples or optimises with what the first fit compiled. Refitting on
another cutoff, other customers or other prior values compiles nothing; a fit whose structure differs
gets its own entry, so a compile is never used for a model it was not built from.

Priors given as PyMC ``.dist()`` objects or as functions cannot be compared safely (two
functions may build different graphs, and a ``.dist()`` holds its own constants): their structure key
is ``None`` and every fit with them builds and compiles a fresh model (as before this cache existed).

Across processes: PyTensor's numba backend caches the log-density kernels it generates on disk
(``pytensor.config.numba__cache``, in PyTensor's compile directory, keyed by a hash of the graph),
and its C backend (the MAP, PyMC's sampler) its compiled modules. nutpie's C-callable wrappers
around the kernels close over per-model objects, which numba refuses to cache, so nutpie compiles
them again in every process (most of a first NUTS fit's time); :func:`compile_nutpie` generates its
own, which numba caches beside the kernels under a key made of the kernels' keys and the wrapper's
source, so a later process loads them, and a changed graph (another model, prior or PyTensor
rewrite) has another key: it never loads a stale one. What still runs in every process is PyTensor
building and rewriting the graph (about 1 s for BG/NBD). The cache files are PyTensor's
(``<pytensor.config.base_compiledir>/numba``; ours are named ``*_wrapper-clvmodels_*``); deleting
them only costs a compile.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

#: Structures kept (least recently used dropped first); each holds a PyMC model and its compiled functions.
MAX_CACHED = 32


class CompiledModel:
    """A PyMC model with shared inputs, and what has been compiled from it (built lazily, kept).

    ``shared`` maps each input's name to its shared variable; ``functions`` holds compiled objects by
    name (``"nutpie"``, ``"map"``...), each built once by :meth:`function`. Use the model and its
    functions only inside :meth:`using`, which sets the inputs to one fit's values and holds a lock
    so that concurrent fits of the same structure take turns."""

    def __init__(self, pymc_model):
        self.pymc_model = pymc_model
        self.shared = {v.name: v for v in pymc_model.data_vars}
        self.functions: dict[Hashable, Any] = {}
        self.lock = threading.RLock()

    @contextmanager
    def using(self, inputs: Mapping[str, np.ndarray]) -> Iterator[CompiledModel]:
        """This model, locked, with its inputs set to ``inputs`` (all of them, by name)."""
        if set(inputs) != set(self.shared):
            raise ValueError(f"inputs {sorted(inputs)} do not match the model's {sorted(self.shared)}")
        with self.lock:
            for name, value in inputs.items():
                var = self.shared[name]
                var.set_value(np.asarray(value, dtype=var.dtype))
            yield self

    def function(self, key: Hashable, build: Callable[[], Any]):
        """The compiled object ``key``, built by ``build()`` the first time."""
        with self.lock:
            if key not in self.functions:
                self.functions[key] = build()
            return self.functions[key]


_CACHE: OrderedDict[Hashable, CompiledModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def compiled_model(key: Hashable | None, build: Callable[[], Any]) -> CompiledModel:
    """The :class:`CompiledModel` of structure ``key``, made from ``build()`` (a PyMC model whose
    inputs are ``pm.Data``) when there is none yet; a fresh, uncached one when ``key`` is None."""
    if key is None:
        return CompiledModel(build())
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
            return entry
    entry = CompiledModel(build())
    with _CACHE_LOCK:
        entry = _CACHE.setdefault(key, entry)
        while len(_CACHE) > MAX_CACHED:
            _CACHE.popitem(last=False)
    return entry


def clear_cache() -> None:
    """Forget every compiled model (the next fit of each structure compiles again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def cache_size() -> int:
    """How many model structures have a compiled model in this process."""
    return len(_CACHE)


def nutpie_model(entry: CompiledModel, inputs: Mapping[str, np.ndarray]):
    """nutpie's compiled sampler of ``entry`` (numba backend; compiled on first use,
    :func:`compile_nutpie`), with its data set to ``inputs`` (``CompiledPyMCModel.with_data``: the
    same machine code, new data pointers and shapes)."""
    compiled = entry.function("nutpie", lambda: compile_nutpie(entry.pymc_model))
    return compiled.with_data(**inputs)


# ---------------------------------------------------------------------------- nutpie, cached on disk
#: Bump when the generated wrappers change: their disk cache entries are keyed by it.
_WRAPPER_VERSION = 1

_LOGP_SRC = """
def logp_wrapper(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    meta = numba.carray(user_data_, ({n_meta},), np.uint64)
    x = numba.carray(x_, ({n_dim},))
    out = numba.carray(out_, ({n_dim},))
    logp = numba.carray(logp_, (1,))
    try:
        logp_val, grad = inner(x, {shared})
    except Exception:  # noqa: BLE001
        return 1
    logp[0] = logp_val
    ok = True
    for i in range({n_dim}):
        out[i] = grad[i]
        ok = ok and np.isfinite(grad[i])
    if not ok:
        return 3
    if not np.isfinite(logp_val):
        return 4
    return 0
"""

_EXPAND_SRC = """
def expand_wrapper(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim} or expanded != {n_expanded}:
        return -1
    meta = numba.carray(user_data_, ({n_meta},), np.uint64)
    x = numba.carray(x_, ({n_dim},))
    out = numba.carray(out_, ({n_expanded},))
    try:
        (values,) = inner(x, {shared})
    except Exception:  # noqa: BLE001
        return -2
    for i in range({n_expanded}):
        out[i] = values[i]
    return 0
"""


@lru_cache(maxsize=None)
def _void_pointer():
    import numba
    from numba.core import types

    @numba.extending.intrinsic
    def void_pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
        return types.voidptr(types.uint64), codegen

    return void_pointer


def compile_nutpie(pymc_model):
    """``nutpie.compile_pymc_model(pymc_model, backend="numba")``, with its two C-callable wrappers
    (log density and gradient; the draws' expansion) generated here so that numba caches them on
    disk, in PyTensor's numba cache, keyed by the cache keys of the PyTensor kernels they call.

    nutpie's own wrappers close over per-model objects, which numba cannot cache, and copy the
    gradient by slice assignment, whose error message alone costs ~3 s of numba compilation in every
    process: with them a fresh process spent ~5 s (CPU) compiling BG/NBD; with these it loads them.
    The wrappers read the model's 1-d float64 shared inputs from nutpie's user-data record (data
    pointers, then sizes, then shapes, as ``uint64``), so ``with_data`` works unchanged. Anything
    else (other inputs, a kernel PyTensor does not cache, another nutpie) compiles with nutpie's own.
    """
    import nutpie

    try:
        return _compile_nutpie_cached(pymc_model)
    except _NotCacheable:
        pass
    except Exception as exc:  # noqa: BLE001  (e.g. an unreadable cache entry: nutpie's compile still works)
        warnings.warn(f"clvmodels: the cached compile of nutpie's sampler failed ({type(exc).__name__}: {exc}); "
                      "compiling with nutpie's own instead (slower, same draws).", RuntimeWarning, stacklevel=2)
    return nutpie.compile_pymc_model(pymc_model, backend="numba")


class _NotCacheable(Exception):
    pass


def _compile_nutpie_cached(pymc_model):
    import hashlib

    import numba
    import nutpie
    from pymc.initial_point import make_initial_point_fn

    try:
        from nutpie import compile_pymc as npc
        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src
    except ImportError as exc:  # another layout of nutpie or PyTensor
        raise _NotCacheable from exc
    initial_point_fn = npc._wrap_with_lock(make_initial_point_fn(
        model=pymc_model, default_strategy="support_point", jitter_rvs=set(pymc_model.free_RVs),
        return_transformed=True))
    n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info, reparameterized = npc._make_functions(
        pymc_model, mode="NUMBA", compute_grad=True, join_expanded=True, pymc_initial_point_fn=initial_point_fn)
    shared = list(dict.fromkeys([*logp_pt.get_shared(), *expand_pt.get_shared()]))
    if any(v.ndim != 1 or v.dtype != "float64" for v in shared):
        raise _NotCacheable
    kernels = [CACHED_SRC_FUNCTIONS.get(fn.vm.jit_fn.py_func) for fn in (logp_pt, expand_pt)]
    if None in kernels:
        raise _NotCacheable
    shared_var_keys = {v: f"input{i}" for i, v in enumerate(shared)}
    shared_data = {key: np.array(v.get_value(), order="C", copy=True) for v, key in shared_var_keys.items()}
    for value in shared_data.values():
        value.flags.writeable = False
    user_data = npc.make_user_data(shared_var_keys, shared_data)
    k = len(shared)
    fill = dict(n_dim=n_dim, n_expanded=n_expanded, n_meta=3 * k)
    # __name__: numba rebuilds a cached function's environment from its module's globals
    env = {"__name__": __name__, "numba": numba, "np": np, "void_pointer": _void_pointer()}
    signatures = {
        "logp_wrapper": numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                                          numba.types.CPointer(numba.types.double),
                                          numba.types.CPointer(numba.types.double), numba.types.voidptr),
        "expand_wrapper": numba.types.int64(numba.types.uint64, numba.types.uint64,
                                            numba.types.CPointer(numba.types.double),
                                            numba.types.CPointer(numba.types.double), numba.types.voidptr)}
    cfuncs = []
    for name, template, fn, kernel in (("logp_wrapper", _LOGP_SRC, logp_pt, kernels[0]),
                                       ("expand_wrapper", _EXPAND_SRC, expand_pt, kernels[1])):
        # the shared inputs this function reads, as arrays over nutpie's data pointers and sizes
        reads = [shared.index(v) for v in fn.get_shared()]
        src = template.format(**fill, shared=", ".join(
            f"numba.carray(void_pointer(meta[{i}]), (meta[{k + i}],), np.float64)" for i in reads))
        key = hashlib.sha256(f"{_WRAPPER_VERSION}|{numba.__version__}|{nutpie.__version__}|{kernel}|{src}".encode())
        key = key.hexdigest()
        py_func = compile_numba_function_src(src, name, {**env, "inner": fn.vm.jit_fn}, cache_key=f"clvmodels_{key}")
        cfuncs.append(numba.cfunc(signatures[name], cache=True)(py_func))
    dims, coords = npc._prepare_dims_and_coords(pymc_model, shape_info, reparameterized)
    return npc.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords, _shapes={n: tuple(s) for n, _, s in zip(*shape_info)},
        compiled_logp_func=cfuncs[0], compiled_expand_func=cfuncs[1], initial_point_func=initial_point_fn,
        shared_data=shared_data, shared_var_keys=shared_var_keys, user_data=user_data, n_expanded=n_expanded,
        shape_info=shape_info, logp_func=logp_pt, expand_func=expand_pt, reparameterized_names=reparameterized)


__all__ = ["CompiledModel", "MAX_CACHED", "cache_size", "clear_cache", "compile_nutpie", "compiled_model", "nutpie_model"]
