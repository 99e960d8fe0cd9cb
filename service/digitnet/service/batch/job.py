"""Score folders of digit images: walk, preprocess and classify in parallel batches, write rows as they come.

The work is split into chunks of file paths; a backend turns each chunk into rows:
- local: N processes, each loading the model once (decoding, preprocessing and inference in batches);
- server: a running digitnet server (its default model, or the one named), N ClassifyBatch requests in flight;
- cluster: a Dask distributed cluster, each worker loading the model once.
Chunks are consumed in order with a bounded window, so memory stays flat however large the folder.

Usage:
    job = ScoreJob(roots=[Path("scans")], out=Path("scores.csv"))
    summary = run_job(job, LocalBackend(Path("models/default.onnx"), workers=2))   # digitnet.service.batch.score
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from queue import Queue
from typing import Protocol

from opentelemetry import trace

from digitnet.service.batch.rows import Format, Row, ScoredChunk, to_row
from digitnet.service.batch.shards import Shard, key_of
from digitnet.service.contract.errors import DigitnetError
from digitnet.service.contract.model import Model
from digitnet.service.contract.results import ImageInput, Outcome, Prediction, answer_in_place
from digitnet.service.inference.classifier import Classifier
from digitnet.service.inference.processes import ignore_interrupts, terminate_with_parent
from digitnet.service.inference.spans import TRACER


def walk(roots: Sequence[Path], shard: Shard | None = None) -> Iterator[str | Row]:
    """Yield the path of every non-hidden file under the roots in a deterministic order, unlistable folders as
    error rows; with `shard`, only the items of that shard, in the same order."""
    if shard is None:
        for root in roots:
            yield from _walk_root(root)
        return
    for item, key in listing(roots):
        if shard.holds(key):
            yield item


def listing(roots: Sequence[Path]) -> Iterator[tuple[str | Row, str]]:
    """walk's items, each with its shard key (shards.key_of)."""
    for root in roots:
        top = os.fspath(root)
        for item in _walk_root(root):
            yield item, key_of(item.path if isinstance(item, Row) else item, top)


def _walk_root(root: Path) -> Iterator[str | Row]:
    if root.is_file():
        yield str(root)
        return
    if not root.is_dir():
        yield Row(str(root), Outcome.ERROR, error=f"no such file or folder: {root}")
        return
    failures: list[OSError] = []  # os.walk reports a folder it cannot list here, and goes on
    for folder, subfolders, files in os.walk(root, onerror=failures.append):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        yield from _unlistable(failures)
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(folder, name)  # strings: a Path per file costs more than scoring it
    yield from _unlistable(failures)  # the root itself, or the last folder visited


def _unlistable(failures: list[OSError]) -> Iterator[Row]:
    while failures:
        failure = failures.pop(0)
        yield Row(str(failure.filename), Outcome.ERROR, error=f"cannot list folder: {failure.strerror}")


#: The name that stands for standard input (`digitnet predict -`).
STDIN = "-"


def read_images(paths: Sequence[str]) -> list[bytes | DigitnetError]:
    """Read files as bytes (`-`: standard input); an unreadable file becomes its error."""
    images: list[bytes | DigitnetError] = []
    for path in paths:
        try:
            if path == STDIN:
                images.append(sys.stdin.buffer.read())
            else:
                with open(path, "rb") as file:
                    images.append(file.read())
        except OSError as err:
            images.append(DigitnetError(f"cannot read file: {err.strerror}"))
    return images


#: Classify a list of inputs in one go, a prediction per input in its place: Classifier.classify, or a
#: DigitClient's classify_batch for a remote server.
ClassifyMany = Callable[[Sequence[ImageInput], float | None], list[Prediction]]


def score_paths(classify: ClassifyMany, paths: Sequence[str], min_confidence: float | None, labels_from_dirs: bool) -> list[Row]:
    """Read a chunk of files and classify those that could be read in one call; return every file's row, in order."""
    predictions = answer_in_place(read_images(paths), lambda readable: classify(readable, min_confidence))
    return [to_row(path, prediction, labels_from_dirs) for path, prediction in zip(paths, predictions)]


@dataclass(frozen=True)
class ScoreRequest:
    """What every chunk is scored and formatted with."""

    min_confidence: float | None = None
    fmt: Format = "csv"
    labels_from_dirs: bool = False

    def score(self, classify: ClassifyMany, paths: Sequence[str]) -> ScoredChunk:
        """Read, classify and format one chunk of files."""
        rows = score_paths(classify, paths, self.min_confidence, self.labels_from_dirs)
        return ScoredChunk.of(rows, self.fmt, self.labels_from_dirs)


class Backend(Protocol):
    """Turns chunks of paths into formatted rows, in order."""

    def score(self, chunks: Iterable[list[str]], request: ScoreRequest) -> Iterator[ScoredChunk]:
        """Yield the rows of each chunk, in the order of the chunks."""
        ...

    def close(self) -> None:
        """Release processes, connections and threads."""
        ...


def in_order(submit: Callable[[list[str]], Future[ScoredChunk]], chunks: Iterable[list[str]], window: int) -> Iterator[ScoredChunk]:
    """Submit chunks with at most `window` in flight and yield their results in submission order."""
    pending: deque[Future[ScoredChunk]] = deque()
    for chunk in chunks:
        pending.append(submit(chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# Each local worker process loads the model once, in its initializer.
_worker_classifier: Classifier | None = None


def _init_local_worker(model_path: Path) -> None:
    global _worker_classifier
    terminate_with_parent()
    ignore_interrupts()
    _worker_classifier = Classifier(Model.load(model_path, threads=1))


def _worker_ready() -> None:
    time.sleep(0.2)  # hold this worker so that the next submission has to start another


def _score_in_worker(paths: list[str], request: ScoreRequest) -> ScoredChunk:
    assert _worker_classifier is not None, "worker initializer did not run"
    return request.score(_worker_classifier.classify, paths)


@dataclass
class LocalBackend:
    """Score in N local processes (spawned: onnxruntime and fork do not mix well)."""

    model_path: Path
    workers: int
    _pool: Executor = field(init=False)

    def __post_init__(self) -> None:
        Model.load(self.model_path, threads=1)  # fail fast, in this process, on a bad model or card
        self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_local_worker, initargs=(self.model_path,))

    def start(self) -> None:
        """Start every worker process and load its model now, rather than on the first chunks."""
        for future in [self._pool.submit(_worker_ready) for _ in range(self.workers)]:
            future.result()

    def score(self, chunks: Iterable[list[str]], request: ScoreRequest) -> Iterator[ScoredChunk]:
        """Yield each chunk's rows, in order."""
        submit = lambda chunk: self._pool.submit(_score_in_worker, chunk, request)  # noqa: E731
        return in_order(submit, chunks, window=2 * self.workers)

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.shutdown(cancel_futures=True)


@dataclass
class ServerBackend:
    """Score through a running digitnet server: files are sent as they are, the server preprocesses them.

    Each request thread has a client (a connection) of its own, so that a server running several worker
    processes (--workers) gets requests on each of them. Every request asks the server's model `model_name`
    (a name in its repository; "": the server's default model)."""

    address: str
    workers: int
    model_name: str = ""
    _pool: Executor = field(init=False)

    def __post_init__(self) -> None:
        from digitnet.service.client.digit_client import DigitClient

        # One trace for the run (when the OTEL_* variables turn tracing on): a span per chunk under this one, and
        # under each chunk DigitClient's client span of each request, with the server's spans under it.
        self._run = TRACER.start_span("digitnet.score", attributes={"server.address": self.address, "digitnet.model": self.model_name})
        self._run_context = trace.set_span_in_context(self._run)
        self._clients = [DigitClient(self.address, timeout=60, model=self.model_name) for _ in range(self.workers)]
        with trace.use_span(self._run):
            self._clients[0].model_info()  # fail fast: unreachable server, wrong address, a model it does not serve
        self._idle: Queue[DigitClient] = Queue()
        for client in self._clients:
            self._idle.put(client)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="digitnet-score")

    def _score(self, request: ScoreRequest, paths: list[str]) -> ScoredChunk:
        client = self._idle.get()  # one per thread at a time: as many as there are threads
        try:
            with TRACER.start_as_current_span("digitnet.score.chunk", context=self._run_context, attributes={"digitnet.images": len(paths)}):
                return request.score(client.classify_batch, paths)
        finally:
            self._idle.put(client)

    def score(self, chunks: Iterable[list[str]], request: ScoreRequest) -> Iterator[ScoredChunk]:
        """Yield each chunk's rows, in order."""
        submit = lambda chunk: self._pool.submit(self._score, request, chunk)  # noqa: E731
        return in_order(submit, chunks, window=2 * self.workers)

    def close(self) -> None:
        """Close the connections and the request threads."""
        self._pool.shutdown(cancel_futures=True)
        for client in self._clients:
            client.close()
        self._run.end()
