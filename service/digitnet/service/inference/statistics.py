"""Inference statistics as Triton's ModelStatistics reports them: counts and cumulative times, kept by the
model runs themselves and by the calls, whatever protocol they came in by.

Prometheus metrics (telemetry/observability.py) are for dashboards; these answer the Open Inference Protocol's
ModelStatistics for tools written for Triton. Each served model has its own (the repository makes them), and
ANSWERING names the one answering the current call, so that the transports' guards count the call against it.
Thread-safe: runs happen on the thread pool. The core knows nothing of Prometheus: whoever wants each model
run registers an observer.

Usage:
    statistics = InferenceStatistics("relu")
    statistics.record_execution(images=64, seconds=0.0004)
    observe_executions(lambda model, images, seconds: ...)
    snapshot = statistics.snapshot()
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace


@dataclass
class Duration:
    """How many events, and their total time in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        """Count one event that took `seconds`."""
        self.count += 1
        self.ns += int(seconds * 1e9)


@dataclass
class Snapshot:
    """The statistics at one moment."""

    inference_count: int = 0  # images
    execution_count: int = 0  # model runs
    last_inference_ms: int = 0  # milliseconds since the epoch; 0 if none yet
    success: Duration = field(default_factory=Duration)  # inference calls answered, with their time
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)  # time requests waited for an adaptive batch
    compute: Duration = field(default_factory=Duration)  # model runs
    batches: dict[int, Duration] = field(default_factory=lambda: defaultdict(Duration))  # model runs by images per run


#: Called as observer(model, images, seconds) after every model run of every model.
_OBSERVERS: list[Callable[[str, int, float], None]] = []


def observe_executions(observer: Callable[[str, int, float], None]) -> None:
    """Call `observer(model, images, seconds)` after every model run from now on (once, however often registered)."""
    if observer not in _OBSERVERS:
        _OBSERVERS.append(observer)


class InferenceStatistics:
    """Counters of one served model, by its name (they survive a reload: the name and version stay)."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        self._lock = threading.Lock()
        self._now = Snapshot()

    def record_execution(self, images: int, seconds: float) -> None:
        """Count one model run over `images` images."""
        with self._lock:
            self._now.inference_count += images
            self._now.execution_count += 1
            self._now.last_inference_ms = int(time.time() * 1000)
            self._now.compute.add(seconds)
            self._now.batches[images].add(seconds)
        for observer in _OBSERVERS:
            observer(self.model, images, seconds)

    def record_call(self, succeeded: bool, seconds: float) -> None:
        """Count one inference call (a stream counts once)."""
        with self._lock:
            (self._now.success if succeeded else self._now.fail).add(seconds)

    def record_queue(self, seconds: float) -> None:
        """Count one request's wait for its adaptive batch."""
        with self._lock:
            self._now.queue.add(seconds)

    def snapshot(self) -> Snapshot:
        """A consistent copy of the counters."""
        with self._lock:
            now = self._now
            return replace(
                now,
                success=replace(now.success),
                fail=replace(now.fail),
                queue=replace(now.queue),
                compute=replace(now.compute),
                batches={size: replace(duration) for size, duration in sorted(now.batches.items())},
            )


#: The statistics of the model answering the current call (None: the call uses no model, or has not found it
#: yet). Set where a call's model is resolved (protocol/repository.py); each call runs in its own asyncio task,
#: and so has its own value.
ANSWERING: ContextVar[InferenceStatistics | None] = ContextVar("digitnet_answering", default=None)


def answering_model() -> str:
    """The name of the model answering the current call, "" when none does (yet)."""
    answering = ANSWERING.get()
    return answering.model if answering is not None else ""
