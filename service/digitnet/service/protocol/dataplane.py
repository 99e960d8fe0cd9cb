"""The data plane: the Open Inference Protocol's operations over the served models, for every transport.

gRPC (grpc/oip.py) and REST (http/oip_rest.py) only convert their messages to and from these calls, as
MLServer's and KServe's front ends call their one data plane: liveness, readiness, metadata, Triton's
configuration, statistics and repository (index, load, unload), and inference, which finds the model the
request names (protocol/repository.py), decides where the work runs (on the event loop when it is small, else
on the thread pool) and merges concurrent requests for one model into one run when adaptive batching is on,
whichever transport they came by.

Usage:
    plane = DataPlane(repository, executor, readiness, request_seconds=30)
    answer = await plane.infer(name, version, small, decode, encode, deadline)
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from digitnet.service import __version__
from digitnet.service.api._generated import oip_pb2 as pb
from digitnet.service.contract.constants import MODEL_VERSION
from digitnet.service.contract.errors import DigitnetError, InternalError, InvalidInput, LimitExceeded, NotFound, echo
from digitnet.service.contract.model import ModelOutput
from digitnet.service.contract.results import PackedPredictions
from digitnet.service.inference.classifier import Deadline, decide_packed, offload
from digitnet.service.inference.spans import annotate, child
from digitnet.service.protocol.catalog import metadata_record, model_config, model_statistics, repository_index
from digitnet.service.protocol.repository import ModelRepository, ServedModel
from digitnet.service.protocol.tensors import INLINE_IMAGES, OutputTensor, output_tensors
from digitnet.service.telemetry.observability import count_answers
from digitnet.service.telemetry.payloads import PayloadLog, note_answers, note_inputs

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
    """The Open Inference Protocol over the model repository: what both transports call."""

    def __init__(
        self,
        repository: ModelRepository,
        executor: Executor,
        readiness: Readiness,
        *,
        request_seconds: float | None = None,
        payloads: PayloadLog | None = None,
    ) -> None:
        self.repository = repository
        #: The server's payload log (None: off), which both transports' guards record into.
        self.payloads = payloads
        self.readiness = readiness
        self.request_seconds = request_seconds
        self._executor = executor
        self._max_request_images = repository.settings.max_request_images

    def live(self) -> bool:
        """The process answers: always, while it runs."""
        return True

    def ready(self) -> bool:
        """The models are loaded and warmed up, and the server is not draining."""
        return self.readiness.ready

    def server_metadata(self) -> dict[str, Any]:
        """The server's name, version and the protocol extensions it implements."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(SERVER_EXTENSIONS)}

    def model(self, name: str, version: str = "") -> ServedModel:
        """The loaded model a call names ("" or `digitnet`: the default); NOT_FOUND for any other name."""
        return self.repository.resolve(name, version)

    # Metadata, configuration and statistics name the model as the call named it (as Triton's inference answers
    # do): a client that asked for `digitnet` finds `digitnet`.

    def model_metadata(self, name: str, version: str) -> dict[str, Any]:
        """The model's tensors (the batch dimension as -1)."""
        served = self.model(name, version)
        return metadata_record(name or served.name)

    def model_ready(self, name: str, version: str) -> bool:
        """Whether the named model takes requests: loaded, and the server not draining (a repository model that
        is not loaded is not ready; a name the repository does not hold is NOT_FOUND)."""
        try:
            self.model(name, version)
        except NotFound:
            if self.repository.is_known(name) and version in ("", MODEL_VERSION):
                return False
            raise
        return self.readiness.ready

    def model_config(self, name: str, version: str) -> pb.ModelConfig:
        """Triton's ModelConfig, with dynamic batching when adaptive batching is on."""
        served = self.model(name, version)
        batching = served.batcher
        size, delay_ms = (batching.max_size, 1000 * batching.max_delay) if batching else (None, 0.0)
        return model_config(name or served.name, self._max_request_images, size, delay_ms)

    def model_statistics(self, name: str, version: str) -> pb.ModelStatisticsResponse:
        """Triton's ModelStatistics; an empty name asks for every loaded model."""
        named = [(name, self.model(name, version))] if name else [(served.name, served) for served in self.repository.served()]
        return model_statistics([(called, served.statistics.snapshot()) for called, served in named])

    def repository_index(self, ready_only: bool) -> pb.RepositoryIndexResponse:
        """Triton's RepositoryIndex: every model of the repository and its state."""
        return repository_index(self.repository.index(self.readiness.ready), ready_only)

    async def load(self, name: str, parameters: Collection[str] = ()) -> None:
        """Triton's RepositoryModelLoad: load (or reload) the repository's model `name` from its file (Triton's
        parameters, a config or files to load instead, are refused)."""
        _check_parameters(parameters, allowed=())
        await self.repository.load(name)

    async def unload(self, name: str, parameters: Collection[str] = ()) -> None:
        """Triton's RepositoryModelUnload: stop serving the model `name` (unload_dependents is accepted: a model
        here has no dependents)."""
        _check_parameters(parameters, allowed=("unload_dependents",))
        await self.repository.unload(name)

    def check_count(self, count: int) -> None:
        """Refuse a request of more images than the server takes at once (decoders call it before copying)."""
        if count > self._max_request_images:
            raise LimitExceeded(f"batch of {count} images is over the limit of {self._max_request_images}")

    def deadline(self, client_seconds: float | None = None) -> Deadline:
        """A request's deadline: the client's, if it set one, and the server's limit."""
        return Deadline(client_seconds, self.request_seconds)

    async def infer(
        self,
        name: str,
        version: str,
        small: bool,
        decode: Callable[[], Request],
        encode: Callable[[Request, list[OutputTensor]], Answer],
        deadline: Deadline,
    ) -> Answer:
        """Find the model, decode, classify and encode one request. A `small` one (as its transport measures it)
        is decoded on the event loop and, if it holds few images, answered there or through the batcher; the
        rest runs on the thread pool in one hop. A bug is answered INTERNAL with an incident id."""
        served = self.model(name, version)
        try:
            if not small:
                return await self._offload(deadline, self._decode_and_answer, served, decode, encode, deadline)
            request = self._decode(decode)
            note_inputs(request.pixels)
            if len(request.pixels) > INLINE_IMAGES:
                return await self._offload(deadline, self._answer_now, served, request, encode, deadline)
            if served.batcher is None:
                return self._answer_now(served, request, encode, deadline)
            # The classifier's forward, merged with concurrent requests': its span is the run's, under whichever
            # request's context started the batch; this one records the wait (and the run) for each request.
            with child("digitnet.batch.wait", {"digitnet.model": served.name, "digitnet.images": len(request.pixels)}):
                output = await served.batcher.run(request.pixels)
            answers = decide_packed(request.pixels, output.probabilities, served.classifier.threshold(request.min_confidence))
            return self._encode(served, request, output, answers, encode)
        except DigitnetError:
            raise
        except Exception as err:  # a bug: INTERNAL with an incident id, never a traceback to the client
            raise InternalError.logged(err, "ModelInfer") from err

    def _decode_and_answer(
        self, served: ServedModel, decode: Callable[[], Request], encode: Callable[[Request, list[OutputTensor]], Answer], deadline: Deadline
    ) -> Answer:
        request = self._decode(decode)
        note_inputs(request.pixels)
        return self._answer_now(served, request, encode, deadline)

    @staticmethod
    def _decode(decode: Callable[[], Request]) -> Request:
        with child("digitnet.decode"):
            request = decode()
        annotate({"digitnet.images": len(request.pixels)})
        return request

    def _answer_now(
        self, served: ServedModel, request: Request, encode: Callable[[Request, list[OutputTensor]], Answer], deadline: Deadline
    ) -> Answer:
        deadline.check()
        output, answers = served.classifier.classify_pixels(request.pixels, request.min_confidence)
        return self._encode(served, request, output, answers, encode)

    def _encode(
        self,
        served: ServedModel,
        request: Request,
        output: ModelOutput,
        answers: PackedPredictions,
        encode: Callable[[Request, list[OutputTensor]], Answer],
    ) -> Answer:
        count_answers(answers, served.name)
        note_answers(answers)
        with child("digitnet.encode"):
            return encode(request, output_tensors(output, answers, request.outputs))

    async def _offload(self, deadline: Deadline, function: Callable[..., Answer], *args: Any) -> Answer:
        return await offload(self._executor, deadline, function, *args)


def _check_parameters(given: Collection[str], allowed: Collection[str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InvalidInput(f"parameters {echo(unknown[:4])} are not supported: a model is loaded from its file in the repository, as it is")
