"""Classify and explain digit images on arrays and bytes; the core the server and the batch CLI share.

It knows nothing of gRPC: inputs are bytes (an encoded image) or MNIST-form arrays, outputs plain
dataclasses, and failures DigitnetError subclasses.

Usage:
    classifier = Classifier(Model.load(Path("models/default.onnx")))
    [prediction] = classifier.classify([Path("seven.png").read_bytes()], min_confidence=0.5)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

import numpy as np

from digitnet.service.contract.constants import DEFAULT_MIN_CONFIDENCE, N_CLASSES, N_PIXELS
from digitnet.service.contract.errors import (
    Cancelled,
    DeadlineExceeded,
    DigitnetError,
    InternalError,
    InvalidInput,
    LimitExceeded,
    ModelError,
    TimeLimitExceeded,
)
from digitnet.service.contract.limits import MAX_REQUEST_IMAGES, Limits
from digitnet.service.contract.model import Model, ModelOutput
from digitnet.service.contract.pixels import scale_uint8, too_little_ink
from digitnet.service.contract.results import (
    BLANK_REASON,
    NO_LABEL,
    Explanation,
    ImageInput,
    Outcome,
    PackedPredictions,
    Prediction,
    check_min_confidence,
)
from digitnet.service.inference.preprocess import (
    decode,
    from_float,
    from_uint8,
    mnist_form_many,
    normalise,
)
from digitnet.service.inference.spans import child
from digitnet.service.inference.statistics import InferenceStatistics

_T = TypeVar("_T")


def _abstain(blank: np.ndarray, probabilities: np.ndarray, min_confidence: float) -> PackedPredictions:
    """The one abstain rule: no digit for a blank image, or for a top probability under min_confidence."""
    if blank.any():
        probabilities = np.where(blank[:, None], np.float32(0.0), probabilities)
    labels = probabilities.argmax(axis=1).astype(np.int32)  # the first of equal maxima
    confidences = probabilities.max(axis=1, initial=0.0)
    labels[blank | (confidences < min_confidence)] = NO_LABEL
    return PackedPredictions(labels, confidences, probabilities, min_confidence)


def decide_packed(pixels: np.ndarray, probabilities: np.ndarray, min_confidence: float) -> PackedPredictions:
    """The abstain rule for N images at once (blank: too little ink, contract.pixels.MIN_INK); a model answer
    that is not finite is refused (never a guess)."""
    if not np.all(np.isfinite(probabilities)):
        raise ModelError("the model answered NaN or infinite probabilities")
    return _abstain(too_little_ink(pixels), probabilities, min_confidence)


class Deadline:
    """When a request's work must stop: the client's deadline passed, the server's own time limit for one
    request passed, or the caller went away.

    The transport makes one per request (or stream item); the work checks it between stages (decode,
    preprocess, run), so a request nobody waits for any more gives its thread back instead of finishing,
    and no request holds a thread for longer than the limit, however many cheap-to-send images it holds.
    """

    def __init__(self, seconds: float | None = None, limit_seconds: float | None = None) -> None:
        now = time.monotonic()
        self.expires = None if seconds is None else now + seconds
        self.limit_seconds = limit_seconds
        self._limit_expires = None if limit_seconds is None else now + limit_seconds
        # A plain flag, set by the transport's thread and read by the worker's: an attribute store and load
        # are atomic in Python, and a threading.Event (a lock and a condition) would cost more than a small request.
        self._cancelled = False

    def cancel(self) -> None:
        """Mark the caller as gone (called from the transport's thread)."""
        self._cancelled = True

    def check(self) -> None:
        """Raise Cancelled, DeadlineExceeded or TimeLimitExceeded if the work should stop now."""
        if self._cancelled:
            raise Cancelled("the call was cancelled before its work finished")
        now = time.monotonic()
        if self.expires is not None and now > self.expires:
            raise DeadlineExceeded("the call's deadline passed before its work finished")
        if self._limit_expires is not None and now > self._limit_expires:
            raise TimeLimitExceeded(
                f"the request took over {self.limit_seconds:g} s, the server's limit (DIGITNET_MAX_REQUEST_SECONDS): "
                "send fewer or smaller images per request"
            )


#: The errors a Deadline raises: they end the whole call, never just one of its images.
STOP_WORK = (Cancelled, DeadlineExceeded, TimeLimitExceeded)
#: A deadline that never passes, for callers without one (batch scoring, tests).
NO_DEADLINE = Deadline()


async def offload(executor: Executor, deadline: Deadline, function: Callable[..., _T], *args: object) -> _T:
    """Run request work on the thread pool; if the call is cancelled meanwhile, stop that work at its next check."""
    try:
        # In a copy of the call's context: what the work notes for the call (the payload log's capture) reaches it.
        work = functools.partial(contextvars.copy_context().run, function, *args)
        return await asyncio.get_running_loop().run_in_executor(executor, work)
    except asyncio.CancelledError:
        deadline.cancel()
        raise


def prepare(image: ImageInput, limits: Limits, deadline: Deadline = NO_DEADLINE) -> np.ndarray | None:
    """Turn one input into MNIST-form float32 [784]; None when it is blank."""
    if isinstance(image, bytes | bytearray | memoryview):
        grey = decode(bytes(image), limits)
        deadline.check()  # decoding is the costly stage: do not go on for nobody
        return normalise(grey)
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return from_uint8(array.tobytes())
    if array.dtype == np.float32:
        return from_float(array)
    raise InvalidInput(f"pixels must be uint8 or float32, got {array.dtype}")


def decide(probabilities: np.ndarray, min_confidence: float) -> Prediction:
    """Turn one probability vector into a digit, or UNKNOWN when the top one is below min_confidence."""
    return decide_rows(probabilities[None, :], min_confidence)[0]


def decide_rows(probabilities: np.ndarray, min_confidence: float) -> list[Prediction]:
    """The abstain rule as one Prediction per row of [N, 10] probabilities (of images not blank); a row that
    is not finite fails alone (never a guess from a model that overflowed: warm-up refuses most)."""
    finite = np.isfinite(probabilities).all(axis=1)
    answers = _abstain(~finite, probabilities, min_confidence).predictions()
    if finite.all():
        return answers
    failed = Prediction.failed(ModelError("the model answered NaN or infinite probabilities for this image"))
    return [answer if ok else failed for answer, ok in zip(answers, finite.tolist())]


def _isolated(step: Callable[..., _T], *args: object) -> _T | DigitnetError:
    """Run one image's preprocessing step; its failure becomes its error, so that it costs the other images
    of the request nothing, whatever it is."""
    try:
        return step(*args)
    except STOP_WORK:
        raise  # about the whole call, not this image
    except DigitnetError as err:
        return err
    except Exception as err:  # a bug met on this input: answered INTERNAL, logged with an incident id
        return InternalError.logged(err, "preprocessing")


class Classifier:
    """Preprocess, batch and run images through a model; safe to call from many threads."""

    def __init__(
        self,
        model: Model,
        limits: Limits = Limits(),
        max_request_images: int = MAX_REQUEST_IMAGES,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        statistics: InferenceStatistics | None = None,
    ) -> None:
        self.model = model
        self.limits = limits
        self.max_request_images = max_request_images
        self.min_confidence = check_min_confidence(min_confidence)
        #: The model's runs, as the Open Inference Protocol's ModelStatistics reports them.
        self.statistics = statistics or InferenceStatistics(model.card.name if model.card else "")

    def threshold(self, requested: float | None) -> float:
        """The abstain threshold of a request: its own (checked), or this classifier's default when it set none."""
        return self.min_confidence if requested is None else check_min_confidence(requested)

    def classify(self, images: Sequence[ImageInput], min_confidence: float | None = None, deadline: Deadline = NO_DEADLINE) -> list[Prediction]:
        """Classify images in one model call; a bad image becomes an ERROR prediction in its place, and the
        others are still answered."""
        min_confidence = self.threshold(min_confidence)
        self.check_count(len(images))
        with child("digitnet.preprocess", {"digitnet.images": len(images)}):
            pixels = self._prepare_many(images, deadline)
        return self._run(pixels, min_confidence)

    def _prepare_many(self, images: Sequence[ImageInput], deadline: Deadline) -> list[np.ndarray | None | DigitnetError]:
        pixels: list[np.ndarray | None | DigitnetError] = []
        decoded: dict[int, np.ndarray] = {}  # by position: encoded images, decoded but not yet normalised
        for position, image in enumerate(images):
            deadline.check()
            if isinstance(image, bytes | bytearray | memoryview):
                grey = _isolated(decode, bytes(image), self.limits)
                pixels.append(grey if isinstance(grey, DigitnetError) else None)
                if isinstance(grey, np.ndarray):
                    decoded[position] = grey
            else:
                pixels.append(_isolated(prepare, image, self.limits))
        deadline.check()
        # Images already in MNIST form are recognised all at once; the others are normalised one by one.
        forms = _isolated(mnist_form_many, list(decoded.values()))
        for (position, grey), form in zip(decoded.items(), forms if isinstance(forms, list) else [None] * len(decoded)):
            pixels[position] = form if form is not None else _isolated(normalise, grey)
            deadline.check()
        return pixels

    def forward(self, pixels: np.ndarray) -> ModelOutput:
        """Run the model on float32 pixels [N, 784] in [0, 1], counting the run in the served statistics."""
        started = time.perf_counter()
        with child("digitnet.model.run", {"digitnet.model": self.statistics.model, "digitnet.images": len(pixels)}):
            output = self.model.run(pixels)
        self.statistics.record_execution(len(pixels), time.perf_counter() - started)
        return output

    def check_count(self, count: int) -> None:
        """Refuse a request of more images than the configured limit."""
        if count > self.max_request_images:
            raise LimitExceeded(f"batch of {count} images is over the limit of {self.max_request_images}")

    def classify_one(self, image: ImageInput, min_confidence: float | None = None, deadline: Deadline = NO_DEADLINE) -> Prediction:
        """Classify one image, raising DigitnetError for bad input."""
        min_confidence = self.threshold(min_confidence)
        with child("digitnet.preprocess", {"digitnet.images": 1}):
            pixels = prepare(image, self.limits, deadline)
        deadline.check()
        return self._run([pixels], min_confidence)[0]

    def classify_packed(self, pixels: bytes, min_confidence: float | None = None) -> PackedPredictions:
        """Classify N MNIST-form uint8 images packed row-major (N x 784 bytes) in one vectorised pass."""
        min_confidence = self.threshold(min_confidence)
        if len(pixels) % N_PIXELS:
            raise InvalidInput(f"packed mnist_uint8 must be a multiple of {N_PIXELS} bytes (N x 28 x 28), got {len(pixels)}")
        count = len(pixels) // N_PIXELS
        self.check_count(count)
        images = np.frombuffer(pixels, dtype=np.uint8).reshape(count, N_PIXELS)
        return self.classify_pixels(scale_uint8(images), min_confidence)[1]

    def classify_pixels(self, pixels: np.ndarray, min_confidence: float | None = None) -> tuple[ModelOutput, PackedPredictions]:
        """Classify N MNIST-form images given as float32 [N, 784] in [0, 1] (checked by the caller, e.g.
        contract.pixels.check_float_pixels): the model's whole output, and the answers by the abstain rule."""
        min_confidence = self.threshold(min_confidence)
        self.check_count(len(pixels))
        output = self.forward(pixels)
        return output, decide_packed(pixels, output.probabilities, min_confidence)

    def explain(self, image: ImageInput, min_confidence: float | None = None, deadline: Deadline = NO_DEADLINE) -> Explanation:
        """Classify one image and return the network's view of it."""
        min_confidence = self.threshold(min_confidence)
        with child("digitnet.preprocess", {"digitnet.images": 1}):
            pixels = prepare(image, self.limits, deadline)
        deadline.check()
        blank = pixels is None
        seen = np.zeros(N_PIXELS, dtype=np.float32) if pixels is None else pixels
        out = self.forward(seen[None, :])  # a blank image still has activations worth showing
        prediction = Prediction(Outcome.UNKNOWN, reason=BLANK_REASON) if blank else decide(out.probabilities[0], min_confidence)
        return Explanation(prediction, out.inputs[0], out.hidden[0][0], out.hidden[1][0])

    def _run(self, pixels: Sequence[np.ndarray | None | DigitnetError], min_confidence: float) -> list[Prediction]:
        ready = [p for p in pixels if isinstance(p, np.ndarray)]
        probabilities = (
            self.forward(ready[0][None, :] if len(ready) == 1 else np.stack(ready)).probabilities
            if ready
            else np.zeros((0, N_CLASSES), dtype=np.float32)
        )
        results: list[Prediction] = []
        decided = iter(decide_rows(probabilities, min_confidence))
        for item in pixels:
            if isinstance(item, DigitnetError):
                results.append(Prediction.failed(item))
            elif item is None:
                results.append(Prediction(Outcome.UNKNOWN, reason=BLANK_REASON))
            else:
                results.append(next(decided))
        return results
