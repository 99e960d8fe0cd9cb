"""Benchmark the Open Inference Protocol's REST endpoint against KServe's and MLServer's, with one client:
tritonclient.http.aio sending JSON FP32 [1, 784] requests (with `Content-Type: application/json`, which
KServe needs), answers read as JSON.

Run: ./dev run python bench/rest_bench.py [--seconds 3] [--concurrency 1 16] [--rounds 2] [--no-mlserver]
The peers are bench/oip_bench.py's (same environments under bench/out/, same model: KServe serves the ONNX
file with onnxruntime, MLServer its scikit-learn twin). The servers are measured in turn, `--rounds` times.
Prints a markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.http.aio as triton
from machine import cpu_name
from oip_bench import (
    MODEL,
    SEVEN,
    Call,
    arguments,
    baseline_name,
    code_of,
    cpu_seconds,
    free_port,
    prepare_peers,
    row,
    run_for,
    start_kserve,
    start_mlserver,
)

REPO = MODEL.parents[1]
JSON = {"Content-Type": "application/json"}


def start_digitnet(http_port: int, checkout: Path | None = None) -> subprocess.Popen[bytes]:
    """`digitnet serve` with HTTP on http_port: this checkout's code, or another's (`checkout`)."""
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", "0", "--http-port", str(http_port)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=code_of(checkout))


def wait_ready(port: int, timeout: float = 120) -> None:
    """Poll GET /v2/models/digitnet/ready until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/digitnet/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no model ready on port {port} after {timeout} s")


async def load(port: int, output: str, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    """Send single-image JSON requests from `concurrency` tasks for `seconds`; return latencies, errors, elapsed."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}", conn_limit=max(concurrency, 1))

    def make_call() -> Call:
        tensor = triton.InferInput("pixels", [1, 784], "FP32")
        tensor.set_data_from_numpy(SEVEN, binary_data=False)
        wanted = [triton.InferRequestedOutput(output, binary_data=False)]

        async def call() -> None:
            # An id on every request: KServe 0.21 answers 500 to a REST request without one (its response model needs it).
            result = await client.infer("digitnet", [tensor], outputs=wanted, headers=JSON, request_id="1")
            assert int(np.argmax(result.as_numpy(output))) == 7

        return call

    try:
        return await run_for(seconds, concurrency, make_call)
    finally:
        await client.close()


def main() -> None:
    """Measure digitnet's, KServe's and MLServer's REST endpoints in one run."""
    args = arguments(__doc__)
    folder = prepare_peers(not args.no_mlserver, not args.no_kserve)
    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} CPUs; client and server on the same machine\n")
    print("| server (REST, JSON) | concurrency | p50 ms | p99 ms | requests/s | server CPU µs per request | errors |")
    print("|---|---|---|---|---|---|---|")
    configurations: list[tuple[str, Callable[[int], subprocess.Popen[bytes]], str]] = [
        ("digitnet", start_digitnet, "probabilities"),
    ]
    if args.baseline:
        checkout = args.baseline
        configurations.append((baseline_name(checkout), lambda port: start_digitnet(port, checkout), "probabilities"))
    if not args.no_kserve:
        configurations.append(("KServe 0.21 ModelServer, onnxruntime, logging off", lambda port: start_kserve(port)[0], "probabilities"))
    if not args.no_mlserver:
        configurations.append(("MLServer 1.7.1, parallel_workers=0", lambda port: start_mlserver(folder, 0, port)[0], "predict_proba"))
    for name, start, output in configurations * args.rounds:
        port = free_port()
        process = start(port)
        try:
            wait_ready(port)
            asyncio.run(load(port, output, 4, 1.0))  # warm up
            for concurrency in args.concurrency:
                before = cpu_seconds(process.pid)
                latencies, errors, elapsed = asyncio.run(load(port, output, concurrency, args.seconds))
                print(row(name, concurrency, latencies, errors, elapsed, cpu_seconds(process.pid) - before), flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
