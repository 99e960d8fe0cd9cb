"""The gRPC transport of digitnet.v1 (grpc.aio): decode protos, call the core, encode replies.

Every servicer method is thin: all the work lives in inference.classifier.Classifier, which knows nothing of gRPC,
of the model the request names (the data plane finds it in the repository: protocol/repository.py).
Cheap work (one MNIST-form image: ~40 us) runs inline on the event loop; decoding images and anything
that grows with the request (batches, streams of encoded images) runs on a thread pool (Pillow and
onnxruntime release the GIL), so a large request never stalls the others. Each request's work stops
at its next stage once its deadline passes or its caller goes away.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

import grpc
import numpy as np

from digitnet.service import __version__
from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.api.outcomes import TO_WIRE, wire_label
from digitnet.service.contract.constants import N_PIXELS
from digitnet.service.contract.errors import (
    Cancelled,
    DeadlineExceeded,
    DigitnetError,
    InternalError,
    InvalidInput,
)
from digitnet.service.contract.results import ImageInput, PackedPredictions, Prediction, answer_in_place
from digitnet.service.inference.classifier import Classifier, Deadline, offload
from digitnet.service.inference.image_header import sniff
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.protocol.repository import ServedModel
from digitnet.service.telemetry.observability import count_answers, count_error, count_prediction
from digitnet.service.telemetry.payloads import capturing, note_answers, note_inputs

log = logging.getLogger(__name__)


#: A plain, sound PNG or JPEG (image_header) whose header says at most this many pixels (64x64), in at most
#: INLINE_ENCODED_BYTES, is decoded on the event loop too: ~50 us, less than the hop to a pool thread and
#: back. Anything else goes to the pool, so that no image can stall the other calls (the byte bound caps
#: the scans a progressive JPEG can make libjpeg run).
INLINE_ENCODED_PIXELS = 64 * 64
INLINE_ENCODED_BYTES = 32 * 1024

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")


def status_for(error: DigitnetError) -> grpc.StatusCode:
    """The gRPC status of a digitnet error: the one its class declares (contract/errors.py)."""
    return grpc.StatusCode[error.code]


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
        values = image.mnist_float.values
        if len(values) != N_PIXELS:  # checked before converting: a huge list must not be copied for nothing
            raise InvalidInput(f"mnist_float must hold exactly {N_PIXELS} values (28x28), got {len(values)}")
        return np.array(values, dtype=np.float32)
    return None


def requested_min_confidence(request: pb.ClassifyRequest | pb.ClassifyBatchRequest) -> float | None:
    """The request's own abstain threshold, or None (the server's default) when it sets none."""
    return request.min_confidence if request.HasField("min_confidence") else None


def deadline_of(context: grpc.aio.ServicerContext, limit_seconds: float | None) -> Deadline:
    """The core's Deadline for this call (or stream item): the client's deadline, if it set one, and the server's limit."""
    return Deadline(context.time_remaining(), limit_seconds)


def encode_prediction(prediction: Prediction, model: str) -> pb.Prediction:
    """Turn a core Prediction into its proto (and count it against the model that gave it)."""
    count_prediction(prediction, model)
    message = pb.Prediction(
        outcome=TO_WIRE[prediction.outcome],
        label=wire_label(prediction.label),
        confidence=prediction.confidence,
        probabilities=prediction.probabilities.tolist(),
        reason=prediction.reason,
    )
    if prediction.error is not None:
        message.error.code = status_for(prediction.error).name
        message.error.message = str(prediction.error)
    return message


def encode_packed(packed: PackedPredictions, model: str) -> pb.PackedPredictions:
    """Turn the fast path's arrays into their proto (and count them against the model that gave them)."""
    count_answers(packed, model)
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


def stream_item_error(err: Exception, where: str) -> DigitnetError:
    """The error a failed stream item is answered with in place, so that the stream goes on (a bug: INTERNAL with
    an incident id); a cancellation or a passed deadline is about the whole stream, and is raised again."""
    if isinstance(err, Cancelled | DeadlineExceeded):
        raise err  # grpc ends the stream with the status the client already knows
    return err if isinstance(err, DigitnetError) else InternalError.logged(err, where)


def grpc_errors(
    method: Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]],
) -> Callable[[Servicer, Request, grpc.aio.ServicerContext], Awaitable[Response]]:
    """Abort with the mapped status for DigitnetError; INTERNAL (logged with an incident id) for anything else."""

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except Exception as err:
            error = err if isinstance(err, DigitnetError) else InternalError.logged(err, method.__name__)
            count_error(error)
            await context.abort(status_for(error), str(error))
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


class DigitClassifierServicer(pb_grpc.DigitClassifierServicer):
    """digitnet.v1.DigitClassifier over the models the data plane serves."""

    def __init__(self, plane: DataPlane, executor: Executor, limits: pb.ServerLimits | None = None) -> None:
        self.plane = plane
        self._executor = executor
        self._limits = limits or pb.ServerLimits()
        self._request_seconds = self._limits.max_request_seconds or None

    async def _offload(self, deadline: Deadline, function: Callable[..., Response], *args: object) -> Response:
        return await offload(self._executor, deadline, function, *args)

    @grpc_errors
    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyResponse:
        served = self.plane.model(request.model)
        prediction = await self._classify_one(served.classifier, request, deadline_of(context, self._request_seconds))
        note_answers([prediction])
        return pb.ClassifyResponse(prediction=encode_prediction(prediction, served.name), id=request.id, model=served.name)

    async def _classify_one(self, classifier: Classifier, request: pb.ClassifyRequest, deadline: Deadline) -> Prediction:
        image = _require(decode_image(request.image))
        note_inputs([image])
        if isinstance(image, bytes) and not _small(image):
            return await self._offload(deadline, classifier.classify_one, image, requested_min_confidence(request), deadline)
        return classifier.classify_one(image, requested_min_confidence(request), deadline)  # small: inline

    @grpc_errors
    async def ClassifyBatch(self, request: pb.ClassifyBatchRequest, context: grpc.aio.ServicerContext) -> pb.ClassifyBatchResponse:
        deadline = deadline_of(context, self._request_seconds)
        served = self.plane.model(request.model)
        if request.mnist_uint8:
            if request.images:
                raise InvalidInput("set either images or mnist_uint8 in one ClassifyBatchRequest, not both")
            return await self._offload(deadline, self._classify_packed, served, request)
        self.plane.check_count(len(request.images))
        return await self._offload(deadline, self._classify_batch, served, request, deadline)

    # On the thread pool: unpacking the protos and packing the answers grow with the request, as the classifying does.

    def _classify_packed(self, served: ServedModel, request: pb.ClassifyBatchRequest) -> pb.ClassifyBatchResponse:
        if capturing() and len(request.mnist_uint8) % N_PIXELS == 0:  # a view of the request's bytes, only when the payload log wants it
            note_inputs(np.frombuffer(request.mnist_uint8, dtype=np.uint8).reshape(-1, N_PIXELS))
        packed = served.classifier.classify_packed(request.mnist_uint8, requested_min_confidence(request))
        note_answers(packed)
        return pb.ClassifyBatchResponse(packed=encode_packed(packed, served.name), model=served.name)

    def _classify_batch(self, served: ServedModel, request: pb.ClassifyBatchRequest, deadline: Deadline) -> pb.ClassifyBatchResponse:
        images = [_decode_or_error(image) for image in request.images]
        if capturing():
            note_inputs([image if not isinstance(image, DigitnetError) else b"" for image in images])
        predictions = answer_in_place(images, lambda decoded: served.classifier.classify(decoded, requested_min_confidence(request), deadline))
        note_answers(predictions)
        return pb.ClassifyBatchResponse(predictions=[encode_prediction(p, served.name) for p in predictions], model=served.name)

    async def ClassifyStream(
        self, requests: AsyncIterator[pb.ClassifyRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ClassifyResponse]:
        # A bad item becomes an ERROR response; the stream goes on. Each item gets the server's time limit anew,
        # and may name its own model.
        # With the payload log on, each item is recorded as a call of its own (its id: the stream's and the item's).
        payloads = self.plane.payloads
        number = 0
        async for request in requests:
            name = ""  # no model answered an item whose model is not served
            status = "OK"
            started = time.perf_counter()
            stream = payloads.begin_item(request.id or str(number)) if payloads is not None else None
            try:
                served = self.plane.model(request.model)
                name = served.name
                prediction = await self._classify_one(served.classifier, request, deadline_of(context, self._request_seconds))
                note_answers([prediction])
            except Exception as err:
                status = err.code if isinstance(err, DigitnetError) else InternalError.code  # also when it ends the stream
                prediction = Prediction.failed(stream_item_error(err, "ClassifyStream"))
            finally:
                if payloads is not None:
                    payloads.finish_item(stream, status, status == "OK", time.perf_counter() - started, name)
            number += 1
            yield pb.ClassifyResponse(prediction=encode_prediction(prediction, name), id=request.id, model=name)

    @grpc_errors
    async def Explain(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> pb.ExplainResponse:
        deadline = deadline_of(context, self._request_seconds)
        served = self.plane.model(request.model)
        image = _require(decode_image(request.image))
        note_inputs([image])
        explanation = await self._offload(deadline, served.classifier.explain, image, requested_min_confidence(request), deadline)
        note_answers([explanation.prediction])
        return pb.ExplainResponse(
            prediction=encode_prediction(explanation.prediction, served.name),
            input=explanation.input.tolist(),
            hidden1=explanation.hidden1.tolist(),
            hidden2=explanation.hidden2.tolist(),
            model=served.name,
        )

    @grpc_errors
    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        served = self.plane.model(request.model)
        model = served.model
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
            limits=self._limits,
            name=served.name,
        )


_NO_IMAGE = "no image given: set one of image.encoded, image.mnist_uint8 or image.mnist_float"


def _small(image: bytes) -> bool:
    """Is this a plain PNG or JPEG of at most INLINE_ENCODED_BYTES that promises at most INLINE_ENCODED_PIXELS?"""
    if len(image) > INLINE_ENCODED_BYTES:
        return False
    header = sniff(image)
    return header is not None and header.plain and header.width * header.height <= INLINE_ENCODED_PIXELS


def _require(image: ImageInput | None) -> ImageInput:
    if image is None:
        raise InvalidInput(_NO_IMAGE)
    return image


def _decode_or_error(image: pb.Image) -> ImageInput | DigitnetError:
    try:
        return _require(decode_image(image))
    except DigitnetError as err:
        return err
