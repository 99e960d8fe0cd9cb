"""What every HTTP call passes before its body is read, and what it is counted in: the admission policy gRPC
applies too (protocol/admission.py: token, draining, the bound on requests in flight), with health and the
page left open. Plain ASGI: Starlette's BaseHTTPMiddleware costs a task per request."""

from __future__ import annotations

import time

from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitnet.service.contract.errors import Cancelled, DigitnetError
from digitnet.service.http.errors import HTTP_STATUS, error_response
from digitnet.service.inference.statistics import answering_model
from digitnet.service.protocol.admission import Admission
from digitnet.service.telemetry import tracing

#: Paths answered without a token: health, as gRPC health checks are (probes must work whatever the
#: credentials), and the page and its assets, which hold no data (the page's own calls need the token).
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/", "/palette.css")
OPEN_PREFIXES = ("/static/",)
_TRACE_HEADERS = frozenset(name.encode() for name in tracing.TRACE_HEADERS)


class Guard:
    """The admission policy in front of every route but the open ones; every call counted."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, path, status = time.perf_counter(), scope["path"], [500]

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        admitted = False
        self.admission.start(lambda: _header(scope, b"x-request-id"))
        span = None
        if tracing.enabled():  # off: no span, no header scan
            fields = ((name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"] if name in _TRACE_HEADERS)
            carrier = tracing.trace_carrier(fields)
            route = _route(path)
            attributes = {"http.request.method": scope["method"], "http.route": route, "url.path": path}
            span = tracing.server_span(f"{scope['method']} {route}", carrier, attributes)
        try:
            if not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
                try:
                    self.admission.admit(lambda: [value for name, value in scope["headers"] if name == b"authorization"])
                    admitted = True
                except DigitnetError as refused:
                    await error_response(refused)(scope, receive, counted)
                    return
            await self.app(scope, receive, counted)
        finally:
            if admitted:
                self.admission.release()
            call = _call_name(path)
            # A client that left before its request arrived ran nothing: not an inference in the statistics.
            cancelled = status[0] == HTTP_STATUS[Cancelled.code]
            self.admission.finish(call, f"http {call}", str(status[0]), status[0] == 200, time.perf_counter() - started, cancelled)
            if span is not None:
                done: dict[str, AttributeValue] = {"http.response.status_code": status[0], "digitnet.status": str(status[0])}
                if model := answering_model():
                    done["digitnet.model"] = model
                tracing.end_server_span(*span, done, status[0] < 400)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header, or None."""
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)


def _route(path: str) -> str:
    """The route a path takes, as a span names it: the model's name left out, so that span names stay few."""
    if path.startswith("/v2/models/"):
        return "/v2/models/{model}/" + path.rsplit("/", 1)[-1] if path.count("/") > 3 else "/v2/models/{model}"
    return path if path in _CALL_NAMES or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) else "other"


def _call_name(path: str) -> str:
    """The call an HTTP path makes, as gRPC names it (a few names, whatever paths clients send: labels must stay few)."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "ModelInfer"
    return _CALL_NAMES.get(path, "other")


_CALL_NAMES = {"/v1/classify": "Classify", "/v1/explain": "Explain", "/v2/health/live": "Live", "/v2/health/ready": "Ready"}
