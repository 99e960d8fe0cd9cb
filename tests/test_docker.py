"""The deployment for real: the Dockerfile built unchanged, docker-compose's server, batch and train jobs
run in a real Docker daemon, driven from the host as an operator would.

The daemon and the base image come from tests/conftest.py (the running daemon or one of our own; where
python:3.11-slim cannot be pulled, a stand-in built from Debian packages under the same tag). Behind a
TLS-intercepting proxy pip inside the build trusts the host's CA bundle, given as a BuildKit secret.
Everything the test creates (containers, networks, volumes, images) is removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.card import read_card

from .conftest import GOLDEN
from .docker_daemon import Docker, build
from .docker_daemon import run as _run
from .service.helpers import free_port
from .service.telemetry.otlp import receiving

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(docker: Docker, server_image: str) -> Iterator[str]:
    """The server image (tests/conftest.py builds it, a plain build), and the train and viz images built beside it
    under the same tag; yield the tag."""
    tag = server_image.split(":", 1)[1]
    try:
        for target in ("train", "viz"):  # viz is on the way to train: built second, it adds one layer
            build(docker, REPO, f"digitnet-{target}:{tag}", target)
        yield tag
    finally:
        docker("rmi", "-f", f"digitnet-train:{tag}", f"digitnet-viz:{tag}", check=False)


@pytest.mark.slow
def test_the_compose_deployment_in_a_real_daemon(docker: Docker, images: str, tmp_path: Path) -> None:
    # A project folder of its own: the server serves data/models (a copy of the committed models, where the
    # train job writes), the batch job writes data/out; models/ stands for the committed folder.
    shutil.copytree(REPO / "models", tmp_path / "models")
    shutil.copytree(REPO / "models", tmp_path / "data" / "models")
    (tmp_path / "data" / "out").mkdir()
    port, metrics, http = free_port(), free_port(), free_port()
    project = f"digitnet-{images}"
    env = {
        **docker.env,
        "DIGITNET_TAG": images,
        "DIGITNET_MODELS": "./data/models",
        "DIGITNET_HOST_PORT": str(port),
        "DIGITNET_METRICS_HOST_PORT": str(metrics),
        "DIGITNET_HTTP_HOST_PORT": str(http),
        "DIGITNET_UID": str(os.getuid()),
        "DIGITNET_GID": str(os.getgid()),
        "DIGITNET_TRAIN_EPOCHS": "2",
        "DIGITNET_TRAIN_CV_REPEATS": "1",
    }
    compose = ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "--project-directory", str(tmp_path), "-p", project]

    def compose_run(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(*compose, *args, env=env, timeout=timeout, check=check)

    def http_get(path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=30) as answer:
            return bytes(answer.read())

    try:
        compose_run("up", "-d", "--no-build", "server")
        container = compose_run("ps", "-q", "server").stdout.strip()
        deadline = time.monotonic() + 180
        while (health := docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()) != "healthy":
            assert health in ("starting", "") and time.monotonic() < deadline, f"health {health!r}: {docker('logs', container).stderr[-2000:]}"
            time.sleep(1)

        # From the host, on the published ports, as an operator would.
        predicted = _run(sys.executable, "-m", "digitnet.service.cli", "predict", "--server", f"127.0.0.1:{port}", str(GOLDEN / "4_scan.jpg"))
        assert json.loads(predicted.stdout)["label"] == 4
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{http}/v1/classify", (GOLDEN / "9_scan.jpg").read_bytes()), timeout=30
        ) as answer:
            assert json.loads(answer.read())["label"] == 9  # the HTTP front door, published beside gRPC
        # The page and the network it draws need no matplotlib, which the server image lacks.
        assert b"<html" in http_get("/").lower() and len(json.loads(http_get("/v1/network"))["weights"]) == 3

        # Without data/in (Docker makes it, empty) the batch job says so and fails, rather than write an empty CSV.
        (tmp_path / "no-input" / "data" / "out").mkdir(parents=True)
        refused = _run(
            *compose[:4], str(tmp_path / "no-input"), *compose[5:], "--profile", "batch", "run", "--rm", "--no-deps", "batch", env=env, check=False
        )
        assert refused.returncode == 2 and "batch: ./data/in is missing or empty" in refused.stderr, refused.stderr[-2000:]
        assert not (tmp_path / "no-input" / "data" / "out" / "scores.csv").exists()

        (tmp_path / "data" / "in").mkdir()
        for label in (2, 7):
            shutil.copy(GOLDEN / f"{label}_scan.png", tmp_path / "data" / "in" / f"{label}.png")
        compose_run("--profile", "batch", "run", "--rm", "batch")
        rows = (tmp_path / "data" / "out" / "scores.csv").read_text().splitlines()
        assert rows[0].startswith("path,status,label") and [r.split(",")[2] for r in rows[1:]] == ["2", "7"]

        committed = read_card(tmp_path / "models" / "default.onnx").model_sha256
        before = read_card(tmp_path / "data" / "models" / "default.onnx").model_sha256
        compose_run("--profile", "train", "run", "--rm", "train", timeout=900)
        after = read_card(tmp_path / "data" / "models" / "default.onnx").model_sha256
        assert after != before and read_card(tmp_path / "models" / "default.onnx").model_sha256 == committed
        with DigitClient(f"127.0.0.1:{port}") as client:  # the watching server reloads the new model
            deadline = time.monotonic() + 60
            while client.model_info().model_sha256 != after:
                assert time.monotonic() < deadline, "the server did not reload the trained model"
                time.sleep(1)

        compose_run("stop", "-t", "30", "server")
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container).stdout)
        logs = docker("logs", container).stderr
        assert state["ExitCode"] == 0 and '"message": "stopped"' in logs, logs[-2000:]  # drained, then exited 0
    finally:
        _run(*compose, "--profile", "batch", "--profile", "train", "down", "-v", "--remove-orphans", env=env, check=False)


@pytest.mark.slow
def test_pictures_are_the_viz_images_and_the_server_image_says_so(docker: Docker, images: str) -> None:
    golden = ["-v", f"{GOLDEN}:/golden:ro"]
    explain = "digitnet explain /golden/7_scan.png -o /tmp/7.png && test -s /tmp/7.png"
    drawn = docker("run", "--rm", *golden, "--entrypoint", "sh", f"digitnet-viz:{images}", "-c", explain)
    assert "the network says 7" in drawn.stdout
    # On a read-only root with only /tmp writable (a Kubernetes Job's securityContext and emptyDir), matplotlib
    # wrote its cache to a temporary folder with a warning, until the image pointed MPLCONFIGDIR into /tmp.
    locked = ["--read-only", "--tmpfs", "/tmp:rw,mode=1777", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    drawn = docker("run", "--rm", *locked, *golden, "--entrypoint", "sh", f"digitnet-viz:{images}", "-c", explain)
    assert "the network says 7" in drawn.stdout and "Matplotlib" not in drawn.stderr, drawn.stderr
    refused = docker("run", "--rm", *golden, f"digitnet:{images}", "explain", "/golden/7_scan.png", "-o", "/tmp/7.png", check=False)
    assert refused.returncode == 2 and refused.stderr.strip().endswith("or the digitnet-viz image"), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@contextmanager
def _serving(docker: Docker, image: str, *options: str) -> Iterator[tuple[str, int, int]]:
    """The server image serving on free loopback ports (options: more of `docker run`'s), until it answers ready;
    yields the container's name, its gRPC and its HTTP port. Removed after."""
    name, grpc_port, http = f"digitnet-test-{uuid.uuid4().hex[:8]}", free_port(), free_port()
    try:
        docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{grpc_port}:50051", "-p", f"127.0.0.1:{http}:8080", *options, image)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            running = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert running == "true" and time.monotonic() < deadline, f"not ready: {docker('logs', name).stderr[-2000:]}"
            time.sleep(0.5)
        yield name, grpc_port, http
    finally:
        docker("rm", "-f", name, check=False)


def _console_spans(output: str) -> list[dict[str, Any]]:
    """The spans OpenTelemetry's console exporter printed: indented JSON objects, one after another."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := output.find("{", at)) >= 0:
        try:
            value, at = decoder.raw_decode(output, at)
        except json.JSONDecodeError:
            at += 1
            continue
        if isinstance(value, dict) and "context" in value:
            spans.append(value)
    return spans


@pytest.mark.slow
def test_the_server_image_traces_a_call_to_the_console(docker: Docker, server_image: str) -> None:
    # The image carries the otel extra: the standard variables alone turn tracing on, with no install step.
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    otel = ["-e", "OTEL_TRACES_EXPORTER=console", "-e", "OTEL_TRACES_SAMPLER=always_on", "-e", "OTEL_BSP_SCHEDULE_DELAY=100"]
    with _serving(docker, server_image, *otel) as (name, _, http):
        image, headers = (GOLDEN / "9_scan.jpg").read_bytes(), {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{http}/v1/classify", image, headers=headers), timeout=30) as answer:
            assert json.loads(answer.read())["label"] == 9
        deadline = time.monotonic() + 30  # the export queue is sent every 100 ms here
        while not {"POST /v1/classify", "digitnet.model.run"} <= {span["name"] for span in _console_spans(docker("logs", name).stdout)}:
            assert time.monotonic() < deadline, f"no spans printed: {docker('logs', name).stdout[-2000:]}"
            time.sleep(0.5)
        logs = docker("logs", name)
    assert "tracing on: console exporter" in logs.stderr and "not installed" not in logs.stderr, logs.stderr[-2000:]
    spans = {span["name"]: span for span in _console_spans(logs.stdout)}
    server = spans["POST /v1/classify"]
    assert server["context"]["trace_id"] == f"0x{trace_id}" and server["parent_id"] == f"0x{parent_id}"  # the caller's trace
    assert server["kind"] == "SpanKind.SERVER" and server["resource"]["attributes"]["service.name"] == "digitnet"
    assert spans["digitnet.model.run"]["context"]["trace_id"] == f"0x{trace_id}"


@pytest.mark.slow
def test_the_server_image_sends_a_trace_to_a_collector_over_otlp(docker: Docker, server_image: str) -> None:
    # The collector stands on the host, and the container reaches it as host.docker.internal, as Docker Desktop names
    # the host (elsewhere --add-host's host-gateway: the bridge's address on the host). It listens on that address only.
    host = "--add-host=host.docker.internal:host-gateway"
    gateway = docker("run", "--rm", host, "--entrypoint", "getent", server_image, "hosts", "host.docker.internal").stdout.split()[0]
    otel = [host, "-e", "OTEL_TRACES_EXPORTER=otlp", "-e", "OTEL_SERVICE_NAME=digitnet-in-docker", "-e", "OTEL_BSP_SCHEDULE_DELAY=100"]
    caller = TracerProvider().get_tracer("test")  # the calling application's tracing: DigitClient sends its span's context
    with receiving(gateway) as (received, port):
        with _serving(docker, server_image, *otel, "-e", f"OTEL_EXPORTER_OTLP_ENDPOINT=http://host.docker.internal:{port}") as (_, grpc_port, _):
            with caller.start_as_current_span("client call") as client_span, DigitClient(f"127.0.0.1:{grpc_port}", timeout=30) as client:
                assert client.classify((GOLDEN / "7_scan.png").read_bytes()).label == 7
            spans = received.wait_for({"digitnet.v1.DigitClassifier/Classify", "digitnet.preprocess", "digitnet.model.run"})
    service, server = spans["digitnet.v1.DigitClassifier/Classify"]
    assert service == "digitnet-in-docker"
    assert server.trace_id == client_span.get_span_context().trace_id.to_bytes(16, "big")
    assert server.parent_span_id == client_span.get_span_context().span_id.to_bytes(8, "big")
    for child in ("digitnet.preprocess", "digitnet.model.run"):
        assert spans[child][1].trace_id == server.trace_id and spans[child][1].parent_span_id == server.span_id, child
