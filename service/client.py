"""The Python client of digitnet.v1: one reused channel, deadlines, gRPC's own retries on UNAVAILABLE.

Usage:
    with DigitClient("localhost:50051") as client:
        prediction = client.classify(Path("seven.png").read_bytes())
        print(prediction.label, prediction.confidence)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

import grpc
import numpy as np

from digitnet.service._generated import digitnet_pb2 as pb
from digitnet.service._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.constants import N_CLASSES, N_PIXELS
from digitnet.service.core import Explanation, ImageInput, Outcome, PackedPredictions, Prediction
from digitnet.service.errors import DigitnetError
from digitnet.service.state import SERVICE_NAME

_OUTCOMES = {pb.OUTCOME_DIGIT: Outcome.DIGIT, pb.OUTCOME_UNKNOWN: Outcome.UNKNOWN, pb.OUTCOME_ERROR: Outcome.ERROR}


class RemoteError(DigitnetError):
    """The server answered an RPC with an error status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def retry_service_config(attempts: int) -> str:
    """gRPC service config: retry UNAVAILABLE (server draining, restarting, unreachable) with backoff."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": SERVICE_NAME}],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def encode_image(image: ImageInput) -> pb.Image:
    """Wrap bytes (an encoded file) or MNIST-form pixels (uint8 or float32, 784) in an Image proto."""
    if isinstance(image, bytes | bytearray | memoryview):
        return pb.Image(encoded=bytes(image))
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return pb.Image(mnist_uint8=array.tobytes())
    return pb.Image(mnist_float=pb.MnistFloat(values=array.astype(np.float32).ravel().tolist()))


def decode_prediction(message: pb.Prediction) -> Prediction:
    """Turn a Prediction proto back into the core's Prediction."""
    outcome = _OUTCOMES[message.outcome]
    error = RemoteError(message.error.code, message.error.message) if outcome is Outcome.ERROR else None
    return Prediction(
        outcome=outcome,
        label=message.label if outcome is Outcome.DIGIT else None,
        confidence=message.confidence,
        probabilities=np.array(message.probabilities, dtype=np.float32),
        reason=message.reason,
        error=error,
    )


class DigitClient:
    """A client for one server address (host:port, or any gRPC target such as dns:///name:port)."""

    def __init__(self, target: str, timeout: float = 10.0, attempts: int = 4) -> None:
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.enable_retries", 1),
                ("grpc.service_config", retry_service_config(attempts)),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        self._stub = pb_grpc.DigitClassifierStub(self._channel)

    def classify(self, image: ImageInput, min_confidence: float = 0.0) -> Prediction:
        """Classify one image."""
        request = pb.ClassifyRequest(image=encode_image(image), min_confidence=min_confidence)
        return decode_prediction(self._call(self._stub.Classify, request).prediction)

    def classify_batch(self, images: Sequence[ImageInput | DigitnetError], min_confidence: float = 0.0) -> list[Prediction]:
        """Classify many images in one request. Bad images, and items that are already errors (an
        unreadable file, say), come back in place as ERROR predictions."""
        sendable = [image for image in images if not isinstance(image, DigitnetError)]
        answers: Iterator[pb.Prediction] = iter(())
        if sendable:
            request = pb.ClassifyBatchRequest(images=[encode_image(i) for i in sendable], min_confidence=min_confidence)
            answers = iter(self._call(self._stub.ClassifyBatch, request).predictions)
        return [
            Prediction(Outcome.ERROR, reason=str(image), error=image) if isinstance(image, DigitnetError) else decode_prediction(next(answers))
            for image in images
        ]

    def classify_packed(self, pixels: np.ndarray, min_confidence: float = 0.0) -> PackedPredictions:
        """Classify MNIST-form uint8 images [N, 784] (or [N, 28, 28]) through the packed fast path."""
        images = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1, N_PIXELS)
        request = pb.ClassifyBatchRequest(mnist_uint8=images.tobytes(), min_confidence=min_confidence)
        packed = self._call(self._stub.ClassifyBatch, request).packed
        return PackedPredictions(
            labels=np.array(packed.labels, dtype=np.int32),
            confidences=np.array(packed.confidences, dtype=np.float32),
            probabilities=np.array(packed.probabilities, dtype=np.float32).reshape(-1, N_CLASSES),
        )

    def classify_stream(self, images: Iterable[ImageInput], min_confidence: float = 0.0) -> Iterator[Prediction]:
        """Classify a stream of images over one bidirectional RPC, yielding predictions in order."""
        requests = (pb.ClassifyRequest(image=encode_image(i), min_confidence=min_confidence, id=str(n)) for n, i in enumerate(images))
        try:
            for response in self._stub.ClassifyStream(requests):
                yield decode_prediction(response.prediction)
        except grpc.RpcError as err:
            raise RemoteError(err.code().name, err.details() or "") from err

    def explain(self, image: ImageInput, min_confidence: float = 0.0) -> Explanation:
        """Classify one image and return what the network saw."""
        request = pb.ClassifyRequest(image=encode_image(image), min_confidence=min_confidence)
        reply = self._call(self._stub.Explain, request)
        as_array = lambda values: np.array(values, dtype=np.float32)  # noqa: E731
        return Explanation(decode_prediction(reply.prediction), as_array(reply.input), as_array(reply.hidden1), as_array(reply.hidden2))

    def model_info(self, include_model: bool = False) -> pb.ModelInfo:
        """Describe the served model; with include_model, also fetch the ONNX file itself."""
        return self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest(include_model=include_model))

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> object:
        try:
            return method(request, timeout=self.timeout, wait_for_ready=False)
        except grpc.RpcError as err:
            raise RemoteError(err.code().name, err.details() or "") from err

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> DigitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
