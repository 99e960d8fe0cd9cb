"""The Open Inference Protocol (KServe V2) over gRPC, beside digitnet.v1 on the same port.

Only the protocol's messages are read and written here: every call is answered by the data plane
(protocol/dataplane.py), which REST calls too. Raw inputs get raw outputs (the Python tritonclient decodes
only those); typed inputs get typed outputs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.api.names import OIP_SERVICE
from digitnet.service.contract.constants import MODEL_VERSION
from digitnet.service.contract.errors import InvalidInput
from digitnet.service.grpc.servicer import grpc_errors, status_for, stream_item_error
from digitnet.service.protocol.dataplane import DataPlane, InferRequest
from digitnet.service.protocol.tensors import (
    INLINE_IMAGES,
    MIN_CONFIDENCE_PARAMETER,
    OutputTensor,
    check_input,
    check_outputs,
    from_raw,
    from_values,
    min_confidence_of,
    raw_bytes,
    shape_of,
)
from digitnet.service.telemetry.observability import count_error


def decode_request(request: pb.ModelInferRequest, check_count: Callable[[int], None]) -> InferRequest:
    """The request's images as float32 [N, 784] in [0, 1], the outputs asked for and the threshold."""
    names = [tensor.name for tensor in request.inputs]
    tensor = request.inputs[0] if len(request.inputs) == 1 else None
    count = check_input(names, tensor.datatype if tensor else "", list(tensor.shape) if tensor else [], check_count)
    assert tensor is not None  # check_input refuses anything but one tensor
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidInput(f"expected 1 raw_input_contents entry, got {len(request.raw_input_contents)}")
        pixels = from_raw(tensor.datatype, count, request.raw_input_contents[0])
    elif tensor.datatype == "FP32":
        pixels = from_values("FP32", count, np.array(tensor.contents.fp32_contents, dtype=np.float32), "fp32_contents")
    else:
        pixels = from_values("UINT8", count, np.array(tensor.contents.uint_contents, dtype=np.int64), "uint_contents")
    return InferRequest(pixels, check_outputs([output.name for output in request.outputs]), min_confidence_parameter(request))


def min_confidence_parameter(request: pb.ModelInferRequest) -> float | None:
    """The request's min_confidence parameter (a double, or an int64 of 0 or 1); None (the server's default) when absent."""
    if MIN_CONFIDENCE_PARAMETER not in request.parameters:
        return None
    parameter = request.parameters[MIN_CONFIDENCE_PARAMETER]
    kind = parameter.WhichOneof("parameter_choice")
    if kind not in ("double_param", "int64_param"):
        raise InvalidInput(f"parameter {MIN_CONFIDENCE_PARAMETER!r} must be a number in [0, 1], got a {kind or 'empty parameter'}")
    return min_confidence_of(getattr(parameter, kind))


def encode_response(request: pb.ModelInferRequest, tensors: list[OutputTensor]) -> pb.ModelInferResponse:
    """Build the response, raw when the request was raw."""
    # The model as the request named it (Triton's way): a client that asked for `digitnet` finds `digitnet`.
    response = pb.ModelInferResponse(model_name=request.model_name, model_version=MODEL_VERSION, id=request.id)
    raw = bool(request.raw_input_contents)
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
    """inference.GRPCInferenceService: each call converted to and from the data plane's."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @grpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return json_format.ParseDict(self.plane.server_metadata(), pb.ServerMetadataResponse())

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        return json_format.ParseDict(self.plane.model_metadata(request.name, request.version), pb.ModelMetadataResponse())

    @grpc_errors
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self.plane.model_config(request.name, request.version))

    @grpc_errors
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        return self.plane.model_statistics(request.name, request.version)

    @grpc_errors
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        return self.plane.repository_index(request.ready)

    @grpc_errors
    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext) -> pb.RepositoryModelLoadResponse:
        await self.plane.load(request.model_name, list(request.parameters))
        return pb.RepositoryModelLoadResponse()

    @grpc_errors
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self.plane.unload(request.model_name, list(request.parameters))
        return pb.RepositoryModelUnloadResponse()

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        return await self._infer(request, context)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # A failed request answers with error_message; the stream goes on. Each gets the server's time limit anew.
        async for request in requests:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request, context))
            except Exception as err:
                error = stream_item_error(err, "ModelStreamInfer")
                count_error(error)
                yield pb.ModelStreamInferResponse(error_message=f"{status_for(error).name}: {error}")

    async def _infer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        # What the request says it holds decides where it is decoded; decoding checks that its contents agree.
        shape = list(request.inputs[0].shape) if len(request.inputs) == 1 else []
        small = (int(shape[0]) if shape else 0) <= INLINE_IMAGES
        return await self.plane.infer(
            request.model_name,
            request.model_version,
            small,
            lambda: decode_request(request, self.plane.check_count),
            lambda _decoded, tensors: encode_response(request, tensors),
            self.plane.deadline(context.time_remaining()),
        )


def add_oip_to_server(servicer: OipServicer, server: grpc.aio.Server) -> None:
    """Register the OIP RPCs under /inference.GRPCInferenceService/<Rpc> (the contract: protos/inference/oip.proto)."""
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    handlers: dict[str, Any] = {}
    for method in methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        kind: Callable[..., Any] = grpc.stream_stream_rpc_method_handler if method.client_streaming else grpc.unary_unary_rpc_method_handler
        function: Callable[..., Awaitable[Any]] = getattr(servicer, method.name)
        handlers[method.name] = kind(function, request_deserializer=request_class.FromString, response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(OIP_SERVICE, handlers),))
