"""Tracing: a real OTLP/gRPC receiver (opentelemetry-proto's TraceService) gets the spans of a client call through
the server, one trace from the client's span to the model run; a collector that is down changes no answer."""

from __future__ import annotations

import http.client as http_client
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from digitnet.service.client import digit_client
from digitnet.service.client.digit_client import DigitClient, client_span
from digitnet.service.telemetry import tracing
from digitnet.service.telemetry.observability import configure_logging

from ...conftest import DEFAULT_MODEL, GOLDEN
from ..conftest import running_server
from ..helpers import free_port, serve, stop
from .otlp import Receiver, otel_env, receiving_http


def _trace_headers() -> dict[str, str]:
    """The W3C trace context of the current span, as headers."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@pytest.mark.slow
def test_one_trace_from_the_client_to_the_model_run_on_both_transports(receiver: tuple[Receiver, int]) -> None:
    received, port = receiver
    http = free_port()
    process, grpc_port = serve(DEFAULT_MODEL, "--http-port", str(http), env=otel_env(f"http://127.0.0.1:{port}"))
    # The client's own tracing, as an application that uses DigitClient has it (not the global provider: one test).
    provider = TracerProvider(resource=Resource({"service.name": "the-client"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("client call") as client_span, DigitClient(f"127.0.0.1:{grpc_port}", timeout=30) as client:
            assert client.classify((GOLDEN / "7_scan.png").read_bytes()).label == 7
        grpc_spans = received.wait_for({"client call", "digitnet.v1.DigitClassifier/Classify", "digitnet.preprocess", "digitnet.model.run"})
        with tracer.start_as_current_span("page call") as page_span:
            headers = _trace_headers()  # the page's fetches send the same W3C header
            request = urllib.request.Request(f"http://127.0.0.1:{http}/v1/classify", (GOLDEN / "4_scan.png").read_bytes(), headers=headers)
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert json.loads(answer.read())["label"] == 4
        http_spans = received.wait_for({"page call", "POST /v1/classify"})
        with tracer.start_as_current_span("oip call") as oip_span:  # the data plane's steps: decode, model run, encode
            body = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
            request = urllib.request.Request(f"http://127.0.0.1:{http}/v2/models/relu/infer", json.dumps(body).encode(), headers=_trace_headers())
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
        oip_spans = received.wait_for({"oip call", "POST /v2/models/{model}/infer", "digitnet.decode", "digitnet.encode"})
    finally:
        provider.shutdown()
        stop(process)

    trace_id = client_span.get_span_context().trace_id.to_bytes(16, "big")
    service, server = grpc_spans["digitnet.v1.DigitClassifier/Classify"]
    assert service == "digitnet-under-test"
    assert server.trace_id == trace_id
    assert server.parent_span_id == client_span.get_span_context().span_id.to_bytes(8, "big")
    assert server.kind == server.SPAN_KIND_SERVER
    attributes = {a.key: a.value for a in server.attributes}
    assert attributes["rpc.system"].string_value == "grpc"
    assert attributes["rpc.grpc.status_code"].int_value == 0
    assert attributes["digitnet.model"].string_value == "relu"
    assert attributes["digitnet.outcome"].string_value == "digit"
    for child in ("digitnet.preprocess", "digitnet.model.run"):
        _, span = grpc_spans[child]
        assert span.trace_id == trace_id and span.parent_span_id == server.span_id, child
    run = {a.key: a.value for a in grpc_spans["digitnet.model.run"][1].attributes}
    assert run["digitnet.images"].int_value == 1 and run["digitnet.model"].string_value == "relu"

    _, rest = http_spans["POST /v1/classify"]
    assert rest.trace_id == page_span.get_span_context().trace_id.to_bytes(16, "big")
    assert rest.parent_span_id == page_span.get_span_context().span_id.to_bytes(8, "big")
    assert {a.key: a.value.int_value for a in rest.attributes}["http.response.status_code"] == 200
    # One server span per request, the guard's: FastAPI's own telemetry (a second server span, operation spans) is off.
    in_trace = sorted(span.name for _, span in received.spans if span.trace_id == rest.trace_id)
    assert in_trace == sorted(["page call", "POST /v1/classify", "digitnet.preprocess", "digitnet.model.run"]), in_trace

    _, infer = oip_spans["POST /v2/models/{model}/infer"]
    assert infer.trace_id == oip_span.get_span_context().trace_id.to_bytes(16, "big")
    assert {a.key: a.value.string_value for a in infer.attributes}["url.path"] == "/v2/models/relu/infer"
    steps = [span for _, span in received.spans if span.trace_id == infer.trace_id and span.parent_span_id == infer.span_id]
    assert {span.name for span in steps} >= {"digitnet.decode", "digitnet.model.run", "digitnet.encode"}


def test_digit_client_opens_a_client_span_per_call_marked_with_its_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(digit_client, "_TRACER", provider.get_tracer("digitnet.client"))  # as a process with the SDK set up has it
    seven = (GOLDEN / "7_scan.png").read_bytes()
    with running_server() as server, DigitClient(server.address) as client:
        assert client.classify(seven).label == 7
        assert [p.label for p in client.classify_stream([seven, seven])] == [7, 7]
        with pytest.raises(digit_client.RemoteError):
            DigitClient(server.address, model="nope").classify(seven)
    spans = exported.get_finished_spans()
    assert [span.name.rsplit("/", 1)[1] for span in spans] == ["Classify", "ClassifyStream", "Classify"]
    assert all(span.kind == SpanKind.CLIENT and span.attributes["rpc.system"] == "grpc" for span in spans)
    assert [span.status.status_code for span in spans] == [StatusCode.UNSET, StatusCode.UNSET, StatusCode.ERROR]
    assert spans[2].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert len({span.context.trace_id for span in spans}) == 3  # no caller's span: each call a trace of its own


@pytest.mark.slow
def test_repeated_trace_headers_are_read_as_the_w3c_recommendation_says(receiver: tuple[Receiver, int]) -> None:
    """Repeated tracestate lines are one list, in order; repeated traceparent lines are no traceparent over HTTP
    (a new trace), and the last one over gRPC (whose core keeps one traceparent a call)."""
    received, port = receiver
    http = free_port()
    process, grpc_port = serve(DEFAULT_MODEL, "--http-port", str(http), env=otel_env(f"http://127.0.0.1:{port}"))
    first, second = (f"00-{n:032x}-{n:016x}-01" for n in (0xA1, 0xB2))
    states = [("tracestate", "a=1,b=2"), ("tracestate", "c=3")]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            info = channel.unary_unary("/digitnet.v1.DigitClassifier/GetModelInfo")
            info(b"", metadata=[("traceparent", first), *states], timeout=10)
            info(b"", metadata=[("traceparent", first), ("traceparent", second)], timeout=10)
        for headers in ([("traceparent", second), *states], [("traceparent", first), ("traceparent", second), *states]):
            connection = http_client.HTTPConnection("127.0.0.1", http, timeout=10)
            connection.putrequest("GET", "/v2/health/ready")
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            assert connection.getresponse().status == 200
            connection.close()
    finally:
        stop(process)
    server = [span for _, span in received.spans if span.kind == span.SPAN_KIND_SERVER]
    grpc_spans = [span for span in server if span.name == "digitnet.v1.DigitClassifier/GetModelInfo"]
    http_spans = [span for span in server if span.name == "GET /v2/health/ready"]
    assert [(span.trace_id.hex()[-2:], span.parent_span_id.hex()[-2:], span.trace_state) for span in grpc_spans] == [
        ("a1", "a1", "a=1,b=2,c=3"),
        ("b2", "b2", ""),
    ]
    assert [span.parent_span_id.hex()[-2:] for span in http_spans] == ["b2", ""]
    assert http_spans[0].trace_state == "a=1,b=2,c=3"
    assert http_spans[1].trace_id.hex()[-2:] not in ("a1", "b2")


@pytest.mark.slow
def test_a_malformed_trace_header_is_not_written_into_the_log(receiver: tuple[Receiver, int]) -> None:
    """A client's bad tracestate starts a new trace; it is not echoed into the server's log (8 KiB a call, before
    the token is checked) as the SDK warns by default."""
    received, port = receiver
    http, log = free_port(), list[str]()
    process, _ = serve(DEFAULT_MODEL, "--http-port", str(http), env=otel_env(f"http://127.0.0.1:{port}", DIGITNET_TOKEN="secret"), log=log)
    parent = f"00-{0xA1:032x}-{0xA1:016x}-01"
    try:
        for state in ("Bad=" + "x" * 8000, ",".join(f"k{n}=1" for n in range(40)), "x" * 9000):
            headers = {"traceparent": parent, "tracestate": state}
            request = urllib.request.Request(f"http://127.0.0.1:{http}/v1/classify", b"", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401
        received.wait_for({"POST /v1/classify"})
    finally:
        stop(process)
    assert not [line for line in log if "xxxxxxxx" in line or "WARNING" in line], [line[:200] for line in log]


@pytest.mark.slow
def test_a_collector_that_is_down_changes_no_answer() -> None:
    closed = free_port()  # nothing listens there
    env = otel_env(f"http://127.0.0.1:{closed}", OTEL_BSP_MAX_QUEUE_SIZE="64", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="16", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    process, grpc_port = serve(DEFAULT_MODEL, "--http-port", "0", env=env)
    provider = TracerProvider()  # the client traces too (every call sampled), exporting nowhere
    tracer = provider.get_tracer("test")
    try:
        image = (GOLDEN / "3_scan.png").read_bytes()
        with DigitClient(f"127.0.0.1:{grpc_port}", timeout=30) as client:
            labels = []
            for _ in range(300):  # far more spans than the queue holds: the overflow is dropped, never waited for
                with tracer.start_as_current_span("client call"):
                    labels.append(client.classify(image).label)
        assert labels == [3] * 300
        assert process.poll() is None
    finally:
        stop(process)


def test_tracing_is_off_unless_asked_for() -> None:
    assert not tracing.wanted(False, {})
    assert not tracing.wanted(False, {"OTEL_TRACES_EXPORTER": "none"})
    assert tracing.wanted(False, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing.wanted(True, {})
    assert not tracing.wanted(True, {"OTEL_SDK_DISABLED": "true"})
    assert not tracing.enabled()  # this test process never asked
    with client_span("Classify") as (span, metadata):  # no SDK in this process: no span recorded, no header sent
        assert not span.is_recording() and metadata == ()


def test_a_missing_sdk_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if the otel extra were not installed
    with caplog.at_level(logging.WARNING, "digitnet.tracing"):
        assert not tracing.configure(True)
    assert [r.getMessage() for r in caplog.records] == [
        "tracing was asked for (--otel or OTEL_TRACES_EXPORTER) but the OpenTelemetry SDK is not installed: pip install 'digitnet[otel]'"
    ]


def test_json_log_lines_carry_the_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")
    try:
        span = TracerProvider().get_tracer("test").start_span("call")
        with trace.use_span(span, end_on_exit=True):
            logging.getLogger("digitnet.test").info("inside")
        logging.getLogger("digitnet.test").info("outside")
        inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:])
    finally:
        logging.getLogger().handlers.clear()
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in outside


@pytest.mark.slow
def test_a_score_run_is_one_trace_with_a_span_per_chunk(receiver: tuple[Receiver, int], tmp_path: Path) -> None:
    received, port = receiver
    env = otel_env(f"http://127.0.0.1:{port}")
    process, grpc_port = serve(DEFAULT_MODEL, "--http-port", "0", env=env)
    try:
        images = tmp_path / "images"
        images.mkdir()
        for label in range(5):
            shutil.copy(GOLDEN / f"{label}_scan.png", images / f"{label}.png")
        command = [sys.executable, "-m", "digitnet.service.cli", "score", str(images), "--server", f"127.0.0.1:{grpc_port}", "--batch-size", "2"]
        command += ["--out", str(tmp_path / "rows.csv"), "--quiet"]
        result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        received.wait_for({"digitnet.score", "digitnet.score.chunk", "digitnet.v1.DigitClassifier/ClassifyBatch"})
    finally:
        stop(process)
    time.sleep(0.5)  # the server's last spans leave on its exit
    [run] = [span for _, span in received.spans if span.name == "digitnet.score"]
    chunks = [span for _, span in received.spans if span.name == "digitnet.score.chunk"]
    batches = [span for _, span in received.spans if span.name == "digitnet.v1.DigitClassifier/ClassifyBatch"]
    assert len(chunks) == 3 and all(chunk.trace_id == run.trace_id and chunk.parent_span_id == run.span_id for chunk in chunks)
    # Each chunk's request: DigitClient's client span under the chunk, the server's span under that.
    calls = [span for span in batches if span.kind == span.SPAN_KIND_CLIENT]
    served = [span for span in batches if span.kind == span.SPAN_KIND_SERVER]
    assert sorted(call.parent_span_id for call in calls) == sorted(chunk.span_id for chunk in chunks)
    assert sorted(span.parent_span_id for span in served) == sorted(call.span_id for call in calls)
    assert all(span.trace_id == run.trace_id for span in batches)


@pytest.mark.slow
def test_spans_reach_a_collector_over_otlp_http() -> None:
    with receiving_http() as (received, port):
        env = otel_env(f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
        process, grpc_port = serve(DEFAULT_MODEL, env=env)
        try:
            with DigitClient(f"127.0.0.1:{grpc_port}", timeout=30) as client:
                assert client.classify((GOLDEN / "2_scan.png").read_bytes()).label == 2
            spans = received.wait_for({"digitnet.v1.DigitClassifier/Classify", "digitnet.model.run"})
        finally:
            stop(process)
    service, server = spans["digitnet.v1.DigitClassifier/Classify"]
    assert service == "digitnet-under-test" and spans["digitnet.model.run"][1].parent_span_id == server.span_id


@pytest.mark.parametrize(("protocol", "module"), [("grpc", "grpc"), ("http/protobuf", "http"), (None, "grpc")])
def test_the_otlp_protocol_picks_the_exporter(monkeypatch: pytest.MonkeyPatch, protocol: str | None, module: str) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    if protocol is None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    exporter = tracing._otlp_exporter()
    try:
        assert type(exporter).__module__ == f"opentelemetry.exporter.otlp.proto.{module}.trace_exporter"
    finally:
        exporter.shutdown()


@pytest.mark.slow
def test_with_adaptive_batching_a_request_records_its_wait(receiver: tuple[Receiver, int]) -> None:
    received, port = receiver
    http = free_port()
    process, _ = serve(DEFAULT_MODEL, "--http-port", str(http), "--max-batch-delay-ms", "1", env=otel_env(f"http://127.0.0.1:{port}"))
    provider = TracerProvider()
    try:
        with provider.get_tracer("test").start_as_current_span("oip call") as client_span:
            body = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
            request = urllib.request.Request(f"http://127.0.0.1:{http}/v2/models/relu/infer", json.dumps(body).encode(), headers=_trace_headers())
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
        received.wait_for({"POST /v2/models/{model}/infer", "digitnet.batch.wait", "digitnet.encode"})
    finally:
        stop(process)
    trace_id = client_span.get_span_context().trace_id.to_bytes(16, "big")
    in_trace = {span.name: span for _, span in received.spans if span.trace_id == trace_id}
    server = in_trace["POST /v2/models/{model}/infer"]
    children = {name for name, span in in_trace.items() if span.parent_span_id == server.span_id}
    assert children == {"digitnet.decode", "digitnet.batch.wait", "digitnet.encode"}
    # The merged run serves many traces and belongs to none: the batcher's worker has a context of its own.
    assert "digitnet.model.run" not in in_trace
