"""The array namespaces a log-likelihood is written against: one expression, three evaluations.

Each model writes its log-likelihood once as ``log_likelihood(params, data, xp)`` with the
operations of a namespace ``xp``:

* :data:`NUMPY`: values (numpy/scipy), e.g. per-customer log-likelihoods and the predictions that
  share terms with the likelihood (Pareto/NBD's and BG/BB's ``P(alive)``);
* :data:`DUAL`: values with their exact gradient (forward-mode dual numbers, :mod:`.dual`), for
  the maximum-likelihood fit: nothing to compile, so a first fit costs what a later one does;
* :func:`pytensor_namespace`: PyTensor expressions, for the Bayesian fits (PyMC); PyTensor is
  imported only when this namespace is asked for, so that ``import clvmodels``, the MLE and the
  predictions never load it.

A namespace offers ``log, log1p, exp, expm1, gammaln, betaln, logaddexp, where, maximum, minimum,
abs, sum, max, pad_right, constant, value`` (the value without derivatives: it must not enter the
result, only decide how to compute it) and, to choose between equivalent evaluation orders,
``name`` (``"numpy"``, ``"dual"``, ``"pytensor"``) and ``symbolic`` (data whose values are known
only when the function runs). Comparisons (``x > 0``) are written with Python's operators, which
numpy arrays, dual numbers and PyTensor variables all support.

:func:`likelihood` lets a model's ``log_likelihood`` be called without ``xp``: the namespace is
then the one of its inputs (:func:`namespace_of`), as for a PyTensor graph built by hand.
"""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace

import numpy as np
from scipy import special

from . import dual


def _pad_right(a, n: int):
    return np.asarray(a).reshape(np.shape(a) + (1,) * n)


#: numpy and scipy.special: values.
NUMPY = SimpleNamespace(
    name="numpy", symbolic=False, log=np.log, log1p=np.log1p, exp=np.exp, expm1=np.expm1, gammaln=special.gammaln,
    betaln=special.betaln, logaddexp=np.logaddexp, where=np.where, maximum=np.maximum, minimum=np.minimum,
    abs=np.abs, sum=np.sum, max=np.max, pad_right=_pad_right, constant=np.asarray, value=np.asarray)

#: Dual numbers (:mod:`.dual`): values and exact gradients.
DUAL = SimpleNamespace(
    name="dual", symbolic=False, log=dual.log, log1p=dual.log1p, exp=dual.exp, expm1=dual.expm1,
    gammaln=dual.gammaln, betaln=dual.betaln, logaddexp=dual.logaddexp, where=dual.where, maximum=dual.maximum,
    minimum=dual.minimum, abs=dual.absolute, sum=dual.reduce_sum, max=dual.reduce_max, pad_right=dual.pad_right,
    constant=np.asarray, value=dual.value)


@functools.cache
def pytensor_namespace() -> SimpleNamespace:
    """``pytensor.tensor``: symbolic expressions (imports PyTensor on first use)."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    from .environment import configure_pytensor

    configure_pytensor()

    def betaln(a, b):  # PyTensor has no betaln
        return pt.gammaln(a) + pt.gammaln(b) - pt.gammaln(a + b)

    return SimpleNamespace(
        name="pytensor", symbolic=True, log=pt.log, log1p=pt.log1p, exp=pt.exp, expm1=pt.expm1, gammaln=pt.gammaln,
        betaln=betaln, logaddexp=pt.logaddexp, where=pt.switch, maximum=pt.maximum, minimum=pt.minimum,
        abs=pt.abs, sum=pt.sum, max=pt.max, pad_right=pt.shape_padright, constant=pt.constant,
        value=disconnected_grad)


def namespace_of(*values) -> SimpleNamespace:
    """The namespace of ``values`` (dicts are looked into): PyTensor if any is a PyTensor variable,
    else :data:`DUAL` if any is a dual number, else :data:`NUMPY`. (A PyTensor variable can exist
    only once PyTensor is imported, so this never imports it.)"""
    flat = [v for value in values for v in (value.values() if isinstance(value, dict) else (value,))]
    pytensor = sys.modules.get("pytensor")
    if pytensor is not None and any(isinstance(v, pytensor.graph.basic.Variable) for v in flat):
        return pytensor_namespace()
    return DUAL if any(isinstance(v, dual.Dual) for v in flat) else NUMPY


def as_namespace(xp) -> SimpleNamespace:
    """``xp`` as a namespace: the modules ``numpy`` and ``pytensor.tensor`` stand for theirs (as
    the ``xp`` of the likelihoods' helpers did before this module), a namespace for itself."""
    if xp is np:
        return NUMPY
    if getattr(xp, "__name__", None) == "pytensor.tensor":
        return pytensor_namespace()
    return xp


def likelihood(fn):
    """Decorate ``fn(params, data, xp)`` so that ``xp`` may be left out (then :func:`namespace_of`
    the inputs); ``numpy`` or ``pytensor.tensor`` stand for their namespaces (:func:`as_namespace`)."""
    @functools.wraps(fn)
    def wrapper(params, data, xp=None):
        return fn(params, data, namespace_of(params, data) if xp is None else as_namespace(xp))

    return wrapper
