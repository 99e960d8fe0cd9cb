"""The model repository's cost and each served model's speed and answers: one model against both, side by side.

Run: ./dev run python bench/repository_bench.py [--starts 5] [--seconds 2] [--rounds 3] [--concurrency 1 8]

- Start-up and memory: `digitnet serve --model models/default.onnx` (one model) and `digitnet serve` (the
  default folder: both committed models), started in turn `--starts` times each (gRPC on a free port, HTTP
  off, as the other OIP benchmarks run it), timed from the process start until its start-up log line and until
  grpc.health answers SERVING. The server's RSS is read once it serves, and again after a fixed load: 1,000
  single-image ModelInfer calls and one of 1,000 images, spread over the models it serves in turn (the same
  calls for both servers).
- Throughput: one `digitnet serve` of both models; tritonclient.grpc.aio unary ModelInfer of one FP32
  [1, 784] MNIST-form image (a 7) per request from `concurrency` tasks, for the ReLU model's name, the
  sigmoid's and `digitnet` (the default's other name), each for `--seconds`; `--rounds` rounds, the names'
  order rotated every round so that the machine's noise falls on all alike.
- Accuracy: the 5,000 bundled digits through that server over gRPC, by each model's name, against the file
  alone in a bare onnxruntime session. These are the digits the committed models were trained on: the rows
  check the serving path (the same answers as the file), not how well the models generalise.

Prints markdown tables (docs/benchmarks.md). Client and server share this machine's cores over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import psutil
import tritonclient.grpc as triton_sync
import tritonclient.grpc.aio as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from machine import cpu_name
from oip_bench import SEVEN, Call, cpu_seconds, run_for

from digitnet.service.contract.card import read_card
from digitnet.service.contract.constants import MODEL_NAME
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import load_dataset

REPO = Path(__file__).resolve().parents[1]
RELU_FILE, SIGMOID_FILE = REPO / "models" / "default.onnx", REPO / "models" / "logistic.onnx"
#: The names the committed models are served by: their cards'.
RELU, SIGMOID = read_card(RELU_FILE).name, read_card(SIGMOID_FILE).name
FILES = {RELU: RELU_FILE, SIGMOID: SIGMOID_FILE}
#: The two servers compared: `digitnet serve` flags.
CONFIGURATIONS = {"one model (`--model models/default.onnx`)": ["--model", str(RELU_FILE)], "both models (the default folder)": []}
#: The fixed load before the second RSS reading: single-image calls, and one call of this many images.
LOAD_CALLS, LOAD_BATCH = 1000, 1000


@dataclass
class Start:
    """One start of a server: how long until it said so and until it served, and its RSS then and after the load."""

    log_seconds: float
    serving_seconds: float
    rss_started: int
    rss_loaded: int


@dataclass
class Runs:
    """One (name, concurrency)'s measured runs."""

    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    errors: int = 0


def server_env() -> dict[str, str]:
    """This environment without the variables that choose the served models: each configuration says its own."""
    return {key: value for key, value in os.environ.items() if key not in ("DIGITNET_MODEL", "DIGITNET_MODEL_REPOSITORY")}


def serve(flags: list[str]) -> tuple[subprocess.Popen[str], int, float, float]:
    """Start `digitnet serve`; return it, its port, and the seconds until its start-up log line and until
    grpc.health answered SERVING."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", *flags, "--port", "0", "--http-port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=REPO, env=server_env())
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"serving on port (\d+)", line)
        if found:
            logged = time.perf_counter() - started
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its pipe drained
            port = int(found.group(1))
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30, wait_for_ready=True)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            return process, port, logged, time.perf_counter() - started
    raise RuntimeError(f"digitnet serve {' '.join(flags)} exited with {process.wait()} before serving")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=60)


def served_names(port: int) -> list[str]:
    """The models the server has loaded (RepositoryIndex: READY)."""
    client = triton_sync.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        return [model.name for model in client.get_model_repository_index().models if model.state == "READY"]
    finally:
        client.close()


def fixed_load(port: int, names: list[str]) -> None:
    """LOAD_CALLS single-image calls and one call of LOAD_BATCH images, over the served models in turn."""
    client = triton_sync.InferenceServerClient(f"127.0.0.1:{port}")
    batch = scale_uint8(load_dataset("mnist5k").images[:LOAD_BATCH])
    try:
        for pixels, count in ((SEVEN, LOAD_CALLS), (batch, 1)):
            tensor = triton_sync.InferInput("pixels", list(pixels.shape), "FP32")
            tensor.set_data_from_numpy(pixels)
            for call in range(count):
                client.infer(names[call % len(names)], [tensor])
    finally:
        client.close()


def measure_start(flags: list[str]) -> Start:
    process, port, logged, serving = serve(flags)
    try:
        rss_started = psutil.Process(process.pid).memory_info().rss
        fixed_load(port, served_names(port))
        return Start(logged, serving, rss_started, psutil.Process(process.pid).memory_info().rss)
    finally:
        stop(process)


async def load(port: int, name: str, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    """Single-image ModelInfer calls naming `name` from `concurrency` tasks for `seconds` (each answer checked)."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")

    def make_call() -> Call:
        tensor = triton.InferInput("pixels", [1, 784], "FP32")
        tensor.set_data_from_numpy(SEVEN)
        wanted = [triton.InferRequestedOutput("probabilities")]

        async def call() -> None:
            result = await client.infer(name, [tensor], outputs=wanted)
            assert int(np.argmax(result.as_numpy("probabilities"))) == 7

        return call

    try:
        return await run_for(seconds, concurrency, make_call)
    finally:
        await client.close()


def accuracy(port: int, name: str, pixels: np.ndarray, labels: np.ndarray) -> tuple[float, int, float]:
    """Through the server by `name`, in calls of 1,000 digits: the accuracy (argmax of the probabilities: digitnet's
    `label` abstains below min_confidence), how many labels equal the file's alone, the largest probability difference."""
    client = triton_sync.InferenceServerClient(f"127.0.0.1:{port}")
    answered = []
    try:
        for start in range(0, len(pixels), 1000):
            part = pixels[start : start + 1000]
            tensor = triton_sync.InferInput("pixels", list(part.shape), "FP32")
            tensor.set_data_from_numpy(part)
            answered.append(client.infer(name, [tensor], outputs=[triton_sync.InferRequestedOutput("probabilities")]).as_numpy("probabilities"))
    finally:
        client.close()
    served = np.concatenate(answered)
    session = ort.InferenceSession(str(FILES[name]), providers=["CPUExecutionProvider"])
    [alone] = session.run(["probabilities"], {"pixels": pixels})
    same = int(np.sum(served.argmax(axis=1) == alone.argmax(axis=1)))
    return float(np.mean(served.argmax(axis=1) == labels)), same, float(np.max(np.abs(served - alone)))


def median_of(values: list[float], form: Callable[[float], str]) -> str:
    return form(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="starts of each server configuration, alternating")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of throughput runs (every name at every concurrency)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    began = time.perf_counter()
    print(f"CPU: {cpu_name()}; onnxruntime {ort.__version__}; models served as {RELU!r} (ReLU, the default) and {SIGMOID!r} (sigmoid)\n")

    starts: dict[str, list[Start]] = {name: [] for name in CONFIGURATIONS}
    for start in range(args.starts):
        order = list(CONFIGURATIONS) if start % 2 == 0 else list(reversed(CONFIGURATIONS))
        for name in order:
            starts[name].append(measure_start(CONFIGURATIONS[name]))
    print(f"Start-up and memory: median of {args.starts} starts each, alternating; RSS after a fixed load of {LOAD_CALLS:,} single-image")
    print(f"calls and one of {LOAD_BATCH:,} images over the served models\n")
    print("| server | start-up log line, s | gRPC health SERVING, s (runs) | RSS once serving, MB | RSS after the load, MB |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in starts.items():
        serving = ", ".join(f"{run.serving_seconds:.2f}" for run in runs)
        print(
            f"| {name} | {median_of([r.log_seconds for r in runs], lambda v: f'{v:.2f}')} "
            f"| {median_of([r.serving_seconds for r in runs], lambda v: f'{v:.2f}')} ({serving}) "
            f"| {median_of([r.rss_started / 2**20 for r in runs], lambda v: f'{v:.1f}')} "
            f"| {median_of([r.rss_loaded / 2**20 for r in runs], lambda v: f'{v:.1f}')} |",
            flush=True,
        )

    process, port, _, _ = serve(CONFIGURATIONS["both models (the default folder)"])
    try:
        assert sorted(served_names(port)) == sorted([RELU, SIGMOID]), served_names(port)
        names = [RELU, SIGMOID, MODEL_NAME]
        asyncio.run(load(port, MODEL_NAME, 4, 1.0))  # warm up
        measured = {(name, concurrency): Runs() for concurrency in args.concurrency for name in names}
        for round_number in range(args.rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for concurrency in args.concurrency:
                for name in order:
                    before = cpu_seconds(process.pid)
                    latencies, errors, elapsed = asyncio.run(load(port, name, concurrency, args.seconds))
                    runs = measured[name, concurrency]
                    runs.rates.append(len(latencies) / elapsed)
                    runs.p50s.append(statistics.median(latencies) * 1e3)
                    runs.cpu.append((cpu_seconds(process.pid) - before) / max(len(latencies), 1) * 1e6)
                    runs.errors += errors
        print(f"\nOIP ModelInfer over gRPC, one server of both models: {args.rounds} rounds of {args.seconds:g} s per name and concurrency\n")
        print("| model asked | concurrency | requests/s per round | median requests/s | p50 ms (median) | server CPU µs/request (median) | errors |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for (name, concurrency), runs in measured.items():
            label = f"`{name}`" + (f" (the default, {RELU!r})" if name == MODEL_NAME else "")
            print(
                f"| {label} | {concurrency} | {', '.join(f'{rate:,.0f}' for rate in runs.rates)} "
                f"| {median_of(runs.rates, lambda v: f'{v:,.0f}')} | {median_of(runs.p50s, lambda v: f'{v:.2f}')} "
                f"| {median_of(runs.cpu, lambda v: f'{v:,.0f}')} | {runs.errors} |",
                flush=True,
            )

        dataset = load_dataset("mnist5k")
        pixels, labels = scale_uint8(dataset.images), dataset.labels
        print(f"\nAccuracy through the server over gRPC on the {len(labels):,} bundled digits (the training digits of both models:")
        print("this checks the serving path, not generalisation)\n")
        print("| model asked | accuracy | labels as the file alone (onnxruntime) | max |Δp| |")
        print("|---|---:|---:|---:|")
        for name in (RELU, SIGMOID):
            right, same, difference = accuracy(port, name, pixels, labels)
            print(f"| `{name}` | {right:.2%} | {same:,} / {len(labels):,} | {difference:.1e} |", flush=True)
    finally:
        stop(process)
    print(f"\n(whole run: {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
