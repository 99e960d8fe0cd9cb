"""What Python's garbage collector costs a serving process: collections, time and the longest pause, untraced and
traced at 1 %, for this checkout and (with --baseline) another.

Each server runs with a sitecustomize (written to a temporary folder, on its PYTHONPATH) that times every collection
through gc.callbacks and writes the totals when sent SIGUSR2: once when the server is ready, once after the load.
REST OIP ModelInfer of one FP32 image at `concurrency`, servers measured one after another, twice each in the order
A B B A. The traced servers export to a collector that is down (spans are dropped, as in production when it is).

Usage:
    git worktree add /tmp/before bc24a75 && ./dev run python bench/gc_bench.py --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import oip_bench
import rest_bench
from machine import cpu_name
from oip_bench import baseline_name, free_port, server_environment
from telemetry_bench import TRACE_1

#: Times each collection and writes the totals on SIGUSR2 (installed in the server by Python's site module).
SITECUSTOMIZE = """
import gc, json, os, signal, time
_times = {"total": 0.0, "longest": 0.0, "start": 0.0}
def _timed(phase, info):
    if phase == "start":
        _times["start"] = time.perf_counter()
    else:
        spent = time.perf_counter() - _times["start"]
        _times["total"] += spent
        _times["longest"] = max(_times["longest"], spent)
gc.callbacks.append(_timed)
def _write(*_):
    out = os.path.join(os.environ["DIGITNET_GC_BENCH"], f"{os.getpid()}.json")
    with open(out, "w") as f:
        json.dump({"collections": [g["collections"] for g in gc.get_stats()], "seconds": _times["total"],
                   "longest": _times["longest"], "tracked": len(gc.get_objects())}, f)
    _times["longest"] = 0.0
signal.signal(signal.SIGUSR2, _write)
"""


def snapshot(pid: int, folder: Path) -> dict[str, Any]:
    """The server's collector totals now."""
    out = folder / f"{pid}.json"
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline, "the server wrote no collector totals"
        time.sleep(0.05)
    time.sleep(0.05)  # written whole
    return dict(json.loads(out.read_text()))


def measure(checkout: Path | None, traced: bool, folder: Path, concurrency: int, seconds: float) -> dict[str, float]:
    """One server under load: requests/s, collections per 1,000 requests by generation, collector µs per request,
    the longest collection (ms) and the objects the collector tracks at the end."""
    http = free_port()
    env = server_environment(checkout)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH", "")]))
    env["DIGITNET_GC_BENCH"] = str(folder)
    if traced:
        env |= {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", **TRACE_1}
    server, port = oip_bench.start_digitnet("--http-port", str(http), env=env)
    try:
        asyncio.run(oip_bench.wait_ready(port))
        rest_bench.wait_ready(http)
        asyncio.run(rest_bench.load(http, "probabilities", 4, 1.0))  # warm up
        before = snapshot(server.pid, folder)
        latencies, errors, elapsed = asyncio.run(rest_bench.load(http, "probabilities", concurrency, seconds))
        after = snapshot(server.pid, folder)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert errors == 0, f"{errors} errors"
    requests = len(latencies)
    row = {"rate": requests / elapsed, "us": (after["seconds"] - before["seconds"]) / requests * 1e6, "longest": after["longest"] * 1e3}
    row |= {f"gen{g}": (a - b) / requests * 1000 for g, (a, b) in enumerate(zip(after["collections"], before["collections"]))}
    return row | {"tracked": after["tracked"]}


def main() -> None:
    """Measure each server twice (A B B A); print a row per run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="also another checkout's digitnet")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    checkouts: dict[str, Path | None] = {"this checkout": None}
    if args.baseline is not None:
        checkouts[baseline_name(args.baseline)] = args.baseline
    servers = [(name, checkout, traced) for name, checkout in checkouts.items() for traced in (False, True)]
    folder = Path(tempfile.mkdtemp(prefix="digitnet-gc-"))
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    print(f"{cpu_name()}; REST, one FP32 image per ModelInfer request, concurrency {args.concurrency}, {args.seconds:g} s a run\n")
    print("| server | tracing | requests/s | collections per 1,000 requests (gen 0, 1, 2) | collector µs per request ", end="")
    print("| longest collection | objects tracked |")
    print("|---|---|---:|---|---:|---:|---:|")
    try:
        for name, checkout, traced in servers + servers[::-1]:
            row = measure(checkout, traced, folder, args.concurrency, args.seconds)
            counts = ", ".join(f"{row[f'gen{g}']:.2f}" for g in range(3))
            cost = f"{row['us']:.1f} | {row['longest']:.1f} ms | {row['tracked']:,.0f}"
            print(f"| {name} | {'1 %' if traced else 'off'} | {row['rate']:,.0f} | {counts} | {cost} |", flush=True)
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
