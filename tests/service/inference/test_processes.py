"""Child processes end with their parent: `digitnet score` workers and `digitnet serve --workers` processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ...conftest import DEFAULT_MODEL, REPO
from ..helpers import make_many


def _descendants_once_started(process: subprocess.Popen[bytes], count: int) -> list[psutil.Process]:
    """Wait until `process` has at least `count` descendants (workers, resource tracker); return them all."""
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = parent.children(recursive=True)
        if len(children) >= count:
            time.sleep(0.5)  # let every worker get past its start-up
            return parent.children(recursive=True)
        assert process.poll() is None, "the command ended before its workers started"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} child processes after 60 s")


def _survivors(processes: list[psutil.Process], within: float = 15.0) -> list[str]:
    _, alive = psutil.wait_procs(processes, timeout=within)
    for leftover in alive:
        leftover.kill()  # leave nothing behind, even when the test fails
    return [" ".join(p.cmdline()[:4]) for p in alive if p.is_running()]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill-9", "SIGTERM", "SIGINT"])
def test_score_workers_die_with_their_parent(tmp_path: Path, signum: signal.Signals) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_many(data, 2000)
    out = tmp_path / "out.csv"
    command = [
        sys.executable,
        "-m",
        "digitnet.service.cli",
        "score",
        str(data),
        "--out",
        str(out),
        "--quiet",
        "--model",
        str(DEFAULT_MODEL),
        "--workers",
        "2",
        "--batch-size",
        "4",
    ]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    try:
        children = _descendants_once_started(process, 3)  # two workers and multiprocessing's resource tracker
        process.send_signal(signum)
        code = process.wait(timeout=30)
        assert _survivors(children) == [], "processes outlived the killed `digitnet score`"
    finally:
        process.kill()
        process.wait()
    if signum != signal.SIGKILL:  # a polite stop: the rows so far are whole, and it says how to finish
        assert code == 130 and b"--resume" in (process.stderr.read() if process.stderr else b"")
        resumed = subprocess.run([*command, "--resume"], cwd=REPO)
        assert resumed.returncode == 0 and out.read_text().count("\n") == 2001


@pytest.mark.slow
def test_server_workers_die_with_their_parent() -> None:
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(DEFAULT_MODEL), "--port", "0", "--workers", "2"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        children = _descendants_once_started(process, 2)
        process.kill()
        process.wait()
        assert _survivors(children) == [], "server workers outlived their killed parent"
    finally:
        process.kill()
        process.wait()
