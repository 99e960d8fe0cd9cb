"""Tracing as the tests see it: an OTLP/gRPC trace receiver, as a collector is (Receiver; the `receiver` fixture
of tests/service/conftest.py serves one), the OTEL_* variables that point a `digitnet serve` at it (otel_env),
what every span it gets must look like (malformed), and W3C trace context for the fuzz campaigns: valid,
mutated and hostile `traceparent` and `tracestate` headers (hostile_context), each with what the server must
make of it, and the check that the spans of a campaign's calls did (Expected).

What a server must make of trace headers (W3C Trace Context, https://www.w3.org/TR/trace-context/): a valid
traceparent (one field line: repeated, there is no traceparent, as the W3C test suite has it; over gRPC,
whose core keeps the last of repeated lines, the last) is continued, its server span a child of the sent span,
and left out when its sampled flag is clear (parent-based sampling); any other starts a new trace. A valid
tracestate is carried along with the trace it came with, repeated lines combined in order; a malformed one (or
one of more than 32 members) is dropped whole.
"""

from __future__ import annotations

import random
import re
import string
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """An OTLP/gRPC trace receiver, as a collector's: keeps every span it is sent, with its service's name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the service's method name
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), "")
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(service, span) for span in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, names: set[str], seconds: float = 30) -> dict[str, tuple[str, Any]]:
        """The last span of each name, once all have arrived."""
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            with self._lock:
                found = {span.name: (service, span) for service, span in self.spans}
            if names <= found.keys():
                return found
            time.sleep(0.05)
        raise AssertionError(f"spans never arrived: {sorted(names - found.keys())}; got {sorted(found)}")


#: The service name otel_env gives the server under test.
SERVICE = "digitnet-under-test"


@contextmanager
def receiving(host: str = "127.0.0.1") -> Iterator[tuple[Receiver, int]]:
    """An OTLP/gRPC trace receiver listening on a free port of `host` (a container reaches the bridge's host
    address) while the block runs: it, and the port."""
    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_receive_message_length", 64 << 20)])
    received = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    try:
        yield received, port
    finally:
        server.stop(None)


@contextmanager
def receiving_http(host: str = "127.0.0.1") -> Iterator[tuple[Receiver, int]]:
    """An OTLP/HTTP trace receiver (protobuf POSTs to /v1/traces, as a collector's port 4318 takes them) on a free
    port of `host` while the block runs: it, and the port."""
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
            if ok:
                received.Export(trace_service_pb2.ExportTraceServiceRequest.FromString(body), None)
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def otel_env(endpoint: str, **more: str) -> dict[str, str]:
    """The OTEL_* variables that make `digitnet serve` export its spans over OTLP/gRPC to `endpoint`."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: the test need not wait the default 5 s
        **more,
    }


#: otel_env's extra variables for a campaign: every span sampled and kept (a queue no campaign fills).
EVERY_SPAN = {"OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_BSP_MAX_QUEUE_SIZE": "1000000"}

# The W3C grammar of a tracestate member (key=value), written from the recommendation, not taken from the SDK.
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(f"({_KEY})=({_VALUE})")
_HEX = "0123456789abcdef"


def well_formed_tracestate(value: str) -> bool:
    """Whether a tracestate (as a span carries it: members joined by ',') is one the recommendation allows."""
    members = value.split(",") if value else []
    keys = [m.group(1) for m in map(_MEMBER.fullmatch, members) if m]
    return len(keys) == len(members) <= 32 and len(set(keys)) == len(keys)


def w3c_parent(values: Sequence[str]) -> tuple[bytes, bytes, bool] | None:
    """The (trace id, span id, sampled) of the traceparent field lines `values`; None if they are not one valid
    traceparent. A future version (neither 00 nor ff) may carry more after a '-'; the SDK reads no more than 512
    characters of one (the recommendation sets no bound: the campaigns send no longer valid ones)."""
    if len(values) != 1 or len(values[0]) > 512:
        return None
    value = values[0].strip(" \t")
    fields = value[:2], value[3:35], value[36:52], value[53:55]
    if len(value) < 55 or value[2] + value[35] + value[52] != "---" or not set("".join(fields)) <= set(_HEX):
        return None
    version, trace_id, span_id, flags = fields
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if len(value) > 55 and (version == "00" or value[55] != "-"):
        return None
    return bytes.fromhex(trace_id), bytes.fromhex(span_id), bool(int(flags, 16) & 1)


@dataclass(frozen=True)
class TraceContext:
    """The trace headers of one call, in order (a name may repeat), and what the server must make of them."""

    headers: tuple[tuple[str, str], ...]
    #: (trace id, span id, sampled) of a valid traceparent, which the server's span continues; None: a new trace.
    parent: tuple[bytes, bytes, bool] | None
    #: The tracestate the continued trace's spans must carry ('' for none); None where it is not predicted.
    trace_state: str | None
    #: Trace ids the headers carry that no span may have (those of traceparents that are not valid).
    refused: frozenset[bytes]


def _ids(rng: random.Random, digits: int) -> str:
    return "".join(rng.choice(_HEX) for _ in range(digits))


def _traceparent(rng: random.Random) -> str:
    """A valid traceparent: mostly version 00, sometimes a future version, with any flags."""
    version = "00" if rng.random() < 0.8 else rng.choice(("01", "7f", "cc", "fe"))
    value = f"{version}-{_ids(rng, 32)}-{_ids(rng, 16)}-{rng.choice(('01', '01', '00', '03', '02', 'ff', '09'))}"
    if version != "00" and rng.random() < 0.5:
        value += "-" + rng.choice(("x", "what-the-future-holds", _ids(rng, 40)))
    return value


#: Non-ASCII text a hostile HTTP client may send as header bytes (gRPC clients cannot: metadata is printable ASCII).
UNICODE = ("é", "０", "\u202e", "😀", "ß", "名前", "\ufeff")


def _mutated_traceparent(rng: random.Random, value: str, http: bool, budget: int) -> str:
    """A traceparent made wrong, mostly, the way senders get it wrong: bad versions, wrong lengths, zero ids,
    non-hex, case, cut short, extra fields, other separators, padding, huge, unicode, garbage."""
    kind = rng.randrange(15)
    if kind == 0:
        return rng.choice(("ff", "0", "000", "FF", "0g", "-1", "", "f")) + value[2:]
    if kind == 1:
        return value[:3] + _ids(rng, rng.choice((0, 1, 31, 33, 64))) + value[35:]
    if kind == 2:
        return value[:36] + _ids(rng, rng.choice((0, 15, 17, 32))) + value[52:]
    if kind == 3:
        return value[:3] + "0" * 32 + value[35:]
    if kind == 4:
        return value[:36] + "0" * 16 + value[52:]
    if kind == 5:
        at = rng.randrange(len(value))
        return value[:at] + rng.choice("gzGXZ_ .:+/%") + value[at + 1 :]
    if kind == 6:
        return value.upper()
    if kind == 7:
        return value[: rng.randrange(len(value))]
    if kind == 8:
        return value + rng.choice(("-", "-00", "-extra", "x", " x", "--", ",", ";a=b"))
    if kind == 9:
        return value[:53] + rng.choice(("0", "001", "zz", "", "1"))
    if kind == 10:
        return value.replace("-", rng.choice("_ .:"), rng.choice((1, 3)))
    if kind == 11:  # padded with optional whitespace: still valid
        pad = " \t" if http else " "
        return "".join(rng.choice(pad) for _ in range(rng.randint(0, 3))) + value + "".join(rng.choice(pad) for _ in range(rng.randint(1, 3)))
    if kind == 12:  # huge
        return value + "-" + "a" * min(rng.choice((460, 500, 5000, 50_000)), budget // 2)
    if kind == 13 and http:
        at = rng.randrange(len(value))
        return value[:at] + rng.choice(UNICODE) + value[at + 1 :]
    return rng.choice(("", "-", "00", "null", "undefined", "00--", "00-" + "-" * 52, "\\x00", "{}", "%00"))


def _key(rng: random.Random) -> str:
    tail = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    simple = rng.choice(string.ascii_lowercase) + "".join(rng.choice(tail) for _ in range(rng.randint(0, 12)))
    if rng.random() < 0.7:
        return simple
    system = rng.choice(string.ascii_lowercase) + "".join(rng.choice(tail) for _ in range(rng.randint(0, 6)))
    return rng.choice(string.ascii_lowercase + string.digits) + simple + "@" + system  # tenant@system


def _members(rng: random.Random, count: int) -> list[str]:
    """`count` valid tracestate members with distinct keys."""
    allowed = [chr(c) for c in range(0x21, 0x7F) if chr(c) not in ",="]
    keys: dict[str, None] = {}
    while len(keys) < count:
        keys[_key(rng)] = None
    members = []
    for key in keys:
        value = "".join(rng.choice(allowed) for _ in range(rng.randint(1, 24)))
        if rng.random() < 0.1 and len(value) > 1:  # a space inside a value is allowed, not at its end
            value = value[:1] + " " + value[1:]
        members.append(f"{key}={value}")
    return members


def _tracestate(rng: random.Random, http: bool, budget: int) -> tuple[list[str], str | None]:
    """The tracestate field lines of a call and the tracestate its trace must then carry (None: not predicted)."""
    roll = rng.random()
    if roll < 0.4:
        return [], ""
    if roll < 0.5:
        return [""], ""  # an empty tracestate: accepted, and nothing
    members = _members(rng, rng.randint(1, 32))
    wanted: str | None = ",".join(members)
    if roll > 0.75:  # made wrong: the whole tracestate is dropped
        at, kind = rng.randrange(len(members)), rng.randrange(8)
        if kind == 0:
            members[at] = "K" + members[at]  # a key must begin with a lowercase letter or a digit
        elif kind == 1:
            members[at] = members[at].replace("=", "", 1)  # no '='
        elif kind == 2:
            members[at] = members[at] + "=" + "x"  # a second '=' in the value
        elif kind == 3:
            members.append(members[at].split("=", 1)[0] + "=again")  # a key twice
        elif kind == 4:
            members += _members(rng, 33)  # more than 32 members (a key may repeat too)
        elif kind == 5:
            members[at] = "=" + members[at].split("=", 1)[1]  # no key
        elif kind == 6 and http:
            members[at] += rng.choice(UNICODE)
        elif kind == 6:
            members[at] = members[at].split("=", 1)[0] + "=" + "v" * 300  # a value over 256 characters
        elif http:  # huge: over the SDK's 8,192 characters, what it then does is its business
            members += ["k" + str(n) + "=" + "v" * 250 for n in range(min(rng.choice((40, 200)), budget // 300))]
            wanted = None
        else:
            members[at] = members[at] + " " + members[at]  # a space between two members
        wanted = "" if wanted is not None else None
    separator = rng.choice((",", ", ", " ,", ",,") + ((",\t",) if http else ()))
    if rng.random() < 0.3 and len(members) > 1:  # repeated field lines, combined in order
        cut = rng.randrange(1, len(members))
        return [separator.join(members[:cut]), separator.join(members[cut:])], wanted
    return [separator.join(members)], wanted


def hostile_context(rng: random.Random, http: bool, budget: int) -> TraceContext:
    """The trace headers of one call: a valid traceparent, a mutated one, two of them, or none, with a tracestate
    (valid, empty, malformed, over the limits, in one or several field lines) or none, in any order; at most
    about `budget` bytes of them (gRPC refuses metadata over 8 KiB), non-ASCII bytes only where `http`."""
    roll = rng.random()
    if roll < 0.4:
        parents = [_traceparent(rng)]
    elif roll < 0.8:
        parents = [_mutated_traceparent(rng, _traceparent(rng), http, budget)]
    elif roll < 0.92:  # repeated: two of them, valid or not
        parents = [_traceparent(rng), rng.choice((_traceparent(rng), _mutated_traceparent(rng, _traceparent(rng), http, budget)))]
        if rng.random() < 0.3:
            parents[1] = parents[0]
    else:
        parents = []
    states, wanted = _tracestate(rng, http, budget - sum(map(len, parents)))
    if sum(map(len, parents + states)) > budget:
        states, wanted = [], ""
    headers: list[tuple[str, str]] = []
    lines = {"traceparent": list(parents), "tracestate": states}
    while lines["traceparent"] or lines["tracestate"]:  # interleaved at random, each name's lines in their order
        name = rng.choice([name for name, values in lines.items() if values])
        headers.append((name, lines[name].pop(0)))
    # gRPC's core holds one traceparent a call (its W3CTraceParentMetadata is not repeatable): of repeated lines,
    # the server sees the last. Over HTTP it sees them all, which are then no traceparent.
    parent = w3c_parent(parents if http else parents[-1:])
    carried = {value.strip(" \t")[3:35].lower() for value in parents}
    refused = frozenset(bytes.fromhex(tid) for tid in carried if len(tid) == 32 and set(tid) <= set(_HEX) and tid != "0" * 32)
    return TraceContext(tuple(headers), parent, wanted, refused - ({parent[0]} if parent else set()))


def _attributes(span: Any) -> dict[str, Any]:
    """A span's attributes as Python values."""
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


def malformed(spans: Sequence[tuple[str, Any]], service: str = SERVICE) -> list[str]:
    """What is wrong with the spans a server exported (empty when nothing): every span of `service` with valid
    ids, a name, a start before its end; every server span with its transport's attributes and an error status
    exactly when its call failed; every other span the child of a span of its own trace."""
    problems: list[str] = []
    ids = Counter(span.span_id for _, span in spans)
    in_trace = {(span.trace_id, span.span_id) for _, span in spans}
    for name, span in spans:
        attributes = _attributes(span)
        where = f"span {span.name!r} {span.trace_id.hex()}/{span.span_id.hex()}"
        if name != service:
            problems.append(f"{where} comes from service {name!r}")
        if len(span.trace_id) != 16 or not any(span.trace_id) or len(span.span_id) != 8 or not any(span.span_id) or ids[span.span_id] > 1:
            problems.append(f"{where}: a trace or span id that is not valid (or not unique)")
        if span.parent_span_id and (len(span.parent_span_id) != 8 or not any(span.parent_span_id)):
            problems.append(f"{where}: parent span id {span.parent_span_id.hex()!r}")
        if not span.name or not 0 < span.start_time_unix_nano <= span.end_time_unix_nano:
            problems.append(f"{where}: no name, or ends before it starts")
        if span.trace_state and not well_formed_tracestate(span.trace_state):
            problems.append(f"{where}: tracestate {span.trace_state[:200]!r} is not well formed")
        failed = span.status.code == span.status.STATUS_CODE_ERROR
        if span.kind == span.SPAN_KIND_SERVER:
            if attributes.get("rpc.system") == "grpc":
                wanted = {"rpc.service", "rpc.method", "rpc.grpc.status_code", "digitnet.status"}
                status_failed = attributes.get("rpc.grpc.status_code") != 0
            else:
                wanted = {"http.request.method", "http.route", "url.path", "http.response.status_code", "digitnet.status"}
                status_failed = attributes.get("http.response.status_code", 0) >= 400
            if not wanted <= attributes.keys() or failed != status_failed:
                problems.append(f"{where}: server span attributes {attributes}, status {span.status.code}")
        elif not span.parent_span_id or (span.trace_id, span.parent_span_id) not in in_trace:
            problems.append(f"{where}: a {span.kind} span whose parent is not in its trace")
    return problems


class Expected:
    """What a campaign's calls must leave in the receiver, call by call (`call`, from any thread): a server span
    for each call, starting a trace of its own unless it carried a valid traceparent; then a child of the sent
    span with the sent tracestate if that was sampled, else no span at all; and never a trace id of a traceparent
    that was not valid."""

    def __init__(self) -> None:
        self.roots = 0
        self.continued: dict[tuple[bytes, bytes], str | None] = {}
        self.absent: set[bytes] = set()
        self._lock = threading.Lock()

    def call(self, context: TraceContext | None) -> None:
        """Count one call that reached the server, with the trace headers it carried (None: none)."""
        with self._lock:
            if context is None or context.parent is None:
                self.roots += 1
            elif context.parent[2]:
                self.continued[context.parent[:2]] = context.trace_state
            else:
                self.absent.add(context.parent[0])
            if context is not None:
                self.absent |= context.refused

    def problems(self, spans: Sequence[tuple[str, Any]]) -> list[str]:
        """How the server spans among `spans` differ from what the calls counted must have left."""
        server = [span for _, span in spans if span.kind == span.SPAN_KIND_SERVER]
        roots = sum(1 for span in server if not span.parent_span_id)
        problems = [] if roots == self.roots else [f"{roots} server spans begin a trace, for {self.roots} calls without a valid traceparent"]
        children = Counter((span.trace_id, span.parent_span_id) for span in server if span.parent_span_id)
        states = {(span.trace_id, span.parent_span_id): span.trace_state for span in server}
        for key, trace_state in self.continued.items():
            if children[key] != 1:
                problems.append(f"the sampled traceparent of trace {key[0].hex()}, span {key[1].hex()}: {children[key]} server spans continue it")
            elif trace_state is not None and states[key] != trace_state:
                problems.append(f"trace {key[0].hex()} carries tracestate {states[key][:200]!r}, sent {trace_state[:200]!r}")
        for key in children.keys() - self.continued.keys():
            problems.append(f"a server span continues {key[0].hex()}/{key[1].hex()}, which no call sent as sampled")
        for _, span in spans:
            if span.trace_id in self.absent:
                problems.append(f"span {span.name!r} has trace id {span.trace_id.hex()}, sent unsampled or not valid")
        return problems
