"""What tracing and the payload log cost: servers with each turned off and on, serving at once and measured in turns.

The servers: both features off, twice (two identical processes: how far they differ is the noise floor); tracing
sampling 1 % and 100 % of traces (and 100 % into a collector that is down); the payload log keeping 1 % (its
default) and every call; both at 1 %; and, with --baseline, another checkout's digitnet (e.g. the commit before the
features existed), which says what "off" costs. Every traced server exports over OTLP/gRPC to a receiver in a
process of its own (opentelemetry-proto's TraceService, counting the spans it gets) on this machine; "collector
down" exports to a closed port. The payload logs are written to a temporary folder. Each round measures the
servers in a rotated order, so that none gains from going first. One FP32 image per OIP ModelInfer request, over
gRPC (tritonclient) and REST (JSON), from `concurrency` tasks; the clients send no trace context, so the server's
sampler decides (parentbased_traceidratio). Prints requests/s per run, the median, the median against both off,
and server CPU µs per request.

Usage:
    git worktree add /tmp/before b88939e    # main before issue 28
    ./dev run python bench/telemetry_bench.py --baseline /tmp/before [--concurrency 1 16] [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oip_bench
import rest_bench
from machine import cpu_name
from oip_bench import baseline_name, cpu_seconds, free_port, server_environment

OFF = "both off"
TRACE_1 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
TRACE_ALL = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
#: Requests each server answered, warm-ups included: what its payload log is compared with.
SERVED: dict[str, int] = {}


@dataclass(frozen=True)
class Config:
    """One server measured: the OTEL_* variables it runs with (None: no tracing), its payload log's sample (None:
    no payload log), whether its collector is down, and the checkout it runs (None: this one)."""

    otel: dict[str, str] | None = None
    payload_sample: float | None = None
    collector_down: bool = False
    checkout: Path | None = field(default=None, compare=False)


CONFIGS: dict[str, Config] = {
    OFF: Config(),
    # The same server twice: how far two identical processes differ is the table's noise floor.
    "both off, a second process": Config(),
    "tracing, 1% sampled": Config(otel=TRACE_1),
    "tracing, 100% sampled": Config(otel=TRACE_ALL),
    "tracing, 100%, collector down": Config(otel=TRACE_ALL, collector_down=True),
    "payload log, 1% (its default)": Config(payload_sample=0.01),
    "payload log, every call": Config(payload_sample=1.0),
    "both, 1% each": Config(otel=TRACE_1, payload_sample=0.01),
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


def start(config: Config, endpoint: str, payload_log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """One `digitnet serve` (gRPC and HTTP) as `config` says; its process, gRPC and HTTP ports."""
    http = free_port()
    env = server_environment(config.checkout)
    if config.otel is not None:
        env |= {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true", **config.otel}
    flags = ["--http-port", str(http)]
    if config.payload_sample is not None:
        flags += ["--payload-log", str(payload_log), "--payload-log-sample", str(config.payload_sample)]
    process, port = oip_bench.start_digitnet(*flags, env=env)
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


def records(log: Path) -> int:
    """How many records a server's payload log holds (its rotated files included)."""
    total = 0
    for path in log.parent.glob(f"{log.name}*"):
        with path.open("rb") as lines:
            total += sum(1 for _ in lines)
    return total


def main() -> None:
    """Start the receiver and the servers; measure each transport and concurrency; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="also another checkout's digitnet, both features off (e.g. before them)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--transport", nargs="+", choices=("grpc", "rest"), default=["grpc", "rest"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    configs = dict(CONFIGS)
    if args.baseline is not None:
        configs = {baseline_name(args.baseline): Config(checkout=args.baseline), **configs}
    receiver_port, closed = free_port(), free_port()
    spans = multiprocessing.Value("q", 0)
    receiver = multiprocessing.Process(target=_receive, args=(receiver_port, spans), daemon=True)
    receiver.start()
    servers: dict[str, tuple[subprocess.Popen[bytes], int, int]] = {}
    logs = Path(tempfile.mkdtemp(prefix="digitnet-payloads-"))
    started = time.monotonic()
    try:
        for number, (name, config) in enumerate(configs.items()):
            endpoint = f"http://127.0.0.1:{closed if config.collector_down else receiver_port}"
            servers[name] = start(config, endpoint, logs / f"server{number}.jsonl")
        print(f"{cpu_name()}; one FP32 image per ModelInfer request; {args.rounds} rounds of {args.seconds:g} s, the order rotated\n")
        for transport in args.transport:
            print(f"{transport}:\n")
            print("| server | concurrency | requests/s per run | median | vs both off | server CPU µs per request (median) |")
            print("|---|---|---|---:|---:|---:|")
            loads = {name: loader(transport, port, http) for name, (_, port, http) in servers.items()}
            for name, load in loads.items():
                SERVED[name] = SERVED.get(name, 0) + load(4, 1.0)[0]  # warm up
            for concurrency in args.concurrency:
                measure(servers, loads, concurrency, args.rounds, args.seconds)
            print()
        time.sleep(6)  # the exporters' last batches (every 5 s)
        print(f"spans received: {spans.value:,}; every server still running: {all(p.poll() is None for p, _, _ in servers.values())}")
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        for number, (name, config) in enumerate(configs.items()):
            if config.payload_sample is not None:  # written in full once its server has stopped
                print(f"{name}: {records(logs / f'server{number}.jsonl'):,} payload records of {SERVED[name]:,} requests")
        print(f"{time.monotonic() - started:.0f} s")
    finally:
        for process, _, _ in servers.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        receiver.terminate()
        receiver.join(timeout=10)
        shutil.rmtree(logs)


def measure(
    servers: dict[str, tuple[subprocess.Popen[bytes], int, int]],
    loads: dict[str, Callable[[int, float], tuple[int, float]]],
    concurrency: int,
    rounds: int,
    seconds: float,
) -> None:
    """Load every server `rounds` times at `concurrency`, in a rotated order; print a row per server."""
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    names = list(servers)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            process = servers[name][0]
            before = cpu_seconds(process.pid)
            requests, elapsed = loads[name](concurrency, seconds)
            SERVED[name] = SERVED.get(name, 0) + requests
            rates[name].append(requests / elapsed)
            cpu[name].append((cpu_seconds(process.pid) - before) / requests * 1e6)
    off = statistics.median(rates[OFF])
    for name in names:
        median = statistics.median(rates[name])
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[name])
        print(f"| {name} | {concurrency} | {runs} | {median:,.0f} | {median / off - 1:+.1%} | {statistics.median(cpu[name]):,.0f} |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
