"""PyTensor and PyMC set up for clvmodels' Bayesian fits: quiet, with nothing left to search for.

* **BLAS.** PyTensor looks for a BLAS library to link its C code against the first time a graph
  with a matrix product is optimised (Pareto/NBD's MAP is one), compiling test programs for each
  candidate, and warns in five lines when it finds none. With pip's numpy and scipy there is none
  it can use: the OpenBLAS they ship exports its symbols renamed (``scipy_dgemm_``,
  ``scipy_dgemm_64_``), so PyTensor's C code cannot call them, and it falls back to its own
  loops, which is also what an empty ``blas__ldflags`` selects. clvmodels' likelihoods are
  elementwise sums (a matrix product, where a graph has one, is over a handful of parameters), so
  :func:`configure_pytensor` sets the flag to empty unless the user configured it
  (``PYTENSOR_FLAGS`` or ``~/.pytensorrc``): the same compiled code, without the search or the
  warning (``benchmarks/bench_bayes.py --quick`` times the fits).
* **PyMC's log lines.** PyMC logs at INFO level through its own handler ("Convergence achieved
  at ...", "Interrupted at ..." after ADVI, "Sampling 4 chains ..."); :func:`quiet_pymc` raises its
  logger to WARNING for the duration of a fit. What those lines say is in the fitted model
  (``advi_steps_``, ``diagnostics_``), and clvmodels warns when a fit did not converge.
"""

from __future__ import annotations

import contextlib
import logging

#: PyMC's logger (PyMC gives it a handler of its own at import).
PYMC_LOGGER = "pymc"


def configure_pytensor() -> None:
    """Set PyTensor's ``blas__ldflags`` to empty (its own C loops, no library search, no warning)
    unless the user set it or PyTensor already resolved it."""
    import pytensor

    config = pytensor.config
    param = type(config).__dict__.get("blas__ldflags")
    if param is None or hasattr(param, "val"):  # an older PyTensor, or already resolved: leave it
        return
    try:
        config.fetch_val_for_key("blas__ldflags")
    except KeyError:
        config.blas__ldflags = ""


@contextlib.contextmanager
def quiet_pymc():
    """PyTensor configured (:func:`configure_pytensor`) and PyMC's INFO log lines off, for one fit."""
    configure_pytensor()
    logger = logging.getLogger(PYMC_LOGGER)
    level = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
