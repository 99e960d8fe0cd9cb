"""What tracing costs: one server with tracing off, one sampling 1% of traces, one sampling all, and one sampling
all into a collector that is down, serving at once and measured in turns.

Every traced server exports over OTLP/gRPC to a receiver in a process of its own (opentelemetry-proto's
TraceService, counting the spans it gets) on this machine; the "collector down" server exports to a closed port.
Each round measures the servers in a rotated order, so that none gains from going first. One FP32 image per OIP
ModelInfer request, over gRPC (tritonclient) and REST (JSON), from `concurrency` tasks; the clients send no trace
context, so the server's sampler decides (parentbased_traceidratio). Prints requests/s per run, the median, server
CPU µs per request, and the median against tracing off.

Usage:
    ./dev run python bench/tracing_bench.py [--concurrency 1 16] [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import oip_bench
import rest_bench
from machine import cpu_name
from oip_bench import MODEL, REPO, cpu_seconds, free_port

#: The servers measured: their name in the table and the OTEL_* variables they run with (None: tracing off).
CONFIGS: dict[str, dict[str, str] | None] = {
    "tracing off": None,
    "on, 1% sampled": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "on, 100% sampled": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, 100%, collector down": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


def _receive(port: int, count: Any) -> None:
    """An OTLP/gRPC trace receiver that counts the spans it is sent (run in a process of its own)."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's method name
            with count.get_lock():
                count.value += sum(len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def start(otel: dict[str, str] | None, endpoint: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """One `digitnet serve` (gRPC and HTTP), traced as `otel` says; its process, gRPC and HTTP ports."""
    port, http = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if otel is not None:
        env |= {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true", **otel}
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", str(port), "--http-port", str(http)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env)
    asyncio.run(oip_bench.wait_ready(port))
    rest_bench.wait_ready(http)
    return process, port, http


def loader(transport: str, port: int, http: int) -> Callable[[int, float], tuple[int, float]]:
    """A function that loads one server over one transport: (concurrency, seconds) -> (requests, elapsed)."""

    def load(concurrency: int, seconds: float) -> tuple[int, float]:
        if transport == "grpc":
            latencies, errors, elapsed = asyncio.run(oip_bench.load(port, "probabilities", concurrency, seconds))
        else:
            latencies, errors, elapsed = asyncio.run(rest_bench.load(http, "probabilities", concurrency, seconds))
        assert errors == 0, f"{errors} errors"
        return len(latencies), elapsed

    return load


def main() -> None:
    """Start the receiver and the servers; measure each transport and concurrency; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--transport", nargs="+", choices=("grpc", "rest"), default=["grpc", "rest"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    receiver_port, closed = free_port(), free_port()
    spans = multiprocessing.Value("q", 0)
    receiver = multiprocessing.Process(target=_receive, args=(receiver_port, spans), daemon=True)
    receiver.start()
    servers: dict[str, tuple[subprocess.Popen[bytes], int, int]] = {}
    try:
        for name, otel in CONFIGS.items():
            down = name.endswith("collector down")
            servers[name] = start(otel, f"http://127.0.0.1:{closed if down else receiver_port}")
        print(f"{cpu_name()}; one FP32 image per ModelInfer request; {args.rounds} rounds of {args.seconds:g} s, the order rotated\n")
        for transport in args.transport:
            print(f"{transport}:\n")
            print("| server | concurrency | requests/s per run | median | vs off | server CPU µs per request (median) |")
            print("|---|---|---|---:|---:|---:|")
            loads = {name: loader(transport, port, http) for name, (_, port, http) in servers.items()}
            for load in loads.values():
                load(4, 1.0)  # warm up
            for concurrency in args.concurrency:
                rates: dict[str, list[float]] = {name: [] for name in servers}
                cpu: dict[str, list[float]] = {name: [] for name in servers}
                names = list(servers)
                for round_ in range(args.rounds):
                    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                        process = servers[name][0]
                        before = cpu_seconds(process.pid)
                        requests, elapsed = loads[name](concurrency, args.seconds)
                        rates[name].append(requests / elapsed)
                        cpu[name].append((cpu_seconds(process.pid) - before) / requests * 1e6)
                off = statistics.median(rates["tracing off"])
                for name in names:
                    median = statistics.median(rates[name])
                    runs = ", ".join(f"{rate:,.0f}" for rate in rates[name])
                    cost = statistics.median(cpu[name])
                    print(f"| {name} | {concurrency} | {runs} | {median:,.0f} | {median / off - 1:+.1%} | {cost:,.0f} |", flush=True)
            print()
        time.sleep(6)  # the exporters' last batches (every 5 s)
        print(f"spans received: {spans.value:,}; every server still running: {all(p.poll() is None for p, _, _ in servers.values())}")
    finally:
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        receiver.terminate()
        receiver.join(timeout=10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
