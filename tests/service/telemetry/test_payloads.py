"""The payload log: its records match what the clients got on both transports, errors included; sampling,
rotation, the CloudEvents sink (well-formed events; a dead or hanging sink drops and counts, never fails a
request); no header or token in it."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from PIL import Image
from prometheus_client import REGISTRY

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.api._generated import oip_pb2 as oip
from digitnet.service.contract.constants import MODEL_NAME
from digitnet.service.contract.results import Outcome, Prediction
from digitnet.service.telemetry.payloads import REQUEST_EVENT, RESPONSE_EVENT, PayloadLog, RotatingLines, note_answers, note_inputs

from ...conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL, RELU, SIGMOID
from ..conftest import ServerThread, running_server
from ..helpers import free_port

SEVEN = (GOLDEN / "7_scan.png").read_bytes()
SEVEN_PIXELS = np.asarray(Image.open(GOLDEN / "7_mnist.png").convert("L"), dtype=np.uint8).ravel()
OIP_INFER = "/inference.GRPCInferenceService/ModelInfer"


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def settled(server: ServerThread, count: int) -> list[dict[str, Any]]:
    """The log's records once it holds `count` (a guard records a call just after its client has the answer) and
    the sink has what was queued."""
    payloads = server.running.plane.payloads
    assert payloads is not None and payloads.path.exists()
    deadline = time.monotonic() + 10
    while len(payloads.path.read_text().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert payloads.flush()
    return records(payloads.path)


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record in records(path)}


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("digitnet_payload_records_dropped_total", {"reason": reason}) or 0.0


def pixels_of(record_input: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(record_input["pixels"]), dtype=np.uint8)


def test_records_match_what_grpc_and_rest_clients_got_errors_included(tmp_path: Path) -> None:
    log = tmp_path / "payloads.jsonl"
    with running_server(http=True, payload_log=log, payload_log_sample=1.0, token="s3cret-token") as server:
        auth = (("authorization", "Bearer s3cret-token"),)
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.DigitClassifierStub(channel)
            got = stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=SEVEN)), metadata=(*auth, ("x-request-id", "g-classify")), timeout=10)
            with pytest.raises(grpc.RpcError) as missing:
                stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=SEVEN), model="nope"), metadata=(*auth, ("x-request-id", "g-unknown")))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as bad:
                stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=b"not an image")), metadata=(*auth, ("x-request-id", "g-bad")))
            with pytest.raises(grpc.RpcError) as refused:
                stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=SEVEN)), metadata=(("x-request-id", "g-refused"),))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            batch = stub.ClassifyBatch(pb.ClassifyBatchRequest(mnist_uint8=SEVEN_PIXELS.tobytes() * 2), metadata=(*auth, ("x-request-id", "g-batch")))
            images = [pb.Image(encoded=SEVEN), pb.Image(encoded=b"not an image")]
            mixed = stub.ClassifyBatch(pb.ClassifyBatchRequest(images=images), metadata=(*auth, ("x-request-id", "g-mixed")))
            infer = channel.unary_unary(OIP_INFER, oip.ModelInferRequest.SerializeToString, oip.ModelInferResponse.FromString)
            answer = infer(
                oip.ModelInferRequest(
                    model_name=MODEL_NAME,
                    inputs=[oip.ModelInferRequest.InferInputTensor(name="pixels", datatype="UINT8", shape=[1, 784])],
                    raw_input_contents=[SEVEN_PIXELS.tobytes()],
                    outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name="label")],
                ),
                metadata=(*auth, ("x-request-id", "g-oip")),
            )
        headers = {"authorization": "Bearer s3cret-token"}
        rest = _post(f"{server.http_url}/v1/classify", SEVEN, {**headers, "x-request-id": "h-classify"})
        bad_rest = _post(f"{server.http_url}/v1/classify", b"not an image", {**headers, "x-request-id": "h-bad"})
        body = json.dumps({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 784], "data": SEVEN_PIXELS.tolist()}]}).encode()
        rest_oip = _post(f"{server.http_url}/v2/models/{MODEL_NAME}/infer", body, {**headers, "x-request-id": "h-oip"})
        unknown_rest = _post(f"{server.http_url}/v2/models/nope/infer", body, {**headers, "x-request-id": "h-unknown"})
        logged = {record["id"]: record for record in settled(server, 11)}

    # digitnet.v1 Classify: the answer the client got, and the pixels the model saw (the scan, preprocessed).
    record = logged["g-classify"]
    assert (record["transport"], record["call"], record["model"], record["status"], record["ok"]) == ("grpc", "Classify", RELU, "OK", True)
    [answer0] = record["answers"]
    assert answer0["label"] == got.prediction.label == 7
    assert answer0["probabilities"] == pytest.approx(list(got.prediction.probabilities), abs=1e-5)
    assert pixels_of(record["inputs"][0]).size == 784 and record["latency_ms"] > 0 and record["time"].endswith("Z")
    # Failures are recorded with their status: an unknown model, a bad image (its input says why), a refused call.
    assert (logged["g-unknown"]["status"], logged["g-unknown"]["ok"], logged["g-unknown"]["model"]) == ("NOT_FOUND", False, "")
    assert logged["g-bad"]["status"] == bad.value.code().name == "INVALID_ARGUMENT"
    assert logged["g-bad"]["inputs"][0]["pixels"] is None and logged["g-bad"]["inputs"][0]["error"]
    assert logged["g-refused"]["status"] == "UNAUTHENTICATED" and logged["g-refused"]["inputs"] == []
    # The packed batch and the OIP: the pixels as sent, the labels as answered.
    assert [a["label"] for a in logged["g-batch"]["answers"]] == list(batch.packed.labels) == [7, 7]
    assert all((pixels_of(i) == SEVEN_PIXELS).all() for i in logged["g-batch"]["inputs"])
    # A batch with a bad image: answered in place, recorded in place.
    assert [a["status"] for a in logged["g-mixed"]["answers"]] == ["digit", "error"]
    assert logged["g-mixed"]["answers"][0]["label"] == mixed.predictions[0].label == 7 and logged["g-mixed"]["inputs"][1]["pixels"] is None
    oip_label = int(np.frombuffer(answer.raw_output_contents[0], dtype="<i8")[0])
    assert logged["g-oip"]["call"] == "ModelInfer" and logged["g-oip"]["answers"][0]["label"] == oip_label == 7
    assert (pixels_of(logged["g-oip"]["inputs"][0]) == SEVEN_PIXELS).all()
    # REST: /v1/classify (and its error) and the OIP's infer, as their clients got them.
    assert rest[0] == 200 and logged["h-classify"]["transport"] == "http" and logged["h-classify"]["status"] == "200"
    assert logged["h-classify"]["answers"][0]["label"] == rest[1]["label"] == 7
    assert logged["h-classify"]["answers"][0]["probabilities"] == pytest.approx(rest[1]["probabilities"], abs=1e-5)
    assert bad_rest[0] == 400 and logged["h-bad"]["status"] == "400" and not logged["h-bad"]["ok"]
    assert logged["h-oip"]["answers"][0]["label"] == rest_oip[1]["outputs"][[o["name"] for o in rest_oip[1]["outputs"]].index("label")]["data"][0]
    assert unknown_rest[0] == 404 and logged["h-unknown"]["status"] == "404"
    # Never a header, the token or TLS material.
    text = log.read_text()
    assert "s3cret-token" not in text and "authorization" not in text.lower() and "Bearer" not in text


def test_each_item_of_a_stream_is_a_record_of_its_own(tmp_path: Path) -> None:
    log = tmp_path / "payloads.jsonl"
    with running_server(model=[DEFAULT_MODEL, LOGISTIC_MODEL], payload_log=log, payload_log_sample=1.0) as server:
        items = [
            pb.ClassifyRequest(image=pb.Image(encoded=SEVEN), id="a"),
            pb.ClassifyRequest(image=pb.Image(encoded=b"not an image"), id="b"),
            pb.ClassifyRequest(image=pb.Image(mnist_uint8=SEVEN_PIXELS.tobytes()), model="nope", id="c"),
            pb.ClassifyRequest(image=pb.Image(mnist_uint8=SEVEN_PIXELS.tobytes()), model=SIGMOID),  # no id: its place
        ]
        with grpc.insecure_channel(server.address) as channel:
            stream = pb_grpc.DigitClassifierStub(channel).ClassifyStream(iter(items), metadata=(("x-request-id", "s1"),), timeout=10)
            answers = list(stream)
        logged = {record["id"]: record for record in settled(server, 4)}

    assert sorted(logged) == ["s1/3", "s1/a", "s1/b", "s1/c"]  # the stream itself is no record: its items are
    assert all((r["call"], r["transport"]) == ("ClassifyStream", "grpc") for r in logged.values())
    good = logged["s1/a"]
    assert (good["status"], good["ok"], good["model"]) == ("OK", True, RELU)
    assert good["answers"][0]["label"] == answers[0].prediction.label == 7
    assert good["answers"][0]["probabilities"] == pytest.approx(list(answers[0].prediction.probabilities), abs=1e-5)
    # A bad item and an unknown model are the items' own failures: the stream went on, each says why.
    assert (logged["s1/b"]["status"], logged["s1/b"]["ok"], logged["s1/b"]["inputs"][0]["pixels"]) == ("INVALID_ARGUMENT", False, None)
    assert (logged["s1/c"]["status"], logged["s1/c"]["model"], logged["s1/c"]["inputs"]) == ("NOT_FOUND", "", [])
    assert (logged["s1/3"]["model"], logged["s1/3"]["answers"][0]["label"]) == (SIGMOID, answers[3].prediction.label)
    assert (pixels_of(logged["s1/3"]["inputs"][0]) == SEVEN_PIXELS).all()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _call(log: PayloadLog, ok: bool, status: str = "OK") -> None:
    log.begin()
    note_inputs(np.zeros((1, 784), np.float32))
    note_answers([Prediction(Outcome.UNKNOWN, reason="blank")])
    log.finish("Classify", "grpc", status, ok, 0.001)


def test_sampling_keeps_every_failure_and_the_asked_share_of_the_rest(tmp_path: Path) -> None:
    for sample, expected in ((0.0, range(0, 1)), (1.0, range(1000, 1001)), (0.5, range(430, 571))):
        log = PayloadLog(tmp_path / f"{sample}.jsonl", sample=sample, seed=1)
        for _ in range(1000):
            _call(log, ok=True)
        for _ in range(5):
            _call(log, ok=False, status="INVALID_ARGUMENT")
        log.close()
        found = records(tmp_path / f"{sample}.jsonl")
        assert sum(r["ok"] for r in found) in expected, sample
        assert sum(not r["ok"] for r in found) == 5


def test_a_full_file_is_rotated_and_the_backups_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = RotatingLines(path, max_bytes=100, backups=2)
    for i in range(10):
        lines.write(f'{{"n":{i},"pad":"{"x" * 30}"}}\n'.encode())
    lines.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    kept = [json.loads(line)["n"] for name in ("p.jsonl.2", "p.jsonl.1", "p.jsonl") for line in (tmp_path / name).read_text().splitlines()]
    assert kept == list(range(4, 10))  # the oldest dropped, the rest in order
    assert all((tmp_path / name).stat().st_size <= 100 for name in ("p.jsonl", "p.jsonl.1"))


class _Sink(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    _Sink.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/events"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_cloudevents_sink_receives_a_request_and_a_response_event_per_record(tmp_path: Path, sink: str) -> None:
    log = tmp_path / "p.jsonl"
    with running_server(payload_log=log, payload_log_sample=1.0, payload_log_url=sink) as server:
        with grpc.insecure_channel(server.address) as channel:
            pb_grpc.DigitClassifierStub(channel).Classify(pb.ClassifyRequest(image=pb.Image(encoded=SEVEN)), metadata=(("x-request-id", "ce-1"),))
        settled(server, 1)
    assert [headers["ce-type"] for headers, _ in _Sink.received] == [REQUEST_EVENT, RESPONSE_EVENT]
    for headers, body in _Sink.received:
        # CloudEvents' required attributes, in binary mode (KServe's logger's way), and the JSON data.
        assert headers["ce-specversion"] == "1.0" and headers["ce-id"] == "ce-1" and headers["ce-source"].startswith("urn:digitnet:")
        assert headers["content-type"] == "application/json" and headers["ce-inferenceservicename"] == RELU and headers["ce-time"].endswith("Z")
        assert json.loads(body)["id"] == "ce-1"
    request, response = (json.loads(body) for _, body in _Sink.received)
    assert len(base64.b64decode(request["inputs"][0]["pixels"])) == 784 and "answers" not in request
    # The CloudEvents SDK (a receiver's library) reads both as events of spec 1.0, their data as the body's JSON.
    events = [from_binary(HTTPMessage(headers, body), JSONFormat()) for headers, body in _Sink.received]
    assert [(e.get_specversion(), e.get_type(), e.get_id(), e.get_extension("inferenceservicename")) for e in events] == [
        ("1.0", REQUEST_EVENT, "ce-1", RELU),
        ("1.0", RESPONSE_EVENT, "ce-1", RELU),
    ]
    assert [e.get_data() for e in events] == [request, response] and all(e.get_time() is not None for e in events)
    assert response["answers"][0]["label"] == 7 and response["status"] == "OK" and "inputs" not in response


def test_a_dead_sink_drops_and_counts_without_failing_a_request(tmp_path: Path) -> None:
    before = dropped("sink_failed")
    with running_server(payload_log=tmp_path / "p.jsonl", payload_log_sample=1.0, payload_log_url=f"http://127.0.0.1:{free_port()}/") as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.DigitClassifierStub(channel)
            for _ in range(5):
                assert stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=SEVEN)), timeout=10).prediction.label == 7
        assert len(settled(server, 5)) == 5  # the file has every record all the same
    assert dropped("sink_failed") - before == 5


def test_a_sink_that_never_answers_drops_and_counts_and_never_blocks(tmp_path: Path) -> None:
    with socket.socket() as hanging:  # listens, never accepts: a POST connects and then waits for an answer
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        full, failed = dropped("sink_full"), dropped("sink_failed")
        log = PayloadLog(tmp_path / "p.jsonl", sink_url=f"http://127.0.0.1:{hanging.getsockname()[1]}/", sink_timeout=0.5, sink_events=2)
        started = time.monotonic()
        for _ in range(50):
            _call(log, ok=True)
        assert time.monotonic() - started < 1.0  # 50 calls never waited for the sink (each POST waits 0.5 s)
        assert log.flush(timeout=10)
        log.close()
        # Queued behind a sink that never answers, most records were dropped at once; the ones taken timed out.
        assert dropped("sink_full") - full >= 40
        assert dropped("sink_failed") - failed >= 1
        assert len(records(tmp_path / "p.jsonl")) == 50


def test_original_images_are_kept_up_to_the_cap(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path / "p.jsonl", input_form="original", max_image_bytes=len(SEVEN))
    for image in (SEVEN, SEVEN + b"\0"):
        log.begin()
        note_inputs([image])
        log.finish("Classify", "http", "200", True, 0.001)
    log.close()
    kept, over = records(tmp_path / "p.jsonl")
    assert base64.b64decode(kept["inputs"][0]["original"]) == SEVEN and kept["input_form"] == "original"
    assert over["inputs"][0] == {"original": None, "bytes": len(SEVEN) + 1}


def test_the_settings_refuse_what_cannot_work_in_one_line(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from digitnet.service.contract.errors import ConfigurationError
    from digitnet.service.protocol.admission import open_payload_log
    from digitnet.service.settings.server import ServerSettings

    assert open_payload_log(ServerSettings()) is None  # off by default
    for bad in ({"payload_log_sample": 1.5}, {"payload_log_url": "ftp://sink"}, {"payload_log_input": "both"}):
        with pytest.raises(ValidationError):
            ServerSettings(**bad)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="cannot write the payload log"):
        open_payload_log(ServerSettings(payload_log=tmp_path / "file" / "p.jsonl"))
