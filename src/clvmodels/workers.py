"""Worker processes that die with their parent, and a pool that stops them at once; compiled kernels
split over threads (:func:`run_in_threads`).

A scoring run with ``jobs > 1`` (:mod:`clvmodels.scoring`) starts worker processes. If the parent
is killed (SIGKILL cannot be caught) the workers must not keep running, and the parent's temporary
files must not stay behind. Each worker therefore:

* asks Linux to send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, through
  ctypes), and
* on every system, runs a watchdog thread that checks once a second whether its parent is still
  its parent (``os.getppid()``);

either way it removes the parent's temporary files in the output directory
(:func:`clvmodels.io.remove_temporaries`) and exits. In the parent, :func:`terminate_pool` stops
the workers without waiting for the chunks they are scoring (on an error, Ctrl-C or SIGTERM: the
``clvmodels`` command turns SIGTERM into an exception, so every ``with`` block cleans up).

Linux sends the death signal when the parent's thread that started the worker exits, which can be
a moment before the parent process is gone; a worker receiving SIGTERM therefore waits up to
:data:`PARENT_EXIT_WAIT` seconds to see its parent go before cleaning up for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

#: Seconds between two checks of the watchdog thread.
WATCH_INTERVAL = 1.0
#: Seconds a worker that got SIGTERM waits to see whether its parent is exiting.
PARENT_EXIT_WAIT = 2.0

_PR_SET_PDEATHSIG = 1


def _parent_gone(parent_pid: int, directory: str | None) -> None:
    from .io import remove_temporaries

    if directory is not None:
        remove_temporaries(directory, parent_pid)
    os._exit(128 + signal.SIGTERM)


def exit_with_parent(parent_pid: int, directory: str | None = None) -> None:
    """Make this (worker) process exit when process ``parent_pid`` is no longer its parent,
    first removing that parent's temporary files in ``directory``."""

    def on_sigterm(signum, frame):
        # Linux sends the death signal when the parent's *thread* that started this process exits,
        # which under SIGKILL can come before the parent is gone: wait a moment to see it go
        deadline = time.monotonic() + PARENT_EXIT_WAIT
        while os.getppid() == parent_pid and time.monotonic() < deadline:
            time.sleep(0.02)
        if os.getppid() != parent_pid:
            _parent_gone(parent_pid, directory)
        os._exit(128 + signal.SIGTERM)  # a SIGTERM from elsewhere: the living parent cleans up

    signal.signal(signal.SIGTERM, on_sigterm)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(WATCH_INTERVAL)
        _parent_gone(parent_pid, directory)

    if os.getppid() != parent_pid:  # died before the death signal was asked for
        _parent_gone(parent_pid, directory)
    threading.Thread(target=watch, name="clvmodels-parent-watchdog", daemon=True).start()


def terminate_pool(pool) -> None:
    """Stop the processes of a ``ProcessPoolExecutor`` now (pending chunks are dropped). They are
    killed outright: they hold no file of their own, and the caller removes its temporaries."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(OSError, AttributeError):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            process.join(5)


def available_cores() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_in_threads(call, n: int, *, work=None, min_work: int = 200_000, max_threads: int = 16) -> None:
    """``call(first, last)`` over rows ``0 .. n`` in chunks of about equal ``work`` (cumulative, ``n + 1``
    values; default one unit a row), one chunk per available core, in threads: for compiled kernels that
    release the GIL (numba's ``nogil``) and write their rows' results in place. Below ``min_work`` units,
    or on one core, one call in this thread."""
    import numpy as np

    work = None if work is None else np.asarray(work)
    total = n if work is None else work[-1]
    threads = min(available_cores(), max_threads)
    if threads <= 1 or n < 2 or total < min_work:
        call(0, n)
        return
    from concurrent.futures import ThreadPoolExecutor

    even = np.linspace(0, total, threads + 1)
    cuts = np.unique((even if work is None else np.searchsorted(work, even)).astype(np.int64).clip(0, n))
    cuts[0], cuts[-1] = 0, n
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda bounds: call(int(bounds[0]), int(bounds[1])), zip(cuts[:-1], cuts[1:])))
