"""Benchmark the Open Inference Protocol endpoint against KServe's ModelServer and Seldon MLServer, with the
real tritonclient.

Run: ./dev run python bench/oip_bench.py [--seconds 3] [--concurrency 1 16] [--rounds 2]

It builds its own virtual environments for the peers under bench/out/ (MLServer needs protobuf < 7 and,
measured here, uvloop 0.21.0 to load models). KServe 0.21 serves the same ONNX file with onnxruntime
(bench/kserve_onnx_server.py: loopback only, per-request logging off, binary outputs); MLServer gets the
committed model's network as a scikit-learn MLPClassifier (the ONNX weights copied into it), which has no
input form, so its answers differ. Before any server is timed, 1,000 digits are sent to it in one request
and its probabilities compared with the file's in a bare onnxruntime session: digitnet and KServe must give
the same (labels equal, probabilities within 1e-4) or the benchmark stops; the agreement is printed.
One tritonclient.grpc.aio client process sends single FP32 [1, 784] images. The floor row is a bare grpc.aio
server that answers every ModelInfer with one constant response (no model, no checks): what the client and
grpc cost on this machine, which no Python server on grpc.aio can beat. The servers are measured
in turn, `--rounds` times, so that a noisy moment on a shared machine shows as a spread, not as a
winner. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import onnxruntime as ort
import psutil
import tritonclient.grpc.aio as triton
from PIL import Image
from sklearn.neural_network import MLPClassifier

from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.contract.network import Network
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import load_dataset

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "default.onnx"
OUT = REPO / "bench" / "out"
MLSERVER = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", "scikit-learn==1.9.1"]
KSERVE = ["kserve==0.21.0", "onnxruntime==1.32.0", "numpy==2.4.6"]


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sklearn_twin(network: Network) -> MLPClassifier:
    """An MLPClassifier with exactly the ONNX model's weights (fitted once on noise to set its attributes)."""
    classifier = MLPClassifier(hidden_layer_sizes=(16, 16), activation=network.activation, max_iter=1)
    rng = np.random.default_rng(0)
    classifier.fit(rng.random((20, 784)), np.arange(20) % 10)
    classifier.coefs_ = [w.astype(np.float64) for w in network.weights]
    classifier.intercepts_ = [b.astype(np.float64) for b in network.biases]
    return classifier


def peer_python(name: str, packages: list[str]) -> Path:
    """A virtual environment with a peer server's packages, made once under bench/out/."""
    home = OUT / f"{name}-venv"
    python = home / "bin" / "python"
    if not python.exists():
        venv.create(home, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def start_kserve(http_port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Serve the committed ONNX model with KServe's ModelServer; return the process and its gRPC port."""
    grpc_port = free_port()
    command = [
        str(peer_python("kserve", KSERVE)),
        str(REPO / "bench" / "kserve_onnx_server.py"),
        "--model_path",
        str(MODEL),
        "--grpc_port",
        str(grpc_port),
        "--http_port",
        str(http_port or free_port()),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), grpc_port


def start_mlserver(folder: Path, parallel_workers: int, http_port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Serve the scikit-learn twin with MLServer; return the process and its gRPC port."""
    grpc_port, http_port = free_port(), http_port or free_port()
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": free_port(),
                "parallel_workers": parallel_workers,
            }
        )
    )
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "digitnet",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    python = peer_python("mlserver", MLSERVER)
    process = subprocess.Popen([str(python.parent / "mlserver"), "start", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, grpc_port


def start_digitnet(*flags: str, checkout: Path | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Serve the committed model with `digitnet serve`: this checkout's code, or another's (`checkout`); `env`, when
    given, is the whole environment it runs in (server_environment's, say)."""
    port = free_port()
    command = [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(MODEL), "--port", str(port), *flags]
    environment = code_of(checkout) if env is None else env
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=environment), port


def server_environment(checkout: Path | None = None) -> dict[str, str]:
    """The environment of a server whose tracing or settings a bench sets itself: this one's (or one that runs
    `checkout`), without the caller's OTEL_* and DIGITNET_* variables."""
    return {k: v for k, v in (code_of(checkout) or os.environ).items() if not k.startswith(("OTEL_", "DIGITNET_"))}


def code_of(checkout: Path | None) -> dict[str, str] | None:
    """The environment that runs another checkout's digitnet with this environment's packages (its sources first
    on the path: they win over the installed, editable ones); None: this checkout's."""
    if checkout is None:
        return None
    return {**os.environ, "PYTHONPATH": f"{checkout / 'service'}{os.pathsep}{checkout / 'training'}"}


def baseline_name(checkout: Path) -> str:
    """How a baseline checkout is named in the table: its commit."""
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    return f"digitnet at {commit} (baseline)"


def start_floor() -> tuple[multiprocessing.Process, int]:
    """Start the floor: a bare grpc.aio server answering ModelReady and ModelInfer with constant responses."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_floor_server, args=(port,), daemon=True)
    process.start()
    return process, port  # type: ignore[return-value]


def _floor_server(port: int) -> None:
    answer = pb.ModelInferResponse(model_name="digitnet", model_version="1")
    answer.outputs.add(name="probabilities", datatype="FP32", shape=[1, 10])
    answer.raw_output_contents.append(np.eye(10, dtype="<f4")[7].tobytes())
    ready = pb.ModelReadyResponse(ready=True)

    async def infer(request: pb.ModelInferRequest, context: object) -> pb.ModelInferResponse:
        return answer

    async def is_ready(request: pb.ModelReadyRequest, context: object) -> pb.ModelReadyResponse:
        return ready

    async def serve() -> None:
        server = grpc.aio.server()
        handlers = {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(infer, pb.ModelInferRequest.FromString, pb.ModelInferResponse.SerializeToString),
            "ModelReady": grpc.unary_unary_rpc_method_handler(is_ready, pb.ModelReadyRequest.FromString, pb.ModelReadyResponse.SerializeToString),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


async def wait_ready(port: int, timeout: float = 120) -> None:
    """Poll the OIP ModelReady RPC until the model answers."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if await client.is_model_ready("digitnet"):
                    return
            except Exception:  # not up yet
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError(f"no model ready on port {port} after {timeout} s")
    finally:
        await client.close()


#: One image request: awaits an answer and checks it (raises if it is wrong).
Call = Callable[[], Awaitable[None]]


async def run_for(seconds: float, concurrency: int, make_call: Callable[[], Call]) -> tuple[list[float], int, float]:
    """Run `concurrency` tasks, each repeating its own call for `seconds`; return latencies, errors, elapsed."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        call = make_call()
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - began


#: The image every benchmark request sends: a 7 in MNIST form, FP32 [1, 784].
SEVEN = (np.asarray(Image.open(REPO / "tests" / "golden" / "7_mnist.png"), dtype=np.float32) / 255).reshape(1, 784)


async def load(port: int, output: str, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    """Send single-image requests from `concurrency` tasks for `seconds`; return latencies, errors, elapsed."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")

    def make_call() -> Call:
        tensor = triton.InferInput("pixels", [1, 784], "FP32")
        tensor.set_data_from_numpy(SEVEN)
        wanted = [triton.InferRequestedOutput(output)]

        async def call() -> None:
            result = await client.infer("digitnet", [tensor], outputs=wanted)
            assert int(np.argmax(result.as_numpy(output))) == 7

        return call

    try:
        return await run_for(seconds, concurrency, make_call)
    finally:
        await client.close()


#: How far a server's probabilities may be from the file's own in a bare onnxruntime session.
TOLERANCE = 1e-4


async def agreement(port: int, output: str) -> tuple[int, float]:
    """Send 1,000 digits in one request; return how many the server labels as the file alone does (argmax of
    the probabilities: digitnet's `label` abstains below min_confidence), and the largest probability difference."""
    digits = scale_uint8(load_dataset("mnist5k").images[:1000])
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    [expected] = session.run(["probabilities"], {"pixels": digits})
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = triton.InferInput("pixels", list(digits.shape), "FP32")
        tensor.set_data_from_numpy(digits)
        result = await client.infer("digitnet", [tensor], outputs=[triton.InferRequestedOutput(output)])
    finally:
        await client.close()
    answered = result.as_numpy(output)
    same = int(np.sum(answered.argmax(axis=1) == expected.argmax(axis=1)))
    return same, float(np.max(np.abs(answered - expected)))


async def compute_microseconds(port: int) -> float | None:
    """The server's own average model run so far (the OIP's ModelStatistics, compute_infer), or None where
    the server does not keep them."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        stats = (await client.get_inference_statistics("digitnet")).model_stats[0].inference_stats.compute_infer
        return stats.ns / stats.count / 1e3 if stats.count else None
    except Exception:  # a server without statistics (KServe's ModelServer, the floor)
        return None
    finally:
        await client.close()


def row(name: str, concurrency: int, latencies: list[float], errors: int, elapsed: float, cpu_seconds: float) -> str:
    """Format one markdown table row (cpu_seconds: the server's CPU time, its worker processes' included)."""
    ordered = sorted(latencies) or [float("nan")]
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3
    per_request = cpu_seconds / max(len(latencies), 1) * 1e6
    return f"| {name} | {concurrency} | {p50:.2f} | {p99:.2f} | {len(latencies) / elapsed:,.0f} | {per_request:,.0f} | {errors} |"


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children so far."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def arguments(doc: str | None) -> argparse.Namespace:
    """The options every peer benchmark takes (its module docstring's first line as the description)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-mlserver", action="store_true", help="measure digitnet and KServe only")
    parser.add_argument("--no-kserve", action="store_true", help="leave KServe out (a before/after run of digitnet alone)")
    parser.add_argument(
        "--baseline", type=Path, metavar="CHECKOUT", help="also measure another checkout's digitnet (e.g. a git worktree of main), side by side"
    )
    return parser.parse_args()


def prepare_peers(mlserver: bool, kserve: bool = True) -> Path:
    """Build the peers' environments (before any clock runs) and MLServer's model folder; return the folder."""
    folder = OUT / "mlserver-model"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    joblib.dump(sklearn_twin(Network.from_onnx(MODEL)), folder / "model.joblib")
    if kserve:
        peer_python("kserve", KSERVE)
    if mlserver:
        peer_python("mlserver", MLSERVER)
    return folder


async def measure(name: str, pid: int, port: int, output: str, concurrencies: list[int], seconds: float, same_file: bool | None) -> list[str]:
    """Check the server's answers against the file's (same_file None: a floor, no model), warm up, then one
    row per concurrency."""
    await wait_ready(port)
    if same_file is not None:
        same, difference = await agreement(port, output)
        print(f"<!-- {name}: {same}/1000 labels as the file alone, probabilities within {difference:.1e} -->", flush=True)
        if same_file and (same != 1000 or difference > TOLERANCE):
            raise SystemExit(f"{name} does not give the file's answers: timing it would compare different work")
    await load(port, output, 4, 1.0)
    rows = []
    for concurrency in concurrencies:
        before = cpu_seconds(pid)
        latencies, errors, elapsed = await load(port, output, concurrency, seconds)
        rows.append(row(name, concurrency, latencies, errors, elapsed, cpu_seconds(pid) - before))
        print(rows[-1], flush=True)
    compute = await compute_microseconds(port)
    if compute is not None:
        print(f"<!-- {name}: the server's average model run (ModelStatistics compute_infer), all rows: {compute:.0f} µs -->", flush=True)
    return rows


def main() -> None:
    """Measure digitnet (plain and with adaptive batching) and MLServer (both worker settings) in one run."""
    args = arguments(__doc__)
    folder = prepare_peers(not args.no_mlserver, not args.no_kserve)
    print("| server | concurrency | p50 ms | p99 ms | requests/s | server CPU µs per request | errors |")
    print("|---|---|---|---|---|---|---|")
    # name, how to start it, the output to ask for, whether it serves the same file (and so must answer alike)
    configurations: list[tuple[str, Callable[[], tuple[Any, int]], str, bool | None]] = [
        ("floor: bare grpc.aio server, constant answer", start_floor, "probabilities", None),
        ("digitnet (OIP)", lambda: start_digitnet(), "probabilities", True),
        (
            "digitnet (OIP), adaptive batching 32 / 2 ms",
            lambda: start_digitnet("--max-batch-size", "32", "--max-batch-delay-ms", "2"),
            "probabilities",
            True,
        ),
    ]
    if args.baseline:
        baseline, checkout = baseline_name(args.baseline), args.baseline
        configurations += [
            (baseline, lambda: start_digitnet(checkout=checkout), "probabilities", True),
            (
                f"{baseline}, adaptive batching 32 / 2 ms",
                lambda: start_digitnet("--max-batch-size", "32", "--max-batch-delay-ms", "2", checkout=checkout),
                "probabilities",
                True,
            ),
        ]
    if not args.no_kserve:
        configurations.append(("KServe 0.21 ModelServer, onnxruntime, logging off", start_kserve, "probabilities", True))
    if not args.no_mlserver:
        configurations += [
            ("MLServer 1.7.1, parallel_workers=0", lambda: start_mlserver(folder, 0), "predict_proba", False),
            ("MLServer 1.7.1, parallel_workers=1 (default)", lambda: start_mlserver(folder, 1), "predict_proba", False),
        ]
    for name, start, output, same_file in configurations * args.rounds:
        process, port = start()
        try:
            asyncio.run(measure(name, process.pid, port, output, args.concurrency, args.seconds, same_file))
        finally:
            process.terminate()
            if isinstance(process, subprocess.Popen):
                process.wait(timeout=30)
            else:
                process.join(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
