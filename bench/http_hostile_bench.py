"""What hostile HTTP clients can do to `digitnet serve`: lock the HTTP port out with idle connections, grow
its memory with headers, and stall gRPC by posting large JSON bodies.

Run: ./dev run python bench/http_hostile_bench.py [--idle 300] [--flood-mb 100] [--seconds 5]
Each measurement starts its own server (default settings, loopback). Prints a markdown table; the numbers
in docs/benchmarks.md come from it. Client and server share this machine's cores: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import psutil
from machine import cpu_name

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextmanager
def server() -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """`digitnet serve` with its default settings on free ports; yields the process, gRPC and HTTP ports."""
    grpc_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", "--port", str(grpc_port), "--http-port", str(http_port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while probe(http_port) != 200:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield process, grpc_port, http_port
    finally:
        process.terminate()
        process.wait(timeout=30)


def probe(port: int, path: str = "/v2/health/live", timeout: float = 2.0) -> int | str:
    """GET `path` on a new connection: the status, or why there was none."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as connection:
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = connection.recv(256)
    except OSError as err:
        return type(err).__name__
    return int(head.split()[1]) if head.startswith(b"HTTP/1.") else "no answer"


def idle_lockout(limit: int) -> tuple[str, str]:
    """Open idle connections (they send nothing) until a health probe fails or `limit` are open; then count
    how many of them the server still holds 30 s later."""
    with server() as (_, _, port):
        idle: list[socket.socket] = []
        locked_at = "none"
        try:
            while len(idle) < limit:
                idle.extend(socket.create_connection((LOOPBACK, port)) for _ in range(10))
                time.sleep(0.05)
                status = probe(port)
                if status != 200:
                    locked_at = f"{len(idle)} (probe: {status})"
                    break
            time.sleep(30)
            still_open = sum(1 for s in idle if _open(s))
            return locked_at, f"{still_open} of {len(idle)}"
        finally:
            for s in idle:
                s.close()


def _open(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) == b"x"  # b"": closed; an answer (a 408) comes before the close
    except BlockingIOError:
        return True  # nothing to read, still open
    except OSError:
        return False


def header_flood(megabytes: int) -> tuple[str, str]:
    """One connection streams `megabytes` of 1 KB headers (no token needed); the server's peak RSS, and how
    the server answered."""
    with server() as (process, _, port):
        rss = psutil.Process(process.pid)
        before, peak = rss.memory_info().rss, 0
        header = b"X-Flood: " + b"a" * 1014 + b"\r\n"
        answer = "nothing: took it all"
        with socket.create_connection((LOOPBACK, port)) as connection:
            connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            try:
                for sent in range(megabytes * 1024):
                    connection.sendall(header)
                    if sent % 1024 == 0:
                        peak = max(peak, rss.memory_info().rss)
                connection.sendall(b"\r\n")
                connection.settimeout(10)
                head = connection.recv(256)
                answer = head.split(b"\r\n")[0].decode(errors="replace") or "closed"
            except OSError as err:
                answer = f"closed after {sent // 1024} MB ({type(err).__name__}): {_answer_left(connection)}"
        peak = max(peak, rss.memory_info().rss)
        return f"{before / 2**20:,.0f} MB -> {peak / 2**20:,.0f} MB", answer


def _answer_left(connection: socket.socket) -> str:
    """The status line the server sent before closing, if it can still be read."""
    try:
        connection.settimeout(1)
        return connection.recv(256).split(b"\r\n")[0].decode(errors="replace") or "no answer"
    except OSError:
        return "no answer readable"


def grpc_p99_under_json(seconds: float, megabytes: float) -> tuple[str, str]:
    """A small gRPC Classify's p50 and p99 alone, then while another client posts large JSON infer bodies back to back."""
    digit = np.zeros(784, np.uint8)
    digit[300:320] = 255
    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784], "data": []}], "outputs": [{"name": "label"}]}).encode()
    count = int(megabytes * 1024 * 1024 * 0.97) // (784 * 6)  # "0.123," is 6 bytes a pixel; room for the rest
    values = ",".join(["0.123"] * 784 * count)
    body = body.replace(b'"shape": [-1, 784], "data": []', f'"shape": [{count}, 784], "data": [{values}]'.encode())
    results = []
    with server() as (_, grpc_port, http_port):
        with grpc.insecure_channel(f"{LOOPBACK}:{grpc_port}") as channel:
            stub = pb_grpc.DigitClassifierStub(channel)
            request = pb.ClassifyRequest(image=pb.Image(mnist_uint8=digit.tobytes()))
            for loaded in (False, True):
                stop = threading.Event()
                poster = threading.Thread(target=_post_until, args=(http_port, body, stop), daemon=True)
                if loaded:
                    poster.start()
                    time.sleep(0.5)
                latencies = []
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    stub.Classify(request, timeout=10)
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.005)
                stop.set()
                if loaded:
                    poster.join()
                ordered = sorted(latencies)
                p99 = ordered[int(len(ordered) * 0.99)]
                results.append(f"p50 {statistics.median(ordered) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms")
    return results[0], results[1]


def _post_until(port: int, body: bytes, stop: threading.Event) -> None:
    """POST `body` as an OIP infer request again and again (a new connection each time) until `stop`."""
    head = (
        "POST /v2/models/digitnet/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    while not stop.is_set():
        with socket.create_connection((LOOPBACK, port)) as connection:
            try:
                connection.sendall(head.encode() + body)
                while connection.recv(65536):  # the answer, until the server closes (it asked for Connection: close)
                    pass
            except OSError:
                continue  # refused mid-body: post again


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=300, help="most idle connections to open")
    parser.add_argument("--flood-mb", type=int, default=100, help="megabytes of headers to send")
    parser.add_argument("--json-mb", type=float, nargs="+", default=[9, 1], help="sizes of the JSON infer bodies, one measurement each")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the gRPC latency is measured, each way")
    args = parser.parse_args()
    os.environ.setdefault("DIGITNET_LOG_LEVEL", "warning")
    print(f"CPU: {cpu_name()}\n")
    print("| attack | measured | result |")
    print("|---|---|---|")
    locked, left = idle_lockout(args.idle)
    print(f"| idle TCP connections (up to {args.idle}) | connections when /v2/health/live first failed | {locked} |", flush=True)
    print(f"| the same | idle connections the server still held 30 s later | {left} |", flush=True)
    memory, answer = header_flood(args.flood_mb)
    print(f"| {args.flood_mb} MB of 1 KB headers on one connection | server RSS | {memory} |", flush=True)
    print(f"| the same | the answer | {answer} |", flush=True)
    for megabytes in args.json_mb:
        alone, loaded = grpc_p99_under_json(args.seconds, megabytes)
        print(f"| small gRPC Classify, alone | latency | {alone} |", flush=True)
        print(f"| small gRPC Classify while {megabytes:g} MB JSON infer bodies are posted back to back | latency | {loaded} |", flush=True)


if __name__ == "__main__":
    main()
