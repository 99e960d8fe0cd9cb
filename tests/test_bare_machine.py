"""The README's two commands on a bare Debian machine, as root with apt: a clean container with Debian's
python3 and nothing else (no venv module, no Docker, no Chromium) gets the checkout's tracked files, then
`./dev serve` must install what it needs and serve the page's HTTP route and gRPC, and `./dev tools`
(the first step of `./dev test`) must install the Debian packages the tests drive.

The container reaches PyPI and Debian as this host does (its proxy variables and CA bundle). The daemon
and the Debian image come from tests/conftest.py; the container and the image made here are removed.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .docker_daemon import Docker, container, network_options

REPO = Path(__file__).resolve().parents[1]
#: What `./dev tools` installs, by the commands the tests run.
TEST_TOOLS = ("docker", "dockerd", "docker-compose", "debootstrap", "chromium")
#: Classify a digit through the page's HTTP route, with the container's own python3, by each served network.
CLASSIFY = """
import json, urllib.request
image = open("tests/golden/9_scan.jpg", "rb").read()
for model in ("relu", "sigmoid"):
    with urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8080/v1/classify?model=" + model, image), timeout=30) as answer:
        found = json.load(answer)
        print(found["model"], found["label"])
"""


@pytest.fixture(scope="module")
def bare_image(docker: Docker, debian_image: str) -> Iterator[str]:
    """Debian with its python3 only: the venv module (python3-venv) removed again."""
    tag, name = f"digitnet-test-bare:{uuid.uuid4().hex[:8]}", f"digitnet-test-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "--name", name, debian_image, "sh", "-c", "dpkg --purge python3-venv python3.11-venv && rm /usr/local/bin/python")
        docker("commit", name, tag)
    finally:
        docker("rm", "-f", name, check=False)
    try:
        yield tag
    finally:
        docker("rmi", tag, check=False)


def _checkout() -> bytes:
    """The tracked files as they are in the working tree (a git archive of HEAD would miss uncommitted edits)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=False)
    assert listed.returncode == 0, f"the bare-machine test copies the git checkout's tracked files: {listed.stderr.decode().strip()}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO / name).exists():  # a tracked file deleted in the working tree is left out
                tar.add(REPO / name, arcname=name, recursive=False)
    return buffer.getvalue()


@pytest.mark.slow
def test_dev_serve_and_dev_tools_on_a_bare_debian(docker: Docker, bare_image: str) -> None:
    with container(docker, bare_image, *network_options()) as name:

        def shell(script: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
            return docker("exec", "-w", "/src", name, "sh", "-c", script, check=check, timeout=timeout)

        copied = subprocess.run(
            [docker.cli, "exec", "-i", name, "sh", "-c", "mkdir /src && tar -x -C /src"],
            input=_checkout(),
            capture_output=True,
            env={**os.environ, **docker.env},
            timeout=120,
        )
        assert copied.returncode == 0, copied.stderr.decode()
        assert shell("python3 -c 'import ensurepip'", check=False).returncode != 0, "the bare image still has the venv module"

        # The README's command, as it is: it installs python3-venv and the runtime, then serves on its default ports.
        docker("exec", "-d", "-w", "/src", name, "sh", "-c", "./dev serve >/tmp/serve.log 2>&1; echo $? >/tmp/serve.rc")
        deadline = time.monotonic() + 900
        while shell("test -x .venv/bin/digitnet && .venv/bin/digitnet health --address localhost:50051", check=False).returncode != 0:
            log = shell("tail -c 3000 /tmp/serve.log; cat /tmp/serve.rc 2>/dev/null", check=False).stdout
            assert shell("test -e /tmp/serve.rc", check=False).returncode != 0, f"./dev serve exited:\n{log}"
            assert time.monotonic() < deadline, f"./dev serve did not answer health in time:\n{log}"
            time.sleep(2)
        assert shell(f"python3 -c '{CLASSIFY}'").stdout.split() == ["relu", "9", "sigmoid", "9"]  # both networks served
        assert "installing python3-venv" in shell("cat /tmp/serve.log").stdout

        # `./dev test` begins with this step; the rest of it is this very test suite.
        missing = shell(" || ".join(f"command -v {tool}" for tool in TEST_TOOLS), check=False)
        assert missing.returncode != 0 and not missing.stdout.strip(), f"the bare image already has {missing.stdout}"
        installed = shell("./dev tools", timeout=900)
        assert "dev: installing" in installed.stderr
        found = shell("; ".join(f"command -v {tool}" for tool in TEST_TOOLS)).stdout.split()
        assert [Path(path).name for path in found] == list(TEST_TOOLS)
