"""Forward-mode automatic differentiation for the maximum-likelihood fit: numpy dual numbers.

A :class:`Dual` holds a value (a numpy array or float) and its tangent, the derivatives of every
element with respect to the ``k`` parameters, on a leading axis: ``(k,) + value.shape`` (or a shape
that broadcasts to it, right-aligned as numpy broadcasts; a leading axis keeps numpy's inner loops
long and contiguous, about twice as fast as a trailing axis of length ``k``). Each operation computes
its value with numpy/scipy and its tangent by the chain rule, so a log-likelihood written against the
:data:`~.namespaces.DUAL` namespace returns the value and its exact gradient in one pass, with no
graph to build and nothing to compile: the first fit in a process costs what a warm one does.

Why our own dual numbers and not ``autograd`` (installed here only as a dependency of lifetimes):

* the gradient is with respect to 2-4 parameters, through vectorised expressions over up to a few
  hundred thousand elements (Pareto/NBD's quadrature: rows x panels x 8 nodes). Forward mode costs
  ``k`` extra multiply-adds per element and operation and holds nothing but the current arrays;
  reverse mode (autograd) records a tape of every intermediate and walks it back, an overhead
  that pays only with many parameters;
* the operations the likelihoods use are few (arithmetic, ``log``, ``log1p``, ``exp``, ``expm1``,
  ``gammaln``, ``betaln``, ``logaddexp``, ``where``, ``maximum``/``minimum``, ``abs``, ``sum``,
  ``max``): ~250 lines, with the derivative of each next to its value, against a new core
  dependency (autograd is no longer actively developed and wraps numpy's namespace wholesale);
* the same namespace protocol (:mod:`.namespaces`) serves numpy, PyTensor and these numbers, so
  the likelihood stays written once.

The derivatives are those of the computed expression (e.g. of the quadrature rule, nodes and all),
the same as PyTensor's symbolic gradient: they agree to rounding (``tests/test_namespaces.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import special


def value(a):
    """``a``'s value without its derivatives (``a`` itself for a constant)."""
    return a.value if isinstance(a, Dual) else a


_value = value


def _tangent(a):
    return a.tangent if isinstance(a, Dual) else None


def _lift(t, rank: int):
    """Tangent ``t`` (``(k,) + shape``) with axes of length 1 inserted after ``k`` up to ``rank``
    value axes, so that numpy aligns its value axes with those of an array of that rank."""
    missing = rank - (t.ndim - 1)
    return t if missing <= 0 else t.reshape(t.shape[:1] + (1,) * missing + t.shape[1:])


def _add(s, t, sign: float = 1.0):
    """``s + sign t`` of two tangents, either of which may be ``None`` (a constant)."""
    if t is None:
        return s
    if s is None:
        return t if sign > 0 else -t
    rank = max(s.ndim, t.ndim) - 1
    return _lift(s, rank) + _lift(t, rank) if sign > 0 else _lift(s, rank) - _lift(t, rank)


def _add_fresh(s, t):
    """:func:`_add` of two tangents just computed (not shared with any dual): into ``s`` when it
    has the shape of the sum (saves allocating and filling a new array, which dominates the cost
    on large arrays)."""
    if s is not None and t is not None and s.ndim >= t.ndim:
        t = _lift(t, s.ndim - 1)
        if s.shape == np.broadcast_shapes(s.shape, t.shape):
            s += t
            return s
    return _add(s, t)


def _scale(t, factor):
    """``t * factor`` elementwise over the value axes (``None``: a constant stays constant)."""
    if t is None:
        return None
    return _lift(t, np.ndim(factor)) * factor


class Dual:
    """A value and its derivatives with respect to ``k`` parameters (a leading tangent axis).

    Arithmetic mixes duals with numpy arrays and floats (constants); comparisons compare values.
    ``__array_ufunc__ = None`` makes numpy hand ``array * dual`` to :meth:`__rmul__`.
    """

    __array_ufunc__ = None
    __slots__ = ("value", "tangent")

    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    @classmethod
    def variables(cls, values) -> list["Dual"]:
        """Independent variables ``values[i]`` (scalars) with unit tangents ``e_i``."""
        eye = np.eye(len(values))
        return [cls(float(v), eye[:, i].copy()) for i, v in enumerate(values)]

    @property
    def ndim(self) -> int:
        return np.ndim(self.value)

    @property
    def shape(self) -> tuple:
        return np.shape(self.value)

    def full_tangent(self) -> np.ndarray:
        """The tangent broadcast to ``(k,) + value.shape`` (an operation with a constant array may
        leave it smaller, to broadcast later)."""
        return np.broadcast_to(_lift(self.tangent, self.ndim), self.tangent.shape[:1] + self.shape)

    # ---------------------------------------------------------------- arithmetic
    def __neg__(self):
        return Dual(-self.value, -self.tangent)

    def __add__(self, other):
        return Dual(self.value + _value(other), _add(self.tangent, _tangent(other)))

    __radd__ = __add__

    def __sub__(self, other):
        return Dual(self.value - _value(other), _add(self.tangent, _tangent(other), -1.0))

    def __rsub__(self, other):
        return Dual(other - self.value, -self.tangent)

    def __mul__(self, other):
        v = _value(other)
        return Dual(self.value * v, _add_fresh(_scale(self.tangent, v), _scale(_tangent(other), self.value)))

    __rmul__ = __mul__

    def __truediv__(self, other):
        v = _value(other)
        out = self.value / v
        return Dual(out, _scale(_add(self.tangent, _scale(_tangent(other), out), -1.0), 1.0 / v))

    def __rtruediv__(self, other):
        out = other / self.value
        return Dual(out, _scale(self.tangent, -out / self.value))

    def __pow__(self, other):
        if isinstance(other, Dual):
            return exp(other * log(self))
        out = self.value ** other
        return Dual(out, _scale(self.tangent, other * self.value ** (other - 1.0)))

    def __rpow__(self, other):
        out = other ** self.value
        return Dual(out, _scale(self.tangent, out * np.log(other)))

    # comparisons read the value (they select branches; they have no derivative)
    def __gt__(self, other):
        return self.value > _value(other)

    def __ge__(self, other):
        return self.value >= _value(other)

    def __lt__(self, other):
        return self.value < _value(other)

    def __le__(self, other):
        return self.value <= _value(other)

    def __repr__(self) -> str:
        return f"Dual(value={self.value!r}, tangent={self.tangent!r})"


def _unary(a, value, derivative):
    """``f(a)`` with the value ``value = f(a.value)`` and ``f'`` given by ``derivative(value)``."""
    if not isinstance(a, Dual):
        return value
    return Dual(value, _scale(a.tangent, derivative(value)))


# -------------------------------------------------------------------- elementwise functions
def log(a):
    v = _value(a)
    return _unary(a, np.log(v), lambda out: 1.0 / v)


def log1p(a):
    v = _value(a)
    return _unary(a, np.log1p(v), lambda out: 1.0 / (1.0 + v))


def exp(a):
    return _unary(a, np.exp(_value(a)), lambda out: out)


def expm1(a):
    return _unary(a, np.expm1(_value(a)), lambda out: out + 1.0)


def gammaln(a):
    v = _value(a)
    return _unary(a, special.gammaln(v), lambda out: special.digamma(v))


def absolute(a):
    v = _value(a)
    return _unary(a, np.abs(v), lambda out: np.sign(v))


def betaln(a, b):
    """``ln B(a, b)`` (scipy's, accurate for large arguments); derivatives ``ψ(a) − ψ(a+b)`` and
    ``ψ(b) − ψ(a+b)``."""
    va, vb = _value(a), _value(b)
    value = special.betaln(va, vb)
    ta, tb = _tangent(a), _tangent(b)
    if ta is None and tb is None:
        return value
    both = special.digamma(va + vb)
    return Dual(value, _add_fresh(_scale(ta, special.digamma(va) - both), _scale(tb, special.digamma(vb) - both)))


def where(condition, a, b):
    """``a`` where ``condition`` else ``b``, tangents likewise (a constant's is 0)."""
    value = np.where(condition, _value(a), _value(b))
    ta, tb = _tangent(a), _tangent(b)
    if ta is None and tb is None:
        return value
    rank = max(np.ndim(condition), *(t.ndim - 1 for t in (ta, tb) if t is not None))
    return Dual(value, np.where(condition, 0.0 if ta is None else _lift(ta, rank),
                                0.0 if tb is None else _lift(tb, rank)))


def maximum(a, b):
    return where(_value(a) >= _value(b), a, b)


def minimum(a, b):
    return where(_value(a) <= _value(b), a, b)


def logaddexp(a, b):
    """``ln(e^a + e^b)``; derivative weights ``e^(a−out)`` and ``e^(b−out)`` (0 where both are −inf)."""
    va, vb = _value(a), _value(b)
    value = np.logaddexp(va, vb)
    ta, tb = _tangent(a), _tangent(b)
    if ta is None and tb is None:
        return value
    finite = np.isfinite(value)
    safe = np.where(finite, value, 0.0)
    with np.errstate(invalid="ignore"):
        wa = np.where(finite, np.exp(va - safe), 0.0)
        wb = np.where(finite, np.exp(vb - safe), 0.0)
    return Dual(value, _add_fresh(_scale(ta, wa), _scale(tb, wb)))


# -------------------------------------------------------------------- shapes and reductions
def _value_axes(axis, ndim: int) -> tuple[int, ...]:
    axes = tuple(range(ndim)) if axis is None else (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return tuple(ax % ndim for ax in axes)


def reduce_sum(a, axis=None):
    if not isinstance(a, Dual):
        return np.sum(a, axis=axis)
    axes = _value_axes(axis, a.ndim)
    return Dual(np.sum(a.value, axis=axes), np.sum(a.full_tangent(), axis=tuple(ax + 1 for ax in axes)))


def reduce_max(a, axis):
    """Maximum over the trailing ``axis`` (an int or a tuple of the last axes); the tangent is the
    maximal element's."""
    if not isinstance(a, Dual):
        return np.max(a, axis=axis)
    axes = _value_axes(axis, a.ndim)
    if sorted(axes) != list(range(a.ndim - len(axes), a.ndim)):
        raise ValueError("reduce_max reduces trailing axes only")
    lead = a.shape[:a.ndim - len(axes)]
    flat = a.value.reshape(lead + (-1,))
    idx = np.argmax(flat, axis=-1)[..., None]
    tangent = a.full_tangent().reshape(a.tangent.shape[:1] + lead + (-1,))
    return Dual(np.take_along_axis(flat, idx, axis=-1)[..., 0],
                np.take_along_axis(tangent, idx[None], axis=-1)[..., 0])


def pad_right(a, n: int):
    """``a`` with ``n`` trailing axes of length 1."""
    if not isinstance(a, Dual):
        return np.asarray(a).reshape(np.shape(a) + (1,) * n)
    t = _lift(a.tangent, a.ndim)
    return Dual(np.asarray(a.value).reshape(a.shape + (1,) * n), t.reshape(t.shape + (1,) * n))


def chain(out, args, partials):
    """``f(args)`` of value ``out`` given its partial derivatives ``∂f/∂args[i] = partials[i]`` (arrays
    of ``out``'s shape): the tangent by the chain rule, for a function computed elsewhere with its
    own derivatives (e.g. a compiled kernel, :mod:`.pnbd_integral`)."""
    tangent = None
    for a, d in zip(args, partials):
        tangent = _add_fresh(tangent, _scale(_tangent(a), d))
    return out if tangent is None else Dual(out, tangent)
