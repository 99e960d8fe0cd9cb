"""Every RPC of digitnet.v1 against a real server on loopback, including every bad input."""

from __future__ import annotations

import json
import re
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.card import read_card

from ...conftest import CORPUS, DEFAULT_MODEL, GOLDEN, RELU, SIGMOID
from ..conftest import DecodeSpy, running_server


def _golden(label: int, form: str = "scan.png") -> bytes:
    return (GOLDEN / f"{label}_{form}").read_bytes()


def _mnist_uint8(label: int) -> bytes:
    return np.asarray(Image.open(GOLDEN / f"{label}_mnist.png")).tobytes()


def _assert_healthy(channel: grpc.Channel, stub: pb_grpc.DigitClassifierStub) -> None:
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="digitnet.v1.DigitClassifier"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    reply = stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=_golden(7))))
    assert reply.prediction.label == 7


def test_classify_encoded(stub: pb_grpc.DigitClassifierStub) -> None:
    reply = stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=_golden(3, "scan.jpg")), id="req-1"))
    assert reply.id == "req-1"
    assert reply.prediction.outcome == pb.OUTCOME_DIGIT and reply.prediction.label == 3
    assert len(reply.prediction.probabilities) == 10
    assert reply.prediction.confidence == pytest.approx(max(reply.prediction.probabilities))


def test_classify_raw_uint8_and_float(stub: pb_grpc.DigitClassifierStub) -> None:
    raw = _mnist_uint8(8)
    as_float = (np.frombuffer(raw, dtype=np.uint8) / 255.0).astype(np.float32)
    a = stub.Classify(pb.ClassifyRequest(image=pb.Image(mnist_uint8=raw))).prediction
    b = stub.Classify(pb.ClassifyRequest(image=pb.Image(mnist_float=pb.MnistFloat(values=as_float.tolist())))).prediction
    assert a.label == b.label == 8
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_blank_is_unknown(stub: pb_grpc.DigitClassifierStub) -> None:
    reply = stub.Classify(pb.ClassifyRequest(image=pb.Image(mnist_uint8=bytes(784))))
    assert reply.prediction.outcome == pb.OUTCOME_UNKNOWN and reply.prediction.label == -1
    assert "blank" in reply.prediction.reason


def test_min_confidence_gives_unknown_with_reason(stub: pb_grpc.DigitClassifierStub) -> None:
    reply = stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=_golden(5)), min_confidence=1.0))
    assert reply.prediction.outcome == pb.OUTCOME_UNKNOWN and reply.prediction.label == -1
    assert "below min_confidence 1.000" in reply.prediction.reason and len(reply.prediction.probabilities) == 10


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (pb.ClassifyRequest(), grpc.StatusCode.INVALID_ARGUMENT, "no image given"),
        (pb.ClassifyRequest(image=pb.Image(encoded=b"GIF89a broken")), grpc.StatusCode.INVALID_ARGUMENT, "cannot decode|not a readable"),
        (pb.ClassifyRequest(image=pb.Image(mnist_uint8=bytes(783))), grpc.StatusCode.INVALID_ARGUMENT, "exactly 784 bytes"),
        (
            pb.ClassifyRequest(image=pb.Image(mnist_float=pb.MnistFloat(values=[float("nan")] * 784))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "NaN or infinite",
        ),
        (pb.ClassifyRequest(image=pb.Image(mnist_uint8=bytes(784)), min_confidence=2), grpc.StatusCode.INVALID_ARGUMENT, "min_confidence"),
        (pb.ClassifyRequest(image=pb.Image(encoded=bytes(300_000))), grpc.StatusCode.RESOURCE_EXHAUSTED, "over the limit of 200000"),
    ],
    ids=["no-image", "undecodable", "wrong-pixel-count", "nan", "bad-min-confidence", "too-many-bytes"],
)
def test_bad_input_is_refused_and_server_stays_healthy(
    stub: pb_grpc.DigitClassifierStub, channel: grpc.Channel, request_: pb.ClassifyRequest, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Classify(request_)
    assert caught.value.code() == code
    assert re.search(message, caught.value.details() or "")
    _assert_healthy(channel, stub)


def test_message_size_limit(stub: pb_grpc.DigitClassifierStub, channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=bytes(2_000_000))))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_healthy(channel, stub)


def test_batch_keeps_order_and_isolates_bad_items(stub: pb_grpc.DigitClassifierStub) -> None:
    images = [pb.Image(encoded=_golden(1)), pb.Image(encoded=b"junk"), pb.Image(mnist_uint8=_mnist_uint8(9)), pb.Image()]
    predictions = stub.ClassifyBatch(pb.ClassifyBatchRequest(images=images)).predictions
    assert [p.outcome for p in predictions] == [pb.OUTCOME_DIGIT, pb.OUTCOME_ERROR, pb.OUTCOME_DIGIT, pb.OUTCOME_ERROR]
    assert [p.label for p in predictions] == [1, -1, 9, -1]
    assert predictions[1].error.code == "INVALID_ARGUMENT" and "not a readable image" in predictions[1].error.message
    assert "no image given" in predictions[3].error.message


def test_batch_size_limit(stub: pb_grpc.DigitClassifierStub) -> None:
    images = [pb.Image(mnist_uint8=_mnist_uint8(0))] * 65
    with pytest.raises(grpc.RpcError) as caught:
        stub.ClassifyBatch(pb.ClassifyBatchRequest(images=images))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "batch of 65 images is over the limit of 64" in caught.value.details()


def test_packed_batch_matches_single_calls(client: DigitClient, stub: pb_grpc.DigitClassifierStub) -> None:
    images = np.stack([np.frombuffer(_mnist_uint8(d), dtype=np.uint8) for d in range(10)] + [np.zeros(784, np.uint8)])
    packed = client.classify_packed(images, min_confidence=0.5)
    assert packed.labels.tolist() == [*range(10), -1]  # the blank image is UNKNOWN
    assert packed.probabilities.shape == (11, 10) and not packed.probabilities[10].any()
    for image, probabilities in zip(images[:10], packed.probabilities):
        single = client.classify(image)
        np.testing.assert_allclose(single.probabilities, probabilities, atol=1e-6)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.ClassifyBatchRequest(mnist_uint8=bytes(785)), "multiple of 784 bytes"),
        (pb.ClassifyBatchRequest(mnist_uint8=bytes(784 * 65)), "batch of 65 images is over the limit of 64"),
        (pb.ClassifyBatchRequest(mnist_uint8=bytes(784), images=[pb.Image()]), "either images or mnist_uint8"),
    ],
)
def test_packed_batch_errors(stub: pb_grpc.DigitClassifierStub, request_: pb.ClassifyBatchRequest, message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ClassifyBatch(request_)
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert message in (caught.value.details() or "")


def test_stream_answers_in_order_and_survives_bad_items(stub: pb_grpc.DigitClassifierStub) -> None:
    labels = [4, 2, 6, 0]
    requests = [pb.ClassifyRequest(image=pb.Image(encoded=_golden(d, "rgba.png")), id=f"n{d}") for d in labels]
    requests.insert(2, pb.ClassifyRequest(image=pb.Image(mnist_uint8=b"x"), id="bad"))
    replies = list(stub.ClassifyStream(iter(requests)))
    assert [r.id for r in replies] == ["n4", "n2", "bad", "n6", "n0"]
    assert [r.prediction.label for r in replies] == [4, 2, -1, 6, 0]
    assert replies[2].prediction.outcome == pb.OUTCOME_ERROR and replies[2].prediction.error.code == "INVALID_ARGUMENT"


def test_explain_matches_a_numpy_forward_pass(stub: pb_grpc.DigitClassifierStub) -> None:
    import onnx
    from onnx import numpy_helper

    reply = stub.Explain(pb.ClassifyRequest(image=pb.Image(encoded=_golden(6))))
    assert reply.prediction.label == 6 and len(reply.input) == 784
    # The model's own weights, read from the ONNX file (skl2onnx's initializer names).
    by_name = {t.name: numpy_helper.to_array(t) for t in onnx.load(DEFAULT_MODEL).graph.initializer}
    x = np.array(reply.input, dtype=np.float64)
    h1 = np.maximum(x @ by_name["coefficient"] + by_name["intercepts"].ravel(), 0)
    h2 = np.maximum(h1 @ by_name["coefficient1"] + by_name["intercepts1"].ravel(), 0)
    np.testing.assert_allclose(reply.hidden1, h1, atol=1e-4)
    np.testing.assert_allclose(reply.hidden2, h2, atol=1e-4)


def test_model_info(stub: pb_grpc.DigitClassifierStub) -> None:
    info = stub.GetModelInfo(pb.GetModelInfoRequest())
    card = read_card(DEFAULT_MODEL)
    assert info.model_sha256 == card.model_sha256
    assert info.execution_provider == "CPUExecutionProvider"
    assert list(info.layers) == [784, 16, 16, 10] and info.parameters == 13002 and info.activation == "relu"
    assert card.cross_validation is not None
    assert json.loads(info.card_json)["cross_validation"]["accuracy"] == card.cross_validation.accuracy


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "digitnet.v1.DigitClassifier"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    [reply] = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in reply.list_services_response.service}
    assert {"digitnet.v1.DigitClassifier", "grpc.health.v1.Health"} <= names


def test_packed_encoding_equals_protobufs_own() -> None:
    from digitnet.service.contract.results import PackedPredictions
    from digitnet.service.grpc.servicer import encode_packed

    rng = np.random.default_rng(0)
    for n in (0, 1, 3000):  # 3000 x 10 floats: a length varint of three bytes
        packed = PackedPredictions(rng.integers(-1, 10, n).astype(np.int32), rng.random(n, dtype=np.float32), rng.random((n, 10), dtype=np.float32))
        reference = pb.PackedPredictions(
            labels=packed.labels.tolist(), confidences=packed.confidences.tolist(), probabilities=packed.probabilities.ravel().tolist()
        )
        assert encode_packed(packed, RELU) == reference


ODD = (CORPUS / "tiff_tiles_2G.tif").read_bytes()  # Pillow: OverflowError


def test_an_odd_file_is_invalid_argument_in_every_rpc(stub: pb_grpc.DigitClassifierStub, channel: grpc.Channel) -> None:
    # Such a file (a LAB TIFF once) used to answer INTERNAL, fail a whole batch, and cut a stream off.
    odd = pb.Image(encoded=ODD)
    for method in (stub.Classify, stub.Explain):
        with pytest.raises(grpc.RpcError) as caught:
            method(pb.ClassifyRequest(image=odd))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot decode the image" in caught.value.details()
    good, bad = stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[pb.Image(encoded=_golden(2)), odd])).predictions
    assert good.label == 2 and bad.outcome == pb.OUTCOME_ERROR and bad.error.code == "INVALID_ARGUMENT"
    items = [pb.ClassifyRequest(image=odd, id="odd"), pb.ClassifyRequest(image=pb.Image(encoded=_golden(6)), id="six")]
    answers = list(stub.ClassifyStream(iter(items)))
    assert [a.id for a in answers] == ["odd", "six"] and answers[1].prediction.label == 6
    _assert_healthy(channel, stub)


def test_a_bug_on_one_item_does_not_end_the_stream_or_the_batch(stub: pb_grpc.DigitClassifierStub, bug_on_one_pixel_images: bytes) -> None:
    one_pixel = pb.Image(encoded=bug_on_one_pixel_images)
    bug, good = stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[one_pixel, pb.Image(encoded=_golden(3))])).predictions
    assert bug.error.code == "INTERNAL" and "incident" in bug.error.message and good.label == 3
    items = [pb.ClassifyRequest(image=one_pixel, id="bug"), pb.ClassifyRequest(image=pb.Image(encoded=_golden(8)), id="eight")]
    answers = list(stub.ClassifyStream(iter(items)))
    assert answers[0].prediction.error.code == "INTERNAL" and answers[1].prediction.label == 8


def test_large_requests_are_decoded_off_the_event_loop(server: object, stub: pb_grpc.DigitClassifierStub, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 60 MB mnist_float batch once held the event loop for ~2 s: every other call waited.
    from digitnet.service.inference.classifier import Classifier

    threads: list[str] = []
    original = Classifier.classify

    def recording(self: Classifier, *args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Classifier, "classify", recording)
    floats = pb.Image(mnist_float=pb.MnistFloat(values=(np.frombuffer(_mnist_uint8(4), np.uint8) / 255).tolist()))
    assert [p.label for p in stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[floats] * 30)).predictions] == [4] * 30
    assert len(threads) == 1 and threads[0].startswith("digitnet-work"), threads


def test_a_passed_deadline_stops_a_batch_and_frees_its_thread(stub: pb_grpc.DigitClassifierStub, decode_spy: DecodeSpy) -> None:
    decode_spy.delay = 0.02
    images = [pb.Image(encoded=_golden(1))] * 64  # ~1.3 s of decoding
    with pytest.raises(grpc.RpcError) as caught:
        stub.ClassifyBatch(pb.ClassifyBatchRequest(images=images), timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.5)  # were the work not stopped, it would still be decoding
    assert decode_spy.calls < 30, f"{decode_spy.calls} of 64 images decoded for a call that gave up after 0.2 s"
    assert stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=_golden(1))), timeout=5).prediction.label == 1


def test_model_info_tells_the_limits(stub: pb_grpc.DigitClassifierStub) -> None:
    limits = stub.GetModelInfo(pb.GetModelInfoRequest()).limits
    assert (limits.max_message_bytes, limits.max_image_bytes, limits.max_request_images) == (1_000_000, 200_000, 64)
    assert limits.max_image_side == 16_384 and limits.max_image_aspect == 20


def test_each_error_class_declares_the_status_every_transport_answers() -> None:
    from digitnet.service.contract import errors
    from digitnet.service.grpc.servicer import status_for

    def family(cls: type[errors.DigitnetError]) -> list[type[errors.DigitnetError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in family(sub))]

    classes = family(errors.DigitnetError)
    assert len(classes) >= 12 and all(isinstance(grpc.StatusCode[cls.code], grpc.StatusCode) for cls in classes)
    assert status_for(errors.TimeLimitExceeded("slow")) is grpc.StatusCode.RESOURCE_EXHAUSTED  # inherits LimitExceeded's
    assert status_for(errors.ExportVerificationError("differs")) is grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(errors.Unavailable("draining")) is grpc.StatusCode.UNAVAILABLE


def test_every_digitnet_v1_call_takes_a_model_and_names_the_one_that_answered() -> None:
    image = pb.Image(encoded=(GOLDEN / "4_scan.jpg").read_bytes())
    with running_server(model=[]) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DigitClassifierStub(channel)
        for asked, answering in (("", RELU), ("digitnet", RELU), (RELU, RELU), (SIGMOID, SIGMOID)):
            assert stub.Classify(pb.ClassifyRequest(image=image, model=asked)).model == answering
            assert stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[image], model=asked)).model == answering
            assert stub.ClassifyBatch(pb.ClassifyBatchRequest(mnist_uint8=bytes(784), model=asked)).model == answering
            assert stub.Explain(pb.ClassifyRequest(image=image, model=asked)).model == answering
            info = stub.GetModelInfo(pb.GetModelInfoRequest(model=asked))
            assert info.name == answering and info.activation == ("relu" if answering == RELU else "logistic")
        # A stream's items may each name their own model; an unknown one is that item's error, and the stream goes on.
        asks = [pb.ClassifyRequest(image=image, model=name, id=name) for name in (SIGMOID, "mnist", RELU)]
        answers = list(stub.ClassifyStream(iter(asks)))
        assert [(a.id, a.model, a.prediction.outcome) for a in answers] == [
            (SIGMOID, SIGMOID, pb.OUTCOME_DIGIT),
            ("mnist", "", pb.OUTCOME_ERROR),
            (RELU, RELU, pb.OUTCOME_DIGIT),
        ]
        assert answers[1].prediction.error.code == "NOT_FOUND" and "unknown model 'mnist'" in answers[1].prediction.error.message
        with pytest.raises(grpc.RpcError) as caught:
            stub.Classify(pb.ClassifyRequest(image=image, model="mnist"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
