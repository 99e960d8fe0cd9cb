"""The HTTP front door (FastAPI): the route table (http/routes.py) behind the admission guard (http/guard.py),
with every error answered as `{"error": ...}` and its status, and the OpenAPI document (http/openapi.py).

Usage:
    app = create_app(plane, executor, settings)   # served by http/front.py
"""

from __future__ import annotations

import inspect
from concurrent.futures import Executor
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from digitnet.service import __version__
from digitnet.service.contract.errors import DigitnetError, InvalidInput
from digitnet.service.http.errors import error_response
from digitnet.service.http.guard import Guard
from digitnet.service.http.openapi import document
from digitnet.service.http.routes import PAGE, ROUTES, Routes
from digitnet.service.protocol.admission import Admission
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry.observability import count_error

#: FastAPI's own OpenTelemetry spans (its recent versions) start as soon as a tracer provider is set: a second server
#: span per request beside the guard's, and operation spans, costing REST throughput even with every trace
#: unsampled. The guard's span is the call's, as on gRPC; an older FastAPI has no such parameter (nor spans).
_NO_FASTAPI_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}} if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {}
)


def create_app(plane: DataPlane, executor: Executor, settings: ServerSettings) -> FastAPI:
    """Build the ASGI app over the data plane gRPC answers with too (a reload swaps its model for both)."""
    # No /docs or /redoc: their pages load Swagger UI and ReDoc from a CDN, and the server works offline.
    app = FastAPI(
        title="digitnet",
        version=__version__,
        description="Handwritten digits with the 784-16-16-10 network.",
        docs_url=None,
        redoc_url=None,
        **_NO_FASTAPI_TELEMETRY,
    )
    app.add_middleware(Guard, admission=Admission.from_settings(settings, plane.readiness, plane.payloads))
    app.exception_handler(DigitnetError)(_digitnet_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_invalid_parameters)
    routes = Routes(plane, executor, settings)
    for route in ROUTES:
        handler = getattr(routes, route.handler)
        if route.plain:
            app.router.add_route(route.path, handler, methods=list(route.methods), include_in_schema=False)
        else:
            tags: list[str | Enum] = [*route.tags]
            app.add_api_route(route.path, handler, methods=list(route.methods), tags=tags, include_in_schema=bool(tags))
    app.mount("/static", StaticFiles(directory=PAGE), name="static")
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    return app


async def _digitnet_error(_request: Request, error: DigitnetError) -> JSONResponse:
    count_error(error)
    return error_response(error)


async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
    # Starlette's own refusals (no such route, a method it does not take, a malformed multipart form), in the
    # protocol's body rather than FastAPI's {"detail": ...}.
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def _invalid_parameters(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return await _digitnet_error(_request, InvalidInput(problems))
