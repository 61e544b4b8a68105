"""Gauss-Legendre quadrature shared by the models whose formulas need a numerical integral: the
rules on ``[0, 1]`` and the composite rule of doubling panels in log space.

The doubling rule: ``ln ∫_lo^hi e^{f(t)} dt`` on :data:`N_PANELS` panels at ``t − lo = h (2^j − 1)``
(clipped to ``hi``; the last runs to ``hi``), :data:`N_NODES` nodes each, where ``h`` is the scale
on which the integrand first changes by ``e``: the panels resolve an integrand that falls from its
start (as a log-concave one does by about ``2^j`` over panel ``j``) and cover any range.
Pareto/NBD's integral (:mod:`.pnbd_integral`) runs this rule in its compiled kernel, row by row;
:func:`log_doubling_quadrature` is the same rule written against a namespace ``xp``
(:mod:`.namespaces`) for the likelihoods that have no kernel of their own (GGompertz/NBD).
"""

from __future__ import annotations

import functools

import numpy as np

#: Panels of doubling widths of the composite rule (the last runs to the end of the range).
N_PANELS = 16
#: Gauss-Legendre nodes per panel.
N_NODES = 8


@functools.cache
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n``-node Gauss-Legendre rule on ``[0, 1]``: positions and weights (summing to 1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0


def log_doubling_quadrature(xp, log_f, lo, hi, h):
    """``ln ∫_lo^hi e^{log_f(t)} dt`` by the doubling rule (module docstring); ``log_f`` takes nodes
    with two trailing axes (panel, node). ``−inf`` where ``hi == lo``. With values (not symbols) the
    panels beyond the last that some row reaches (empty, adding exactly 0) are left out."""
    pos, weight = gauss_legendre(N_NODES)
    n_panels = N_PANELS
    if not xp.symbolic:
        reach = np.multiply.outer(np.asarray(xp.value(h)), 2.0 ** np.arange(N_PANELS) - 1.0)
        span = np.asarray(xp.value(hi)) - np.asarray(xp.value(lo))
        used = np.flatnonzero((reach < np.asarray(span)[..., None]).reshape(-1, N_PANELS).any(axis=0))
        n_panels = int(used[-1]) + 1 if used.size else 1
    j = xp.constant(np.arange(n_panels, dtype=float)[:, None])
    lo_, hi_, h_ = (xp.pad_right(v, 2) for v in (lo, hi, h))
    start = xp.minimum(lo_ + h_ * (2.0 ** j - 1.0), hi_)
    end = xp.where(j >= n_panels - 1, hi_, xp.minimum(lo_ + h_ * (2.0 ** (j + 1.0) - 1.0), hi_))
    width = end - start
    values = log_f(start + xp.constant(pos) * width)                  # (..., panel, node)
    top = xp.max(values, axis=(-2, -1))
    total = xp.sum(xp.constant(weight) * width * xp.exp(values - xp.pad_right(top, 2)), axis=(-2, -1))
    return top + xp.log(total)


__all__ = ["N_NODES", "N_PANELS", "gauss_legendre", "log_doubling_quadrature"]
