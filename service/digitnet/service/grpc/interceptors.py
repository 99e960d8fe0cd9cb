"""The guard every gRPC call goes through: refusal while draining, bearer-token check, a bound on calls in
flight, and per-RPC metrics and debug logs.

Refusals happen before the request message is read: the guard hands grpc a request-streaming handler,
which makes grpc deliver the message only when asked for it, so an unauthenticated or refused 10 MB
request costs neither its memory nor its parsing (a unary handler would be given the whole parsed
message first). grpc.aio's own `maximum_concurrent_rpcs` is not used: in grpcio 1.81 it refuses calls
on an idle server. Health checks, liveness, readiness and reflection stay open: no token, no bound,
answered while draining (Kubernetes probes and load balancers need them).

The guard wraps each method's handler where the services are registered, not as a grpc.aio interceptor:
an interceptor adds its own coroutines to every call before the handler even starts; a wrapped handler
costs a dictionary lookup.

Usage:
    server = grpc.aio.server()
    Guard(Admission.from_settings(settings, readiness)).install(server)   # before any service is added
    add_MyServicer_to_server(servicer, server)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from digitnet.service.contract.errors import DigitnetError, InvalidInput, clip
from digitnet.service.grpc.servicer import status_for
from digitnet.service.inference.statistics import answering_model
from digitnet.service.protocol.admission import Admission
from digitnet.service.telemetry import tracing
from digitnet.service.telemetry.observability import count_error
from digitnet.service.telemetry.payloads import captured_id

log = logging.getLogger("digitnet.requests")

#: Methods that stay open without a token, beyond the bound on calls and while draining: health checks
#: (grpc.health.v1 and the OIP's liveness and readiness, which report draining themselves) and reflection.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/grpc.reflection.",
)


class Guard:
    """Every RPC but the open ones through the admission policy (protocol/admission.py: token, draining, the
    bound on calls in flight, as HTTP applies it); metrics and debug logs for every RPC."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def install(self, server: grpc.aio.Server) -> None:
        """Route every service registered on `server` from now on through the guard, whoever registers it
        (generated add_*_to_server functions, reflection, a test's probe): none can bypass it by accident."""
        register = server.add_generic_rpc_handlers

        def register_guarded(handlers: Sequence[grpc.GenericRpcHandler]) -> None:
            register([_GuardedHandlers(self, handlers)])

        server.add_generic_rpc_handlers = register_guarded

    def _admit(self, context: grpc.aio.ServicerContext, stream: bool) -> None:
        """Take a slot for this call, or raise the refusal; reads only the call's metadata."""
        self._admission.admit(lambda: [str(value).encode() for key, value in context.invocation_metadata() or () if key == "authorization"], stream)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        rpc = method.rsplit("/", 1)[-1]
        is_open = method.startswith(OPEN_PREFIXES)
        is_stream = handler.request_streaming

        def record(context: grpc.aio.ServicerContext, started: float, failed: bool, refused: grpc.StatusCode | None = None) -> str:
            # A refusal is recorded before its abort sets the call's code: it says its own.
            code = refused or context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            elapsed = time.perf_counter() - started
            if log.isEnabledFor(logging.DEBUG):  # before finish() closes the payload capture, whose id it names
                # The payload record's id when the call is captured, so that the log line and the record join.
                request_id = captured_id() or _metadata(context, "x-request-id") or uuid.uuid4().hex[:16]
                model = answering_model()  # the model that answered, as the metrics count it
                log.debug(
                    "rpc %s %s in %.2f ms%s",
                    rpc,
                    name,
                    elapsed * 1e3,
                    f" by {model}" if model else "",
                    extra={"request_id": request_id, "peer": context.peer(), "model": model},
                )
            self._admission.finish(rpc, rpc, name, name == "OK", elapsed, cancelled=name == "CANCELLED")
            return name

        guard = self

        service, _, short = method.lstrip("/").partition("/")
        span_name, span_attributes = method.lstrip("/"), {"rpc.system": "grpc", "rpc.service": service, "rpc.method": short}

        class guarded:  # noqa: N801 - used as `async with guarded(context)`: a plain class costs less per call than a generator
            __slots__ = ("context", "started", "admitted", "span")
            span: tuple[tracing.Span, object] | None  # the server span and its context token, while traced

            def __init__(self, context: grpc.aio.ServicerContext) -> None:
                self.context, self.started, self.admitted, self.span = context, time.perf_counter(), False, None

            async def __aenter__(self) -> None:
                guard._admission.start(lambda: _metadata(self.context, "x-request-id"))
                if tracing.enabled():  # off: no span, no metadata read
                    carrier = tracing.trace_carrier((key, str(value)) for key, value in self.context.invocation_metadata() or ())
                    self.span = tracing.server_span(span_name, carrier, span_attributes)
                try:
                    if not is_open:
                        guard._admit(self.context, is_stream)
                        self.admitted = True
                except DigitnetError as refused:
                    self._end(record(self.context, self.started, True, status_for(refused)))
                    await self.context.abort(status_for(refused), str(refused))

            async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
                try:
                    if isinstance(error, DigitnetError):  # a message that is missing
                        await self.context.abort(status_for(error), str(error))
                    if isinstance(error, DecodeError):  # bytes that are not the method's request message: the client's error
                        invalid = InvalidInput(f"the request is not a valid protobuf message: {clip(str(error), 200)}")
                        count_error(invalid)
                        await self.context.abort(status_for(invalid), str(invalid))
                finally:
                    if self.admitted:
                        guard._admission.release(is_stream)
                    self._end(record(self.context, self.started, error is not None))

            def _end(self, status: str) -> None:
                if self.span is not None:
                    attributes = {"rpc.grpc.status_code": _CODES.get(status, 2), "digitnet.status": status}
                    if model := answering_model():
                        attributes["digitnet.model"] = model
                    tracing.end_server_span(*self.span, attributes, status == "OK")
                    self.span = None

        # A unary request is read only once the call is admitted (see the module docstring), and parsed
        # where a malformed one can be answered INVALID_ARGUMENT.
        defer_body = not handler.request_streaming

        async def request_of(argument: Any, context: grpc.aio.ServicerContext) -> Any:
            if not defer_body:
                return argument  # the request itself, or the request iterator of a streaming method
            request = await context.read()
            if request is grpc.aio.EOF:
                raise InvalidInput("the call carried no request message")
            return request

        behaviour = _behaviour_of(handler)
        wrapped: Any
        if not handler.response_streaming:

            async def wrapped(argument: Any, context: grpc.aio.ServicerContext) -> Any:
                async with guarded(context):
                    return await behaviour(await request_of(argument, context), context)

        elif inspect.isasyncgenfunction(behaviour):

            async def wrapped(argument: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                with _quiet_when_cancelled():
                    async with guarded(context):
                        async for response in behaviour(await request_of(argument, context), context):
                            yield response

        else:  # a coroutine that answers with context.write() (grpc's aio health Watch): keep it one

            async def wrapped(argument: Any, context: grpc.aio.ServicerContext) -> None:
                with _quiet_when_cancelled():
                    async with guarded(context):
                        await behaviour(await request_of(argument, context), context)

        streams_in = handler.request_streaming or defer_body
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(streams_in, handler.response_streaming)]
        return make(wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


#: grpc's status codes by name, as numbers (rpc.grpc.status_code in OpenTelemetry's conventions).
_CODES = {code.name: code.value[0] for code in grpc.StatusCode}


class _GuardedHandlers(grpc.GenericRpcHandler):
    """Finds a method's handler among the registered services and wraps it in the guard, once per method."""

    def __init__(self, guard: Guard, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._guard = guard
        self._handlers = list(handlers)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # only methods that exist: unknown names are not kept

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = next((h for h in (g.service(details) for g in self._handlers) if h is not None), None)
            if handler is None:
                return None  # grpc answers UNIMPLEMENTED
            wrapped = self._wrapped[details.method] = self._guard._wrap(details.method, handler)
        return wrapped


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """The first value of a call's metadata key (text), or None."""
    return next((str(value) for name, value in context.invocation_metadata() or () if name == key), None)


@contextmanager
def _quiet_when_cancelled() -> Iterator[None]:
    """End a stream quietly when grpc cancels it (the client left, or the server stops): nothing went wrong,
    and grpc would otherwise log the cancellation as an unhandled exception with its traceback."""
    try:
        yield
    except asyncio.CancelledError:
        return


def _behaviour_of(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    for attribute in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return behaviour
    raise TypeError(f"handler {handler!r} has no behaviour")
