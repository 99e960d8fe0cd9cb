"""The Open Inference Protocol (KServe V2) over gRPC, beside digitnet.v1 on the same port.

Model `digitnet`, version `1`: input `pixels`, FP32 (in [0, 1]) or UINT8, shape [-1, 784] or
[-1, 28, 28], already in MNIST form; outputs `probabilities` FP32 [-1, 10] and `label` INT64 [-1] by
default, and on request `hidden1`, `hidden2` FP32 [-1, 16], `outcome` and `reason` BYTES [-1]. A blank
image, or one under the request parameter `min_confidence`, gets label -1 (never a guess), outcome
"unknown" and the reason, as in digitnet.v1. Raw inputs get raw outputs (the Python tritonclient decodes
only those); typed inputs get typed outputs. Triton's ModelConfig, ModelStatistics and RepositoryIndex
are served too (oip_catalog.py).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

import grpc
import numpy as np

from digitnet.service import __version__
from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.contract.constants import (
    IMAGE_SIDE,
    INPUT_NAME,
    MODEL_NAME,
    MODEL_VERSION,
    N_PIXELS,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
)
from digitnet.service.contract.errors import (
    Cancelled,
    DeadlineExceeded,
    DigitnetError,
    InternalError,
    InvalidInput,
    NotFound,
    echo,
)
from digitnet.service.contract.model import ModelOutput
from digitnet.service.contract.pixels import check_float_pixels, scale_uint8
from digitnet.service.contract.results import PackedPredictions
from digitnet.service.grpc.observability import ERRORS, count_answers
from digitnet.service.grpc.oip_catalog import (
    DEFAULT_OUTPUTS,
    OUTPUT_OUTCOME,
    OUTPUT_REASON,
    OUTPUTS,
    metadata,
    model_config,
    model_statistics,
    repository_index,
)
from digitnet.service.grpc.servicer import (
    INLINE_IMAGES,
    deadline_of,
    grpc_errors,
    offload,
    status_for,
)
from digitnet.service.grpc.state import ServingState
from digitnet.service.inference.batching import MicroBatcher
from digitnet.service.inference.classifier import (
    NO_DEADLINE,
    Classifier,
    Deadline,
    check_min_confidence,
    decide_packed,
)
from digitnet.service.inference.statistics import STATISTICS

#: The service name tritonclient and KServe clients call (method paths /inference.GRPCInferenceService/...).
OIP_SERVICE = "inference.GRPCInferenceService"
_DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
_OUTPUT_NAMES = tuple(tensor.name for tensor in OUTPUTS)
#: The request parameter that sets the abstain threshold, as digitnet.v1's min_confidence field.
MIN_CONFIDENCE_PARAMETER = "min_confidence"


def check_model(name: str, version: str) -> None:
    """Refuse any model or version but ours."""
    if name != MODEL_NAME:
        raise NotFound(f"unknown model {echo(name)}: this server serves {MODEL_NAME!r}")
    if version not in ("", MODEL_VERSION):
        raise NotFound(f"unknown version {echo(version)} of {MODEL_NAME!r}: available versions: {MODEL_VERSION}")


def decode_pixels(request: pb.ModelInferRequest, check_count: Callable[[int], None]) -> tuple[np.ndarray, bool]:
    """Return the request's images as float32 [N, 784] in [0, 1], and whether they came raw."""
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        raise InvalidInput(f"expected one input tensor named {INPUT_NAME!r}, got {len(request.inputs)}: {echo([i.name for i in request.inputs[:4]])}")
    tensor = request.inputs[0]
    if tensor.datatype not in _DTYPES:
        raise InvalidInput(f"input {INPUT_NAME!r} must be FP32 or UINT8, got {echo(tensor.datatype) if tensor.datatype else 'no datatype'}")
    shape = list(tensor.shape)
    if not (len(shape) == 2 and shape[1] == N_PIXELS or len(shape) == 3 and shape[1:] == [IMAGE_SIDE, IMAGE_SIDE]) or shape[0] < 1:
        raise InvalidInput(f"input {INPUT_NAME!r} must have shape [N, {N_PIXELS}] or [N, {IMAGE_SIDE}, {IMAGE_SIDE}], got {echo(shape)}")
    count = shape[0]
    check_count(count)
    dtype = _DTYPES[tensor.datatype]
    raw = len(request.raw_input_contents) > 0
    if raw:
        if len(request.raw_input_contents) != 1:
            raise InvalidInput(f"expected 1 raw_input_contents entry, got {len(request.raw_input_contents)}")
        data = request.raw_input_contents[0]
        expected = count * N_PIXELS * dtype.itemsize
        if len(data) != expected:
            raise InvalidInput(f"raw input {INPUT_NAME!r} is {len(data)} bytes; {shape} {tensor.datatype} needs {expected}")
        values = np.frombuffer(data, dtype=dtype)
    else:
        typed = tensor.contents.fp32_contents if tensor.datatype == "FP32" else tensor.contents.uint_contents
        if len(typed) != count * N_PIXELS:
            field = "fp32_contents" if tensor.datatype == "FP32" else "uint_contents"
            raise InvalidInput(f"input {INPUT_NAME!r} has {len(typed)} values in {field}; shape {shape} needs {count * N_PIXELS}")
        values = np.array(typed, dtype=np.float32 if tensor.datatype == "FP32" else np.int64)
    if tensor.datatype == "UINT8":
        if not raw and (values.min() < 0 or values.max() > 255):
            raise InvalidInput("UINT8 values must be 0-255")
        return scale_uint8(values).reshape(count, N_PIXELS), raw
    check_float_pixels(values, f"FP32 input {INPUT_NAME!r}")
    return values.astype(np.float32, copy=False).reshape(count, N_PIXELS), raw


def requested_outputs(request: pb.ModelInferRequest) -> list[str]:
    """The outputs asked for (default: probabilities and label), checked against what the model has."""
    names = [output.name for output in request.outputs] or list(DEFAULT_OUTPUTS)
    unknown = [name for name in names if name not in _OUTPUT_NAMES]
    if unknown:
        raise InvalidInput(f"unknown outputs {echo(unknown)}: this model has {', '.join(_OUTPUT_NAMES)}")
    return names


def min_confidence_of(request: pb.ModelInferRequest) -> float:
    """The request's min_confidence parameter (a double, or an int64 of 0 or 1), 0 when absent."""
    if MIN_CONFIDENCE_PARAMETER not in request.parameters:
        return 0.0
    parameter = request.parameters[MIN_CONFIDENCE_PARAMETER]
    kind = parameter.WhichOneof("parameter_choice")
    if kind not in ("double_param", "int64_param"):
        raise InvalidInput(f"parameter {MIN_CONFIDENCE_PARAMETER!r} must be a number in [0, 1], got a {kind or 'empty parameter'}")
    return check_min_confidence(float(getattr(parameter, kind)))


def encode_response(
    request: pb.ModelInferRequest, output: ModelOutput, answers: PackedPredictions, names: list[str], raw: bool
) -> pb.ModelInferResponse:
    """Build the response, raw when the request was raw."""
    # Only the outputs asked for are built: each costs a few numpy calls, more than the model on one image.
    arrays: dict[str, Callable[[], tuple[str, Any]]] = {
        OUTPUT_PROBABILITIES: lambda: ("FP32", np.ascontiguousarray(answers.probabilities, dtype="<f4")),
        OUTPUT_LABEL: lambda: ("INT64", np.ascontiguousarray(answers.labels, dtype="<i8")),
        OUTPUT_HIDDEN[0]: lambda: ("FP32", np.ascontiguousarray(output.hidden[0], dtype="<f4")),
        OUTPUT_HIDDEN[1]: lambda: ("FP32", np.ascontiguousarray(output.hidden[1], dtype="<f4")),
        OUTPUT_OUTCOME: lambda: ("BYTES", [outcome.value.encode() for outcome in answers.outcomes()]),
        OUTPUT_REASON: lambda: ("BYTES", [reason.encode() for reason in answers.reasons()]),
    }
    response = pb.ModelInferResponse(model_name=MODEL_NAME, model_version=MODEL_VERSION, id=request.id)
    for name in names:
        datatype, values = arrays[name]()
        shape = [len(values)] if datatype == "BYTES" else list(values.shape)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            response.raw_output_contents.append(_bytes_tensor(values) if datatype == "BYTES" else values.tobytes())
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(values)
        elif datatype == "FP32":
            tensor.contents.fp32_contents.extend(values.ravel().tolist())
        else:
            tensor.contents.int64_contents.extend(values.ravel().tolist())
    return response


def _bytes_tensor(values: list[bytes]) -> bytes:
    # The protocol's raw BYTES layout: each element as a 4-byte little-endian length, then its bytes.
    return b"".join(struct.pack("<I", len(value)) + value for value in values)


class OipServicer:
    """inference.GRPCInferenceService over the digitnet core."""

    def __init__(
        self,
        classifier: Classifier,
        state: ServingState,
        executor: Executor,
        batcher: MicroBatcher | None = None,
        request_seconds: float | None = None,
    ) -> None:
        self.classifier = classifier
        self.state = state
        self.batcher = batcher
        self._executor = executor
        self._request_seconds = request_seconds

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.state.ready)

    @grpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.state.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="digitnet", version=__version__, extensions=["model_configuration", "statistics", "model_repository"])

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        check_model(request.name, request.version)
        return metadata()

    @grpc_errors
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        check_model(request.name, request.version)
        batching = self.batcher
        max_size, max_delay_ms = (batching.max_size, 1000 * batching.max_delay) if batching else (None, 0)
        config = model_config(self.classifier.max_request_images, max_size, max_delay_ms)
        return pb.ModelConfigResponse(config=config)

    @grpc_errors
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        if request.name:  # empty: every model, and there is one
            check_model(request.name, request.version)
        return model_statistics(STATISTICS.snapshot())

    @grpc_errors
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        return repository_index(self.state.ready, request.ready)

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        return await self._infer(request, deadline_of(context, self._request_seconds))

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # A failed request answers with error_message; the stream goes on. Each gets the server's time limit anew.
        async for request in requests:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request, deadline_of(context, self._request_seconds)))
            except (Cancelled, DeadlineExceeded):
                raise  # about the whole stream
            except Exception as err:
                error = err if isinstance(err, DigitnetError) else InternalError.logged(err, "ModelStreamInfer")
                ERRORS.labels(type(error).__name__).inc()
                yield pb.ModelStreamInferResponse(error_message=f"{status_for(error).name}: {error}")

    async def _infer(self, request: pb.ModelInferRequest, deadline: Deadline) -> pb.ModelInferResponse:
        check_model(request.model_name, request.model_version)
        if _declared_images(request) > INLINE_IMAGES:  # decoding, running and encoding grow with it: off the loop
            return await offload(self._executor, deadline, self._infer_now, request, deadline)
        if self.batcher is None:
            return self._infer_now(request)
        pixels, raw, names, min_confidence = self._decode(request)
        output = await self.batcher.run(pixels)  # the classifier's forward, merged with concurrent requests'
        return self._encode(request, output, decide_packed(pixels, output.probabilities, min_confidence), names, raw)

    def _infer_now(self, request: pb.ModelInferRequest, deadline: Deadline = NO_DEADLINE) -> pb.ModelInferResponse:
        pixels, raw, names, min_confidence = self._decode(request)
        deadline.check()
        output, answers = self.classifier.classify_pixels(pixels, min_confidence)  # as digitnet.v1's packed path
        return self._encode(request, output, answers, names, raw)

    def _decode(self, request: pb.ModelInferRequest) -> tuple[np.ndarray, bool, list[str], float]:
        pixels, raw = decode_pixels(request, self.classifier.check_count)
        return pixels, raw, requested_outputs(request), min_confidence_of(request)

    def _encode(
        self, request: pb.ModelInferRequest, output: ModelOutput, answers: PackedPredictions, names: list[str], raw: bool
    ) -> pb.ModelInferResponse:
        count_answers(answers)
        return encode_response(request, output, answers, names, raw)


def _declared_images(request: pb.ModelInferRequest) -> int:
    # What the request says it holds; decode_pixels checks that its contents agree before using them.
    shape = list(request.inputs[0].shape) if len(request.inputs) == 1 else []
    return int(shape[0]) if shape else 0


def add_oip_to_server(servicer: OipServicer, server: grpc.aio.Server) -> None:
    """Register the OIP RPCs under /inference.GRPCInferenceService/<Rpc> (see protos/digitnet/oip/v2)."""
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    handlers: dict[str, Any] = {}
    for method in methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        kind: Callable[..., Any] = grpc.stream_stream_rpc_method_handler if method.client_streaming else grpc.unary_unary_rpc_method_handler
        function: Callable[..., Awaitable[Any]] = getattr(servicer, method.name)
        handlers[method.name] = kind(function, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(OIP_SERVICE, handlers),))
