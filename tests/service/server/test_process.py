"""Server lifecycle: graceful drain, SIGTERM in a subprocess, worker processes, provider errors, client retries."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.cli.main import main
from digitnet.service.client.digit_client import DigitClient
from digitnet.service.client.settings import ClientSettings
from digitnet.service.inference.classifier import Classifier
from digitnet.service.settings.server import ServerSettings

from ...conftest import DEFAULT_MODEL, GOLDEN, REPO
from ..conftest import running_server


def test_drain_finishes_in_flight_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Classifier.classify_one

    def slow(self: Classifier, *args: object, **kwargs: object) -> object:
        time.sleep(0.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Classifier, "classify_one", slow)
    image = pb.Image(encoded=(GOLDEN / "2_scan.png").read_bytes())  # encoded: runs on the worker threads
    with running_server() as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DigitClassifierStub(channel)
        with futures.ThreadPoolExecutor(4) as pool:
            calls = [pool.submit(stub.Classify, pb.ClassifyRequest(image=image), timeout=10) for _ in range(4)]
            time.sleep(0.2)  # all four are now inside the slow handler
            server.call(server.state.draining())
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stopping = asyncio.run_coroutine_threadsafe(server.server.stop(5), server.loop)
            assert [c.result().prediction.label for c in calls] == [2] * 4, "an in-flight request was lost"
        stopping.result(timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Classify(pb.ClassifyRequest(image=image), timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def _start(*args: str, ready_lines: int = 1) -> tuple[subprocess.Popen[str], int]:
    """Start `digitnet serve` and wait until `ready_lines` processes log that they serve."""
    process = subprocess.Popen(
        [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(DEFAULT_MODEL), "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    ports = []
    for line in process.stderr:
        found = re.search(r"serving on port (\d+)", line)
        ports += [int(found.group(1))] if found else []
        if len(ports) == ready_lines:
            assert len(set(ports)) == 1, f"workers serve on different ports: {ports}"
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining the pipe
            return process, ports[0]
        assert time.monotonic() < deadline, "server did not start"
    raise AssertionError(f"server exited with {process.wait()} before serving")


@pytest.mark.slow
def test_sigterm_drains_a_running_stream_then_exits_0() -> None:
    process, port = _start()
    try:
        image = (GOLDEN / "9_mnist.png").read_bytes()

        def paced() -> object:
            for _ in range(300):
                time.sleep(0.003)
                yield image

        with DigitClient(f"127.0.0.1:{port}") as client:
            results: list[object] = []
            worker = threading.Thread(target=lambda: results.extend(client.classify_stream(paced())))
            worker.start()
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            worker.join(timeout=30)
        assert len(results) == 300 and all(r.label == 9 for r in results), "the stream was cut by the drain"
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


@pytest.mark.slow
def test_an_open_health_watch_does_not_hold_up_the_stop() -> None:
    # A watcher used to keep the server for the whole grace period (10 s here) after the drain.
    process, port = _start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert [r.status for r in watch] == [health_pb2.HealthCheckResponse.NOT_SERVING]  # told, then ended
            assert process.wait(timeout=30) == 0
            assert time.monotonic() - stopping < 8, "the stop waited for the watch"
    finally:
        process.kill()


@pytest.mark.slow
def test_workers_share_one_port_and_each_writes_a_payload_log_of_its_own(tmp_path: Path) -> None:
    process, port = _start("--workers", "2", "--payload-log", str(tmp_path / "payloads.jsonl"), "--payload-log-sample", "1", ready_lines=2)
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(children) >= 2
        for _ in range(6):  # new channels: the kernel spreads connections over both workers
            with DigitClient(f"127.0.0.1:{port}") as client:
                assert client.classify((GOLDEN / "5_scan.jpg").read_bytes()).label == 5
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    # Worker i writes payloads.i.jsonl (two writers of one file would rotate each other's away); every call is in one.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["payloads.0.jsonl", "payloads.1.jsonl"]
    logged = [json.loads(line) for path in tmp_path.iterdir() for line in path.read_text().splitlines()]
    assert [(record["call"], record["answers"][0]["label"]) for record in logged] == [("Classify", 5)] * 6


def test_cuda_missing_is_a_clear_startup_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    assert main(["serve", "--model", str(DEFAULT_MODEL), "--provider", "cuda", "--port", "0"]) == 2
    assert "no CUDA execution provider" in capsys.readouterr().err


def test_bad_settings_are_clear(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_PORT", "99999")
    assert main(["serve"]) == 2
    assert "--port (or DIGITNET_PORT): Input should be less than or equal to 65535, got '99999'" in capsys.readouterr().err


def test_env_variables_configure_and_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_HOST", "0.0.0.0")
    monkeypatch.setenv("DIGITNET_WORKERS", "3")
    assert ServerSettings().host == "0.0.0.0" and ServerSettings(workers=2).workers == 2


def test_missing_model_is_a_clear_startup_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", str(tmp_path / "none.onnx"), "--port", "0"]) == 2
    assert "cannot read the model" in capsys.readouterr().err


class _FlakyServicer(pb_grpc.DigitClassifierServicer):
    def __init__(self, failures: int) -> None:
        self.calls = 0
        self.failures = failures

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        return pb.ClassifyResponse(prediction=pb.Prediction(outcome=pb.OUTCOME_DIGIT, label=1, confidence=1.0))


def test_client_retries_unavailable() -> None:
    flaky = _FlakyServicer(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_DigitClassifierServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with DigitClient(f"127.0.0.1:{port}", attempts=4) as client:
            assert client.classify(bytes(784 * [0])).label == 1
        assert flaky.calls == 3
        flaky.calls, flaky.failures = 0, 10  # more than gRPC's retry policy takes: the retry budget goes on
        with DigitClient(f"127.0.0.1:{port}", attempts=2, settings=ClientSettings(retry_seconds=30)) as client:
            assert client.classify(bytes(784 * [0])).label == 1
        assert flaky.calls == 11
        flaky.calls, flaky.failures = 0, 10
        no_budget = ClientSettings(retry_seconds=0)
        with DigitClient(f"127.0.0.1:{port}", attempts=2, settings=no_budget) as client, pytest.raises(Exception, match="UNAVAILABLE: draining"):
            client.classify(b"x")
        assert flaky.calls == 2
    finally:
        server.stop(None)


def test_the_client_retries_a_call_the_server_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    # grpc's core cancels the calls that reach a server in the instant its stop begins (after the drain);
    # they are idempotent, so the client sends them again (elsewhere, when there are several servers).
    from digitnet.service.grpc.servicer import DigitClassifierServicer

    answered = DigitClassifierServicer.Classify
    calls = []

    async def cancelled_once(self: DigitClassifierServicer, request: object, context: grpc.aio.ServicerContext) -> object:
        calls.append(1)
        if len(calls) == 1:
            await context.abort(grpc.StatusCode.CANCELLED, "stopping")
        return await answered(self, request, context)

    monkeypatch.setattr(DigitClassifierServicer, "Classify", cancelled_once)
    with running_server() as server, DigitClient(server.address) as client:
        assert client.classify((GOLDEN / "8_mnist.png").read_bytes()).label == 8
    assert len(calls) == 2
