"""The Open Inference Protocol's REST form (KServe V2): JSON tensors, and the binary-tensor extension that
tritonclient.http uses (a JSON header of `Inference-Header-Content-Length` bytes, then raw tensors).

Only the JSON and binary layouts live here; the checks and answers are protocol/tensors.py's, as for gRPC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from digitnet.service.contract.constants import MODEL_VERSION
from digitnet.service.contract.errors import InvalidInput, LimitExceeded, echo
from digitnet.service.protocol.dataplane import InferRequest
from digitnet.service.protocol.tensors import (
    MIN_CONFIDENCE_PARAMETER,
    OutputTensor,
    check_input,
    check_outputs,
    from_raw,
    from_values,
    min_confidence_of,
    raw_bytes,
    raw_size,
    shape_of,
)

#: The header that says how long the JSON part of a binary request or response is.
HEADER_LENGTH = "Inference-Header-Content-Length"
#: A ModelInfer body up to this size (8 images as JSON numbers, or many more as binary tensors) is parsed on
#: the event loop; a larger one on the thread pool, so that a client posting megabytes of JSON cannot stall
#: the other calls, gRPC's included (bench/http_hostile_bench.py).
INLINE_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class RestInferRequest(InferRequest):
    """A decoded REST inference request: what every transport decodes, and how this one wants its answer."""

    id: str
    binary_outputs: frozenset[str]  # outputs to send as raw bytes after the JSON


def parse_infer(body: bytes, header_length: str | None, check_count: Callable[[int], None], max_json_bytes: int) -> RestInferRequest:
    """Decode a REST ModelInfer body (JSON, or JSON then binary tensors); raise InvalidInput for what is not one,
    LimitExceeded for JSON over `max_json_bytes`."""
    json_part, binary = _split(body, header_length)
    if len(json_part) > max_json_bytes:
        # Parsing JSON holds the GIL whichever thread runs it, and every other call waits for it: larger
        # batches travel as binary tensors, which cost a copy, not a parse.
        raise LimitExceeded(
            f"the request's JSON is {len(json_part):,} bytes, over the limit of {max_json_bytes:,} (DIGITNET_HTTP_MAX_JSON_BYTES): "
            "send larger batches as binary tensors (the binary tensor extension) or over gRPC"
        )
    try:
        request = orjson.loads(json_part)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"the request body is not JSON: {err}") from err
    if not isinstance(request, dict):
        raise InvalidInput("the request body must be a JSON object with 'inputs'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(tensor, dict) for tensor in inputs):
        raise InvalidInput("'inputs' must be a list of tensor objects")
    tensor = inputs[0] if len(inputs) == 1 else {}
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        if len(inputs) == 1:
            raise InvalidInput(f"input 'shape' must be a list of whole numbers, got {echo(shape)}")
        shape = []  # no one tensor: check_input names that problem
    datatype = tensor.get("datatype")
    count = check_input([str(t.get("name")) for t in inputs], datatype if isinstance(datatype, str) else "", shape, check_count)
    parameters = _parameters(tensor)
    if "binary_data_size" in parameters:
        size, needed = parameters["binary_data_size"], raw_size(str(datatype), count)
        if type(size) is not int or size != needed or len(binary) != size:  # a whole number: not 3136.0, not true
            raise InvalidInput(f"binary input 'pixels' is {len(binary)} bytes (binary_data_size {echo(size)}); {shape} {datatype} needs {needed}")
        pixels = from_raw(str(datatype), count, binary)
    else:
        pixels = from_values(str(datatype), count, _numbers(tensor.get("data"), str(datatype)), "data")
    request_parameters = _parameters(request)
    outputs = request.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(output, dict) for output in outputs):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'")
    names = check_outputs([str(output.get("name")) for output in outputs])
    binary_default = request_parameters.get("binary_data_output") is True
    binary_outputs = {str(output.get("name")) for output in outputs if _parameters(output).get("binary_data", binary_default) is True}
    if not outputs and binary_default:
        binary_outputs = set(names)
    request_id = request.get("id", "")
    return RestInferRequest(
        id=request_id if isinstance(request_id, str) else echo(request_id),
        pixels=pixels,
        outputs=names,
        binary_outputs=frozenset(binary_outputs),
        min_confidence=min_confidence_of(request_parameters.get(MIN_CONFIDENCE_PARAMETER)),
    )


def encode_infer(request: RestInferRequest, tensors: list[OutputTensor], model_name: str) -> tuple[bytes, dict[str, str]]:
    """The REST ModelInfer response body and its headers: JSON, followed by the binary outputs if any; the model
    named as the request named it (Triton's way)."""
    outputs: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for name, datatype, values in tensors:
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape_of(datatype, values)}
        if name in request.binary_outputs:
            data = raw_bytes(datatype, values)
            output["parameters"] = {"binary_data_size": len(data)}
            binary.append(data)
        else:
            output["data"] = [value.decode("utf-8", "replace") for value in values] if datatype == "BYTES" else values.ravel()
        outputs.append(output)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": MODEL_VERSION, "outputs": outputs}
    if request.id:
        answer["id"] = request.id
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)  # arrays written straight from numpy
    if not binary:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(binary), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} must be a whole number, got {echo(header_length)}") from None
    if not 0 <= length <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {length}, but the body is {len(body)} bytes")
    return body[:length], body[length:]


def _parameters(item: dict[str, Any]) -> dict[str, Any]:
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"'parameters' must be a JSON object, got {echo(parameters)}")
    return parameters


def _numbers(data: object, datatype: str) -> np.ndarray:
    """A tensor's `data` (flat or nested lists of numbers) as a flat array: JSON numbers only (no booleans or
    strings, which numpy would convert), and whole numbers for UINT8 (never a fraction cut off)."""
    if not isinstance(data, list):
        raise InvalidInput(f"input 'pixels' needs its values in 'data' (a list), or binary_data_size; got {echo(data)}")
    allowed = {int} if datatype == "UINT8" else {int, float}
    found = _element_types(data)
    if not found <= allowed:
        names = ", ".join(sorted({"true/false" if kind is bool else "decimals" if kind is float else kind.__name__ for kind in found - allowed}))
        whole = " (whole, 0-255)" if datatype == "UINT8" else ""
        raise InvalidInput(f"input 'pixels' data must be {datatype} numbers{whole}, got {names}")
    try:
        return np.asarray(data, dtype=np.float32 if datatype == "FP32" else np.int64).ravel()
    except (TypeError, ValueError, OverflowError) as err:  # ragged nesting, huge integers
        raise InvalidInput(f"input 'pixels' data must be {datatype} numbers: {err}") from err


def _element_types(data: list[Any]) -> set[type]:
    """The Python types of a nested list's elements (map(type) runs in C: no Python step per value)."""
    found = set(map(type, data))
    if list in found:
        found.discard(list)
        for item in data:
            if type(item) is list:
                found |= _element_types(item)
    return found
