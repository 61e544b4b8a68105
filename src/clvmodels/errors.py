"""Exceptions and warnings of clvmodels.

Every error caused by the user's data is a :class:`ClvDataError` (a ``ValueError``), whose message
names the problem, the column, how many rows are affected, what to do, and shows a few example rows.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is not imported by `import clvmodels` (see tests/test_namespaces.py)
    import pandas as pd


class ClvDataError(ValueError):
    """Invalid input data (a transaction log, an RFM table, a model file)."""


class ModelFileError(ClvDataError):
    """A saved model that cannot be read: corrupted, incomplete or from an incompatible version."""


class ModelKindError(ClvDataError, TypeError):
    """A model of the wrong kind for the task (e.g. a spend model where a purchase model is needed)."""


class ConvergenceWarning(UserWarning):
    """A fit that did not converge, landed on a boundary, or sampled badly."""


class PriorSensitivityWarning(UserWarning):
    """A Bayesian fit whose posterior is decided by the prior rather than the data for some parameter
    (see :mod:`clvmodels.models.prior_sensitivity`)."""


class AssumptionWarning(UserWarning):
    """The data violates an assumption of the model (e.g. Gamma-Gamma independence)."""


#: The warnings that say something about a model or its fit: it did not converge, landed on a
#: boundary or is degenerate (:class:`ConvergenceWarning`), the prior rather than the data decides a
#: parameter (:class:`PriorSensitivityWarning`), the data violate the model's assumptions
#: (:class:`AssumptionWarning`). They are what a backtest records and a report's Warnings section
#: shows; clvmodels prints nothing else but deprecation notices (``DeprecationWarning``) and one-line
#: notices about the data (logger ``clvmodels``). ``tests/test_quiet.py`` runs a fit, a backtest and
#: a report with every other warning turned into an error.
MODEL_WARNINGS: tuple[type[Warning], ...] = (ConvergenceWarning, PriorSensitivityWarning, AssumptionWarning)


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


def data_error(
    problem: str,
    *,
    column: str | None = None,
    rows: pd.DataFrame | None = None,
    n_rows: int | None = None,
    fix: str | None = None,
    n_examples: int = 5,
) -> ClvDataError:
    """Build a :class:`ClvDataError` with a uniform, actionable message.

    The message reads ``problem`` + ``in column 'c'`` + ``(n rows)`` + ``fix`` + example rows.
    """
    parts = [problem]
    if column is not None:
        parts[0] += f" in column {column!r}"
    if n_rows is None and rows is not None:
        n_rows = len(rows)
    if n_rows is not None:
        parts[0] += f" ({n_rows:,} row{'s' if n_rows != 1 else ''})"
    parts[0] += "."
    if fix:
        parts.append(fix)
    if rows is not None and len(rows):
        parts.append("Examples:\n" + rows.head(n_examples).to_string())
    return ClvDataError(" ".join(parts[:2]) + ("\n" + parts[2] if len(parts) > 2 else ""))


def warn_convergence(message: str) -> None:
    """Warn (a :class:`ConvergenceWarning`) about a fit that did not converge, at the caller's caller."""
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


def renamed_argument(where: str, new: str, new_value, old: str, old_value):
    """The value of an argument that has a new name: ``old_value`` (with a ``DeprecationWarning``
    saying the new name) when the caller used the old one, else ``new_value``."""
    if old_value is None:
        return new_value
    warnings.warn(f"{where}({old}=...) is deprecated: use {new}=...", DeprecationWarning, stacklevel=3)
    return old_value
