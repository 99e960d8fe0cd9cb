"""The Open Inference Protocol, spoken to by the real tritonclient: same answers as digitnet.v1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException

from digitnet.service.api._generated import oip_pb2
from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.constants import MODEL_NAME

from ...conftest import GOLDEN, RELU, SIGMOID
from ..conftest import ServerThread, running_server

DIGITS = np.stack([np.asarray(Image.open(GOLDEN / f"{d}_mnist.png"), dtype=np.uint8).reshape(784) for d in range(10)])


@pytest.fixture(scope="module")
def triton_client(server: ServerThread) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.address)
    yield client
    client.close()


def _infer(client: triton.InferenceServerClient, pixels: np.ndarray, outputs: tuple[str, ...] = ("probabilities", "label"), **kwargs: object):
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32"}[pixels.dtype]
    tensor = triton.InferInput("pixels", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels)
    return client.infer(MODEL_NAME, [tensor], outputs=[triton.InferRequestedOutput(n) for n in outputs], **kwargs)


@pytest.mark.parametrize("name", [m.name for m in oip_pb2.DESCRIPTOR.message_types_by_name.values()])
def test_messages_are_wire_compatible_with_tritonclient(name: str) -> None:
    def fields(descriptor: object) -> dict[str, tuple[int, int, bool, str]]:
        found = {
            f.name: (f.number, f.type, f.is_repeated, (f.message_type or f.enum_type).name if f.message_type or f.enum_type else "")
            for f in descriptor.fields  # type: ignore[attr-defined]
        }
        for nested in descriptor.nested_types:  # type: ignore[attr-defined]
            found.update({f"{nested.name}.{k}": v for k, v in fields(nested).items()})
        return found

    theirs = triton_pb.DESCRIPTOR.message_types_by_name.get(name) or triton_config.DESCRIPTOR.message_types_by_name[name]
    ours = fields(oip_pb2.DESCRIPTOR.message_types_by_name[name])
    assert ours.items() <= fields(theirs).items()  # every field we have is theirs, number and type alike
    if name in triton_pb.DESCRIPTOR.message_types_by_name and name not in _SUBSETS:
        assert ours == fields(theirs), "a message of the core protocol lacks fields"


#: Messages that hold only the part of Triton's fields that describes this model (or its statistics).
_SUBSETS = {"ModelStatistics", "InferStatistics"}


def test_enums_match_tritonclient() -> None:
    for enum in oip_pb2.DESCRIPTOR.enum_types_by_name.values():
        theirs = triton_config.DESCRIPTOR.enum_types_by_name[enum.name]
        assert {v.name: v.number for v in enum.values} == {v.name: v.number for v in theirs.values}


def test_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL_NAME) and triton_client.is_model_ready(MODEL_NAME, "1")
    metadata = triton_client.get_model_metadata(MODEL_NAME, as_json=True)
    assert metadata["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "784"]}]
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label", "hidden1", "hidden2", "outcome", "reason"]
    assert triton_client.get_server_metadata(as_json=True)["name"] == "digitnet"


def test_tritons_model_config_statistics_and_index(triton_client: triton.InferenceServerClient) -> None:
    # These answered UNIMPLEMENTED: tools written for Triton need more than infer.
    config = triton_client.get_model_config(MODEL_NAME, as_json=True)["config"]
    assert config["max_batch_size"] == 64 and config["platform"] == "onnxruntime_onnx"  # the test server's max_request_images
    assert config["input"] == [{"name": "pixels", "data_type": "TYPE_FP32", "dims": ["784"]}]
    assert {o["name"]: o["data_type"] for o in config["output"]}["outcome"] == "TYPE_STRING"
    assert "dynamic_batching" not in config  # adaptive batching is off on this server
    before = triton_client.get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"][0]
    _infer(triton_client, DIGITS)
    after = triton_client.get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"][0]
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 10
    assert int(after["execution_count"]) == int(before.get("execution_count", 0)) + 1
    assert int(after["inference_stats"]["success"]["count"]) == int(before.get("inference_stats", {}).get("success", {}).get("count", 0)) + 1
    assert int(after["last_inference"]) > 0 and any(b["batch_size"] == "10" for b in after["batch_stats"])
    # The repository folder's other model is listed, not loaded (the test servers serve the default alone).
    assert triton_client.get_model_repository_index(as_json=True)["models"] == [
        {"name": RELU, "version": "1", "state": "READY"},
        {"name": SIGMOID, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
    ]
    with pytest.raises(InferenceServerException, match="NOT_FOUND"):
        triton_client.get_model_config("mnist")


def test_a_blank_image_is_no_guess_and_says_why(triton_client: triton.InferenceServerClient) -> None:
    # A blank image got label 1 (p = 0.34) here, while digitnet.v1 answered UNKNOWN.
    pixels = np.stack([np.zeros(784, np.uint8), DIGITS[7], DIGITS[3]])
    seven, three = _infer(triton_client, pixels, parameters={"min_confidence": 0.0}).as_numpy("probabilities")[1:].max(axis=1)
    between = float(seven + three) / 2  # a threshold the 3 passes and the 7 does not
    assert seven < between < three
    tensor = triton.InferInput("pixels", [3, 784], "UINT8")
    tensor.set_data_from_numpy(pixels)
    outputs = [triton.InferRequestedOutput(n) for n in ("label", "probabilities", "outcome", "reason")]
    result = triton_client.infer(MODEL_NAME, [tensor], outputs=outputs, parameters={"min_confidence": between})
    assert result.as_numpy("label").tolist() == [-1, -1, 3]
    assert result.as_numpy("outcome").tolist() == [b"unknown", b"unknown", b"digit"]
    blank, low, digit = result.as_numpy("reason").tolist()
    assert blank == b"blank image: too little ink to be a digit" and digit == b""
    assert low.startswith(f"confidence {seven:.3f} is below min_confidence {between:.3f}".encode())
    assert not result.as_numpy("probabilities")[0].any()
    default = _infer(triton_client, pixels)  # without the new outputs: what a first-version client reads
    assert default.as_numpy("label").tolist() == [-1, 7, 3]


def test_infer_equals_our_own_api(triton_client: triton.InferenceServerClient, client: DigitClient) -> None:
    result = _infer(triton_client, DIGITS)
    probabilities, labels = result.as_numpy("probabilities"), result.as_numpy("label")
    assert labels.tolist() == list(range(10))
    ours = client.classify_packed(DIGITS)
    np.testing.assert_allclose(probabilities, ours.probabilities, atol=1e-6)


def test_fp32_and_28x28_inputs_and_hidden_outputs(triton_client: triton.InferenceServerClient) -> None:
    pixels = (DIGITS[:3] / np.float32(255)).astype(np.float32).reshape(3, 28, 28)
    result = _infer(triton_client, pixels, outputs=("label", "hidden1", "hidden2"))
    assert result.as_numpy("label").tolist() == [0, 1, 2]
    assert result.as_numpy("hidden1").shape == (3, 16) and result.as_numpy("hidden2").shape == (3, 16)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.is_model_ready("mnist"), "NOT_FOUND"),
        (lambda c: c.get_model_metadata(MODEL_NAME, "7"), "NOT_FOUND"),
        (lambda c: _infer(c, DIGITS[:, :700].copy()), "shape [N, 784] or [N, 28, 28]"),
        (lambda c: _infer(c, DIGITS.astype(np.float32)), "FP32 input 'pixels' values must be in [0, 1], got [0, 255]"),
        (lambda c: _infer(c, DIGITS.astype(np.int32)), "must be FP32 or UINT8"),
        (lambda c: _infer(c, DIGITS[:1], outputs=("logits",)), "unknown outputs ['logits']"),
        (lambda c: _infer(c, DIGITS[:1], parameters={"min_confidence": 2.0}), "min_confidence must be a number in [0, 1]"),
        (lambda c: _infer(c, DIGITS[:1], parameters={"min_confidence": "high"}), "must be a number in [0, 1], got a string_param"),
    ],
    ids=["model", "version", "shape", "range", "datatype", "output", "min-confidence", "min-confidence-type"],
)
def test_errors_name_what_was_expected(triton_client: triton.InferenceServerClient, call: object, message: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call(triton_client)  # type: ignore[operator]
    assert message in str(caught.value)
    assert triton_client.is_server_ready()


def test_raw_byte_count_is_checked(server: ServerThread) -> None:
    import grpc

    request = oip_pb2.ModelInferRequest(model_name=MODEL_NAME, raw_input_contents=[bytes(783)])
    request.inputs.add(name="pixels", datatype="UINT8", shape=[1, 784])
    with grpc.insecure_channel(server.address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", oip_pb2.ModelInferRequest.SerializeToString, oip_pb2.ModelInferResponse.FromString
        )
        with pytest.raises(grpc.RpcError) as caught:
            infer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is 783 bytes; 1 UINT8 image needs 784" in (caught.value.details() or "")


def test_stream_infer(triton_client: triton.InferenceServerClient) -> None:
    answers: list[object] = []
    done = threading.Event()

    def callback(result: object, error: object) -> None:
        answers.append(error or result)
        if len(answers) == 4:
            done.set()

    triton_client.start_stream(callback=callback)
    try:
        for digit in (3, 1, 4, 1):
            tensor = triton.InferInput("pixels", [1, 784], "UINT8")
            tensor.set_data_from_numpy(DIGITS[digit : digit + 1])
            triton_client.async_stream_infer(MODEL_NAME, [tensor], request_id=str(digit))
        assert done.wait(10)
    finally:
        triton_client.stop_stream()
    assert [int(a.as_numpy("label")[0]) for a in answers] == [3, 1, 4, 1]  # type: ignore[attr-defined]


def test_adaptive_batching_keeps_every_answer_with_its_request() -> None:
    with running_server(max_batch_size=16, max_batch_delay_ms=5) as server:
        clients = [triton.InferenceServerClient(server.address) for _ in range(8)]
        rng = np.random.default_rng(0)

        def ask(n: int) -> tuple[list[int], list[int]]:
            client = clients[n % len(clients)]
            chosen = rng.integers(0, 10, size=1 + n % 3)  # requests of 1 to 3 different digits
            labels = _infer(client, DIGITS[chosen]).as_numpy("label").tolist()
            return chosen.tolist(), labels

        with futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(ask, range(300)))
        for client in clients:
            client.close()
        assert all(wanted == got for wanted, got in results), "a response held another request's results"


def test_a_huge_model_name_gets_a_short_not_found(server: ServerThread) -> None:
    # The name used to be echoed whole: 100 KB of it in the status message overflowed the client's
    # metadata limit, and the client saw RESOURCE_EXHAUSTED instead of NOT_FOUND.
    name = "x" * 100_000
    with pytest.raises(InferenceServerException) as caught:
        triton.InferenceServerClient(server.address).get_model_metadata(name)
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert f"unknown model '{'x' * 63}…': this server serves '{RELU}' (the default, also 'digitnet')" in str(caught.value)


def test_large_tensors_are_decoded_and_run_off_the_event_loop(triton_client: triton.InferenceServerClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from digitnet.service.grpc import oip

    threads: list[str] = []
    original = oip.decode_request

    def recording(*args: object) -> object:
        threads.append(threading.current_thread().name)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(oip, "decode_request", recording)
    labels = _infer(triton_client, np.repeat(DIGITS, 6, axis=0)).as_numpy("label")  # 60 images: the thread pool
    assert labels.tolist() == np.repeat(np.arange(10), 6).tolist()
    _infer(triton_client, DIGITS[:2])  # two images: answered on the event loop, no thread hop
    assert threads[0].startswith("digitnet-work") and not threads[1].startswith("digitnet-work"), threads
