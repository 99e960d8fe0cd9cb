"""The payload log: a sampled record of each inference call (its input as the model saw it, its answers, status
and latency), written as JSON Lines to a rotating file and optionally POSTed as CloudEvents, never in a request's way.

A call's guard opens a Capture (`begin`), the handlers note its input and answers into it (`note_inputs`,
`note_answers`: a context variable, so no handler passes it along), and the guard closes it with the call's
status (`finish`). Sampling is decided once per call; a failed call is always recorded. Records go through a
bounded queue to one writer thread, which builds them (base64, preprocessing: none of it on the request's
time); a second bounded queue feeds the CloudEvents sink's thread. A full queue drops the record and counts
it (digitnet_payload_records_dropped_total{reason}). Only the input and the answer are recorded: never a
header, the token or TLS material.

Usage:
    log = PayloadLog(Path("payloads.jsonl"), sample=0.01, sink_url="http://sink/")
    log.begin(lambda: request_id_header)   # in the guard, per call
    note_inputs(pixels); note_answers(packed)   # in the handlers
    log.finish("Classify", "grpc", "OK", True, elapsed)
    stream = log.begin_item(item_id); ...; log.finish_item(stream, "OK", True, elapsed, model)   # each item of a stream
    log.close()
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import random
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from prometheus_client import Counter

from digitnet.service.contract.constants import N_PIXELS
from digitnet.service.contract.limits import Limits
from digitnet.service.contract.results import ImageInput, PackedPredictions, Prediction
from digitnet.service.inference.classifier import prepare
from digitnet.service.inference.statistics import answering_model

log = logging.getLogger(__name__)

InputForm = Literal["pixels", "original"]
_T = TypeVar("_T")
#: The CloudEvents types KServe's inference logger sends: one event for the request, one for the response.
REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"
#: Records waiting for the writer, and events waiting for the sink: past these, records are dropped (and counted).
QUEUE_RECORDS = 1024
SINK_EVENTS = 256

WRITTEN = Counter("digitnet_payload_records_total", "Payload records written, by destination (file, sink).", ["destination"])
DROPPED = Counter(
    "digitnet_payload_records_dropped_total",
    "Payload records dropped, by reason (queue_full: the writer is behind; sink_full: the sink is behind; sink_failed: "
    "the sink refused or did not answer; write_failed: the file could not be written).",
    ["reason"],
)


@dataclass(slots=True)
class Capture:
    """What one call's handlers noted for its payload record."""

    request_id: str
    sampled: bool
    started: float  # seconds since the epoch
    inputs: np.ndarray | Sequence[ImageInput] | None = None  # pixels [N, 784] (uint8, or float32 in [0, 1]), or one input per image
    answers: PackedPredictions | Sequence[Prediction] | None = None


#: The capture of the call running now; None when the payload log is off (each call runs in its own task, and
#: work offloaded to the thread pool runs in a copy of its context: inference.classifier.offload).
CAPTURE: ContextVar[Capture | None] = ContextVar("digitnet_payload_capture", default=None)


def capturing() -> bool:
    """Whether the current call is being captured (for notes that cost something to make)."""
    return CAPTURE.get() is not None


def captured_id() -> str | None:
    """The request id of the call being captured (the client's x-request-id, or the one made for it), if any."""
    capture = CAPTURE.get()
    return capture.request_id if capture is not None else None


def note_inputs(inputs: np.ndarray | Sequence[ImageInput]) -> None:
    """Note the current call's input: MNIST-form pixels [N, 784], or one input per image (encoded bytes or pixels)."""
    capture = CAPTURE.get()
    if capture is not None:
        capture.inputs = inputs


def note_answers(answers: PackedPredictions | Sequence[Prediction]) -> None:
    """Note the current call's answers, one per input image."""
    capture = CAPTURE.get()
    if capture is not None:
        capture.answers = answers


@dataclass(frozen=True, slots=True)
class _Finished:
    capture: Capture
    call: str
    transport: str
    model: str
    status: str
    ok: bool
    elapsed: float


class PayloadLog:
    """The payload log of one serving process: sampling, the writer thread and the optional CloudEvents sink."""

    def __init__(
        self,
        path: Path,
        sample: float = 1.0,
        input_form: InputForm = "pixels",
        max_image_bytes: int = 64 * 1024,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 5,
        sink_url: str = "",
        limits: Limits | None = None,
        seed: int | None = None,
        sink_timeout: float = 2.0,
        queue_records: int = QUEUE_RECORDS,
        sink_events: int = SINK_EVENTS,
    ) -> None:
        self.path, self.sample, self.input_form, self.max_image_bytes = path, sample, input_form, max_image_bytes
        self._limits = limits or Limits()
        self._random = random.Random(seed)  # None: seeded from the OS, once per process
        self._queue: queue.Queue[_Finished | None] = queue.Queue(queue_records)
        self._file = RotatingLines(path, max_bytes, backups)
        self.sink = CloudEventsSink(sink_url, sink_timeout, sink_events) if sink_url else None
        self._thread = threading.Thread(target=self._write_all, name="digitnet-payloads", daemon=True)
        self._thread.start()

    def begin(self, request_id: Callable[[], str | None] = lambda: None) -> None:
        """Open the current call's capture: `request_id` gives the id the client sent (x-request-id), if any."""
        given = request_id()
        CAPTURE.set(Capture(given[:128] if given else uuid.uuid4().hex, self._random.random() < self.sample, time.time()))

    def finish(self, call: str, transport: str, status: str, ok: bool, elapsed: float, model: str | None = None) -> None:
        """Close the current call's capture: queue its record if the call was sampled or failed (never waiting).
        `model` names the model that answered when the call's own (answering_model()) is not the one."""
        capture = CAPTURE.get()
        CAPTURE.set(None)
        if capture is None or (ok and not capture.sampled):
            return
        finished = _Finished(capture, call, transport, answering_model() if model is None else model, status, ok, elapsed)
        try:
            self._queue.put_nowait(finished)
        except queue.Full:
            DROPPED.labels("queue_full").inc()

    def begin_item(self, item_id: str) -> Capture | None:
        """Open the capture of one item of a stream, recorded (and sampled) as a call of its own under the id
        "<the stream's request id>/<the item's id>"; returns the stream's capture, for finish_item to put back."""
        stream = CAPTURE.get()
        parent = stream.request_id if stream is not None else uuid.uuid4().hex
        CAPTURE.set(Capture(f"{parent}/{item_id[:64]}", self._random.random() < self.sample, time.time()))
        return stream

    def finish_item(self, stream: Capture | None, status: str, ok: bool, elapsed: float, model: str) -> None:
        """Close a stream item's capture (see begin_item) and make the stream's capture current again."""
        self.finish("ClassifyStream", "grpc", status, ok, elapsed, model)
        CAPTURE.set(stream)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (and handed to the sink, and sent); False if time ran out."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks or (self.sink is not None and self.sink.pending):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer and the sink."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self.sink is not None:
            self.sink.close(timeout)
        self._file.close()

    def _write_all(self) -> None:
        _consume(self._queue, self._write)

    def _write(self, finished: _Finished) -> None:
        try:
            record = self.record(finished)
            try:
                self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
                if self._queue.empty():
                    self._file.flush()  # readers see every record once the writer has caught up
                WRITTEN.labels("file").inc()
            except OSError as err:
                DROPPED.labels("write_failed").inc()
                log.warning("payload log: cannot write %s: %s", self.path, err)
            if self.sink is not None:
                self.sink.submit(record)
        except Exception:  # a bug must not stop the writer: the server would drop every record after it
            log.exception("payload log: cannot record a call")

    def record(self, finished: _Finished) -> dict[str, Any]:
        """The JSON record of a finished call."""
        capture = finished.capture
        answers = capture.answers
        predictions = answers.predictions() if isinstance(answers, PackedPredictions) else list(answers or ())
        return {
            "id": capture.request_id,
            "time": datetime.fromtimestamp(capture.started, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "transport": finished.transport,
            "call": finished.call,
            "model": finished.model,
            "status": finished.status,
            "ok": finished.ok,
            "latency_ms": round(finished.elapsed * 1e3, 3),
            "input_form": self.input_form,
            "inputs": self._inputs(capture.inputs),
            "answers": [prediction.record() for prediction in predictions],
        }

    def _inputs(self, inputs: np.ndarray | Sequence[ImageInput] | None) -> list[dict[str, Any]]:
        if inputs is None:
            return []
        if isinstance(inputs, np.ndarray) and inputs.ndim == 2:
            return [{"pixels": _pixels_text(row)} for row in inputs]
        return [self._input(image) for image in inputs]

    def _input(self, image: ImageInput) -> dict[str, Any]:
        if not isinstance(image, bytes | bytearray | memoryview):
            return {"pixels": _pixels_text(np.asarray(image))}
        encoded = bytes(image)
        if self.input_form == "original":
            if len(encoded) > self.max_image_bytes:  # over the cap: its size only
                return {"original": None, "bytes": len(encoded)}
            return {"original": base64.b64encode(encoded).decode(), "bytes": len(encoded)}
        try:  # the preprocessing the model's input went through, run again here: off the request's time
            pixels = prepare(encoded, self._limits)
        except Exception as err:  # an image the server refused: its record says why, with no pixels
            return {"pixels": None, "bytes": len(encoded), "error": str(err)[:200]}
        return {"pixels": _pixels_text(np.zeros(N_PIXELS, np.float32) if pixels is None else pixels), "bytes": len(encoded)}


def _pixels_text(pixels: np.ndarray) -> str:
    """784 pixels as base64 of 784 bytes (0 = white background, 255 = ink, MNIST's way)."""
    values = pixels.ravel()
    if values.dtype != np.uint8:
        values = np.clip(np.rint(values.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    return base64.b64encode(values.tobytes()).decode()


class RotatingLines:
    """An append-only file of lines, renamed to PATH.1 (PATH.1 to PATH.2, ...) when the next line would take it
    past `max_bytes`; `backups` old files are kept (0: the full file is removed). Renames are atomic: a reader
    sees whole files."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._open()
        self._size = self._file.tell()

    def _open(self) -> Any:
        # 0o600: the payloads are what clients sent, readable only by the server's user.
        return os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")

    def write(self, line: bytes) -> None:
        """Append one line, rotating first if it would not fit."""
        if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)
        self._size += len(line)

    def flush(self) -> None:
        """Hand what is written to the operating system."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self._open()
        self._size = 0


class CloudEventsSink:
    """POSTs each record as two CloudEvents in binary mode, as KServe's inference logger sends them (ce-* headers,
    the data as the JSON body): the request (its inputs) and the response (its answers, status and latency), with
    the record's id. One thread and a bounded queue: a full queue drops (sink_full), a failed POST too (sink_failed)."""

    def __init__(self, url: str, timeout: float = 2.0, events: int = SINK_EVENTS) -> None:
        self.url, self.timeout = url, timeout
        self.source = f"urn:digitnet:{socket.gethostname()}"
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(events)
        # No proxy from the environment: the sink is named exactly, and a proxy variable must not reroute payloads.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread = threading.Thread(target=self._send_all, name="digitnet-payload-sink", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Records queued or being sent."""
        return self._queue.unfinished_tasks

    def submit(self, record: dict[str, Any]) -> None:
        """Queue a record for the sink, or drop it (counted) when the sink is behind."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            DROPPED.labels("sink_full").inc()

    def close(self, timeout: float) -> None:
        """Stop after what is queued (a sink that does not answer is given up on after `timeout`)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # the sink is behind: what is queued is dropped with the thread (a daemon)
            return
        self._thread.join(timeout)

    def events(self, record: dict[str, Any]) -> list[tuple[dict[str, str], bytes]]:
        """The record's two events: headers and body each."""
        request = {key: record[key] for key in ("id", "time", "transport", "call", "model", "input_form", "inputs")}
        response = {key: record[key] for key in ("id", "time", "transport", "call", "model", "status", "ok", "latency_ms", "answers")}
        return [
            (self._headers(record, kind), json.dumps(data, separators=(",", ":")).encode())
            for kind, data in ((REQUEST_EVENT, request), (RESPONSE_EVENT, response))
        ]

    def _headers(self, record: dict[str, Any], kind: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": record["id"],
            "ce-source": self.source,
            "ce-type": kind,
            "ce-time": record["time"],
            "ce-inferenceservicename": record["model"],
            "ce-component": "predictor",
            "ce-endpoint": record["call"],
        }
        namespace = os.environ.get("POD_NAMESPACE")  # as the Downward API gives it; KServe's events carry it
        if namespace:
            headers["ce-namespace"] = namespace
        return headers

    def _send_all(self) -> None:
        _consume(self._queue, self._send)

    def _send(self, record: dict[str, Any]) -> None:
        try:
            for headers, body in self.events(record):
                with self._opener.open(urllib.request.Request(self.url, body, headers, method="POST"), timeout=self.timeout) as answer:
                    answer.read()
            WRITTEN.labels("sink").inc()
        except Exception as err:  # refused, timed out, answered 4xx/5xx: dropped, counted, the server goes on
            DROPPED.labels("sink_failed").inc()
            log.debug("payload sink %s: %s", self.url, err)


def _consume(items: queue.Queue[_T | None], handle: Callable[[_T], None]) -> None:
    """A worker thread's loop: handle each queued item until the None that stops it, marking each one done (what
    flush() and the sink's `pending` wait on)."""
    while True:
        item = items.get()
        try:
            if item is None:
                return
            handle(item)
        finally:
            items.task_done()
