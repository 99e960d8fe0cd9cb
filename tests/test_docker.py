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
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.card import read_card

from .conftest import GOLDEN
from .docker_daemon import Docker, build
from .docker_daemon import run as _run
from .service.helpers import free_port

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
