"""Progress bars (tqdm) for the steps that can take more than a few seconds: predictive
distributions, value simulations, backtests (per cutoff and model), the CLI's scoring chunks.

Whether a bar is shown, in order of precedence:

1. the ``progressbar=`` argument of the function (``True``/``False``);
2. inside another bar: no (the outer step's bar is the one shown; e.g. a backtest's, not the
   simulations' within it), and inside :func:`progress_off` (the CLI's ``--quiet`` and
   ``--no-progress``): no;
3. the environment variable ``CLVMODELS_PROGRESS`` (``0``/``1``, ``off``/``on``);
4. otherwise only on a terminal (stderr) or in a Jupyter notebook: never in logs, pipes or CI.
"""

from __future__ import annotations

import contextlib
import os
import sys
from contextvars import ContextVar
from typing import Callable, Iterator

#: ``False`` inside a bar (no nested bars) and inside :func:`progress_off`; ``None``: decide.
_SHOWN: ContextVar[bool | None] = ContextVar("clvmodels_progress", default=None)

ENV = "CLVMODELS_PROGRESS"


def _interactive() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if type(shell).__name__ == "ZMQInteractiveShell":  # Jupyter
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def show_progress(progressbar: bool | None = None) -> bool:
    """Whether a step would show its bar (the rules of the module's docstring)."""
    if progressbar is not None:
        return bool(progressbar)
    if _SHOWN.get() is not None:
        return bool(_SHOWN.get())
    env = os.environ.get(ENV, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return _interactive()


@contextlib.contextmanager
def progress(total: int | None, desc: str, unit: str = "it",
             progressbar: bool | None = None) -> Iterator[Callable[[int], None]]:
    """A callback ``advance(n)`` that moves a tqdm bar of ``total`` steps on stderr, or does nothing
    when no bar is shown (:func:`show_progress`). Steps inside it show no bar of their own."""
    shown = show_progress(progressbar)
    token = _SHOWN.set(False)
    try:
        if not shown:
            yield _nothing
            return
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=(total or 0) >= 10_000, file=sys.stderr, leave=False,
                   dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()
    finally:
        _SHOWN.reset(token)


@contextlib.contextmanager
def progress_off():
    """No progress bars inside (unless a function is given ``progressbar=True``)."""
    token = _SHOWN.set(False)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def _nothing(n: int = 1) -> None:
    pass


__all__ = ["ENV", "progress", "progress_off", "show_progress"]
