"""Benchmark the gRPC service against in-process onnxruntime and a bare grpcio echo server, side by side.

Run: ./dev run python bench/serve_bench.py [--seconds 2] [--workers 1 2] [--concurrency 1 8 32]
Prints a markdown table; the numbers in docs/benchmarks.md come from it. Client and servers share
this machine's cores over loopback, so compare rows of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.contract.model import Model

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "default.onnx"
ECHO_METHOD = "/bench.Echo/Echo"
CHANNELS = 4  # several connections, so that SO_REUSEPORT can spread them over worker processes
BATCH = 1000  # default images per batch call


@dataclass
class Result:
    """Latencies of one measured configuration."""

    name: str
    workers: int
    concurrency: int
    latencies: list[float]
    seconds: float
    items_per_call: int = 1
    errors: int = 0

    def row(self) -> str:
        """Format as a markdown table row."""
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1e3 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else float("nan")
        rate = len(lat) * self.items_per_call / self.seconds
        return f"| {self.name} | {self.workers} | {self.concurrency} | {p50:.3f} | {p99:.3f} | {rate:,.0f} | {self.errors} |"


def _echo_worker(port: int, use_aio: bool) -> None:
    options = [("grpc.so_reuseport", 1)]
    if use_aio:

        async def echo(request: bytes, context: object) -> bytes:
            return request[:40]

        async def run() -> None:
            server = grpc.aio.server(options=options)
            handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
            server.add_generic_rpc_handlers((handler,))
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        asyncio.run(run())
        return
    server = grpc.server(futures.ThreadPoolExecutor(16), options=options)
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request[:40])})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_echo(workers: int, use_aio: bool) -> tuple[list[multiprocessing.Process], int]:
    """Start a bare grpcio server (sync or aio) echoing 40 bytes back, in `workers` processes on one port."""
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_echo_worker, args=(port, use_aio), daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    time.sleep(1.5)
    return processes, port


def start_digitnet(workers: int) -> tuple[subprocess.Popen[str], int]:
    """Start `digitnet serve` with N workers and wait until every worker serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", "0", "--workers", str(workers)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    ready = 0
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"serving on port (\d+)", line)
        if found:
            ready += 1
            if ready == workers:
                return process, int(found.group(1))
    raise RuntimeError("digitnet serve exited before serving")


async def measure(name: str, workers: int, concurrency: int, seconds: float, call: Callable[[int], Awaitable[object]], items: int = 1) -> Result:
    """Run `call` from `concurrency` tasks for `seconds`, recording each call's latency."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def loop(slot: int) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                await call(slot)
            except grpc.RpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return Result(name, workers, concurrency, latencies, time.perf_counter() - began, items, errors)


def inprocess_rows(seconds: float, batch: int) -> list[str]:
    """The whole model in process (input form + network: one onnxruntime call, one thread), on the digit the
    gRPC rows send: one image and a batch per call."""
    model = Model.load(MODEL, threads=1)
    digit = np.asarray(Image.open(REPO / "tests" / "golden" / "3_mnist.png"), dtype=np.float32).reshape(1, 784) / 255
    rows = []
    for n in (1, batch):
        x = np.repeat(digit, n, axis=0)
        lat = []
        stop_at = time.perf_counter() + seconds
        began = time.perf_counter()
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            model.run(x)
            lat.append(time.perf_counter() - t)
        name = f"whole model in process (form + network, one onnxruntime call), batch {n}"
        rows.append(Result(name, 0, 1, lat, time.perf_counter() - began, n).row())
    return rows


async def grpc_rows(workers: int, concurrencies: list[int], seconds: float, batch: int) -> list[str]:
    """Echo floor, Classify (raw, PNG), ClassifyStream and ClassifyBatch against servers with N workers."""
    digit = np.asarray(Image.open(REPO / "tests" / "golden" / "3_mnist.png"), dtype=np.uint8)
    raw = digit.tobytes()
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    png = buffer.getvalue()
    rows: list[str] = []

    for use_aio in (False, True):
        echo_processes, echo_port = start_echo(workers, use_aio)
        try:
            channels = [grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}") for _ in range(CHANNELS)]
            echoes = [c.unary_unary(ECHO_METHOD) for c in channels]
            name = f"echo floor: bare grpc{'.aio' if use_aio else ' sync'} server, 784 B in, 40 B out"
            for concurrency in concurrencies:
                rows.append((await measure(name, workers, concurrency, seconds, lambda s: echoes[s % CHANNELS](raw))).row())
            for c in channels:
                await c.close()
        finally:
            for process in echo_processes:
                process.kill()

    server, port = start_digitnet(workers)
    try:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(CHANNELS)]
        stubs = [pb_grpc.DigitClassifierStub(c) for c in channels]
        raw_request = pb.ClassifyRequest(image=pb.Image(mnist_uint8=raw))
        png_request = pb.ClassifyRequest(image=pb.Image(encoded=png))
        batch_request = pb.ClassifyBatchRequest(mnist_uint8=raw * batch)  # the packed fast path
        for concurrency in concurrencies:
            for label, request in (("Classify, raw uint8", raw_request), ("Classify, PNG bytes", png_request)):
                result = await measure(label, workers, concurrency, seconds, lambda s, r=request: stubs[s % CHANNELS].Classify(r))
                rows.append(result.row())
            streams = [stubs[s % CHANNELS].ClassifyStream() for s in range(concurrency)]

            async def ping(slot: int) -> object:
                await streams[slot].write(raw_request)
                return await streams[slot].read()

            rows.append((await measure("ClassifyStream, raw uint8 (ping-pong)", workers, concurrency, seconds, ping)).row())
            for stream in streams:
                await stream.done_writing()
        for concurrency in (1, 2):
            result = await measure(
                f"ClassifyBatch, {batch} packed uint8",
                workers,
                concurrency,
                seconds,
                lambda s: stubs[s % CHANNELS].ClassifyBatch(batch_request),
                batch,
            )
            rows.append(result.row())
        for c in channels:
            await c.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def main() -> None:
    """Run every configuration and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per row")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch", type=int, default=BATCH, help="images per ClassifyBatch / in-process batch")
    args = parser.parse_args()
    print("| configuration | workers | concurrency | p50 ms | p99 ms | items/s | errors |")
    print("|---|---|---|---|---|---|---|")
    for row in inprocess_rows(args.seconds, args.batch):
        print(row, flush=True)
    for workers in args.workers:
        for row in asyncio.run(grpc_rows(workers, args.concurrency, args.seconds, args.batch)):
            print(row, flush=True)


if __name__ == "__main__":
    main()
