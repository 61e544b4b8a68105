"""Checks of an estimator's settings: the penalizer and the Bayesian fits' draws, tune and chains.

Following the scikit-learn convention, constructors store their arguments as given and nothing is
checked in ``__init__``: :meth:`CLVModel.fit <clvmodels.models.base.CLVModel.fit>` checks the
penalizer, the Bayesian fits check draws, tune and chains (after applying ``fit``'s overrides), and
loading a model file checks the settings it holds the same way.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from ..errors import ClvDataError


def check_penalizer(value) -> float:
    """The penalizer as a float: a finite, non-negative number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value < 0:
        raise ClvDataError(f"penalizer must be a finite number >= 0 (0 = no penalty, e.g. 0.001), got {value!r:.80}.")
    return float(value)


def check_count(name: str, value, minimum: int) -> int:
    """``value`` as an int: an integer (not a bool, not a float) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ClvDataError(f"{name} must be an integer >= {minimum}, got {value!r:.80}.")
    return int(value)


def check_sampling(draws, tune, chains) -> tuple[int, int, int]:
    """Validated ``(draws, tune, chains)`` of a Bayesian fit: draws and chains >= 1, tune >= 0."""
    return check_count("draws", draws, 1), check_count("tune", tune, 0), check_count("chains", chains, 1)

