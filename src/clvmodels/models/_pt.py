"""Small PyTensor helpers shared by the likelihoods."""

from __future__ import annotations

import pytensor.tensor as pt


def betaln(a, b):
    """log B(a, b) = lnΓ(a) + lnΓ(b) − lnΓ(a+b) (PyTensor has no betaln)."""
    return pt.gammaln(a) + pt.gammaln(b) - pt.gammaln(a + b)
