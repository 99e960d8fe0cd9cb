"""The deployment for real: the Dockerfile built unchanged, docker-compose's server, batch and train jobs
run in a real Docker daemon, driven from the host as an operator would.

A daemon already reachable (DOCKER_HOST or the default socket) is used as it is; otherwise this test starts
its own dockerd (vfs storage, its own socket and data folder) and stops it at the end. Where the base image
cannot be pulled, a stand-in is built from Debian packages (debootstrap + python3) under the same tag.
Behind a TLS-intercepting proxy pip inside the build trusts the host's CA bundle, given as a BuildKit
secret. Everything the test creates (containers, networks, volumes, images, the daemon) is removed.
.ci/run installs docker.io, docker-compose and debootstrap when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.card import read_card

from .conftest import GOLDEN
from .service.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = "python:3.11-slim"


def _run(*command: str, env: dict[str, str] | None = None, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@dataclass
class Docker:
    """A reachable daemon and the CLIs to drive it."""

    env: dict[str, str]  # DOCKER_HOST when the daemon is our own
    cli: str  # a docker CLI that builds with BuildKit (secrets) against this daemon

    def __call__(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.cli, *args, env=self.env, timeout=timeout, check=check)


def _buildkit_cli() -> str:
    # Docker 23+ builds with BuildKit only through the buildx plugin; older CLIs (Debian's 20.10) talk to the
    # daemon's built-in BuildKit themselves. Take the first that can.
    for cli in dict.fromkeys(filter(None, (shutil.which("docker"), "/usr/bin/docker"))):
        if not Path(cli).exists():
            continue
        if _run(cli, "buildx", "version", check=False).returncode == 0:
            return cli
        version = _run(cli, "version", "--format", "{{.Client.Version}}", check=False).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return cli
    raise AssertionError("no docker CLI that can build with BuildKit: install docker.io (Debian) or the buildx plugin")


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    """The Docker daemon for this test: the running one, or our own for the test's duration."""
    for tool in ("docker", "docker-compose"):
        assert shutil.which(tool), f"{tool} is not installed: `apt-get install docker.io docker-compose debootstrap` (.ci/run does)"
    cli = _buildkit_cli()
    if _run(cli, "info", check=False).returncode == 0:
        yield Docker({}, cli)
        return
    assert shutil.which("dockerd"), "no Docker daemon running and no dockerd to start: `apt-get install docker.io`"
    had_bridge = Path("/sys/class/net/docker0").exists()
    root = Path(tempfile.mkdtemp(prefix="digitnet-dockerd-", dir="/var/tmp"))
    socket_path = root / "docker.sock"
    log = (root / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--storage-driver=vfs",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host=unix://{socket_path}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    env = {"DOCKER_HOST": f"unix://{socket_path}"}
    try:
        deadline = time.monotonic() + 60
        while _run(cli, "info", env=env, check=False).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, f"dockerd did not start: {(root / 'dockerd.log').read_text()[-2000:]}"
            time.sleep(0.5)
        yield Docker(env, cli)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)  # vfs keeps a full copy of every layer: gigabytes
        if not had_bridge and shutil.which("ip"):
            _run("ip", "link", "delete", "docker0", check=False)  # the daemon leaves its bridge behind


@pytest.fixture(scope="module")
def base_image(docker: Docker) -> Iterator[str]:
    """python:3.11-slim, or a stand-in built here from Debian packages when it cannot be pulled."""
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0 or docker("pull", BASE_IMAGE, check=False, timeout=120).returncode == 0:
        yield BASE_IMAGE
        return
    assert shutil.which("debootstrap"), f"{BASE_IMAGE} cannot be pulled and debootstrap is missing: `apt-get install debootstrap`"
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        rootfs = Path(folder) / "rootfs"
        _run(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        )
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")  # as the official image has it
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                docker.cli,
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                'CMD ["python3"]',
                "-",
                BASE_IMAGE,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env={**os.environ, **docker.env},
            timeout=600,
        )
        tar.wait()
        assert imported.returncode == 0, imported.stderr
    try:
        yield BASE_IMAGE
    finally:
        docker("rmi", BASE_IMAGE, check=False)


@pytest.fixture(scope="module")
def images(docker: Docker, base_image: str) -> Iterator[str]:
    """Build the server (a plain build: the Dockerfile's last stage) and the train image; yield their tag."""
    tag = f"e2e-{uuid.uuid4().hex[:8]}"
    secret = []
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and Path(cafile).is_file():  # a TLS-intercepting proxy's CA lives in the host's bundle
        secret = ["--secret", f"id=pip-ca,src={cafile}"]
    env = {**docker.env, "DOCKER_BUILDKIT": "1"}
    try:
        _run(docker.cli, "build", *secret, "-t", f"digitnet:{tag}", str(REPO), env=env)
        _run(docker.cli, "build", *secret, "--target", "train", "-t", f"digitnet-train:{tag}", str(REPO), env=env)
        yield tag
    finally:
        docker("rmi", "-f", f"digitnet:{tag}", f"digitnet-train:{tag}", check=False)
        docker("builder", "prune", "-af", check=False)


@pytest.mark.slow
def test_the_compose_deployment_in_a_real_daemon(docker: Docker, images: str, tmp_path: Path) -> None:
    # A project folder of its own: the train job writes its models/, the batch job its data/out.
    shutil.copytree(REPO / "models", tmp_path / "models")
    (tmp_path / "data" / "in").mkdir(parents=True)
    (tmp_path / "data" / "out").mkdir()
    for label in (2, 7):
        shutil.copy(GOLDEN / f"{label}_scan.png", tmp_path / "data" / "in" / f"{label}.png")
    port, metrics, http = free_port(), free_port(), free_port()
    project = f"digitnet-{images}"
    env = {
        **docker.env,
        "DIGITNET_TAG": images,
        "DIGITNET_HOST_PORT": str(port),
        "DIGITNET_METRICS_HOST_PORT": str(metrics),
        "DIGITNET_HTTP_HOST_PORT": str(http),
        "DIGITNET_UID": str(os.getuid()),
        "DIGITNET_GID": str(os.getgid()),
        "DIGITNET_TRAIN_EPOCHS": "2",
        "DIGITNET_TRAIN_CV_REPEATS": "1",
    }
    compose = ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "--project-directory", str(tmp_path), "-p", project]

    def compose_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return _run(*compose, *args, env=env, timeout=timeout)

    try:
        compose_run("up", "-d", "--no-build", "server")
        container = compose_run("ps", "-q", "server").stdout.strip()
        deadline = time.monotonic() + 180
        while (health := docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()) != "healthy":
            assert health in ("starting", "") and time.monotonic() < deadline, f"health {health!r}: {docker('logs', container).stderr[-2000:]}"
            time.sleep(1)

        # From the host, on the published port, as an operator would.
        predicted = _run(sys.executable, "-m", "digitnet.service.cli", "predict", "--server", f"127.0.0.1:{port}", str(GOLDEN / "4_scan.jpg"))
        assert json.loads(predicted.stdout)["label"] == 4
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{http}/v1/classify", (GOLDEN / "9_scan.jpg").read_bytes()), timeout=30
        ) as answer:
            assert json.loads(answer.read())["label"] == 9  # the HTTP front door, published beside gRPC

        compose_run("--profile", "batch", "run", "--rm", "batch")
        rows = (tmp_path / "data" / "out" / "scores.csv").read_text().splitlines()
        assert rows[0].startswith("path,status,label") and [r.split(",")[2] for r in rows[1:]] == ["2", "7"]

        before = read_card(tmp_path / "models" / "default.onnx").model_sha256
        compose_run("--profile", "train", "run", "--rm", "train", timeout=900)
        after = read_card(tmp_path / "models" / "default.onnx").model_sha256
        assert after != before
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
