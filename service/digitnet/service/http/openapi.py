"""The OpenAPI document of the HTTP front door, as the routes really answer: what FastAPI derives from them,
plus what it cannot see (the hand-made OIP infer routes, request bodies read by hand, every error status
with the protocol's `{"error": ...}` body), less what never happens (FastAPI's 422: validation errors are
answered 400). tests/service/http/test_openapi.py holds every route to it with schemathesis.

Usage:
    app.openapi = lambda: document(app)       # cached in app.openapi_schema
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from digitnet.service.contract.constants import MODEL_NAME, MODEL_VERSION

INFER_PATH, INFER_VERSION_PATH = "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_WHY = {
    "400": "Invalid input: a malformed request, image or tensor, or a parameter out of range.",
    "401": "No bearer token, or the wrong one (when the server has one).",
    "404": "An unknown model or version.",
    "429": "Over a limit: request body, JSON size, images per request, time per request.",
    "503": "Draining, or too many requests in flight: retry (Retry-After).",
}
_OPEN = {"/v2/health/live", "/v2/health/ready"}  # no token, no bound: answered while the process lives
_BINARY = {"type": "string", "format": "binary"}
_IMAGE_BODY = {
    "required": True,
    "description": "The image file itself (PNG, JPEG, GIF, BMP, TIFF, WebP), or a multipart form with one file.",
    "content": {
        "application/octet-stream": {"schema": _BINARY},
        "image/*": {"schema": _BINARY},
        "multipart/form-data": {"schema": {"type": "object", "properties": {"image": _BINARY}}},
    },
}
_INFER = {
    "tags": ["Open Inference Protocol"],
    "summary": "ModelInfer",
    "description": "JSON tensors (input `pixels`, FP32 or UINT8, [N, 784] or [N, 28, 28]; outputs probabilities, label, hidden1, "
    "hidden2, outcome, reason; parameter min_confidence), or the binary-tensor extension (Inference-Header-Content-Length).",
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}, "application/octet-stream": {"schema": _BINARY}},
    },
    "responses": {"200": {"description": "The outputs asked for."}},
}


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (made once)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path, names in ((INFER_PATH, ["name"]), (INFER_VERSION_PATH, ["name", "version"])):
            parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]
            schema["paths"][path] = {"post": {**_INFER, "parameters": parameters}}
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR
        schema["components"]["schemas"].pop("HTTPValidationError", None)
        schema["components"]["schemas"].pop("ValidationError", None)
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                _describe(path, operation)
        app.openapi_schema = schema
    return app.openapi_schema


def _describe(path: str, operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] == "version":  # every model has one version
            parameter["schema"] = {"type": "string", "enum": [MODEL_VERSION]}
        elif parameter["name"] in ("name", "model"):  # a model of the repository (others: 404)
            parameter["description"] = f"a model's name, as the repository index lists them; {MODEL_NAME!r} is the default model"
            parameter["schema"] = {"type": "string", "example": MODEL_NAME}
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # never sent: invalid parameters are answered 400
    if path in ("/v1/classify", "/v1/explain"):
        operation["requestBody"] = _IMAGE_BODY
    if path.endswith("/ready"):
        responses["503"] = {"description": "Not ready (loading, or draining).", "content": {"application/json": {"schema": {"type": "object"}}}}
    if path in _OPEN:
        return
    errors = ["401", "503"]
    if operation.get("parameters") or "requestBody" in operation:
        errors.insert(0, "400")
    if "{name}" in path or any(parameter["name"] == "model" for parameter in operation.get("parameters", [])):
        errors.append("404")
    if "requestBody" in operation:
        errors.append("429")
    for status in errors:
        responses.setdefault(
            status, {"description": _WHY[status], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        )
