"""This checkout's digitnet against another's (a baseline), both serving at once and measured in turns.

Both servers run the whole time, and each round measures them in the order A B B A, so that neither gains
from going first or from the machine's other work at one moment; it prints each run's requests/s and server
CPU per request, and the medians. OIP ModelInfer of one FP32 image over gRPC, or the same over REST (JSON).

Usage:
    git worktree add /tmp/base main && ./dev run python bench/compare_bench.py --baseline /tmp/base
    ./dev run python bench/compare_bench.py --baseline /tmp/base --transport rest --concurrency 1 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import oip_bench
import rest_bench
from machine import cpu_name
from oip_bench import baseline_name, cpu_seconds, free_port

#: Each round's order: this checkout (A) and the baseline (B), each first once.
ORDER = ("A", "B", "B", "A")


def start(transport: str, checkout: Path | None) -> tuple[object, Callable[[int, float], tuple[int, float]]]:
    """Start one server; return its process and a function that loads it (concurrency, seconds) -> (requests, elapsed)."""
    if transport == "grpc":
        process, port = oip_bench.start_digitnet("--http-port", "0", checkout=checkout)
        asyncio.run(oip_bench.wait_ready(port))

        def grpc_load(concurrency: int, seconds: float) -> tuple[int, float]:
            latencies, errors, elapsed = asyncio.run(oip_bench.load(port, "probabilities", concurrency, seconds))
            assert errors == 0, f"{errors} errors"
            return len(latencies), elapsed

        return process, grpc_load
    http = free_port()
    rest = rest_bench.start_digitnet(http, checkout)
    rest_bench.wait_ready(http)

    def rest_load(concurrency: int, seconds: float) -> tuple[int, float]:
        latencies, errors, elapsed = asyncio.run(rest_bench.load(http, "probabilities", concurrency, seconds))
        assert errors == 0, f"{errors} errors"
        return len(latencies), elapsed

    return rest, rest_load


def main() -> None:
    """Measure both servers in turns; print a row per run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, metavar="CHECKOUT", help="the other checkout (e.g. a git worktree of main)")
    parser.add_argument("--transport", choices=("grpc", "rest"), default="grpc")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    names = {"A": "this checkout", "B": baseline_name(args.baseline)}
    servers = {"A": start(args.transport, None), "B": start(args.transport, args.baseline)}
    print(f"{cpu_name()}; {args.transport}, one FP32 image per request; runs in the order {' '.join(ORDER)} x {args.rounds}\n")
    print("| server | concurrency | requests/s per run | median | server CPU µs per request (median) |\n|---|---|---|---:|---:|")
    try:
        for _process, load in servers.values():
            load(4, 1.0)  # warm up
        for concurrency in args.concurrency:
            rates: dict[str, list[float]] = {"A": [], "B": []}
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            for who in ORDER * args.rounds:
                process, load = servers[who]
                before = cpu_seconds(process.pid)  # type: ignore[attr-defined]
                requests, elapsed = load(concurrency, args.seconds)
                rates[who].append(requests / elapsed)
                cpu[who].append((cpu_seconds(process.pid) - before) / requests * 1e6)  # type: ignore[attr-defined]
            for who in ("A", "B"):
                runs = ", ".join(f"{rate:,.0f}" for rate in rates[who])
                print(
                    f"| {names[who]} | {concurrency} | {runs} | {statistics.median(rates[who]):,.0f} | {statistics.median(cpu[who]):,.0f} |",
                    flush=True,
                )
    finally:
        for process, _load in servers.values():
            process.terminate()  # type: ignore[attr-defined]
            process.wait(timeout=30)  # type: ignore[attr-defined]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
