"""Fuzzing a real server: mutated images, malformed requests and raw garbage on every RPC.

Seeds: tests/corpus/ (every image mode and format, crafted headers, bombs, strips, truncations) and the
golden digits. Each case mutates a seed (bit flips, overwrites with boundary values, truncation, splices,
inserted and repeated bytes) and sends it through one RPC. Every call must end with a status other than
INTERNAL or UNKNOWN (and every batch or stream item likewise), the server must stay SERVING, and a good
image must still be read right afterwards. `pytest --fuzz-cases 30000` runs a longer campaign;
`--fuzz-seed` picks another sequence. The status table is printed at the end.

The server runs with the payload log and tracing on (every call sampled, exported to an OTLP receiver), and
a share of the calls carry hostile W3C trace context (valid, mutated, repeated, huge `traceparent` and
`tracestate` metadata): each is answered as it is without them, and the receiver's spans must be well formed
and continue exactly the valid sampled traceparents sent (telemetry/otlp.py says what each header must do).

Model names: every call that names a model (ModelInfer, ModelMetadata, ModelReady, ModelConfig,
ModelStatistics, RepositoryModelLoad and RepositoryModelUnload) gets names no server of two models serves,
hostile ones and hypothesis's; each must be NOT_FOUND (INVALID_ARGUMENT where the message cannot be read),
and both models must still serve afterwards.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.api._generated import oip_pb2 as oip
from digitnet.service.contract.constants import MODEL_NAME

from ...conftest import CORPUS, DEFAULT_MODEL, GOLDEN, RELU, SIGMOID
from ..conftest import ServerThread, running_server
from ..helpers import free_port, serve, stop, two_models
from ..telemetry.otlp import EVERY_SPAN, Expected, Receiver, hostile_context, malformed, otel_env

SEEDS = [p.read_bytes() for p in sorted((CORPUS).iterdir()) if p.is_file() and p.suffix != ".py"]
SEEDS += [p.read_bytes() for p in sorted(GOLDEN.glob("*_*.*")) if p.suffix != ".py"]
GOOD = (GOLDEN / "9_scan.jpg").read_bytes()
#: Codes that mean the server failed, not the input.
FORBIDDEN = {"INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED"}
BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]
OIP_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Apply one to four random mutations to a seed."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if kind == 0 and out:  # flip bits, mostly near the header where the parsers branch
            for _ in range(rng.randint(1, 8)):
                position = min(int(rng.expovariate(1 / 64)), len(out) - 1)
                out[position] ^= 1 << rng.randrange(8)
        elif kind == 1:  # overwrite with a boundary integer (sizes, offsets, counts)
            width = rng.choice((1, 2, 4))
            value = rng.choice(BOUNDARY) & ((1 << (8 * width)) - 1)
            out[at : at + width] = value.to_bytes(width, rng.choice(("big", "little")))
        elif kind == 2:
            del out[at:]  # truncate
        elif kind == 3:  # splice in a piece of another seed
            other = rng.choice(SEEDS)
            start = rng.randrange(len(other) + 1)
            out[at:at] = other[start : start + rng.randint(1, 512)]
        elif kind == 4:
            out[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == 5 and out:  # repeat a slice (chunk and IFD loops)
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 256)] * rng.randint(2, 8)
        else:
            out[at : at + 1] = b""
    return bytes(out)


def _oip_request(rng: random.Random) -> oip.ModelInferRequest:
    """A ModelInfer request with random names, shapes, datatypes and contents (mostly almost right)."""
    count = rng.choice((1, 2, 3, 1, 2, 3, 0, -1, 10**12))
    shape = rng.choice(([count, 784], [count, 28, 28], [count, 784], [count], [count, 784, 1], []))
    name = "digitnet" if rng.random() < 0.85 else rng.choice(("", "x" * rng.randint(1, 5000)))
    request = oip.ModelInferRequest(model_name=name, model_version=rng.choice(("", "1", "", "1", "2", "\x00")))
    tensor = request.inputs.add(
        name="pixels" if rng.random() < 0.9 else rng.choice(("", "input")),
        datatype=rng.choice(("FP32", "UINT8", "FP32", "UINT8", "INT64", "BYTES", "")),
    )
    tensor.shape.extend(shape)
    n = max(0, min(count, 3)) * 784
    if rng.random() < 0.6:
        raw = np.random.default_rng(rng.randrange(2**32)).random(max(0, n + rng.choice((0, 0, -1, 1)))).astype(np.float32)
        if rng.random() < 0.2:
            raw[: rng.randint(1, 8)] = rng.choice((np.nan, np.inf, -1.0, 255.0))
        if tensor.datatype == "UINT8":
            raw = np.nan_to_num(raw * 255, posinf=255, neginf=0).clip(0, 255).astype(np.uint8)
        request.raw_input_contents.append(raw.tobytes())
    else:
        tensor.contents.fp32_contents.extend(rng.random() * 2 - 0.5 for _ in range(n))
        tensor.contents.uint_contents.extend(rng.randrange(300) for _ in range(n if rng.random() < 0.3 else 0))
    for name in rng.sample(["probabilities", "label", "hidden1", "hidden2", "outcome", "reason", "logits", "x" * 300], rng.randint(0, 3)):
        request.outputs.add(name=name)
    if rng.random() < 0.3:
        parameter = request.parameters["min_confidence"]
        rng.choice(
            [
                lambda: setattr(parameter, "double_param", rng.choice((0.5, 2.0, -1.0, float("nan")))),
                lambda: setattr(parameter, "string_param", "x"),
                lambda: setattr(parameter, "int64_param", rng.choice((0, 1, 7))),
            ]
        )()
    return request


#: The share of calls that carry trace headers (telemetry/otlp.py's hostile_context), and their bytes at most:
#: gRPC refuses a call whose metadata is over 8 KiB (RESOURCE_EXHAUSTED, at random between 8 and 16 KiB).
TRACED, TRACE_BYTES = 0.3, 5000

Metadata = tuple[tuple[str, str], ...]


def _ok(_: object) -> list[str]:
    """The codes of a unary call that answered."""
    return ["OK"]


class _Campaign:
    """Runs fuzz cases against one server and tallies the status codes. A case that carries trace headers is
    sent again without them: it must be answered the same (every code of it, items included)."""

    def __init__(self, channel: grpc.Channel, seed: int) -> None:
        self.stub = pb_grpc.DigitClassifierStub(channel)
        self.channel = channel
        self.seed = seed
        self.codes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.expected = Expected()
        self.traced = 0
        self._lock = threading.Lock()

    def record(self, case: int, kind: str, codes: list[str]) -> None:
        with self._lock:
            for name, code in zip([kind] + [f"{kind} item"] * (len(codes) - 1), codes, strict=True):
                self.codes[f"{name} {code}"] += 1
                if code in FORBIDDEN:
                    self.failures.append(f"case {case} (seed {self.seed}): {name} answered {code}")

    def run(self, case: int) -> None:
        rng = random.Random(f"{self.seed}:{case}")
        kind = rng.choices(["Classify", "ClassifyBatch", "ClassifyStream", "Explain", "ModelInfer", "raw"], [5, 2, 1, 1, 2, 1])[0]
        call = self._prepare(kind, rng)
        traces = random.Random(f"{self.seed}:{case}:trace")  # apart: the requests are those of a campaign without
        context = hostile_context(traces, http=False, budget=TRACE_BYTES) if traces.random() < TRACED else None
        codes = self._codes(call, context.headers if context else ())
        self.expected.call(context)
        self.record(case, kind, codes)
        if context is not None:
            bare = self._codes(call, ())
            self.expected.call(None)
            with self._lock:
                self.traced += 1
                if bare != codes:
                    self.failures.append(f"case {case} (seed {self.seed}): {kind} answered {codes} with {context.headers!r:.300} but {bare} without")

    @staticmethod
    def _codes(call: Callable[[Metadata], list[str]], metadata: Metadata) -> list[str]:
        """The call's status and its items' (a batch's or a stream's), by name."""
        try:
            return call(metadata)
        except grpc.RpcError as err:
            return [err.code().name]

    def _prepare(self, kind: str, rng: random.Random) -> Callable[[Metadata], list[str]]:
        """One call of `kind` with mutated contents, to be sent (as many times as wanted) with some metadata."""
        image = lambda: pb.Image(encoded=mutate(rng.choice(SEEDS), rng))  # noqa: E731
        if kind in ("Classify", "Explain"):
            method: Callable[..., object] = getattr(self.stub, kind)
            single = pb.ClassifyRequest(image=image(), min_confidence=rng.choice((0.0, 0.5)))
            return lambda metadata: _ok(method(single, timeout=30, metadata=metadata))
        if kind == "ClassifyBatch":
            images = [image() for _ in range(rng.randint(1, 8))]
            if rng.random() < 0.3:
                images.append(pb.Image(mnist_uint8=rng.randbytes(rng.choice((784, 783, 0, 1568)))))
            batch = pb.ClassifyBatchRequest(images=images)
            return lambda metadata: ["OK"] + [p.error.code or "OK" for p in self.stub.ClassifyBatch(batch, timeout=30, metadata=metadata).predictions]
        if kind == "ClassifyStream":
            stream = [pb.ClassifyRequest(image=image(), id=str(i)) for i in range(rng.randint(1, 6))]
            return lambda metadata: (
                ["OK"] + [r.prediction.error.code or "OK" for r in self.stub.ClassifyStream(iter(stream), timeout=30, metadata=metadata)]
            )
        if kind == "ModelInfer":
            infer = self.channel.unary_unary(OIP_METHOD, oip.ModelInferRequest.SerializeToString, oip.ModelInferResponse.FromString)
            request = _oip_request(rng)
            return lambda metadata: _ok(infer(request, timeout=30, metadata=metadata))
        # bytes that may not even parse as the request message, on any method
        method_name = rng.choice(
            [
                "/digitnet.v1.DigitClassifier/Classify",
                "/digitnet.v1.DigitClassifier/ClassifyBatch",
                "/digitnet.v1.DigitClassifier/Explain",
                "/digitnet.v1.DigitClassifier/GetModelInfo",
                OIP_METHOD,
            ]
        )
        payload = mutate(pb.ClassifyRequest(image=pb.Image(encoded=rng.choice(SEEDS)[:2000])).SerializeToString(), rng)
        raw = self.channel.unary_unary(method_name)
        return lambda metadata: _ok(raw(payload, timeout=30, metadata=metadata))


@pytest.mark.slow
def test_fuzzed_requests_never_break_the_server(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], tmp_path: Path, receiver: tuple[Receiver, int]
) -> None:
    cases, seed = request.config.getoption("fuzz_cases"), request.config.getoption("fuzz_seed")
    # Both of the telemetry features on: the payload log, every call recorded and posted to a sink that is down,
    # and tracing, every call sampled and its spans exported to a receiver. Hostile input goes through both.
    payloads = tmp_path / "payloads.jsonl"
    sink = f"http://127.0.0.1:{free_port()}/"
    received, otlp = receiver
    flags = ("--payload-log", str(payloads), "--payload-log-sample", "1", "--payload-log-url", sink)
    process, port = serve(DEFAULT_MODEL, *flags, env=otel_env(f"http://127.0.0.1:{otlp}", **EVERY_SPAN))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            campaign = _Campaign(channel, seed)
            with futures.ThreadPoolExecutor(4) as pool:
                for _ in pool.map(campaign.run, range(cases)):
                    pass
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reply = campaign.stub.Classify(pb.ClassifyRequest(image=pb.Image(encoded=GOOD)), timeout=10)
            campaign.expected.call(None)
            assert reply.prediction.label == 9, "a good image is no longer read right after the campaign"
        assert process.poll() is None, "the server died"
        stop(process)  # its last spans leave as it exits, and the payload log is closed whole
    finally:
        process.kill()
        process.wait()
    lines = payloads.read_bytes().splitlines()
    assert lines and all(json.loads(line)["call"] in {"Classify", "ClassifyBatch", "ClassifyStream", "Explain", "ModelInfer"} for line in lines)
    with capsys.disabled():
        print(f"\nfuzz: {cases} cases (seed {seed}), {sum(campaign.codes.values())} calls and items, {campaign.traced} with trace headers:")
        for key, count in sorted(campaign.codes.items()):
            print(f"  {key:<38} {count:>7}")
        print(f"  {len(received.spans)} spans, {len(lines)} payload records")
    assert campaign.failures == [], "\n".join(campaign.failures[:20])
    spans = [(service, span) for service, span in received.spans if not span.name.startswith("grpc.health.")]
    assert malformed(spans) == []
    problems = campaign.expected.problems(spans)
    assert problems == [], "\n".join(problems[:30])


def test_the_mutator_is_repeatable_and_changes_its_input() -> None:
    seed = SEEDS[0]
    assert mutate(seed, random.Random(7)) == mutate(seed, random.Random(7))
    assert sum(mutate(seed, random.Random(n)) != seed for n in range(50)) >= 45


def test_the_corpus_covers_formats_and_modes() -> None:
    names = [p.name for p in (CORPUS).iterdir()]
    assert len(names) >= 100
    for needle in ("png_", "jpeg_", "gif_", "tiff_", "bmp_", "webp_", "LAB", "CMYK", "16bit", "tiff_F", "exif", "multiframe", "trunc", "ihdr"):
        assert any(needle.lower() in name.lower() for name in names), needle


#: Names no server of the two committed models serves: empty, huge, unicode, path-like, with NUL, near misses.
HOSTILE_NAMES = [
    "",
    "x" * 100_000,
    "ünïcödé-名前-😀",
    "../x",
    "../../models/default",
    "/etc/passwd",
    "digitnet/1",
    f"{RELU}/1",
    f"{RELU}/../{SIGMOID}",
    "a\x00b",
    "\x00",
    f"{MODEL_NAME}\x00",
    f"{RELU}\x00",
    f" {RELU}",
    MODEL_NAME.upper(),
    "default.onnx",
    "logistic.json",
    "%2e%2e%2fx",
    "\u202e" + RELU,
    "\ufeff",
    "\n",
]
#: A name hypothesis makes: anything (unicode, control characters), a served name with something added, or huge.
NAMES = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.text(max_size=80),
    st.builds(
        lambda near, joint, tail: near + joint + tail,
        st.sampled_from([RELU, SIGMOID, MODEL_NAME, "..", ""]),
        st.sampled_from(["/", "/1", "\x00", "/../", " ", "\t", ".onnx", "%00", "\\"]),
        st.text(max_size=8),
    ),
    st.integers(1_000, 200_000).map(lambda size: "y" * size),
).filter(lambda name: name not in (RELU, SIGMOID, MODEL_NAME))
#: Each call that names a model: its response message and the request field that holds the name.
NAMED_CALLS: dict[str, tuple[type[Message], type[Message], str]] = {
    "ModelInfer": (oip.ModelInferRequest, oip.ModelInferResponse, "model_name"),
    "ModelMetadata": (oip.ModelMetadataRequest, oip.ModelMetadataResponse, "name"),
    "ModelReady": (oip.ModelReadyRequest, oip.ModelReadyResponse, "name"),
    "ModelConfig": (oip.ModelConfigRequest, oip.ModelConfigResponse, "name"),
    "ModelStatistics": (oip.ModelStatisticsRequest, oip.ModelStatisticsResponse, "name"),
    "RepositoryModelLoad": (oip.RepositoryModelLoadRequest, oip.RepositoryModelLoadResponse, "model_name"),
    "RepositoryModelUnload": (oip.RepositoryModelUnloadRequest, oip.RepositoryModelUnloadResponse, "model_name"),
}
#: The calls for which an empty name means the default model (or, for statistics, every model).
DEFAULT_WHEN_EMPTY = {"ModelInfer", "ModelMetadata", "ModelReady", "ModelConfig", "ModelStatistics"}


@pytest.fixture(scope="module")
def repository_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A server of both committed models (copies: a load or unload it is tricked into changes nothing else)."""
    with running_server(model=[], model_repository=two_models(tmp_path_factory.mktemp("repository"))) as server:
        yield server


@pytest.fixture(scope="module")
def repository_channel(repository_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(repository_server.address) as channel:
        yield channel


def _call_naming(channel: grpc.Channel, method: str, name: str | bytes) -> str:
    """Call `method` with a request naming `name` (bytes: sent as they are, valid UTF-8 or not); its status name."""
    request_type, response_type, field = NAMED_CALLS[method]
    if isinstance(name, bytes):  # the name field alone, by hand: protobuf refuses to write a string that is not UTF-8
        number = request_type.DESCRIPTOR.fields_by_name[field].number
        payload = bytes([number << 3 | 2, len(name)]) + name
    else:
        request = request_type(**{field: name})
        if isinstance(request, oip.ModelInferRequest):
            request.inputs.add(name="pixels", datatype="UINT8", shape=[1, 784])
            request.raw_input_contents.append(bytes(784))
        payload = request.SerializeToString()
    call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}", lambda raw: raw, response_type.FromString)
    try:
        call(payload, timeout=30)
    except grpc.RpcError as err:
        return str(err.code().name)
    return "OK"


def _check_both_models_serve(channel: grpc.Channel) -> None:
    index = channel.unary_unary(
        "/inference.GRPCInferenceService/RepositoryIndex", oip.RepositoryIndexRequest.SerializeToString, oip.RepositoryIndexResponse.FromString
    )(oip.RepositoryIndexRequest(), timeout=10)
    assert [(model.name, model.state) for model in index.models] == [(RELU, "READY"), (SIGMOID, "READY")]
    for name in (RELU, SIGMOID, MODEL_NAME):
        assert _call_naming(channel, "ModelInfer", name) == "OK", name
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES)
def test_a_model_name_the_server_does_not_serve_is_not_found_on_every_call(repository_channel: grpc.Channel, name: str) -> None:
    for method in NAMED_CALLS:
        allowed = {"NOT_FOUND", "INVALID_ARGUMENT"} | ({"OK"} if name == "" and method in DEFAULT_WHEN_EMPTY else set())
        code = _call_naming(repository_channel, method, name)
        assert code in allowed, f"{method} naming {name[:80]!r} ({len(name)} characters) answered {code}"


@pytest.mark.parametrize("method", NAMED_CALLS)
def test_a_model_name_that_is_not_utf8_is_invalid_argument(repository_channel: grpc.Channel, method: str) -> None:
    assert _call_naming(repository_channel, method, b"\xff\xfe" + RELU.encode()) == "INVALID_ARGUMENT"


def test_both_models_serve_after_the_hostile_names(repository_channel: grpc.Channel) -> None:
    for name in HOSTILE_NAMES:  # the listed ones at least, whatever hypothesis drew
        for method in ("RepositoryModelUnload", "RepositoryModelLoad"):
            assert _call_naming(repository_channel, method, name) == "NOT_FOUND", (method, name[:80])
    _check_both_models_serve(repository_channel)
