"""A generic client nobody here wrote, grpcurl, working from server reflection alone: it lists, describes
and calls every service the server offers, and follows a health Watch through a drain."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from ...conftest import GOLDEN, RELU, REPO
from ..conftest import ServerThread, running_server
from ..helpers import GRPCURL, grpcurl

DIGIT = base64.b64encode((GOLDEN / "4_scan.png").read_bytes()).decode()


def _call(server: ServerThread, method: str, data: str = "{}") -> dict[str, object]:
    return grpcurl(server.address, method, data)


def _list(server: ServerThread, symbol: str = "") -> list[str]:
    command = [GRPCURL, "-plaintext", server.address, "list", *([symbol] if symbol else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_every_listed_service_can_be_described(server: ServerThread) -> None:
    services = _list(server)
    assert set(services) == {
        "digitnet.v1.DigitClassifier",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    for service in services:
        described = subprocess.run([GRPCURL, "-plaintext", server.address, "describe", service], capture_output=True, text=True, timeout=60)
        assert described.returncode == 0 and f"{service} is a service" in described.stdout, described.stderr
    assert "inference.GRPCInferenceService.ModelConfig" in _list(server, "inference.GRPCInferenceService")


def test_every_service_can_be_called_from_reflection_alone(server: ServerThread) -> None:
    # The OIP used to be listed but not describable ("Symbol not found"), so grpcurl could not call it.
    assert _call(server, "grpc.health.v1.Health/Check") == {"status": "SERVING"}
    prediction = _call(server, "digitnet.v1.DigitClassifier/Classify", json.dumps({"image": {"encoded": DIGIT}}))["prediction"]
    assert prediction["label"] == 4  # type: ignore[index]
    assert _call(server, "inference.GRPCInferenceService/ServerReady") == {"ready": True}
    metadata = _call(server, "inference.GRPCInferenceService/ModelMetadata", '{"name": "digitnet"}')
    assert metadata["name"] == "digitnet" and metadata["platform"] == "onnxruntime_onnx"
    config = _call(server, "inference.GRPCInferenceService/ModelConfig", '{"name": "digitnet"}')["config"]
    assert config["max_batch_size"] == 64  # type: ignore[index]
    index = _call(server, "inference.GRPCInferenceService/RepositoryIndex")
    assert index["models"][0] == {"name": RELU, "version": "1", "state": "READY"}  # type: ignore[index]
    pixels = base64.b64encode(bytes(784)).decode()
    infer = {
        "model_name": "digitnet",
        "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 784]}],
        "raw_input_contents": [pixels],
        "outputs": [{"name": "label"}, {"name": "outcome"}],
    }
    answer = _call(server, "inference.GRPCInferenceService/ModelInfer", json.dumps(infer))
    assert [o["name"] for o in answer["outputs"]] == ["label", "outcome"]  # type: ignore[index]


def test_the_shipped_proto_works_with_grpcurl(server: ServerThread) -> None:
    # protos/inference/oip.proto declares Triton's package: calls made from it reach the server's methods.
    result = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-import-path",
            str(REPO / "protos"),
            "-proto",
            "inference/oip.proto",
            "-d",
            '{"name": "digitnet"}',
            server.address,
            "inference.GRPCInferenceService/ModelReady",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and json.loads(result.stdout) == {"ready": True}, result.stderr


@pytest.mark.slow
def test_health_watch_through_grpcurl_sees_the_drain() -> None:
    # Watch used to fail at once: UNKNOWN "'async for' requires an object with __aiter__ method, got coroutine".
    with running_server() as server:
        watch = subprocess.Popen(
            [GRPCURL, "-plaintext", "-max-time", "30", server.address, "grpc.health.v1.Health/Watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watch.stdout is not None
            first = "".join(iter(watch.stdout.readline, "}\n")) + "}"
            assert json.loads(first) == {"status": "SERVING"}
            server.call(server.state.draining())
            rest, errors = watch.communicate(timeout=30)
        finally:
            watch.kill()
    assert json.loads(rest) == {"status": "NOT_SERVING"} and watch.returncode == 0, errors
