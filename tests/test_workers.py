"""Issue #12 item 6: `score --jobs 2` killed at random moments leaves no process, no temporary
file and the previous output byte for byte (fault injection with real processes and signals)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvmodels as clv
from clvmodels.datasets import simulate
from clvmodels.io import remove_temporaries, write_table


def command() -> list[str]:
    exe = Path(sys.executable).parent / "clvmodels"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "clvmodels.cli"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """30,000 simulated customers and a BG/NBD + Gamma-Gamma model: scoring them with 90%
    intervals over 400 draws takes several seconds."""
    d = tmp_path_factory.mktemp("workers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rfm = clv.rfm_summary(clv.load_transactions(simulate(30_000, seed=5)))
        clv.save_models({"purchase": clv.BetaGeoModel().fit(rfm),
                         "spend": clv.GammaGammaModel(exclude_invalid=True).fit(rfm)}, d / "model")
    rfm.to_parquet(d / "rfm.parquet")
    return d


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def gone(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] in "ZX"


def descendants(pid: int) -> set[int]:
    """This test's own process tree below ``pid`` (by parent pid, from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[1]
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_for_workers(pid: int, n: int, timeout: float = 120) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = descendants(pid)
        workers = [c for c in children if b"spawn_main" in _cmdline(c)]
        if len(workers) >= n:
            return children
        time.sleep(0.05)
    raise AssertionError(f"the workers of {pid} did not start")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_parallel_scoring_leaves_nothing_behind(table, tmp_path, sig):
    rng = np.random.default_rng(2026 + int(sig))
    out = tmp_path / "scores.parquet"
    pd.DataFrame({"customer_id": [1, 2], "clv": [1.0, 2.0]}).to_parquet(out)  # the previous version
    before = out.read_bytes()
    for trial in range(3):
        log = tmp_path.parent / f"{tmp_path.name}-stderr-{trial}.txt"  # a file: orphans could hold a pipe open
        with open(log, "wb") as err_file:
            proc = subprocess.Popen(command() + ["score", str(table / "model"), str(table / "rfm.parquet"), "--out",
                                                 str(out), "--jobs", "2", "--interval", "0.9", "--draws", "400",
                                                 "--chunk-rows", "1500", "-q"],
                                    stdout=subprocess.DEVNULL, stderr=err_file)
        children = set()
        try:
            children = wait_for_workers(proc.pid, 2)
            time.sleep(rng.uniform(0.0, 4.0))  # a random moment: workers starting, or scoring
            assert proc.poll() is None, "the run ended before it could be killed: " + log.read_text()
            children |= descendants(proc.pid)
            os.kill(proc.pid, sig)
            proc.wait(timeout=60)
            err = log.read_text()
            if sig == signal.SIGTERM:
                assert proc.returncode == 143, err
                assert "terminated (SIGTERM)" in err and "Traceback" not in err
            else:
                assert proc.returncode == -signal.SIGKILL
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(gone(pid) for pid in children):
                time.sleep(0.1)
            assert [pid for pid in children if not gone(pid)] == [], f"trial {trial}: processes left running"
            assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"], f"trial {trial}: temporaries left"
            assert out.read_bytes() == before
        finally:
            for pid in children | {proc.pid}:  # this test's own processes, should any be left
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)


def test_temporaries_of_dead_processes_are_swept_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
    stale = [tmp_path / f".scores.parquet.tmp-{pid}@{host}-abc", tmp_path / f".m.tmp-{pid}@{host}-def"]
    stale[0].write_text("partial")
    stale[1].mkdir()
    (stale[1] / "model.json").write_text("{}")
    mine = tmp_path / f".other.tmp-{os.getpid()}@{host}-x"  # a live process's: kept
    mine.write_text("in progress")
    kept = [tmp_path / f".scores.parquet.old-{pid}", tmp_path / "notes.tmp-1-x",  # not temporaries
            tmp_path / f".s.parquet.tmp-{pid}@otherhost-x"]  # another machine's pid: cannot tell, kept
    for p in kept:
        p.write_text("keep")
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "scores.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, "scores.parquet"] + [p.name for p in kept])
    assert remove_temporaries(tmp_path, os.getpid()) == [mine]
