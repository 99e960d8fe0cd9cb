"""Where tracing's cost goes: a server traced at a sampling ratio and one untraced, each loaded twice in turn while
py-spy samples its stacks; prints each one's busy time per request, the share of the traced one's spent in digitnet's
tracing code (and the OpenTelemetry SDK under it), and the functions whose time per request differs most.

A throughput table (bench/telemetry_bench.py) compares whole processes, whose own differences are a few percent;
this counts the tracing work inside one process. py-spy is not a dependency: `pip install py-spy` (or --py-spy PATH).

Usage:
    ./dev run python bench/tracing_profile.py [--sample 0.01] [--transport grpc] [--concurrency 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import oip_bench
import rest_bench
from machine import cpu_name
from oip_bench import free_port, server_environment

#: A sample is tracing's when its stack passes through one of these (the SDK's frames are under them).
TRACING_FRAMES = {
    "server span (start, sampler, context)": "server_span (service/telemetry/tracing.py",
    "server span's end": "end_server_span (service/telemetry/tracing.py",
    "trace headers read": "trace_carrier (service/telemetry/tracing.py",
    "child spans (steps)": "service/inference/spans.py",
}
#: How often py-spy samples the server, per second.
RATE = 500


def profile(otel: dict[str, str] | None, transport: str, concurrency: int, seconds: float, py_spy: str) -> tuple[float, list[tuple[list[str], int]]]:
    """Serve (traced as `otel` says, or not), load and sample: requests/s, and each sampled stack with its count."""
    http = free_port()
    server, port = oip_bench.start_digitnet("--http-port", str(http), env=server_environment() | (otel or {}))
    folder = Path(tempfile.mkdtemp(prefix="digitnet-spy-"))
    try:
        asyncio.run(oip_bench.wait_ready(port))
        rest_bench.wait_ready(http)
        client, address = (oip_bench, port) if transport == "grpc" else (rest_bench, http)
        asyncio.run(client.load(address, "probabilities", 4, 1.0))  # warm up
        spy = [py_spy, "record", "-p", str(server.pid), "-d", str(int(seconds)), "-r", str(RATE), "-f", "raw", "-o", str(folder / "stacks.txt")]
        spy.append("--nonblocking")  # sample without pausing the server
        sampler = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        latencies, errors, elapsed = asyncio.run(client.load(address, "probabilities", concurrency, seconds))
        assert errors == 0, f"{errors} errors"
        _, complaint = sampler.communicate(timeout=60)
        if sampler.returncode != 0:
            raise SystemExit(f"py-spy could not sample the server: {complaint.strip().splitlines()[-1:]}")
        stacks = []
        for line in (folder / "stacks.txt").read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():  # a frame's name may hold a line break: the line without a count is a piece of one
                stacks.append((stack.split(";"), int(count)))
        return len(latencies) / elapsed, stacks
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder)


def per_request(stacks: list[tuple[list[str], int]], requests: float) -> Counter[str]:
    """Busy µs per request in each function's own code (the stack's last frame, without its line number)."""
    mine = Counter[str]()
    for frames, count in stacks:
        mine[frames[-1].rsplit(":", 1)[0]] += count
    return Counter({name: count / RATE / requests * 1e6 for name, count in mine.items()})


def main() -> None:
    """Profile both servers; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=float, default=0.01, help="the share of traces sampled")
    parser.add_argument("--transport", choices=("grpc", "rest"), default="grpc")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "", help="the py-spy binary")
    args = parser.parse_args()
    if not args.py_spy:
        raise SystemExit("py-spy is not installed: pip install py-spy, or give --py-spy PATH")
    otel = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}  # a collector that is down
    otel |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(args.sample)}
    # In the order traced, untraced, untraced, traced: neither gains from the machine's drift over the run.
    runs = {name: [profile(env, args.transport, args.concurrency, args.seconds, args.py_spy)] for name, env in (("traced", otel), ("untraced", None))}
    runs["untraced"].append(profile(None, args.transport, args.concurrency, args.seconds, args.py_spy))
    runs["traced"].append(profile(otel, args.transport, args.concurrency, args.seconds, args.py_spy))
    traced_rate, traced = sum(rate for rate, _ in runs["traced"]) / 2, [stack for _, stacks in runs["traced"] for stack in stacks]
    off_rate, off = sum(rate for rate, _ in runs["untraced"]) / 2, [stack for _, stacks in runs["untraced"] for stack in stacks]
    seconds = 2 * args.seconds
    total = sum(count for _, count in traced)
    shares = Counter[str]()
    for frames, count in traced:
        stack = ";".join(frames)
        name = next((name for name, frame in TRACING_FRAMES.items() if frame in stack), None)  # a sample counts once
        if name is not None:
            shares[name] += count
    traced_us, off_us = per_request(traced, traced_rate * seconds), per_request(off, off_rate * seconds)
    print(f"{cpu_name()}; {args.transport}, concurrency {args.concurrency}, twice {args.seconds:g} s each (traced, untraced, untraced, traced)")
    print(f"py-spy: {RATE} samples a second of the server's busy threads\n")
    print("| server | requests/s | busy µs per request |\n|---|---:|---:|")
    print(f"| traced, {args.sample:g} sampled | {traced_rate:,.0f} | {sum(traced_us.values()):,.0f} |")
    print(f"| untraced | {off_rate:,.0f} | {sum(off_us.values()):,.0f} |\n")
    print("| tracing work in the traced server | samples | share of its busy time | µs per request |\n|---|---:|---:|---:|")
    for name in [*TRACING_FRAMES, "all of it"]:
        count = sum(shares.values()) if name == "all of it" else shares[name]
        print(f"| {name} | {count:,} | {count / total:.1%} | {count / RATE / (traced_rate * seconds) * 1e6:.1f} |")
    print("\nThe functions whose own busy µs per request differ most (traced minus untraced):\n")
    print("| function | traced | untraced | difference |\n|---|---:|---:|---:|")
    differences = {name: traced_us[name] - off_us[name] for name in traced_us.keys() | off_us.keys()}
    for name, difference in sorted(differences.items(), key=lambda item: -abs(item[1]))[:12]:
        print(f"| {name} | {traced_us[name]:.1f} | {off_us[name]:.1f} | {difference:+.1f} |")


if __name__ == "__main__":
    main()
