"""A Docker daemon for the deployment tests (tests/test_docker.py, tests/test_bare_machine.py), and Debian
images made here where none can be pulled. tests/conftest.py wraps them as session fixtures, so the tests
share one daemon and one debootstrap.

A daemon already reachable (DOCKER_HOST or the default socket) is used as it is; otherwise one of our own
runs (vfs storage, its own socket and data folder) until the session ends. `./dev test` installs docker.io,
docker-compose and debootstrap when they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: The Dockerfile's base image; a stand-in is tagged so where it cannot be pulled.
BASE_IMAGE = "python:3.11-slim"
#: Debian packages of the debootstrapped image: Python as Debian ships it, with venv (the stand-in needs it;
#: the bare-machine test removes it again).
DEBIAN_PACKAGES = "python3,python3-venv,ca-certificates"
#: The settings by which this host reaches PyPI and Debian, handed on to containers that need the network.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
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
        return run(self.cli, *args, env=self.env, timeout=timeout, check=check)


def host_ca_bundle() -> Path | None:
    """The host's CA bundle, where a TLS-intercepting proxy's CA lives; None if Python knows no file."""
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile) if cafile and Path(cafile).is_file() else None


def network_options() -> list[str]:
    """`docker run` options that reach PyPI and Debian as this host does: its proxy settings, and its CA bundle
    for pip (a TLS-intercepting proxy's CA lives there; apt reads Debian over plain HTTP)."""
    options = [f"--env={name}={os.environ[name]}" for name in PROXY_VARIABLES if name in os.environ]
    if cafile := host_ca_bundle():
        options += [f"--volume={cafile}:/etc/ssl/host-ca-bundle.crt:ro", "--env=PIP_CERT=/etc/ssl/host-ca-bundle.crt"]
    return options


def buildkit_cli() -> str:
    # Docker 23+ builds with BuildKit only through the buildx plugin; older CLIs (Debian's 20.10) talk to the
    # daemon's built-in BuildKit themselves. Take the first that can.
    for cli in dict.fromkeys(filter(None, (shutil.which("docker"), "/usr/bin/docker"))):
        if not Path(cli).exists():
            continue
        if run(cli, "buildx", "version", check=False).returncode == 0:
            return cli
        version = run(cli, "version", "--format", "{{.Client.Version}}", check=False).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return cli
    raise AssertionError("no docker CLI that can build with BuildKit: install docker.io (Debian) or the buildx plugin")


@contextmanager
def daemon() -> Iterator[Docker]:
    """The running daemon, or our own for the duration."""
    for tool in ("docker", "docker-compose"):
        assert shutil.which(tool), f"{tool} is not installed: `./dev tools` (as root) installs it"
    cli = buildkit_cli()
    if run(cli, "info", check=False).returncode == 0:
        yield Docker({}, cli)
        return
    assert shutil.which("dockerd"), "no Docker daemon running and no dockerd to start: `apt-get install docker.io`"
    had_bridge = Path("/sys/class/net/docker0").exists()
    root = Path(tempfile.mkdtemp(prefix="digitnet-dockerd-", dir="/var/tmp"))
    socket_path = root / "docker.sock"
    log = (root / "dockerd.log").open("w")
    process = subprocess.Popen(
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
        while run(cli, "info", env=env, check=False).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, f"dockerd did not start: {(root / 'dockerd.log').read_text()[-2000:]}"
            time.sleep(0.5)
        yield Docker(env, cli)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)  # vfs keeps a full copy of every layer: gigabytes
        if not had_bridge and shutil.which("ip"):
            run("ip", "link", "delete", "docker0", check=False)  # the daemon leaves its bridge behind


@contextmanager
def debian_image(docker: Docker) -> Iterator[str]:
    """Debian bookworm (minbase) with DEBIAN_PACKAGES, made with debootstrap and imported under a tag of its own."""
    assert shutil.which("debootstrap"), "debootstrap is missing: `./dev tools` (as root) installs it"
    tag = f"digitnet-test-debian:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        rootfs = Path(folder) / "rootfs"
        run("debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}", "bookworm", str(rootfs), "http://deb.debian.org/debian")
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")  # as the official image has it
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        changes = ["--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--change", 'CMD ["python3"]']
        imported = subprocess.run(
            [docker.cli, "import", *changes, "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env={**os.environ, **docker.env},
            timeout=600,
        )
        tar.wait()
        assert imported.returncode == 0, imported.stderr
    try:
        yield tag
    finally:
        docker("rmi", tag, check=False)


def build(docker: Docker, context: Path, tag: str, target: str | None = None) -> None:
    """Build a stage of the Dockerfile in `context` (the last, as a plain `docker build` does, if no target) under a tag,
    with BuildKit; behind a TLS-intercepting proxy pip trusts the host's CA bundle, given as the pip-ca build secret."""
    cafile = host_ca_bundle()
    secret = ["--secret", f"id=pip-ca,src={cafile}"] if cafile else []
    stage = ["--target", target] if target else []
    run(docker.cli, "build", *secret, *stage, "-t", tag, str(context), env={**docker.env, "DOCKER_BUILDKIT": "1"})


@contextmanager
def container(docker: Docker, image: str, *args: str) -> Iterator[str]:
    """A container running `image` detached (args: options of `docker run` before the image); removed after."""
    name = f"digitnet-test-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "-d", "--name", name, *args, image, "sleep", "infinity")
        yield name
    finally:
        docker("rm", "-f", name, check=False)
