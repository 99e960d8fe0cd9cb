"""One gRPC server interceptor for what every call goes through: bearer-token check, refusal while
draining, and per-RPC metrics and debug logs.

It wraps each method's handler once and caches it, so the per-call cost is a dictionary lookup plus
the checks themselves (measured in docs/benchmarks.md).

Usage:
    grpc.aio.server(interceptors=[GuardInterceptor(state, token="s3cret")])
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from digitnet.service.observability import LATENCY, REQUESTS
from digitnet.service.state import ServingState

log = logging.getLogger("digitnet.requests")

#: Methods that stay open without a token and while draining: health checks and reflection.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Token check (when a token is set), UNAVAILABLE while draining, metrics and debug logs for every RPC."""

    def __init__(self, state: ServingState, token: str | None = None) -> None:
        self._state = state
        self._expected = f"Bearer {token}".encode() if token else None
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return handler
            wrapped = self._wrapped[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _check(self, method_is_open: bool, context: grpc.aio.ServicerContext) -> None:
        if method_is_open:
            return
        if self._state.draining_now:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "the server is draining; retry on another replica")
        if self._expected is not None:
            given = dict(context.invocation_metadata() or ()).get("authorization", "")
            if not hmac.compare_digest(str(given).encode(), self._expected):  # constant time: no timing side channel
                raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (metadata: authorization: Bearer <token>)")

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        rpc = method.rsplit("/", 1)[-1]
        is_open = method.startswith(OPEN_PREFIXES)
        latency = LATENCY.labels(rpc)
        counters: dict[str, Any] = {}

        def record(context: grpc.aio.ServicerContext, started: float, failed: bool) -> None:
            code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            counter = counters.get(name) or counters.setdefault(name, REQUESTS.labels(rpc, name))
            elapsed = time.perf_counter() - started
            counter.inc()
            latency.observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                metadata = dict(context.invocation_metadata() or ())
                request_id = metadata.get("x-request-id") or uuid.uuid4().hex[:16]
                log.debug("rpc %s %s in %.2f ms", rpc, name, elapsed * 1e3, extra={"request_id": request_id, "peer": context.peer()})

        for attribute, make, streams_out in _KINDS:
            behaviour = getattr(handler, attribute)
            if behaviour is None:
                continue
            if streams_out:

                async def streaming(request: Any, context: grpc.aio.ServicerContext, behaviour: Any = behaviour) -> AsyncIterator[Any]:
                    started, failed = time.perf_counter(), True
                    try:
                        self._check(is_open, context)
                        async for response in behaviour(request, context):
                            yield response
                        failed = False
                    except _Refused as refused:
                        await context.abort(refused.code, str(refused))
                    finally:
                        record(context, started, failed)

                wrapped: Any = streaming
            else:

                async def unary(request: Any, context: grpc.aio.ServicerContext, behaviour: Any = behaviour) -> Any:
                    started, failed = time.perf_counter(), True
                    try:
                        self._check(is_open, context)
                        response = await behaviour(request, context)
                        failed = False
                        return response
                    except _Refused as refused:
                        await context.abort(refused.code, str(refused))
                    finally:
                        record(context, started, failed)

                wrapped = unary
            return make(wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
        return handler
