"""Safe model reload: no request fails during a swap; a bad new model leaves the old one serving."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.card import read_card

from ...conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL, RELU, REPO, SIGMOID
from ..conftest import running_server
from ..helpers import Traffic, install, serve

IMAGE = (GOLDEN / "4_mnist.png").read_bytes()


def test_reload_swaps_without_failing_a_request(tmp_path: Path, small_model: Path) -> None:
    served = tmp_path / "served.onnx"
    install(DEFAULT_MODEL, served)
    with running_server(model=served) as server, DigitClient(server.address) as client:
        assert client.model_info().model_sha256 == read_card(DEFAULT_MODEL).model_sha256
        with Traffic(server.address) as traffic:
            install(small_model, served)
            assert server.call(server.running.reloader.reload()) is True
            time.sleep(0.3)
        assert traffic.failures == [] and traffic.ok > 50
        assert client.model_info().model_sha256 == read_card(small_model).model_sha256


def test_failed_reload_keeps_the_old_model(tmp_path: Path) -> None:
    served = tmp_path / "served.onnx"
    install(DEFAULT_MODEL, served)
    with running_server(model=served) as server, DigitClient(server.address) as client:
        with Traffic(server.address) as traffic:
            served.write_bytes(served.read_bytes()[:-10])  # corrupt: its sha256 no longer matches the card
            assert server.call(server.running.reloader.reload()) is False
        assert traffic.failures == []
        assert client.model_info().model_sha256 == read_card(DEFAULT_MODEL).model_sha256
        assert client.classify(IMAGE).label == 4


def test_each_model_reloads_alone_with_clients_of_both_running(tmp_path: Path, small_model: Path) -> None:
    from ..conftest import write_model_that_fails_to_run

    folder = tmp_path / "models"
    folder.mkdir()
    install(DEFAULT_MODEL, folder / "default.onnx")
    install(LOGISTIC_MODEL, folder / "logistic.onnx")
    broken = write_model_that_fails_to_run(tmp_path / "broken.onnx")
    with running_server(model_repository=folder, model=[]) as server:
        relu, sigmoid = DigitClient(server.address, model=RELU), DigitClient(server.address, model=SIGMOID)
        with Traffic(server.address, threads=2, model=RELU) as relu_traffic, Traffic(server.address, threads=2, model=SIGMOID) as sigmoid_traffic:
            install(broken, folder / "default.onnx")  # loads, but cannot run: refused, the old ReLU model keeps serving
            install(small_model, folder / "logistic.onnx")  # a new model in the sigmoid's file: swapped in
            assert sorted(server.call(server.running.plane.repository.reload_changed())) == [False, True]
            time.sleep(0.3)
        assert relu_traffic.failures == [] and sigmoid_traffic.failures == []
        assert relu_traffic.ok > 20 and sigmoid_traffic.ok > 20
        assert relu.model_info().model_sha256 == read_card(DEFAULT_MODEL).model_sha256
        assert sigmoid.model_info().model_sha256 == read_card(small_model).model_sha256
        assert sigmoid.model_info().name == SIGMOID  # the file's model keeps its name until a restart
        relu.close()
        sigmoid.close()


def _wait_for_sha(address: str, sha: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    with DigitClient(address) as client:
        while time.monotonic() < deadline:
            if client.model_info().model_sha256 == sha:
                return True
            time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("trigger", ["SIGHUP", "--watch"])
def test_reload_triggers(tmp_path: Path, small_model: Path, trigger: str) -> None:
    served = tmp_path / "served.onnx"
    install(DEFAULT_MODEL, served)
    flags = ("--watch",) if trigger == "--watch" else ()
    process, port = serve(served, *flags, env={"DIGITNET_WATCH_SECONDS": "0.2"})
    try:
        address = f"127.0.0.1:{port}"
        with Traffic(address) as traffic:
            install(small_model, served)
            if trigger == "SIGHUP":
                process.send_signal(signal.SIGHUP)
            assert _wait_for_sha(address, str(read_card(small_model).model_sha256)), "the new model was not swapped in"
        assert traffic.failures == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_a_model_that_loads_but_cannot_run_is_not_swapped_in(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from ..conftest import write_model_that_fails_to_run

    served = tmp_path / "served.onnx"
    install(DEFAULT_MODEL, served)
    broken = write_model_that_fails_to_run(tmp_path / "broken.onnx")
    failed = {"model": read_card(DEFAULT_MODEL).name, "result": "failed"}
    failed_before = REGISTRY.get_sample_value("digitnet_model_reloads_total", failed) or 0
    with running_server(model=served) as server, DigitClient(server.address) as client:
        with Traffic(server.address) as traffic:
            install(broken, served)
            assert server.call(server.running.reloader.reload()) is False  # it used to escape: "Task exception was never retrieved"
        assert traffic.failures == [] and client.classify(IMAGE).label == 4
        assert client.model_info().model_sha256 == read_card(DEFAULT_MODEL).model_sha256
    assert (
        REGISTRY.get_sample_value("digitnet_model_reloads_total", {"model": read_card(DEFAULT_MODEL).name, "result": "failed"}) == failed_before + 1
    )


def test_serving_a_model_that_cannot_run_is_one_clear_line(tmp_path: Path) -> None:
    from ..conftest import write_model_that_fails_to_run

    broken = write_model_that_fails_to_run(tmp_path / "broken.onnx")
    result = subprocess.run(
        [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(broken), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("digitnet serve: error: the model loads but fails on a test batch"), errors
