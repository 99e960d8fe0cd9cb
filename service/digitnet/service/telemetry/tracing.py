"""Tracing with OpenTelemetry: the SDK and its OTLP exporter set up from the standard OTEL_* variables (or
--otel), one server span per call for the transports' guards, the W3C trace context read from a call's
headers, and the trace id in log lines.

Off by default, even with the `otel` extra installed: OTEL_TRACES_EXPORTER (otlp or console) or DIGITNET_OTEL
turns it on. Spans leave through a BatchSpanProcessor: a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048) that a
background thread empties, dropping spans when it is full, so a collector that is down costs no call anything.
The child spans (decode, preprocessing, the batcher's wait, the model run, encoding) are inference/spans.py's.

Usage:
    configure(enabled=settings.otel)          # once per process, before serving
    span = server_span("digitnet.v1.Digitnet/Classify", trace_carrier(metadata), {"rpc.system": "grpc"})
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from digitnet.service.inference.spans import TRACER

log = logging.getLogger("digitnet.tracing")

__all__ = ["Span", "TRACE_HEADERS", "TraceIds", "configure", "enabled", "end_server_span", "server_span", "shutdown", "trace_carrier", "wanted"]

#: The W3C trace context headers (metadata keys) a call may carry: only these are read into the extractor.
TRACE_HEADERS = ("traceparent", "tracestate")

#: The SDK's loggers that warn about what a call's trace headers hold: a malformed tracestate (echoed, up to
#: 8 KiB of it), an overlong traceparent. The caller's mistake, which then starts a new trace; at WARNING any
#: client could write 8 KiB into the log with every call, before its token is even checked. Errors only.
HEADER_LOGGERS = ("opentelemetry.trace.span", "opentelemetry.trace.propagation.tracecontext")

#: Whether this process traces: read by the guards on every call, so that off costs one attribute read.
state = {"enabled": False}
#: The tracer of the server spans: the API's proxy until configure() installs the SDK.
tracers: dict[str, trace.Tracer] = {"server": TRACER}


def enabled() -> bool:
    """Whether this process records spans."""
    return state["enabled"]


def wanted(flag: bool, env: Mapping[str, str] | None = None) -> bool:
    """Whether tracing is asked for: the flag, or OTEL_TRACES_EXPORTER naming an exporter; OTEL_SDK_DISABLED wins."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return flag or env.get("OTEL_TRACES_EXPORTER", "").strip().lower() not in ("", "none")


def configure(flag: bool = False, default_service: str = "digitnet") -> bool:
    """Install the SDK's tracer provider and exporter when tracing is asked for; whether it now traces. When the
    `otel` extra is missing, one warning line says so and the process serves without traces."""
    if state["enabled"] or not wanted(flag):
        return state["enabled"]
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        log.warning("tracing was asked for (--otel or OTEL_TRACES_EXPORTER) but the OpenTelemetry SDK is not installed: pip install 'digitnet[otel]'")
        return False
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        exporter = _otlp_exporter()
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not one digitnet knows (otlp, console, none): no traces", kind)
        return False
    # service.name: OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES if set, else ours (not the SDK's unknown_service).
    resource = Resource({"service.name": default_service}).merge(OTELResourceDetector().detect())
    if os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": os.environ["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER(_ARG); parent-based always-on by default
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    for name in HEADER_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # The server spans come from the SDK's tracer itself, not through the API's proxy (a hop per call, sampled or not).
    tracers["server"] = provider.get_tracer("digitnet")
    state["enabled"] = True
    log.info("tracing on: %s exporter, sampler %s", kind, os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"))
    return True


def _otlp_exporter() -> Any:
    """The OTLP exporter over OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL: grpc (the default) or http/protobuf; each reads
    its endpoint, headers and timeout from the standard variables."""
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol.strip().lower().startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter()


def shutdown() -> None:
    """Send the spans still queued (bounded by the exporter's timeout) and stop the exporter's thread."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if state["enabled"] and stop is not None:
        stop()


def trace_carrier(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The W3C trace context among a call's header fields (name, value; names lowercase, a name may repeat), as
    server_span reads it. Repeated tracestate lines are one list, in order (RFC 9110: joined by ','); repeated
    traceparent lines are no traceparent at all, whatever they hold (the field is one value: a new trace starts,
    as the W3C test suite's duplicated traceparent asks)."""
    parents: list[str] = []
    states: list[str] = []
    for name, value in fields:
        if name == "traceparent":
            parents.append(value)
        elif name == "tracestate":
            states.append(value)
    if len(parents) != 1:
        return {}
    return {"traceparent": parents[0], "tracestate": ",".join(states)} if states else {"traceparent": parents[0]}


def server_span(name: str, carrier: Mapping[str, str], attributes: Mapping[str, AttributeValue]) -> tuple[Span, object]:
    """Open a call's server span, the child of the trace context its headers carry (if any: trace_carrier's), and
    make it current: the span and the token that end_server_span() detaches."""
    parent = propagate.extract(carrier) if carrier else None
    span = tracers["server"].start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
    return span, otel_context.attach(trace.set_span_in_context(span))


def end_server_span(span: Span, token: object, attributes: Mapping[str, AttributeValue], ok: bool) -> None:
    """Close a server span with what the call did (status, model), marked an error when it failed."""
    if span.is_recording():
        span.set_attributes(attributes)
        if not ok:
            span.set_status(Status(StatusCode.ERROR))
    span.end()
    otel_context.detach(token)  # type: ignore[arg-type]


class TraceIds(logging.Filter):
    """Adds the current trace and span ids to each log record (as trace_id and span_id, hex as OTLP and Jaeger
    show them), so that a JSON log line joins its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; adds the ids when a span is current."""
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True
