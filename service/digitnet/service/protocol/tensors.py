"""An Open Inference Protocol inference request, checked and answered without a transport.

Model `digitnet`, version `1`: input `pixels`, FP32 (in [0, 1]) or UINT8, shape [-1, 784] or [-1, 28, 28],
already in MNIST form; outputs `probabilities` FP32 [-1, 10] and `label` INT64 [-1] by default, and on
request `hidden1`, `hidden2` FP32 [-1, 16], `outcome` and `reason` BYTES [-1]. A blank image, or one under
the request parameter `min_confidence`, gets label -1 (never a guess), outcome "unknown" and the reason,
as in digitnet.v1.

gRPC (grpc/oip.py) and REST (http/oip_rest.py) read their messages into these calls, and encode the
arrays `output_tensors` returns: one set of checks and one set of answers for both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from digitnet.service.contract.constants import (
    IMAGE_SIDE,
    INPUT_NAME,
    N_PIXELS,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
)
from digitnet.service.contract.errors import InvalidInput, echo
from digitnet.service.contract.model import ModelOutput
from digitnet.service.contract.pixels import check_float_pixels, scale_uint8
from digitnet.service.contract.results import PackedPredictions, check_min_confidence
from digitnet.service.protocol.catalog import DEFAULT_OUTPUTS, OUTPUT_OUTCOME, OUTPUT_REASON, OUTPUTS

#: The input datatypes accepted, as their little-endian numpy types (the protocol's raw layout).
DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
OUTPUT_NAMES = tuple(tensor.name for tensor in OUTPUTS)
#: The request parameter that sets the abstain threshold, as digitnet.v1's min_confidence field.
MIN_CONFIDENCE_PARAMETER = "min_confidence"
#: OIP requests of at most this many MNIST-form images are answered on the event loop (~40 us + ~50 us per
#: image of listed values); larger ones go to a thread pool, so that none stalls the other calls.
INLINE_IMAGES = 8
#: An output tensor to encode: name, OIP datatype, values (an array, or a list of bytes for BYTES).
OutputTensor = tuple[str, str, Any]


def check_input(names: Sequence[str], datatype: str, shape: Sequence[int], check_count: Callable[[int], None]) -> int:
    """Check that the request has the one input tensor, of an accepted datatype and shape; return the image count."""
    if len(names) != 1 or names[0] != INPUT_NAME:
        raise InvalidInput(f"expected one input tensor named {INPUT_NAME!r}, got {len(names)}: {echo(list(names[:4]))}")
    if datatype not in DTYPES:
        raise InvalidInput(f"input {INPUT_NAME!r} must be FP32 or UINT8, got {echo(datatype) if datatype else 'no datatype'}")
    shape = list(shape)
    if not (len(shape) == 2 and shape[1] == N_PIXELS or len(shape) == 3 and shape[1:] == [IMAGE_SIDE, IMAGE_SIDE]) or shape[0] < 1:
        raise InvalidInput(f"input {INPUT_NAME!r} must have shape [N, {N_PIXELS}] or [N, {IMAGE_SIDE}, {IMAGE_SIDE}], got {echo(shape)}")
    count = int(shape[0])
    check_count(count)
    return count


def raw_size(datatype: str, count: int) -> int:
    """How many bytes the raw (binary) form of `count` images of this datatype takes."""
    return count * N_PIXELS * DTYPES[datatype].itemsize


def from_raw(datatype: str, count: int, data: bytes) -> np.ndarray:
    """The images of a raw (binary) input tensor as float32 [N, 784] in [0, 1]."""
    if len(data) != raw_size(datatype, count):
        raise InvalidInput(f"raw input {INPUT_NAME!r} is {len(data)} bytes; {_images(count, datatype)} {raw_size(datatype, count)}")
    values = np.frombuffer(data, dtype=DTYPES[datatype])
    if datatype == "UINT8":
        return scale_uint8(values).reshape(count, N_PIXELS)
    check_float_pixels(values, f"FP32 input {INPUT_NAME!r}")
    return values.reshape(count, N_PIXELS)


def from_values(datatype: str, count: int, values: np.ndarray, where: str) -> np.ndarray:
    """The images of an input tensor given as a list of numbers (`where` names that list) as float32 [N, 784]."""
    if values.size != count * N_PIXELS:
        raise InvalidInput(f"input {INPUT_NAME!r} has {values.size} values in {where}; {_images(count, datatype)} {count * N_PIXELS}")
    if datatype == "UINT8":
        if values.min() < 0 or values.max() > 255:
            raise InvalidInput("UINT8 values must be 0-255")
        return scale_uint8(values).reshape(count, N_PIXELS)
    check_float_pixels(values, f"FP32 input {INPUT_NAME!r}")
    return values.astype(np.float32, copy=False).reshape(count, N_PIXELS)


def _images(count: int, datatype: str) -> str:
    return f"1 {datatype} image needs" if count == 1 else f"{count} {datatype} images need"


def check_outputs(names: Sequence[str]) -> list[str]:
    """The outputs asked for (default: probabilities and label), checked against what the model has."""
    wanted = list(names) or list(DEFAULT_OUTPUTS)
    unknown = [name for name in wanted if name not in OUTPUT_NAMES]
    if unknown:
        raise InvalidInput(f"unknown outputs {echo(unknown)}: this model has {', '.join(OUTPUT_NAMES)}")
    return wanted


def min_confidence_of(value: object) -> float | None:
    """The min_confidence parameter's value (a number in [0, 1]; absent: None, the server's default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"parameter {MIN_CONFIDENCE_PARAMETER!r} must be a number in [0, 1], got {echo(value)}")
    return check_min_confidence(float(value))


def output_tensors(output: ModelOutput, answers: PackedPredictions, names: Sequence[str]) -> list[OutputTensor]:
    """The outputs asked for, in the order asked: FP32 and INT64 as little-endian arrays, BYTES as lists of bytes."""
    # Only the outputs asked for are built: each costs a few numpy calls, more than the model on one image.
    build: dict[str, Callable[[], OutputTensor]] = {
        OUTPUT_PROBABILITIES: lambda: (OUTPUT_PROBABILITIES, "FP32", np.ascontiguousarray(answers.probabilities, dtype="<f4")),
        OUTPUT_LABEL: lambda: (OUTPUT_LABEL, "INT64", np.ascontiguousarray(answers.labels, dtype="<i8")),
        OUTPUT_HIDDEN[0]: lambda: (OUTPUT_HIDDEN[0], "FP32", np.ascontiguousarray(output.hidden[0], dtype="<f4")),
        OUTPUT_HIDDEN[1]: lambda: (OUTPUT_HIDDEN[1], "FP32", np.ascontiguousarray(output.hidden[1], dtype="<f4")),
        OUTPUT_OUTCOME: lambda: (OUTPUT_OUTCOME, "BYTES", [outcome.value.encode() for outcome in answers.outcomes()]),
        OUTPUT_REASON: lambda: (OUTPUT_REASON, "BYTES", [reason.encode() for reason in answers.reasons()]),
    }
    return [build[name]() for name in names]


def shape_of(datatype: str, values: Any) -> list[int]:
    """An output tensor's shape."""
    return [len(values)] if datatype == "BYTES" else list(values.shape)


def raw_bytes(datatype: str, values: Any) -> bytes:
    """An output tensor in the protocol's raw (binary) layout: BYTES elements each as a 4-byte little-endian
    length then the bytes; numbers as their little-endian array."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(value)) + value for value in values)
    return values.tobytes()
