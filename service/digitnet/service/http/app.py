"""The HTTP front door (FastAPI): the Open Inference Protocol's REST API, curl-friendly classify and explain,
health, metrics and the OpenAPI document, over the same classifier and core calls as gRPC.

The Open Inference Protocol's routes convert JSON and binary tensors to and from the data plane's calls
(protocol/dataplane.py), which gRPC calls too.

Usage:
    app = create_app(plane, executor, settings)   # served by http/front.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitnet.service import __version__
from digitnet.service.contract.errors import (
    Cancelled,
    DigitnetError,
    InternalError,
    InvalidInput,
    LimitExceeded,
    echo,
)
from digitnet.service.contract.network import Network
from digitnet.service.contract.picture_style import STRONGEST, css
from digitnet.service.http.errors import HTTP_STATUS, error_response
from digitnet.service.http.oip_rest import HEADER_LENGTH, INLINE_BODY_BYTES, RestInferRequest, encode_infer, parse_infer
from digitnet.service.http.openapi import INFER_PATH, INFER_VERSION_PATH, document
from digitnet.service.protocol.admission import Admission
from digitnet.service.protocol.catalog import as_record
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.protocol.tensors import OutputTensor
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry.observability import count_error, count_prediction

T = TypeVar("T")
#: The page and its assets, served from the package (no CDN: it works offline).
PAGE = Path(__file__).resolve().parent / "page"
#: Paths answered without a token: health, as gRPC health checks are (probes must work whatever the
#: credentials), and the page and its assets, which hold no data (the page's own calls need the token).
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/", "/palette.css")
OPEN_PREFIXES = ("/static/",)


def create_app(plane: DataPlane, executor: Executor, settings: ServerSettings) -> FastAPI:
    """Build the ASGI app over the data plane gRPC answers with too (a reload swaps its model for both)."""
    classifier, readiness = plane.classifier, plane.readiness
    # No /docs or /redoc: their pages load Swagger UI and ReDoc from a CDN, and the server works offline.
    app = FastAPI(
        title="digitnet", version=__version__, description="Handwritten digits with the 784-16-16-10 network.", docs_url=None, redoc_url=None
    )
    max_body_bytes = settings.message_bytes  # the gRPC message limit bounds HTTP bodies alike
    app.add_middleware(_Guard, admission=Admission.from_settings(settings, readiness))

    @app.exception_handler(DigitnetError)
    async def digitnet_error(_request: Request, error: DigitnetError) -> JSONResponse:
        return _refuse(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (no such route, a method it does not take, a malformed multipart form), in
        # the protocol's body rather than FastAPI's {"detail": ...}.
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _refuse(InvalidInput(problems))

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise LimitExceeded(f"the request body is {declared} bytes, over the limit of {max_body_bytes} (DIGITNET_MAX_MESSAGE_BYTES)")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_body_bytes:  # a body sent without a length is bounded as it arrives
                    raise LimitExceeded(f"the request body is over the limit of {max_body_bytes} bytes (DIGITNET_MAX_MESSAGE_BYTES)")
        except ClientDisconnect:  # the client left mid-body: its call, not a server failure
            raise Cancelled("the client went away before its request body arrived") from None
        return b"".join(chunks)

    async def work(inline: bool, function: Callable[..., T], *args: object) -> T:
        """Run on the event loop (cheaper than a thread hop for small work) or on the pool; a bug becomes INTERNAL."""
        try:
            if inline:
                return function(*args)
            return await asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except DigitnetError:
            raise
        except Exception as err:  # a bug: answered INTERNAL with an incident id, never a traceback
            raise InternalError.logged(err, "HTTP") from err

    @app.get("/v2/health/live", tags=["Open Inference Protocol"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["Open Inference Protocol"])
    async def ready() -> JSONResponse:
        return JSONResponse({"ready": readiness.ready}, status_code=200 if readiness.ready else 503)

    for path, route in (("/v2/health/live", live), ("/v2/health/ready", ready)):  # probes that ask with HEAD
        app.add_api_route(path, route, methods=["HEAD"], include_in_schema=False)

    @app.get("/v2", tags=["Open Inference Protocol"])
    async def server_metadata() -> dict[str, Any]:
        return plane.server_metadata()

    @app.get("/v2/models/{name}/versions/{version}", tags=["Open Inference Protocol"])
    async def model_version_metadata(name: str, version: str) -> dict[str, Any]:
        return plane.model_metadata(name, version)

    @app.get("/v2/models/{name}", tags=["Open Inference Protocol"])
    async def model_metadata(name: str) -> dict[str, Any]:
        return plane.model_metadata(name, "")

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["Open Inference Protocol"])
    async def model_version_ready(name: str, version: str) -> JSONResponse:
        ready = plane.model_ready(name, version)
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)

    @app.get("/v2/models/{name}/ready", tags=["Open Inference Protocol"])
    async def model_ready(name: str) -> JSONResponse:
        return await model_version_ready(name, "")

    @app.get("/v2/models/{name}/config", tags=["Open Inference Protocol"])
    async def model_config(name: str) -> dict[str, Any]:
        """Triton's model configuration extension: the ModelConfig gRPC answers, as JSON."""
        return as_record(plane.model_config(name, ""))

    @app.get("/v2/models/{name}/stats", tags=["Open Inference Protocol"])
    async def model_stats(name: str) -> dict[str, Any]:
        """Triton's statistics extension: the ModelStatistics gRPC answers, as JSON."""
        return as_record(plane.model_statistics(name, ""))

    @app.post("/v2/repository/index", tags=["Open Inference Protocol"])
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        """Triton's model repository extension: every model and its state (the body may ask {"ready": true})."""
        asked = await body_of(request)
        ready_only = bool(asked) and _ready_only(asked)
        return [as_record(model) for model in plane.repository_index(ready_only).models]

    async def infer(request: Request) -> Response:
        """ModelInfer: JSON tensors, or the binary-tensor extension (Inference-Header-Content-Length)."""
        name, version = request.path_params["name"], request.path_params.get("version", "")
        plane.check_model(name, version)  # before the body is read
        received = await body_of(request)
        header = request.headers.get(HEADER_LENGTH)
        return await plane.infer(
            name,
            version,
            len(received) <= INLINE_BODY_BYTES,
            lambda: parse_infer(received, header, plane.check_count, settings.http_max_json_bytes),
            _infer_response,
            plane.deadline(),
        )

    # Plain Starlette routes for the protocol's hot path: FastAPI's per-request dependency solving cost a third
    # of the throughput (bench/rest_bench.py). The OpenAPI document describes them by hand (below).
    app.router.add_route(INFER_PATH, infer, methods=["POST"], include_in_schema=False)
    app.router.add_route(INFER_VERSION_PATH, infer, methods=["POST"], include_in_schema=False)

    @app.post("/v1/classify", tags=["digitnet"])
    async def classify(request: Request, min_confidence: float | None = None) -> Any:
        """Classify one image: the body is the image file (PNG, JPEG, ...), or a multipart form with one file.
        Answers as `digitnet predict` does: status (digit, unknown, error), label, confidence, probabilities.
        Without min_confidence, the server's default threshold applies."""
        min_confidence = classifier.threshold(min_confidence)
        name, image = await _image_of(request, await body_of(request), max_body_bytes)
        # An encoded image: decoding it goes to the pool, whatever its size.
        [prediction] = await work(False, classifier.classify, [image], min_confidence, plane.deadline())
        count_prediction(prediction)
        if prediction.error is not None:  # the same row as predict's, with the error's HTTP status
            return JSONResponse({"path": name, **prediction.record()}, status_code=HTTP_STATUS[prediction.error.code])
        return {"path": name, **prediction.record()}

    @app.post("/v1/explain", tags=["digitnet"])
    async def explain(request: Request, min_confidence: float | None = None) -> dict[str, object]:
        """Classify one image and return what the network saw: the 784 input pixels, both hidden layers."""
        min_confidence = classifier.threshold(min_confidence)
        name, image = await _image_of(request, await body_of(request), max_body_bytes)
        explanation = await work(False, classifier.explain, image, min_confidence, plane.deadline())
        count_prediction(explanation.prediction)
        return {
            "path": name,
            **explanation.prediction.record(),
            "input": explanation.input.tolist(),
            "hidden1": explanation.hidden1.tolist(),
            "hidden2": explanation.hidden2.tolist(),
        }

    networks: dict[str, dict[str, Any]] = {}  # by model sha256: a reload brings new weights

    @app.get("/v1/network", tags=["digitnet"])
    async def weights() -> dict[str, Any]:
        """The served network's weights [in][out] and biases per layer, its hidden activation, and the server's
        default min_confidence (for the page)."""
        model = classifier.model
        if model.sha256 not in networks:
            network = Network.from_bytes(model.data, "the served model")
            networks.clear()
            networks[model.sha256] = {
                "activation": network.activation,
                "weights": [np.round(w.astype(np.float64), 5).tolist() for w in network.weights],
                "biases": [np.round(b.astype(np.float64), 5).tolist() for b in network.biases],
                "sha256": model.sha256,
                "strongest": STRONGEST,  # connections drawn into each neuron, as the pictures draw them
            }
        return {**networks[model.sha256], "min_confidence": classifier.min_confidence}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        """Draw a digit and watch the network answer."""
        return FileResponse(PAGE / "index.html")

    @app.get("/palette.css", include_in_schema=False)
    async def palette() -> Response:
        """The pictures' colours (contract/picture_style.py), so that the page and `digitnet explain` agree."""
        return Response(css(), media_type="text/css")

    app.mount("/static", StaticFiles(directory=PAGE), name="static")

    app.openapi = lambda: document(app)  # type: ignore[method-assign]

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics, as on the metrics port (--metrics-port)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class _Guard:
    """What every call passes before its body is read (the admission policy gRPC applies too: token, draining,
    the bound on requests in flight; health and the page stay open), and what every call is counted in.
    Plain ASGI: Starlette's BaseHTTPMiddleware costs a task per request."""

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
        try:
            if not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
                try:
                    self.admission.admit([value for name, value in scope["headers"] if name == b"authorization"])
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
            self.admission.record(call, f"http {call}", str(status[0]), status[0] == 200, time.perf_counter() - started, cancelled)


def _call_name(path: str) -> str:
    """The call an HTTP path makes, as gRPC names it (a few names, whatever paths clients send: labels must stay few)."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "ModelInfer"
    return _CALL_NAMES.get(path, "other")


_CALL_NAMES = {"/v1/classify": "Classify", "/v1/explain": "Explain", "/v2/health/live": "Live", "/v2/health/ready": "Ready"}


def _infer_response(request: RestInferRequest, tensors: list[OutputTensor]) -> Response:
    body, headers = encode_infer(request, tensors)
    return Response(body, headers=headers)


def _ready_only(body: bytes) -> bool:
    """The repository index request's `ready` field (Triton: only the models ready to serve)."""
    try:
        asked = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"the request body is not JSON: {err}") from err
    ready = asked.get("ready", False) if isinstance(asked, dict) else None
    if not isinstance(ready, bool):
        raise InvalidInput(f"'ready' must be true or false, got {echo(ready)}")
    return ready


def _refuse(error: DigitnetError) -> JSONResponse:
    count_error(error)
    return error_response(error)


async def _image_of(request: Request, body: bytes, max_bytes: int) -> tuple[str, bytes]:
    """The uploaded image and its name: a multipart form's one file, else the body itself ("-")."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):

        async def receive() -> dict[str, Any]:  # the body is read already (and bounded): parse it from memory
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, receive).form(max_files=1, max_fields=8, max_part_size=max_bytes)
        files = [value for value in form.values() if isinstance(value, UploadFile)]
        if len(files) != 1:
            raise InvalidInput(f"a multipart request needs exactly one file, got {len(files)}")
        return files[0].filename or "-", await files[0].read()
    if not body:
        raise InvalidInput("the request has no image: send the file as the body (curl --data-binary @seven.png) or as a multipart form")
    return "-", body
