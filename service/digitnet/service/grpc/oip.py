"""The Open Inference Protocol (KServe V2) over gRPC, beside digitnet.v1 on the same port.

The requests are checked and answered by protocol/tensors.py (the model, its tensors and the answers are
described there, shared with REST); this module reads and writes the protocol's messages. Raw inputs get
raw outputs (the Python tritonclient decodes only those); typed inputs get typed outputs. Triton's
ModelConfig, ModelStatistics and RepositoryIndex are served too (protocol/catalog.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

import grpc
import numpy as np

from digitnet.service import __version__
from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.contract.constants import (
    MODEL_NAME,
    MODEL_VERSION,
)
from digitnet.service.contract.errors import (
    Cancelled,
    DeadlineExceeded,
    DigitnetError,
    InternalError,
    InvalidInput,
)
from digitnet.service.contract.model import ModelOutput
from digitnet.service.contract.results import PackedPredictions
from digitnet.service.grpc.servicer import (
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
    decide_packed,
)
from digitnet.service.inference.statistics import STATISTICS
from digitnet.service.protocol.catalog import (
    metadata,
    model_config,
    model_statistics,
    repository_index,
)
from digitnet.service.protocol.tensors import (
    INLINE_IMAGES,
    MIN_CONFIDENCE_PARAMETER,
    OutputTensor,
    check_input,
    check_model,
    check_outputs,
    from_raw,
    from_values,
    min_confidence_of,
    output_tensors,
    raw_bytes,
    shape_of,
)
from digitnet.service.telemetry.observability import ERRORS, count_answers

#: The service name tritonclient and KServe clients call (method paths /inference.GRPCInferenceService/...).
OIP_SERVICE = "inference.GRPCInferenceService"


def decode_pixels(request: pb.ModelInferRequest, check_count: Callable[[int], None]) -> tuple[np.ndarray, bool]:
    """Return the request's images as float32 [N, 784] in [0, 1], and whether they came raw."""
    names = [tensor.name for tensor in request.inputs]
    tensor = request.inputs[0] if len(request.inputs) == 1 else None
    count = check_input(names, tensor.datatype if tensor else "", list(tensor.shape) if tensor else [], check_count)
    assert tensor is not None  # check_input refuses anything but one tensor
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidInput(f"expected 1 raw_input_contents entry, got {len(request.raw_input_contents)}")
        return from_raw(tensor.datatype, count, request.raw_input_contents[0]), True
    if tensor.datatype == "FP32":
        return from_values("FP32", count, np.array(tensor.contents.fp32_contents, dtype=np.float32), "fp32_contents"), False
    return from_values("UINT8", count, np.array(tensor.contents.uint_contents, dtype=np.int64), "uint_contents"), False


def min_confidence_parameter(request: pb.ModelInferRequest) -> float | None:
    """The request's min_confidence parameter (a double, or an int64 of 0 or 1); None (the server's default) when absent."""
    if MIN_CONFIDENCE_PARAMETER not in request.parameters:
        return None
    parameter = request.parameters[MIN_CONFIDENCE_PARAMETER]
    kind = parameter.WhichOneof("parameter_choice")
    if kind not in ("double_param", "int64_param"):
        raise InvalidInput(f"parameter {MIN_CONFIDENCE_PARAMETER!r} must be a number in [0, 1], got a {kind or 'empty parameter'}")
    return min_confidence_of(getattr(parameter, kind))


def encode_response(request: pb.ModelInferRequest, tensors: list[OutputTensor], raw: bool) -> pb.ModelInferResponse:
    """Build the response, raw when the request was raw."""
    response = pb.ModelInferResponse(model_name=MODEL_NAME, model_version=MODEL_VERSION, id=request.id)
    for name, datatype, values in tensors:
        tensor = response.outputs.add(name=name, datatype=datatype, shape=shape_of(datatype, values))
        if raw:
            response.raw_output_contents.append(raw_bytes(datatype, values))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(values)
        elif datatype == "FP32":
            tensor.contents.fp32_contents.extend(values.ravel().tolist())
        else:
            tensor.contents.int64_contents.extend(values.ravel().tolist())
    return response


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
        answers = decide_packed(pixels, output.probabilities, self.classifier.threshold(min_confidence))
        return self._encode(request, output, answers, names, raw)

    def _infer_now(self, request: pb.ModelInferRequest, deadline: Deadline = NO_DEADLINE) -> pb.ModelInferResponse:
        pixels, raw, names, min_confidence = self._decode(request)
        deadline.check()
        output, answers = self.classifier.classify_pixels(pixels, min_confidence)  # as digitnet.v1's packed path
        return self._encode(request, output, answers, names, raw)

    def _decode(self, request: pb.ModelInferRequest) -> tuple[np.ndarray, bool, list[str], float | None]:
        pixels, raw = decode_pixels(request, self.classifier.check_count)
        return pixels, raw, check_outputs([output.name for output in request.outputs]), min_confidence_parameter(request)

    def _encode(
        self, request: pb.ModelInferRequest, output: ModelOutput, answers: PackedPredictions, names: list[str], raw: bool
    ) -> pb.ModelInferResponse:
        count_answers(answers)
        return encode_response(request, output_tensors(output, answers, names), raw)


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
