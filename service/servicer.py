"""The gRPC transport of digitnet.v1 (grpc.aio): decode protos, call the core, encode replies.

Every servicer method is thin: all the work lives in core.Classifier, which knows nothing of gRPC.
Cheap work (MNIST-form pixels: ~40 us) runs inline on the event loop; decoding images and big batches
run on a thread pool (Pillow and onnxruntime release the GIL), so they never stall other requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

import grpc
import numpy as np

from digitnet.service import __version__
from digitnet.service._generated import digitnet_pb2 as pb
from digitnet.service._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.core import Classifier, ImageInput, Outcome, PackedPredictions, Prediction
from digitnet.service.observability import ERRORS, IMAGES
from digitnet.service.errors import (
    ConfigurationError,
    DigitnetError,
    InvalidInput,
    LimitExceeded,
    ModelError,
    NotFound,
    Unavailable,
)

log = logging.getLogger(__name__)

#: The one table from digitnet errors to gRPC status codes (the most specific class wins).
STATUS_CODES: dict[type[DigitnetError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    ModelError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigurationError: grpc.StatusCode.FAILED_PRECONDITION,
}
_OUTCOMES = {Outcome.DIGIT: pb.OUTCOME_DIGIT, Outcome.UNKNOWN: pb.OUTCOME_UNKNOWN, Outcome.ERROR: pb.OUTCOME_ERROR}

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")


def status_for(error: DigitnetError) -> grpc.StatusCode:
    """Return the gRPC status code for a digitnet error."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


def decode_image(image: pb.Image) -> ImageInput | None:
    """Turn an Image proto into the core's input (None when no field of the oneof is set)."""
    kind = image.WhichOneof("data")
    if kind == "encoded":
        return image.encoded
    if kind == "mnist_uint8":
        if len(image.mnist_uint8) == 0:
            raise InvalidInput("mnist_uint8 is empty: expected 784 bytes")
        return np.frombuffer(image.mnist_uint8, dtype=np.uint8)
    if kind == "mnist_float":
        return np.array(image.mnist_float.values, dtype=np.float32)
    return None


def encode_prediction(prediction: Prediction) -> pb.Prediction:
    """Turn a core Prediction into its proto (and count it)."""
    IMAGES.labels(prediction.outcome.value).inc()
    if prediction.error is not None:
        ERRORS.labels(type(prediction.error).__name__).inc()
    message = pb.Prediction(
        outcome=_OUTCOMES[prediction.outcome],
        label=-1 if prediction.label is None else prediction.label,
        confidence=prediction.confidence,
        probabilities=prediction.probabilities.tolist(),
        reason=prediction.reason,
    )
    if prediction.error is not None:
        message.error.code = status_for(prediction.error).name
        message.error.message = str(prediction.error)
    return message


def encode_packed(packed: PackedPredictions) -> pb.PackedPredictions:
    """Turn the fast path's arrays into their proto."""
    unknown = int(np.count_nonzero(packed.labels < 0))
    IMAGES.labels("digit").inc(len(packed.labels) - unknown)
    IMAGES.labels("unknown").inc(unknown)
    message = pb.PackedPredictions(labels=packed.labels.tolist())
    # Setting 10,000 floats through protobuf's Python API costs ~0.3 ms a batch. A packed repeated float
    # is on the wire exactly a little-endian float32 array, so hand protobuf those bytes to parse (in C).
    fields = pb.PackedPredictions.DESCRIPTOR.fields_by_name
    for name, values in (("confidences", packed.confidences), ("probabilities", packed.probabilities)):
        message.MergeFromString(_packed_float_field(fields[name].number, values))
    return message


def _packed_float_field(number: int, values: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload  # wire type 2: length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def grpc_errors(
    method: Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]],
) -> Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]:
    """Abort with the mapped status for DigitnetError; INTERNAL (logged with an incident id) for anything else."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except DigitnetError as err:
            ERRORS.labels(type(err).__name__).inc()
            await context.abort(status_for(err), str(err))
        except Exception:
            ERRORS.labels("InternalError").inc()
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error %s in %s", incident, method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); the server logged it")
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


class DigitClassifierServicer(pb_grpc.DigitClassifierServicer):
    """digitnet.v1.DigitClassifier over a Classifier."""

    def __init__(self, classifier: Classifier, executor: Executor) -> None:
        self.classifier = classifier
        self._executor = executor

    async def _offload(self, function: Callable[..., Response], *args: object) -> Response:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(function, *args))

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        image = _require(decode_image(request.image))
        if isinstance(image, bytes):
            prediction = await self._offload(self.classifier.classify_one, image, request.min_confidence)
        else:
            prediction = self.classifier.classify_one(image, request.min_confidence)
        return pb.ClassifyResponse(prediction=encode_prediction(prediction), id=request.id)

    @grpc_errors
    async def ClassifyBatch(self, request: pb.ClassifyBatchRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyBatchResponse:
        if request.mnist_uint8:
            if request.images:
                raise InvalidInput("set either images or mnist_uint8 in one ClassifyBatchRequest, not both")
            packed = await self._offload(self.classifier.classify_packed, request.mnist_uint8, request.min_confidence)
            return pb.ClassifyBatchResponse(packed=encode_packed(packed))
        images = [_decode_or_error(image) for image in request.images]
        predictions = await self._offload(self.classifier.classify, images, request.min_confidence)
        return pb.ClassifyBatchResponse(predictions=[encode_prediction(p) for p in predictions])

    async def ClassifyStream(
        self, requests: AsyncIterator[pb.ClassifyRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ClassifyResponse]:
        # A bad item becomes an ERROR response; the stream goes on.
        async for request in requests:
            image = _decode_or_error(request.image)
            try:
                if isinstance(image, bytes):
                    [prediction] = await self._offload(self.classifier.classify, [image], request.min_confidence)
                else:
                    [prediction] = self.classifier.classify([image], request.min_confidence)
            except DigitnetError as err:  # e.g. a min_confidence out of range
                prediction = Prediction.failed(err)
            yield pb.ClassifyResponse(prediction=encode_prediction(prediction), id=request.id)

    @grpc_errors
    async def Explain(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ExplainResponse:
        explanation = await self._offload(self.classifier.explain, _require(decode_image(request.image)), request.min_confidence)
        return pb.ExplainResponse(
            prediction=encode_prediction(explanation.prediction),
            input=explanation.input.tolist(),
            hidden1=explanation.hidden1.tolist(),
            hidden2=explanation.hidden2.tolist(),
        )

    @grpc_errors
    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        model = self.classifier.model
        card = model.card
        return pb.ModelInfo(
            card_json=card.to_json() if card else "",
            model_sha256=model.sha256,
            execution_provider=model.provider,
            server_version=__version__,
            layers=card.architecture.layers if card else [],
            activation=card.architecture.activation if card else "",
            parameters=card.architecture.parameters if card else 0,
            model_onnx=model.data if request.include_model else b"",
        )


_NO_IMAGE = "no image given: set one of image.encoded, image.mnist_uint8 or image.mnist_float"


def _require(image: ImageInput | None) -> ImageInput:
    if image is None:
        raise InvalidInput(_NO_IMAGE)
    return image


def _decode_or_error(image: pb.Image) -> ImageInput | DigitnetError:
    try:
        return _require(decode_image(image))
    except DigitnetError as err:
        return err
