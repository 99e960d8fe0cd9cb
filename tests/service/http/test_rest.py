"""The HTTP front door from the outside: tritonclient.http, curl and plain HTTP requests against a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image

from digitnet.service.client import DigitClient
from digitnet.service.contract.card import read_card

from ...conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL, RELU, SIGMOID
from ..conftest import ServerThread, running_server
from ..helpers import install

CURL = shutil.which("curl")
DIGITS = np.stack([np.asarray(Image.open(GOLDEN / f"{d}_mnist.png"), dtype=np.float32).reshape(-1) / 255 for d in range(10)])


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with running_server(http=True, model=[]) as running:  # both committed models, as `digitnet serve` does
        yield running


def _request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _json(url: str, body: object | bytes | None = None, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    status, _, answer = _request(url, data, headers)
    return status, json.loads(answer)


def test_tritonclient_http_reads_health_and_metadata(server: ServerThread) -> None:
    client = triton.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digitnet")
        metadata = client.get_model_metadata("digitnet")
        assert metadata["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}]
        assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label", "hidden1", "hidden2", "outcome", "reason"]
        assert client.get_server_metadata()["name"] == "digitnet"
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_infers_the_golden_digits_as_grpc_does(server: ServerThread, binary: bool) -> None:
    client = triton.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        pixels = triton.InferInput("pixels", [10, 784], "FP32")
        pixels.set_data_from_numpy(DIGITS, binary_data=binary)
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label", "outcome")]
        result = client.infer("digitnet", [pixels], outputs=outputs)
    finally:
        client.close()
    with DigitClient(server.address) as grpc_client:
        packed = grpc_client.classify_packed(np.round(DIGITS * 255).astype(np.uint8))
    assert result.as_numpy("label").tolist() == list(range(10)) == packed.labels.tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), packed.probabilities, atol=1e-5)
    assert [o.decode() if isinstance(o, bytes) else o for o in result.as_numpy("outcome").tolist()] == ["digit"] * 10


def test_json_infer_answers_in_json_with_the_abstain_rule(server: ServerThread) -> None:
    blank_and_seven = [[0.0] * 784, DIGITS[7].tolist()]
    body = {
        "id": "r1",
        "parameters": {"min_confidence": 0.5},
        "inputs": [{"name": "pixels", "shape": [2, 784], "datatype": "FP32", "data": blank_and_seven}],
        "outputs": [{"name": "label"}, {"name": "reason"}],
    }
    status, answer = _json(f"{server.http_url}/v2/models/digitnet/infer", body, **{"Content-Type": "application/json"})
    assert status == 200 and answer["id"] == "r1" and answer["model_name"] == "digitnet"
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert outputs["label"] == {"name": "label", "datatype": "INT64", "shape": [2], "data": [-1, 7]}
    assert outputs["reason"]["data"] == ["blank image: too little ink to be a digit", ""]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/mnist/infer", {"inputs": []}, 404, "unknown model 'mnist'"),
        ("/v2/models/digitnet/versions/2/infer", {"inputs": []}, 404, "available versions: 1"),
        ("/v2/models/digitnet/infer", b"{not json", 400, "the request body is not JSON"),
        ("/v2/models/digitnet/infer", [1, 2], 400, "must be a JSON object"),
        (
            "/v2/models/digitnet/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]},
            400,
            "must have shape",
        ),
        (
            "/v2/models/digitnet/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": ["a"] * 784}]},
            400,
            "FP32 numbers",
        ),
        ("/v2/models/digitnet/infer", {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [2.0] * 784}]}, 400, "in [0, 1]"),
        ("/v2/models/digitnet/infer", {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8"}]}, 400, "needs its values in 'data'"),
        (
            "/v2/models/digitnet/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}], "outputs": [{"name": "logits"}]},
            400,
            "unknown outputs ['logits']",
        ),
    ],
)
def test_bad_requests_get_the_protocol_s_json_error(server: ServerThread, path: str, body: object, status: int, message: str) -> None:
    got, answer = _json(f"{server.http_url}{path}", body)
    assert got == status and set(answer) == {"error"} and message in answer["error"]


def test_curl_classifies_a_file_sent_as_the_body_or_as_a_form(server: ServerThread) -> None:
    assert CURL, "curl is needed (apt-get install curl)"
    body = subprocess.run(
        [CURL, "-s", "--data-binary", f"@{GOLDEN / '7_scan.jpg'}", f"{server.http_url}/v1/classify"], capture_output=True, check=True
    )
    form = subprocess.run(
        [CURL, "-s", "-F", f"image=@{GOLDEN / '3_scan.png'}", f"{server.http_url}/v1/classify?min_confidence=0.2"], capture_output=True, check=True
    )
    seven, three = json.loads(body.stdout), json.loads(form.stdout)
    assert (seven["path"], seven["status"], seven["label"]) == ("-", "digit", 7) and len(seven["probabilities"]) == 10
    assert (three["path"], three["status"], three["label"]) == ("3_scan.png", "digit", 3)


def test_a_form_over_1_mib_needs_no_temporary_folder(server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Starlette spilled a form's file over 1 MiB to a temporary file: where none can be written (a read-only root
    # filesystem without an emptyDir at /tmp) the upload was answered 500.
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))  # this very process serves the request
    big = Image.open(GOLDEN / "7_scan.png").convert("L").resize((1200, 1200))
    big.save(tmp_path / "7.tiff")  # uncompressed: 1.4 MB
    assert (tmp_path / "7.tiff").stat().st_size > 2**20
    boundary = "digitnet-test"
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="7.tiff"\r\nContent-Type: image/tiff\r\n\r\n'.encode(),
            (tmp_path / "7.tiff").read_bytes(),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    status, answer = _json(f"{server.http_url}/v1/classify", body, **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200 and (answer["path"], answer["label"]) == ("7.tiff", 7), answer


def test_classify_answers_as_predict_does_for_every_golden_image(server: ServerThread) -> None:
    with DigitClient(server.address) as client:
        for path in sorted(GOLDEN.glob("[0-9]_*.*")):
            status, answer = _json(f"{server.http_url}/v1/classify", path.read_bytes())
            expected = client.classify(path.read_bytes())
            assert status == 200 and answer["label"] == expected.label and answer["status"] == expected.outcome.value, path.name


def test_a_bad_image_is_a_predict_style_error_row_with_status_400(server: ServerThread) -> None:
    status, answer = _json(f"{server.http_url}/v1/classify", b"not an image")
    assert status == 400 and answer["status"] == "error" and "not a readable image" in answer["error"]
    status, answer = _json(f"{server.http_url}/v1/classify", b"")
    assert status == 400 and "no image" in answer["error"]
    status, answer = _json(f"{server.http_url}/v1/classify?min_confidence=2", (GOLDEN / "1_scan.png").read_bytes())
    assert status == 400 and "min_confidence must be a number in [0, 1]" in answer["error"]


def test_explain_returns_the_layers_the_model_computed(server: ServerThread) -> None:
    status, answer = _json(f"{server.http_url}/v1/explain", (GOLDEN / "2_scan.jpg").read_bytes())
    with DigitClient(server.address) as client:
        expected = client.explain((GOLDEN / "2_scan.jpg").read_bytes())
    assert status == 200 and answer["label"] == 2 and len(answer["input"]) == 784
    np.testing.assert_allclose(answer["hidden1"], expected.hidden1, atol=1e-6)
    np.testing.assert_allclose(answer["hidden2"], expected.hidden2, atol=1e-6)


def test_each_route_that_runs_a_model_takes_its_name(server: ServerThread) -> None:
    image = (GOLDEN / "4_scan.jpg").read_bytes()
    answers = {name: _json(f"{server.http_url}/v1/classify?model={name}", image) for name in (RELU, SIGMOID, "digitnet")}
    assert {name: (status, answer["model"]) for name, (status, answer) in answers.items()} == {
        RELU: (200, RELU),
        SIGMOID: (200, SIGMOID),
        "digitnet": (200, RELU),  # the default's other name
    }
    with DigitClient(server.address, model=SIGMOID) as sigmoid:  # REST and digitnet.v1 ask the same model
        np.testing.assert_allclose(answers[SIGMOID][1]["probabilities"], sigmoid.classify(image).probabilities, atol=1e-6)
    assert not np.allclose(answers[SIGMOID][1]["probabilities"], answers[RELU][1]["probabilities"], atol=1e-3)
    status, explained = _json(f"{server.http_url}/v1/explain?model={SIGMOID}", image)
    assert status == 200 and explained["model"] == SIGMOID and 0 < max(explained["hidden1"]) < 1  # a sigmoid squashes into (0, 1)
    status, network = _json(f"{server.http_url}/v1/network?model={SIGMOID}")
    card = read_card(LOGISTIC_MODEL)
    assert (network["name"], network["activation"], network["sha256"]) == (SIGMOID, "logistic", card.model_sha256)
    assert card.cross_validation is not None and network["accuracy"] == card.cross_validation.accuracy
    for route, body in (("/v1/classify", image), ("/v1/explain", image), ("/v1/network", None)):
        status, refused = _json(f"{server.http_url}{route}?model=mnist", body)
        assert status == 404 and "unknown model 'mnist'" in refused["error"], route


def test_openapi_metrics_and_an_unknown_path(server: ServerThread) -> None:
    status, openapi = _json(f"{server.http_url}/openapi.json")
    assert status == 200 and {"/v1/classify", "/v1/explain", "/v2/models/{name}/infer"} <= set(openapi["paths"])
    _request(f"{server.http_url}/v1/classify", (GOLDEN / "5_scan.png").read_bytes())
    status, _, metrics = _request(f"{server.http_url}/metrics")
    assert status == 200 and b"digitnet_images_total" in metrics
    model = read_card(DEFAULT_MODEL).name
    assert f'digitnet_requests_total{{code="200",model="{model}",rpc="http Classify"}}'.encode() in metrics  # counted as gRPC calls are
    status, _, _ = _request(f"{server.http_url}/nowhere")
    assert status == 404
    assert _request(f"{server.http_url}/docs")[0] == 404  # Swagger UI would come from a CDN: the server works offline


def test_a_body_over_the_message_limit_is_refused_before_it_is_read() -> None:
    with running_server(http=True, max_message_bytes=70_000) as small:
        status, answer = _json(f"{small.http_url}/v1/classify", bytes(80_000))
    assert status == 429 and "over the limit of 70000" in answer["error"]


def test_the_token_guards_all_but_health_and_draining_refuses_new_work() -> None:
    with running_server(http=True, token="s3cret") as guarded:
        assert _request(f"{guarded.http_url}/v2/health/ready")[0] == 200
        assert _request(f"{guarded.http_url}/")[0] == _request(f"{guarded.http_url}/static/app.js")[0] == 200  # no data in them
        assert _request(f"{guarded.http_url}/v1/network")[0] == _request(f"{guarded.http_url}/metrics")[0] == 401
        status, headers, body = _request(f"{guarded.http_url}/v1/classify", (GOLDEN / "1_scan.png").read_bytes())
        assert status == 401 and headers.get("www-authenticate") == "Bearer" and b"bearer token" in body
        status, _ = _json(f"{guarded.http_url}/v1/classify", (GOLDEN / "1_scan.png").read_bytes(), Authorization="Bearer s3cret")
        assert status == 200
        guarded.call(guarded.state.draining())
        status, headers, body = _request(f"{guarded.http_url}/v1/classify", (GOLDEN / "1_scan.png").read_bytes(), {"Authorization": "Bearer s3cret"})
        assert status == 503 and headers.get("retry-after") == "1" and b"draining" in body
        assert _request(f"{guarded.http_url}/v2/health/ready")[0] == 503 and _request(f"{guarded.http_url}/v2/health/live")[0] == 200


def test_a_reload_reaches_http_too(tmp_path: Path, small_model: Path) -> None:
    served = tmp_path / "served.onnx"
    install(DEFAULT_MODEL, served)
    with running_server(http=True, model=served) as running:
        before = _json(f"{running.http_url}/v1/network")[1]["sha256"]
        install(small_model, served)
        assert running.call(running.running.reloader.reload())
        after = _json(f"{running.http_url}/v1/network")[1]
        status, answer = _json(f"{running.http_url}/v1/classify", (GOLDEN / "3_scan.png").read_bytes())
    assert before != after["sha256"] == read_card(small_model).model_sha256 and status == 200 and answer["status"] == "digit"


def test_requests_without_min_confidence_get_the_server_default_on_every_api() -> None:
    # A default of 1.0 answers nothing (no calibrated probability reaches exactly 1 in float32), unless a
    # request sets its own threshold: then its own applies, 0 included.
    with running_server(http=True, min_confidence=1.0) as server, DigitClient(server.address) as client:
        scan = (GOLDEN / "3_scan.png").read_bytes()
        small = (GOLDEN / "3_mnist.png").read_bytes()  # a small image is classified inline, a large one in the pool
        for image in (scan, small):
            assert client.classify(image).label is None and client.classify(image, min_confidence=0.0).label == 3
            assert client.classify_batch([image])[0].label is None and client.explain(image).prediction.label is None
        assert client.classify_packed(np.asarray(Image.open(GOLDEN / "3_mnist.png")).reshape(1, 784)).labels.tolist() == [-1]
        _, row = _json(f"{server.http_url}/v1/classify", scan)
        assert row["status"] == "unknown" and "below min_confidence 1.000" in row["reason"]
        _, row = _json(f"{server.http_url}/v1/classify?min_confidence=0", scan)
        assert row["label"] == 3
        pixels = (np.asarray(Image.open(GOLDEN / "3_mnist.png"), dtype=np.float32) / 255).reshape(-1).tolist()
        body = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": pixels}]}
        _, answer = _json(f"{server.http_url}/v2/models/digitnet/infer", body, **{"Content-Type": "application/json"})
        assert {o["name"]: o["data"] for o in answer["outputs"]}["label"] == [-1]
        _, network = _json(f"{server.http_url}/v1/network")
        assert network["min_confidence"] == 1.0, "the page's slider starts at the server's default"


def test_json_over_its_limit_is_refused_and_binary_tensors_of_the_same_batch_are_served(server: ServerThread) -> None:
    # Parsing JSON holds the interpreter lock on any thread: past DIGITNET_HTTP_MAX_JSON_BYTES it would stall
    # gRPC's calls too (bench/http_hostile_bench.py), so larger batches travel as binary tensors.
    count = 300  # ~1.4 MB of JSON numbers, over the default 1 MiB
    pixels = np.tile(DIGITS, (count // 10, 1))
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [count, 784], "data": pixels.ravel().round(4).tolist()}]}
    status, answer = _json(f"{server.http_url}/v2/models/digitnet/infer", body)
    assert status == 429 and "DIGITNET_HTTP_MAX_JSON_BYTES" in answer["error"] and "binary tensors" in answer["error"]
    client = triton.InferenceServerClient(server.http_url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("pixels", [count, 784], "FP32")
        tensor.set_data_from_numpy(pixels.astype(np.float32), binary_data=True)
        result = client.infer("digitnet", [tensor], outputs=[triton.InferRequestedOutput("label", binary_data=True)])
        assert result.as_numpy("label").tolist() == list(range(10)) * (count // 10)
    finally:
        client.close()


def test_a_large_body_is_parsed_off_the_event_loop(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from digitnet.service.http import routes as http_routes

    threads: list[str] = []
    real = http_routes.parse_infer

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(http_routes, "parse_infer", spy)
    for count in (1, 100):  # ~4 KB, then ~470 KB of JSON
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [count, 784], "data": np.tile(DIGITS[:1], (count, 1)).ravel().tolist()}]}
        assert _json(f"{server.http_url}/v2/models/digitnet/infer", body)[0] == 200
    loop_thread = server._thread.name
    assert threads[0] == loop_thread and threads[1] != loop_thread, threads


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("GET", "/no/such/route", None, {}, 404),
        ("DELETE", "/v2/health/live", None, {}, 405),
        ("POST", "/v1/classify", b"--x\r\nbroken", {"Content-Type": "multipart/form-data; boundary=x"}, 400),
    ],
    ids=["404", "405", "multipart"],
)
def test_every_refusal_is_the_protocols_json_error(
    server: ServerThread, method: str, path: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    got, answer_headers, answer = _request(f"{server.http_url}{path}", body, headers, method)
    assert got == status and set(json.loads(answer)) == {"error"} and answer_headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/", "/v2/health/live", "/v2/health/ready"])
def test_head_is_answered_where_get_is(server: ServerThread, path: str) -> None:
    status, _, body = _request(f"{server.http_url}{path}", method="HEAD")
    assert status == 200 and body == b""


@pytest.mark.parametrize(
    ("datatype", "data", "parameters", "why"),
    [
        ("UINT8", [0.9] * 784, {}, "UINT8 numbers (whole, 0-255), got decimals"),
        ("FP32", [True] * 784, {}, "must be FP32 numbers, got true/false"),
        ("FP32", [0.5] * 783 + [False], {}, "got true/false"),
        ("FP32", ["0.5"] * 784, {}, "got str"),
        ("FP32", None, {"binary_data_size": 3136.0}, "binary_data_size 3136.0"),
    ],
    ids=["uint8 decimals", "booleans", "a boolean among numbers", "numeric strings", "binary size as a float"],
)
def test_json_tensors_refuse_what_is_not_their_datatype(
    server: ServerThread, datatype: str, data: list[object] | None, parameters: dict[str, object], why: str
) -> None:
    tensor: dict[str, object] = {"name": "pixels", "datatype": datatype, "shape": [1, 784], "parameters": parameters}
    if data is not None:
        tensor["data"] = data
    body = json.dumps({"inputs": [tensor]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(body))} if parameters else {}
    status, answer = _json(f"{server.http_url}/v2/models/digitnet/infer", body + (bytes(3136) if parameters else b""), **headers)
    assert status == 400 and why in answer["error"], answer


def test_a_client_that_leaves_mid_body_is_no_server_error(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    import socket
    import time

    import tritonclient.grpc as triton_grpc

    from ..helpers import scrape

    assert server.http is not None
    stats = triton_grpc.InferenceServerClient(server.address)
    failed_before = stats.get_inference_statistics("digitnet").model_stats[0].inference_stats.fail.count
    with caplog.at_level("WARNING"), socket.create_connection(("127.0.0.1", server.http.port)) as connection:
        connection.sendall(b"POST /v2/models/digitnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"{" * 100)
        time.sleep(0.2)
        connection.close()
        time.sleep(0.3)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], [r.getMessage() for r in caplog.records]
    counts = {labels: value for (name, labels), value in scrape(server.http.port).items() if name == "digitnet_requests_total"}
    model = read_card(DEFAULT_MODEL).name  # the model is found before the body is read
    assert counts.get((("code", "499"), ("model", model), ("rpc", "http ModelInfer")), 0) >= 1
    assert counts.get((("code", "500"), ("model", model), ("rpc", "http ModelInfer")), 0) == 0
    assert stats.get_inference_statistics("digitnet").model_stats[0].inference_stats.fail.count == failed_before
    stats.close()
