"""Measure what hostile input can cost the server: CPU per request at the limits, memory under an
unauthenticated flood, and how long one maximal request holds up a small one.

Run: ./dev run python bench/hostile_bench.py [--flood 30] [--flood-mb 60]
Prints three markdown tables; docs/benchmarks.md records them. Client and server share this
machine's cores over loopback: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import io
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import psutil
from machine import cpu_name
from PIL import Image

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import oip_pb2 as oip
from digitnet.service.contract.errors import DigitnetError
from digitnet.service.contract.limits import Limits
from digitnet.service.inference.preprocess import to_mnist

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "default.onnx"
CORPUS = REPO / "tests" / "corpus"
LIMITS = Limits()


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def worst_cases() -> dict[str, bytes]:
    """Images at the default limits that cost the most to read, each under the 10 MB encoded limit."""
    side = int(LIMITS.max_pixels**0.5)  # 5000: the most pixels in a square
    long, short = LIMITS.max_side, int(LIMITS.max_side / LIMITS.max_aspect) + 1  # the thinnest strip allowed
    digit = Image.open(REPO / "tests/golden/8_scan.png")  # dark ink on shaded paper: every step of the pipeline runs
    square, strip = np.asarray(digit.resize((side, side))), np.asarray(digit.resize((long, short)))
    return {
        f"PNG L {side}x{side}": _encode(Image.fromarray(square), "PNG"),
        f"PNG RGBA {side}x{side}": _encode(Image.fromarray(np.dstack([square] * 3 + [np.full_like(square, 255)])), "PNG"),
        f"PNG 16-bit {side}x{side}": _encode(Image.fromarray(square.astype(np.uint16) * 257), "PNG"),
        f"TIFF float {side}x{side} (deflate)": _encode(Image.fromarray(square.astype(np.float32) / 255), "TIFF", compression="tiff_adobe_deflate"),
        f"PNG strip {long}x{short} (the thinnest allowed)": _encode(Image.fromarray(strip), "PNG"),
        f"JPEG {side}x{side}": _encode(Image.fromarray(square), "JPEG", quality=90),
        "GIF 4999x4999 from 43 bytes (corpus)": (CORPUS / "gif_screen_4999x4999_1px_frame.gif").read_bytes(),
        "PNG 1x2,000,000 (refused: side)": (CORPUS / "png_ihdr_1x2000000.png").read_bytes(),
    }


def cpu_table() -> None:
    print("| image | encoded bytes | CPU s per request (best of 3) | outcome |")
    print("|---|---:|---:|---|")
    for name, data in worst_cases().items():
        times, outcome = [], ""
        for _ in range(3):
            started = time.process_time()
            try:
                outcome = "blank" if to_mnist(data) is None else "read as a digit"
            except DigitnetError as err:
                outcome = f"{type(err).__name__}: {str(err)[:60]}"
            times.append(time.process_time() - started)
        print(f"| {name} | {len(data):,} | {min(times):.3f} | {outcome} |")


def _serve(*flags: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", "0", *flags],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**__import__("os").environ, **(env or {})},
    )
    assert process.stderr is not None
    for line in process.stderr:
        if found := re.search(r"serving on port (\d+)", line):
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, int(found.group(1))
    raise SystemExit(f"server exited with {process.wait()}")


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _peak_rss_during(pid: int, work: Callable[[], None]) -> tuple[float, float]:
    process, samples, done = psutil.Process(pid), [], threading.Event()
    baseline = process.memory_info().rss

    def sample() -> None:
        while not done.wait(0.02):
            samples.append(process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return baseline / 2**20, max(samples, default=baseline) / 2**20


def flood_table(count: int, megabytes: int) -> None:
    payload = pb.ClassifyRequest(image=pb.Image(encoded=bytes(megabytes * 10**6))).SerializeToString()
    print(f"| server | {count} concurrent {megabytes} MB requests, no token | RSS before (MiB) | peak RSS (MiB) |")
    print("|---|---|---:|---:|")
    for label, env in (
        ("token required, default message limit", {"DIGITNET_TOKEN": "s3cret"}),
        ("token required, 64 MiB message limit", {"DIGITNET_TOKEN": "s3cret", "DIGITNET_MAX_MESSAGE_BYTES": str(64 * 2**20)}),
    ):
        process, port = _serve(env=env)
        codes: list[str] = []

        def send() -> None:
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                try:
                    channel.unary_unary("/digitnet.v1.DigitClassifier/Classify")(payload, timeout=120)
                except grpc.RpcError as err:
                    codes.append(err.code().name)

        def flood() -> None:
            threads = [threading.Thread(target=send) for _ in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        try:
            before, peak = _peak_rss_during(process.pid, flood)
        finally:
            _stop(process)
        answers = ", ".join(f"{code} x{codes.count(code)}" for code in sorted(set(codes)))
        print(f"| {label} | {answers} | {before:.0f} | {peak:.0f} |")


def stall_table(seconds: float) -> None:
    process, port = _serve()
    small = pb.ClassifyRequest(image=pb.Image(mnist_uint8=np.asarray(Image.open(REPO / "tests/golden/3_mnist.png")).tobytes()))
    rng = np.random.default_rng(0)
    oip_full = oip.ModelInferRequest(model_name="digitnet")
    oip_full.inputs.add(name="pixels", datatype="FP32", shape=[4096, 784])
    oip_full.raw_input_contents.append(rng.random((4096, 784), dtype=np.float32).tobytes())
    big_kinds: dict[str, tuple[str, bytes]] = {
        "none (idle)": ("", b""),
        "OIP FP32 [4096, 784], 12.8 MB (largest accepted)": ("/inference.GRPCInferenceService/ModelInfer", oip_full.SerializeToString()),
        "ClassifyBatch of mnist_float, 12.8 MB": (
            "/digitnet.v1.DigitClassifier/ClassifyBatch",
            pb.ClassifyBatchRequest(images=[pb.Image(mnist_float=pb.MnistFloat(values=rng.random(784).tolist()))] * 4000).SerializeToString(),
        ),
        "Classify of 60 MB (refused: message limit)": ("/digitnet.v1.DigitClassifier/Classify", bytes(60 * 10**6)),
    }
    print("| while another client sends | small Classify p50 (ms) | p99 (ms) | max (ms) | big requests sent |")
    print("|---|---:|---:|---:|---:|")
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 2**27)]
            ) as big_channel,
        ):
            classify = channel.unary_unary(
                "/digitnet.v1.DigitClassifier/Classify", pb.ClassifyRequest.SerializeToString, pb.ClassifyResponse.FromString
            )
            for label, (method, payload) in big_kinds.items():
                stop, sent = threading.Event(), [0]

                def pound(method: str = method, payload: bytes = payload) -> None:
                    call = big_channel.unary_unary(method)
                    while method and not stop.is_set():
                        try:
                            call(payload, timeout=30)
                        except grpc.RpcError:
                            pass
                        sent[0] += 1

                thread = threading.Thread(target=pound)
                thread.start()
                latencies, end = [], time.perf_counter() + seconds
                while time.perf_counter() < end:
                    started = time.perf_counter()
                    classify(small, timeout=30)
                    latencies.append((time.perf_counter() - started) * 1e3)
                    time.sleep(0.002)
                stop.set()
                thread.join()
                latencies.sort()
                p99 = latencies[int(len(latencies) * 0.99)]
                print(f"| {label} | {statistics.median(latencies):.2f} | {p99:.2f} | {latencies[-1]:.2f} | {sent[0]} |")
    finally:
        _stop(process)


def main() -> None:
    """Print the three tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=30, help="concurrent unauthenticated requests (default: 30)")
    parser.add_argument("--flood-mb", type=int, default=60, help="size of each, in MB (default: 60)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each stall measurement (default: 4)")
    args = parser.parse_args()
    cpu = cpu_name()
    print(f"CPU: {cpu}, {psutil.cpu_count()} cores; Python {platform.python_version()}\n")
    cpu_table()
    print()
    flood_table(args.flood, args.flood_mb)
    print()
    stall_table(args.seconds)


if __name__ == "__main__":
    main()
