"""The HTTP routes: each a method of Routes, answered over the data plane and the classifier gRPC uses too,
and ROUTES, the table that says which path and method each answers (http/app.py registers it).

The Open Inference Protocol's routes only convert JSON and binary tensors to and from the data plane's calls
(protocol/dataplane.py); /v1/classify and /v1/explain are curl-friendly forms of digitnet.v1's Classify and
Explain; the rest serve the page, its colours and the network's weights, and Prometheus metrics.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from digitnet.service.contract.errors import Cancelled, DigitnetError, InternalError, InvalidInput, LimitExceeded, echo
from digitnet.service.contract.network import Network
from digitnet.service.contract.picture_style import STRONGEST, css
from digitnet.service.http.errors import HTTP_STATUS
from digitnet.service.http.oip_rest import HEADER_LENGTH, INLINE_BODY_BYTES, RestInferRequest, encode_infer, parse_infer
from digitnet.service.http.openapi import INFER_PATH, INFER_VERSION_PATH
from digitnet.service.inference.classifier import Deadline, offload
from digitnet.service.protocol.catalog import as_record
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.protocol.tensors import OutputTensor
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry.observability import count_prediction
from digitnet.service.telemetry.payloads import note_answers, note_inputs

T = TypeVar("T")
#: The page and its assets, served from the package (no CDN: it works offline).
PAGE = Path(__file__).resolve().parent / "page"
OIP, DIGITNET = ("Open Inference Protocol",), ("digitnet",)


class Routes:
    """Every HTTP route's handler, over one data plane; each can be called on its own (tests do)."""

    def __init__(self, plane: DataPlane, executor: Executor, settings: ServerSettings) -> None:
        self.plane = plane
        self._executor = executor
        self._max_body_bytes = settings.message_bytes  # the gRPC message limit bounds HTTP bodies alike
        self._max_json_bytes = settings.http_max_json_bytes
        self._networks: dict[str, dict[str, Any]] = {}  # by model sha256: a reload brings new weights

    # The Open Inference Protocol

    async def live(self) -> dict[str, bool]:
        return {"live": self.plane.live()}

    async def ready(self) -> JSONResponse:
        ready = self.plane.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def server_metadata(self) -> dict[str, Any]:
        return self.plane.server_metadata()

    async def model_metadata(self, name: str) -> dict[str, Any]:
        return self.plane.model_metadata(name, "")

    async def model_version_metadata(self, name: str, version: str) -> dict[str, Any]:
        return self.plane.model_metadata(name, version)

    async def model_ready(self, name: str) -> JSONResponse:
        return await self.model_version_ready(name, "")

    async def model_version_ready(self, name: str, version: str) -> JSONResponse:
        ready = self.plane.model_ready(name, version)
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)

    async def model_config(self, name: str) -> dict[str, Any]:
        """Triton's model configuration extension: the ModelConfig gRPC answers, as JSON."""
        return as_record(self.plane.model_config(name, ""))

    async def model_stats(self, name: str) -> dict[str, Any]:
        """Triton's statistics extension: the ModelStatistics gRPC answers, as JSON."""
        return as_record(self.plane.model_statistics(name, ""))

    async def all_stats(self) -> dict[str, Any]:
        """Triton's statistics extension for every loaded model (GET /v2/models/stats: what tritonclient asks when
        it names no model)."""
        return as_record(self.plane.model_statistics("", ""))

    async def repository_index(self, request: Request) -> list[dict[str, Any]]:
        """Triton's model repository extension: every model and its state (the body may ask {"ready": true})."""
        asked = await self.body_of(request)
        return [as_record(model) for model in self.plane.repository_index(bool(asked) and _ready_only(asked)).models]

    async def load(self, name: str, request: Request) -> dict[str, Any]:
        """Load (or reload) the repository's model `name` from its file; the others keep serving meanwhile."""
        await self.plane.load(name, _parameters_of(await self.body_of(request)))
        return {"name": name, "load": True}

    async def unload(self, name: str, request: Request) -> dict[str, Any]:
        """Stop serving the model `name` (calls already running finish; the last model cannot be unloaded)."""
        await self.plane.unload(name, _parameters_of(await self.body_of(request)))
        return {"name": name, "unload": True}

    async def infer(self, request: Request) -> Response:
        """ModelInfer: JSON tensors, or the binary-tensor extension (Inference-Header-Content-Length)."""
        name, version = request.path_params["name"], request.path_params.get("version", "")
        self.plane.model(name, version)  # before the body is read
        received = await self.body_of(request)
        header = request.headers.get(HEADER_LENGTH)
        return await self.plane.infer(
            name,
            version,
            len(received) <= INLINE_BODY_BYTES,
            lambda: parse_infer(received, header, self.plane.check_count, self._max_json_bytes),
            lambda decoded, tensors: _infer_response(decoded, tensors, name),
            self.plane.deadline(),
        )

    # digitnet's own

    async def classify(self, request: Request, min_confidence: float | None = None, model: str = "") -> Any:
        """Classify one image: the body is the image file (PNG, JPEG, ...), or a multipart form with one file.
        Answers as `digitnet predict` does: status (digit, unknown, error), label, confidence, probabilities, and
        the model that answered. Without min_confidence, the server's default threshold applies; without model,
        the default model answers."""
        served = self.plane.model(model)
        threshold = served.classifier.threshold(min_confidence)
        name, image = await _image_of(request, await self.body_of(request), self._max_body_bytes)
        note_inputs([image])
        # An encoded image: decoding it goes to the pool, whatever its size.
        deadline = self.plane.deadline()
        [prediction] = await self.work(deadline, served.classifier.classify, [image], threshold, deadline)
        count_prediction(prediction, served.name)
        note_answers([prediction])
        if prediction.error is not None:  # the same row as predict's, with the error's HTTP status
            return JSONResponse({"path": name, **prediction.record(), "model": served.name}, status_code=HTTP_STATUS[prediction.error.code])
        return {"path": name, **prediction.record(), "model": served.name}

    async def explain(self, request: Request, min_confidence: float | None = None, model: str = "") -> dict[str, object]:
        """Classify one image and return what the network saw: the 784 input pixels, both hidden layers (and the
        model that answered: the default one, unless `model` names another)."""
        served = self.plane.model(model)
        threshold = served.classifier.threshold(min_confidence)
        name, image = await _image_of(request, await self.body_of(request), self._max_body_bytes)
        note_inputs([image])
        deadline = self.plane.deadline()
        explanation = await self.work(deadline, served.classifier.explain, image, threshold, deadline)
        count_prediction(explanation.prediction, served.name)
        note_answers([explanation.prediction])
        return {
            "path": name,
            "model": served.name,
            **explanation.prediction.record(),
            "input": explanation.input.tolist(),
            "hidden1": explanation.hidden1.tolist(),
            "hidden2": explanation.hidden2.tolist(),
        }

    async def network(self, model: str = "") -> dict[str, Any]:
        """A served network's weights [in][out] and biases per layer, its name, hidden activation and
        cross-validated accuracy (from its card), the connections the pictures draw into each neuron, and the
        server's default min_confidence (for the page). The default model's, unless `model` names another."""
        served = self.plane.model(model)
        loaded = served.model
        if loaded.sha256 not in self._networks:
            if len(self._networks) > 2 * len(self.plane.repository.served()):  # reloads left old weights behind
                self._networks.clear()
            network = Network.from_bytes(loaded.data, f"the served model {served.name}")
            cross_validation = loaded.card.cross_validation if loaded.card else None
            self._networks[loaded.sha256] = {
                "activation": network.activation,
                "weights": [np.round(w.astype(np.float64), 5).tolist() for w in network.weights],
                "biases": [np.round(b.astype(np.float64), 5).tolist() for b in network.biases],
                "sha256": loaded.sha256,
                "accuracy": cross_validation.accuracy if cross_validation else None,
                "strongest": STRONGEST,
            }
        return {**self._networks[loaded.sha256], "name": served.name, "min_confidence": served.classifier.min_confidence}

    async def page(self) -> FileResponse:
        """Draw a digit and watch the network answer."""
        return FileResponse(PAGE / "index.html")

    async def palette(self) -> Response:
        """The pictures' colours (contract/picture_style.py), so that the page and `digitnet explain` agree."""
        return Response(css(), media_type="text/css")

    async def metrics(self) -> Response:
        """Prometheus metrics, as on the metrics port (--metrics-port)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # What the handlers share

    async def body_of(self, request: Request) -> bytes:
        """The request's body, bounded by the message limit as it arrives; a client that leaves mid-body is CANCELLED."""
        limit = self._max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise LimitExceeded(f"the request body is {declared} bytes, over the limit of {limit} (DIGITNET_MAX_MESSAGE_BYTES)")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:  # a body sent without a length is bounded as it arrives
                    raise LimitExceeded(f"the request body is over the limit of {limit} bytes (DIGITNET_MAX_MESSAGE_BYTES)")
        except ClientDisconnect:  # the client left mid-body: its call, not a server failure
            raise Cancelled("the client went away before its request body arrived") from None
        return b"".join(chunks)

    async def work(self, deadline: Deadline, function: Callable[..., T], *args: object) -> T:
        """Run request work on the thread pool (stopped at its next check if the call is cancelled); a bug becomes
        INTERNAL with an incident id, never a traceback."""
        try:
            return await offload(self._executor, deadline, function, *args)
        except DigitnetError:
            raise
        except Exception as err:
            raise InternalError.logged(err, "HTTP") from err


@dataclass(frozen=True)
class Route:
    """One row of the route table."""

    path: str
    handler: str  # the Routes method that answers
    methods: tuple[str, ...] = ("GET",)
    tags: tuple[str, ...] = ()  # none: left out of the OpenAPI document
    plain: bool = False  # a Starlette route: no FastAPI parameter solving (the hot path; openapi.py documents it)


#: Every route: path, handler, methods and how the OpenAPI document shows it.
ROUTES = (
    Route("/v2/health/live", "live", tags=OIP),
    Route("/v2/health/live", "live", ("HEAD",)),  # probes that ask with HEAD
    Route("/v2/health/ready", "ready", tags=OIP),
    Route("/v2/health/ready", "ready", ("HEAD",)),
    Route("/v2", "server_metadata", tags=OIP),
    Route("/v2/models/stats", "all_stats", tags=OIP),  # before /v2/models/{name}, as in Triton: not a model named "stats"
    Route("/v2/models/{name}/versions/{version}", "model_version_metadata", tags=OIP),
    Route("/v2/models/{name}", "model_metadata", tags=OIP),
    Route("/v2/models/{name}/versions/{version}/ready", "model_version_ready", tags=OIP),
    Route("/v2/models/{name}/ready", "model_ready", tags=OIP),
    Route("/v2/models/{name}/config", "model_config", tags=OIP),
    Route("/v2/models/{name}/stats", "model_stats", tags=OIP),
    Route("/v2/repository/index", "repository_index", ("POST",), tags=OIP),
    Route("/v2/repository/models/{name}/load", "load", ("POST",), tags=OIP),
    Route("/v2/repository/models/{name}/unload", "unload", ("POST",), tags=OIP),
    # Plain Starlette routes for the protocol's hot path: FastAPI's per-request dependency solving cost a third
    # of the throughput (bench/rest_bench.py).
    Route(INFER_PATH, "infer", ("POST",), plain=True),
    Route(INFER_VERSION_PATH, "infer", ("POST",), plain=True),
    Route("/v1/classify", "classify", ("POST",), tags=DIGITNET),
    Route("/v1/explain", "explain", ("POST",), tags=DIGITNET),
    Route("/v1/network", "network", tags=DIGITNET),
    Route("/", "page", ("GET", "HEAD")),
    Route("/palette.css", "palette"),
    Route("/metrics", "metrics"),
)


def _infer_response(request: RestInferRequest, tensors: list[OutputTensor], model_name: str) -> Response:
    body, headers = encode_infer(request, tensors, model_name)
    return Response(body, headers=headers)


def _parameters_of(body: bytes) -> list[str]:
    """The parameter names of a repository load or unload request's body: JSON {"parameters": {...}}, or none."""
    if not body.strip():
        return []
    try:
        asked = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"the request body is not JSON: {err}") from err
    parameters = asked.get("parameters", {}) if isinstance(asked, dict) else None
    if not isinstance(parameters, dict):
        raise InvalidInput(f"'parameters' must be a JSON object, got {echo(parameters)}")
    return [str(name) for name in parameters]


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


class _FormInMemory(MultiPartParser):
    """Starlette's multipart parser, keeping an uploaded file in memory however large: the body is in memory already,
    bounded by the message limit, and spilling a file over 1 MiB to a temporary file (Starlette's default) failed
    where no temporary folder is writable, as on a read-only root filesystem (HTTP 500)."""

    spool_max_size = sys.maxsize


async def _image_of(request: Request, body: bytes, max_bytes: int) -> tuple[str, bytes]:
    """The uploaded image and its name: a multipart form's one file, else the body itself ("-")."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):

        async def parts() -> AsyncGenerator[bytes, None]:  # the body is read already (and bounded): parse it from memory
            yield body

        try:
            form = await _FormInMemory(request.headers, parts(), max_files=1, max_fields=8, max_part_size=max_bytes).parse()
        except MultiPartException as err:
            raise HTTPException(400, err.message) from err  # as Starlette's request.form() refuses a malformed form
        files = [value for value in form.values() if isinstance(value, UploadFile)]
        if len(files) != 1:
            raise InvalidInput(f"a multipart request needs exactly one file, got {len(files)}")
        return files[0].filename or "-", await files[0].read()
    if not body:
        raise InvalidInput("the request has no image: send the file as the body (curl --data-binary @seven.png) or as a multipart form")
    return "-", body
