"""Hostile REST requests: mutated OIP infer bodies (wrong types, shapes, sizes, cut short, bad binary headers)
must each be answered 200 or with the protocol's JSON error, never a 5xx, and the server must keep serving. The
server runs with the payload log and tracing on (every call sampled, exported to an OTLP receiver), and a share
of the requests carry hostile W3C trace context (valid, mutated, repeated, huge, non-ASCII `traceparent` and
`tracestate` headers): each is answered as it is without them, and the spans must be well formed and continue
exactly the valid sampled traceparents sent (telemetry/otlp.py says what each header must do).
Model names no server of two models serves, in every route's path and in /v1's ?model=, must be 404 (400
where malformed; 431 where the request line is over the header limit), and both models must still serve."""

from __future__ import annotations

import copy
import http.client
import json
import random
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from digitnet.service.contract.constants import MODEL_NAME
from digitnet.service.settings.server import ServerSettings

from ...conftest import DEFAULT_MODEL, GOLDEN, RELU, SIGMOID
from ..conftest import ServerThread, running_server
from ..grpc.test_fuzz import HOSTILE_NAMES, NAMES
from ..helpers import free_port, serve, stop, two_models
from ..telemetry.otlp import EVERY_SPAN, Expected, Receiver, hostile_context, malformed, otel_env

BASE: dict[str, Any] = {
    "id": "x",
    "parameters": {"min_confidence": 0.3},
    "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.1] * 784}],
    "outputs": [{"name": "label"}],
}
VALUES: list[Any] = [None, True, -1, 0, 1, 2**63, -(2**70), 1e308, "", "x" * 100, [], {}, [1], [[1]], {"a": 1}, [None] * 784]
VALUES += ["FP32", "UINT8", "BYTES", [1, 784], [2**31, 784], [1, 28, 28], [-1, 784], [0.5] * 784, [300] * 784, {"binary_data_size": 3136}]


def _mutate(rng: random.Random, value: Any) -> None:
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        roll = rng.random()
        if roll < 0.2:
            del value[key]
        elif roll < 0.6 or not isinstance(value[key], dict | list):
            value[key] = rng.choice(VALUES)
        else:
            _mutate(rng, value[key])
    elif isinstance(value, list) and value:
        index = rng.randrange(len(value))
        if isinstance(value[index], dict | list) and rng.random() < 0.6:
            _mutate(rng, value[index])
        else:
            value[index] = rng.choice(VALUES)


#: The share of requests that carry trace headers (telemetry/otlp.py's hostile_context), and their bytes at most
#: (under the server's header bound: over it, a request is answered 431 before any route or span).
TRACED, TRACE_BYTES = 0.4, 40_000


def _post(port: int, path: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """One POST on a connection of its own; headers in order, a name may repeat, non-latin-1 text sent as UTF-8."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value.encode() if not value.isascii() else value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_mutated_infer_requests_never_get_a_5xx(tmp_path: Path, receiver: tuple[Receiver, int], capsys: pytest.CaptureFixture[str]) -> None:
    rng, traces = random.Random(0), random.Random("trace")  # apart: the bodies are those of a campaign without
    failures: list[str] = []
    statuses: list[str] = []
    expected = Expected()
    # Both of the telemetry features on: the payload log, every call recorded (with the status the client got) and
    # posted to a sink that is down, and tracing, every call sampled and its spans exported to a receiver.
    received, otlp = receiver
    log, port = tmp_path / "payloads.jsonl", free_port()
    flags = (
        "--http-port",
        str(port),
        "--payload-log",
        str(log),
        "--payload-log-sample",
        "1",
        "--payload-log-url",
        f"http://127.0.0.1:{free_port()}/",
    )
    process, _ = serve(DEFAULT_MODEL, *flags, env=otel_env(f"http://127.0.0.1:{otlp}", **EVERY_SPAN))
    try:
        for _ in range(600):
            body = copy.deepcopy(BASE)
            for _ in range(rng.randint(1, 3)):
                _mutate(rng, body)
            raw = json.dumps(body).encode()
            headers = []
            if rng.random() < 0.15:
                raw = raw[: rng.randrange(len(raw) + 1)]  # cut short
            if rng.random() < 0.15:
                headers.append(("Inference-Header-Content-Length", str(rng.choice([-1, 0, len(raw), len(raw) + 5, "abc"]))))
                raw += bytes(rng.choice([0, 784, 3136]))
            context = hostile_context(traces, http=True, budget=TRACE_BYTES) if traces.random() < TRACED else None
            status, text = _post(port, "/v2/models/digitnet/infer", raw, headers + list(context.headers if context else ()))
            statuses.append(str(status))
            expected.call(context)
            if status >= 500 or (status != 200 and set(json.loads(text)) != {"error"}):
                failures.append(f"{status} {text[:200]!r} for {raw[:200]!r}")
            if context is not None:  # answered as it is without them
                bare = _post(port, "/v2/models/digitnet/infer", raw, headers)
                statuses.append(str(bare[0]))
                expected.call(None)
                if bare != (status, text):
                    failures.append(f"{status} {text[:200]!r} with {context.headers!r:.300}, but {bare[0]} {bare[1][:200]!r} without")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10) as ready:
            assert ready.status == 200
        expected.call(None)
        assert process.poll() is None, "the server died"
        stop(process)  # its last spans leave as it exits, and the payload log is closed whole
    finally:
        process.kill()
        process.wait()
    with capsys.disabled():
        traced = len(statuses) - 600
        print(f"\nrest fuzz: 600 cases, {len(statuses)} requests ({traced} with trace headers, each sent again without), {len(received.spans)} spans")
        for status, count in sorted(Counter(statuses).items()):
            print(f"  {status:<6} {count:>7}")
    assert failures == [], "\n".join(failures[:20])
    assert [json.loads(line)["status"] for line in log.read_text().splitlines()] == statuses
    assert malformed(received.spans) == []
    problems = expected.problems(received.spans)
    assert problems == [], "\n".join(problems[:30])


IMAGE = (GOLDEN / "4_mnist.png").read_bytes()
INFER_BODY = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}]}).encode()
#: Every route that names a model: method, path ({} for the name, URL-quoted) and body.
NAMED_ROUTES = [
    ("GET", "/v2/models/{}", b""),
    ("GET", "/v2/models/{}/versions/1", b""),
    ("GET", "/v2/models/{}/ready", b""),
    ("GET", "/v2/models/{}/versions/1/ready", b""),
    ("GET", "/v2/models/{}/config", b""),
    ("GET", "/v2/models/{}/stats", b""),
    ("POST", "/v2/models/{}/infer", INFER_BODY),
    ("POST", "/v2/models/{}/versions/1/infer", INFER_BODY),
    ("POST", "/v2/repository/models/{}/load", b""),
    ("POST", "/v2/repository/models/{}/unload", b""),
    ("POST", "/v1/classify?model={}", IMAGE),
    ("POST", "/v1/explain?model={}", IMAGE),
    ("GET", "/v1/network?model={}", b""),
]


@pytest.fixture(scope="module")
def repository_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server of both committed models over HTTP (copies: a load or unload it is tricked into changes nothing else)."""
    folder: Path = two_models(tmp_path_factory.mktemp("repository"))
    with running_server(http=True, model=[], model_repository=folder) as server:
        yield server


#: The longest request line and headers the server reads: a longer one is answered 431 and the connection closed at
#: once (a flood is cut off, not read), so a client still sending its body may see the connection reset instead.
MAX_HEADER_BYTES = ServerSettings().http_max_header_bytes
RESET = 0


def _ask(server: ServerThread, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """One request on a connection of its own, the path sent exactly as given; RESET if the server closed it first."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http.port, timeout=30)  # type: ignore[union-attr]
    try:
        connection.request(method, path, body=body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except ConnectionError:
        return RESET, b""
    finally:
        connection.close()


def _statuses_allowed(route: str, name: str) -> set[int]:
    """What a route may answer for a name no model has: 404, 400 for a malformed request, 431 (or a reset) for a
    request line over the header limit; the default's answer where an empty ?model= asks for it. A '/' in a name,
    sent %2F-quoted, is a '/' of the path once decoded (ASGI paths are): the request is another route's (or a
    redirect that drops a trailing '/'), anything but 5xx."""
    if len(route) + len(urllib.parse.quote(name, safe="")) > MAX_HEADER_BYTES:
        return {431, RESET}
    if "/" in name and "?" not in route:
        return set(range(200, 500))
    if name == "" and "?" in route:
        return {200}
    if name == "stats" and route == "/v2/models/{}":
        return {200}  # Triton's statistics of every model, not a model named "stats"
    return {400, 404, 431}


@settings(max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES)
def test_a_model_name_the_server_does_not_serve_is_404_on_every_route(repository_server: ServerThread, name: str) -> None:
    quoted = urllib.parse.quote(name, safe="")
    for method, route, body in NAMED_ROUTES:
        status, text = _ask(repository_server, method, route.format(quoted), body)
        assert status in _statuses_allowed(route, name), f"{method} {route} naming {name[:80]!r} ({len(name)} characters): {status} {text[:200]!r}"
        if status >= 400:
            assert text.startswith(b"{") and set(json.loads(text)) == {"error"}, f"{method} {route} naming {name[:80]!r}: {status} {text[:200]!r}"


def test_both_models_serve_after_the_hostile_names(repository_server: ServerThread) -> None:
    for name in HOSTILE_NAMES:  # the listed ones at least, whatever hypothesis drew
        for action in ("unload", "load"):
            status, _ = _ask(repository_server, "POST", f"/v2/repository/models/{urllib.parse.quote(name, safe='')}/{action}", b"")
            assert status in _statuses_allowed("/v2/repository/models/{}/load", name) - {200, 307}, (action, name[:80])
    status, text = _ask(repository_server, "POST", "/v2/repository/index", b"")
    assert status == 200 and [(model["name"], model["state"]) for model in json.loads(text)] == [(RELU, "READY"), (SIGMOID, "READY")]
    for name in (RELU, SIGMOID, MODEL_NAME):
        status, text = _ask(repository_server, "POST", f"/v1/classify?model={name}", IMAGE)
        assert status == 200 and json.loads(text)["label"] == 4, name
        status, _ = _ask(repository_server, "POST", f"/v2/models/{name}/infer", INFER_BODY)
        assert status == 200, name
