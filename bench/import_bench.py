"""Benchmark what importing the light client costs, beside its floor (grpc + numpy) and, optionally, an older tree.

Run: ./dev run python bench/import_bench.py [--before DIR] [--runs 15]
DIR is a non-editable install of an older commit, e.g.
    git -C /tmp clone -q /path/to/digitnet old && git -C /tmp/old checkout -q 4fc59fb
    ./dev run pip install -q --no-deps --target /tmp/old-site /tmp/old
Each row starts a fresh interpreter per run and times the import inside it (perf_counter), so the
interpreter's own start-up is not counted; rows of one run compare. Prints a markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from machine import cpu_name

#: Modules whose presence after the import says the client pulled in the server.
SERVER_ONLY = ("onnxruntime", "onnx", "cv2", "PIL", "prometheus_client", "matplotlib", "pydantic")

_PROBE = """
import sys, time, json
started = time.perf_counter()
{statement}
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "loaded": [m for m in {server_only!r} if m in sys.modules]}}))
"""


def _measure(statement: str, runs: int, pythonpath: str | None = None) -> tuple[list[float], list[str]]:
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    probe = _PROBE.format(statement=statement, server_only=SERVER_ONLY)
    seconds, loaded = [], []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
        result = json.loads(done.stdout)
        seconds.append(result["seconds"])
        loaded = result["loaded"]
    return seconds, loaded


def main() -> None:
    """Print one row per import."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a --target install of an older digitnet, measured on the same rows")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rows = [
        ("the floor: import grpc, numpy", "import grpc, numpy", None),
        ("import digitnet.service.client", "import digitnet.service.client", None),
        ("... and DigitClient('127.0.0.1:1')", "import digitnet.service.client as c; c.DigitClient('127.0.0.1:1').close()", None),
    ]
    if args.before:
        # Before the layers, the client lived at digitnet.service.client (a module).
        rows.append(("before: import digitnet.service.client", "import digitnet.service.client", str(args.before)))
    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {args.runs} fresh interpreters per row\n")
    print("| import | median s | min s | server modules loaded |")
    print("|---|---:|---:|---|")
    for name, statement, pythonpath in rows:
        seconds, loaded = _measure(statement, args.runs, pythonpath)
        print(f"| {name} | {statistics.median(seconds):.3f} | {min(seconds):.3f} | {', '.join(loaded) or 'none'} |")


if __name__ == "__main__":
    main()
