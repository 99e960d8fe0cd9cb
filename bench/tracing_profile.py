"""Where tracing's cost goes: one server traced at a sampling ratio, loaded while py-spy samples its stacks; prints
the share of the server's samples spent in digitnet's tracing code and the OpenTelemetry SDK under it.

A throughput table (bench/telemetry_bench.py) compares whole processes, whose own differences are a few percent;
this counts the tracing work inside one process. py-spy is not a dependency: `pip install py-spy` (or --py-spy PATH).

Usage:
    ./dev run python bench/tracing_profile.py [--sample 0.01] [--transport grpc] [--concurrency 16] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import oip_bench
import rest_bench
from machine import cpu_name
from oip_bench import MODEL, REPO, free_port

#: A sample is tracing's when its stack passes through one of these (the SDK's frames are under them).
TRACING_FRAMES = {
    "server span (start, sampler, context)": "server_span (service/telemetry/tracing.py",
    "server span's end": "end_server_span (service/telemetry/tracing.py",
    "trace headers read": "trace_carrier (service/telemetry/tracing.py",
    "child spans (steps)": "service/inference/spans.py",
}


def main() -> None:
    """Serve, load and sample; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=float, default=0.01, help="the share of traces sampled")
    parser.add_argument("--transport", choices=("grpc", "rest"), default="grpc")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "", help="the py-spy binary")
    args = parser.parse_args()
    if not args.py_spy:
        raise SystemExit("py-spy is not installed: pip install py-spy, or give --py-spy PATH")
    port, http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}  # a collector that is down
    env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(args.sample)}
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", str(port), "--http-port", str(http)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env)
    stacks = Path(tempfile.mkdtemp(prefix="digitnet-spy-")) / "stacks.txt"
    try:
        asyncio.run(oip_bench.wait_ready(port))
        rest_bench.wait_ready(http)
        client, address = (oip_bench, port) if args.transport == "grpc" else (rest_bench, http)
        asyncio.run(client.load(address, "probabilities", 4, 1.0))  # warm up
        spy = [args.py_spy, "record", "-p", str(server.pid), "-d", str(int(args.seconds)), "-r", "500", "-f", "raw", "-o", str(stacks)]
        spy.append("--nonblocking")  # sample without pausing the server
        sampler = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        latencies, errors, elapsed = asyncio.run(client.load(address, "probabilities", args.concurrency, args.seconds))
        _, complaint = sampler.communicate(timeout=60)
        if sampler.returncode != 0:
            raise SystemExit(f"py-spy could not sample the server: {complaint.strip().splitlines()[-1:]}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    total, shares = 0, Counter[str]()
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        found = [name for name, frame in TRACING_FRAMES.items() if frame in stack]
        for name in found[:1]:
            shares[name] += int(count)
    stacks.unlink()
    stacks.parent.rmdir()
    print(f"{cpu_name()}; {args.transport}, concurrency {args.concurrency}, {len(latencies) / elapsed:,.0f} requests/s, {errors} errors;")
    print(f"tracing sampling {args.sample:g}; {total:,} stack samples of the server (py-spy, 500 a second, busy threads only)\n")
    print("| tracing work | samples | share of the server's |\n|---|---:|---:|")
    for name in TRACING_FRAMES:
        print(f"| {name} | {shares[name]:,} | {shares[name] / total:.1%} |")
    print(f"| all of it | {sum(shares.values()):,} | {sum(shares.values()) / total:.1%} |")


if __name__ == "__main__":
    main()
