"""The deployment files: run every docker-compose service's command on this host exactly as the file writes it.

There is no Docker engine here, so the containers are replaced by processes: the image's ENTRYPOINT and
ENV come from the Dockerfile, command and environment from docker-compose.yml, and container paths and
ports are mapped to temporary folders and free ports the way the volumes and port mappings would.
(.ci/run also validates the file with `docker-compose config -q`.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from digitnet.service.card import read_card
from digitnet.service.client import DigitClient

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _runtime_stage() -> str:
    return DOCKERFILE.split("AS runtime", 1)[1].split("\nFROM ", 1)[0]


def _image_entrypoint() -> list[str]:
    return json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", _runtime_stage(), re.MULTILINE).group(1))  # type: ignore[union-attr]


def _image_env() -> dict[str, str]:
    block = re.search(r"^ENV (.*?)(?=^\S)", _runtime_stage(), re.MULTILINE | re.DOTALL).group(1)  # type: ignore[union-attr]
    return dict(pair.split("=", 1) for pair in block.replace("\\\n", " ").split())


def _interpolate(text: str, variables: dict[str, str]) -> str:
    # Compose's ${NAME:-default} interpolation.
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """Maps a compose service's container paths, ports and host names onto this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {"50051": str(_free_port()), "9100": str(_free_port())}
        self.hosts = {"server": "127.0.0.1"}
        self.variables = {"DIGITNET_TRAIN_EPOCHS": "2", "DIGITNET_TOKEN": ""}

    def folder(self, host_path: str) -> Path:
        return self.root / host_path.removeprefix("./")

    def translate(self, service: dict[str, object], text: str) -> str:
        text = _interpolate(text, self.variables)
        for volume in service.get("volumes", []):  # type: ignore[union-attr]
            host, container = str(volume).split(":")[:2]
            text = text.replace(container, str(self.folder(host)))
        for container_port, host_port in self.ports.items():
            text = re.sub(rf"\b{container_port}\b", host_port, text)
        for name, address in self.hosts.items():
            text = re.sub(rf"(?<=[/\s]){name}(?=:)", address, text)
        return text

    def command(self, service: dict[str, object]) -> list[str]:
        argv = _image_entrypoint() + [str(part) for part in service["command"]]  # type: ignore[union-attr]
        executable = str(Path(sys.executable).parent / argv[0])
        return [executable] + [self.translate(service, part) for part in argv[1:]]

    def environment(self, service: dict[str, object]) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in {**_image_env(), **service.get("environment", {})}.items():  # type: ignore[dict-item]
            env[key] = self.translate(service, str(value))
        return env


def test_compose_file_is_complete() -> None:
    services = COMPOSE["services"]
    assert {"server", "batch", "train", "prometheus"} <= services.keys()
    server = services["server"]
    assert server["restart"] == "unless-stopped" and server["deploy"]["resources"]["limits"]
    assert server["healthcheck"]["test"][:2] == ["CMD", "digitnet"]
    assert services["batch"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["batch"]["profiles"] == ["batch"] and services["train"]["profiles"] == ["train"]
    healthcheck = re.search(r'HEALTHCHECK .*?CMD (\[.*?\])', DOCKERFILE, re.DOTALL).group(1)  # type: ignore[union-attr]
    assert json.loads(healthcheck) == server["healthcheck"]["test"][1:], "Dockerfile and compose disagree on the probe"
    assert "USER digitnet" in _runtime_stage() and _image_env()["DIGITNET_HOST"] == "0.0.0.0"


@pytest.mark.slow
def test_compose_services_run_on_the_host(tmp_path: Path) -> None:
    host = Host(tmp_path)
    shutil.copytree(REPO / "models", host.folder("./models"))
    inbox = host.folder("./data/in")
    inbox.mkdir(parents=True)
    host.folder("./data/out").mkdir(parents=True)
    for label in (1, 5, 9):
        shutil.copy(REPO / "tests" / "golden" / f"{label}_scan.jpg", inbox / f"{label}.jpg")
    services = COMPOSE["services"]
    server = services["server"]
    process = subprocess.Popen(host.command(server), env=host.environment(server), cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        probe = [host.translate(server, part) for part in server["healthcheck"]["test"][1:]]
        probe[0] = str(Path(sys.executable).parent / probe[0])
        deadline = time.monotonic() + 60
        while subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline and process.poll() is None, "the server never became healthy"
            time.sleep(0.5)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{host.ports['9100']}/metrics", timeout=5).read().decode()
        assert "digitnet_model_info" in metrics

        batch = services["batch"]
        done = subprocess.run(host.command(batch), env=host.environment(batch), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        rows = (host.folder("./data/out") / "scores.csv").read_text().splitlines()
        assert len(rows) == 4 and [row.split(",")[2] for row in rows[1:]] == ["1", "5", "9"]

        train = services["train"]
        before = read_card(host.folder("./models") / "default.onnx").model_sha256
        done = subprocess.run(host.command(train), env=host.environment(train), cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        after = read_card(host.folder("./models") / "default.onnx").model_sha256
        assert after != before
        # The server runs with --watch: it picks up the retrained model by itself.
        with DigitClient(f"127.0.0.1:{host.ports['50051']}") as client:
            deadline = time.monotonic() + 30
            while client.model_info().model_sha256 != after:
                assert time.monotonic() < deadline, "the server did not reload the retrained model"
                time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
