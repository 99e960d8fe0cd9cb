"""The data plane: the Open Inference Protocol's operations over the served model, for every transport.

gRPC (grpc/oip.py) and REST (http/oip_rest.py) only convert their messages to and from these calls, as
MLServer's and KServe's front ends call their one data plane: liveness, readiness, metadata, Triton's
configuration, statistics and repository index, and inference, which decides where the work runs (on the
event loop when it is small, else on the thread pool) and merges concurrent requests into one model run
when adaptive batching is on, whichever transport they came by.

Usage:
    plane = DataPlane(classifier, executor, readiness, batcher=None, request_seconds=30)
    answer = await plane.infer(name, version, small, decode, encode, deadline)
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from digitnet.service import __version__
from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.contract.errors import DigitnetError, InternalError
from digitnet.service.contract.model import ModelOutput
from digitnet.service.contract.results import PackedPredictions
from digitnet.service.inference.batching import MicroBatcher
from digitnet.service.inference.classifier import Classifier, Deadline, decide_packed, offload
from digitnet.service.inference.statistics import STATISTICS
from digitnet.service.protocol.catalog import metadata_record, model_config, model_statistics, repository_index
from digitnet.service.protocol.tensors import INLINE_IMAGES, OutputTensor, check_model, output_tensors
from digitnet.service.telemetry.observability import count_answers

Answer = TypeVar("Answer")
Request = TypeVar("Request", bound="InferRequest")
#: The server's name in the protocol's server metadata.
SERVER_NAME = "digitnet"
#: The protocol's extensions this server implements, on both transports alike.
SERVER_EXTENSIONS = ("binary_tensor_data", "model_configuration", "statistics", "model_repository")


class Readiness(Protocol):
    """What the data plane needs to know of the server's state (the server layer's ServingState is one)."""

    ready: bool
    draining_now: bool


@dataclass(frozen=True)
class InferRequest:
    """An inference request as every transport decodes it."""

    pixels: np.ndarray  # float32 [N, 784] in [0, 1]
    outputs: list[str]  # checked names, in the order asked
    min_confidence: float | None  # None: the server's default


class DataPlane:
    """The Open Inference Protocol over one classifier: what both transports call."""

    def __init__(
        self,
        classifier: Classifier,
        executor: Executor,
        readiness: Readiness,
        *,
        batcher: MicroBatcher | None = None,
        request_seconds: float | None = None,
    ) -> None:
        self.classifier = classifier
        self.readiness = readiness
        self.batcher = batcher
        self.request_seconds = request_seconds
        self._executor = executor

    @classmethod
    def build(
        cls, classifier: Classifier, executor: Executor, readiness: Readiness, batch_size: int, batch_delay_ms: float, request_seconds: float
    ) -> DataPlane:
        """The plane as the settings describe it: adaptive batching when a delay is set."""
        batcher = None
        if batch_delay_ms:
            # Looks the model up per batch, so that a reload applies to batched requests too.
            batcher = MicroBatcher(lambda pixels: classifier.forward(pixels), batch_size, batch_delay_ms / 1000)
        return cls(classifier, executor, readiness, batcher=batcher, request_seconds=request_seconds)

    def live(self) -> bool:
        """The process answers: always, while it runs."""
        return True

    def ready(self) -> bool:
        """The model is loaded and warmed up, and the server is not draining."""
        return self.readiness.ready

    def server_metadata(self) -> dict[str, Any]:
        """The server's name, version and the protocol extensions it implements."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(SERVER_EXTENSIONS)}

    def model_metadata(self, name: str, version: str) -> dict[str, Any]:
        """The model's tensors (the batch dimension as -1)."""
        check_model(name, version)
        return metadata_record()

    def model_ready(self, name: str, version: str) -> bool:
        """Whether the named model takes requests."""
        check_model(name, version)
        return self.readiness.ready

    def model_config(self, name: str, version: str) -> pb.ModelConfig:
        """Triton's ModelConfig, with dynamic batching when adaptive batching is on."""
        check_model(name, version)
        batching = self.batcher
        size, delay_ms = (batching.max_size, 1000 * batching.max_delay) if batching else (None, 0.0)
        return model_config(self.classifier.max_request_images, size, delay_ms)

    def model_statistics(self, name: str, version: str) -> pb.ModelStatisticsResponse:
        """Triton's ModelStatistics; an empty name asks for every model (there is one)."""
        if name:
            check_model(name, version)
        return model_statistics(STATISTICS.snapshot())

    def repository_index(self, ready_only: bool) -> pb.RepositoryIndexResponse:
        """Triton's RepositoryIndex: the model and its state."""
        return repository_index(self.readiness.ready, ready_only)

    def check_count(self, count: int) -> None:
        """Refuse a request of more images than the server takes at once (decoders call it before copying)."""
        self.classifier.check_count(count)

    def deadline(self, client_seconds: float | None = None) -> Deadline:
        """A request's deadline: the client's, if it set one, and the server's limit."""
        return Deadline(client_seconds, self.request_seconds)

    def check_model(self, name: str, version: str) -> None:
        """Refuse a model or version this server does not serve (NOT_FOUND), before a request's body is read."""
        check_model(name, version)

    async def infer(
        self,
        name: str,
        version: str,
        small: bool,
        decode: Callable[[], Request],
        encode: Callable[[Request, list[OutputTensor]], Answer],
        deadline: Deadline,
    ) -> Answer:
        """Check the model, decode, classify and encode one request. A `small` one (as its transport measures it)
        is decoded on the event loop and, if it holds few images, answered there or through the batcher; the
        rest runs on the thread pool in one hop. A bug is answered INTERNAL with an incident id."""
        check_model(name, version)
        try:
            if not small:
                return await self._offload(deadline, self._decode_and_answer, decode, encode, deadline)
            request = decode()
            if len(request.pixels) > INLINE_IMAGES:
                return await self._offload(deadline, self._answer_now, request, encode, deadline)
            if self.batcher is None:
                return self._answer_now(request, encode, deadline)
            output = await self.batcher.run(request.pixels)  # the classifier's forward, merged with concurrent requests'
            answers = decide_packed(request.pixels, output.probabilities, self.classifier.threshold(request.min_confidence))
            return self._encode(request, output, answers, encode)
        except DigitnetError:
            raise
        except Exception as err:  # a bug: INTERNAL with an incident id, never a traceback to the client
            raise InternalError.logged(err, "ModelInfer") from err

    def _decode_and_answer(
        self, decode: Callable[[], Request], encode: Callable[[Request, list[OutputTensor]], Answer], deadline: Deadline
    ) -> Answer:
        return self._answer_now(decode(), encode, deadline)

    def _answer_now(self, request: Request, encode: Callable[[Request, list[OutputTensor]], Answer], deadline: Deadline) -> Answer:
        deadline.check()
        output, answers = self.classifier.classify_pixels(request.pixels, request.min_confidence)
        return self._encode(request, output, answers, encode)

    def _encode(
        self, request: Request, output: ModelOutput, answers: PackedPredictions, encode: Callable[[Request, list[OutputTensor]], Answer]
    ) -> Answer:
        count_answers(answers)
        return encode(request, output_tensors(output, answers, request.outputs))

    async def _offload(self, deadline: Deadline, function: Callable[..., Answer], *args: Any) -> Answer:
        return await offload(self._executor, deadline, function, *args)
