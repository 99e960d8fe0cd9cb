"""Inference statistics as Triton's ModelStatistics reports them: counts and cumulative times, kept by the
model runs themselves and by the calls, whatever protocol they came in by.

Prometheus metrics (telemetry/observability.py) are for dashboards; these answer the Open Inference Protocol's
ModelStatistics for tools written for Triton. Thread-safe: runs happen on the thread pool. The core knows
nothing of Prometheus: a transport that wants each model run registers an observer.

Usage:
    STATISTICS.record_execution(images=64, seconds=0.0004)
    STATISTICS.observe_executions(lambda images, seconds: ...)
    snapshot = STATISTICS.snapshot()
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
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


class InferenceStatistics:
    """Counters of one served model (they survive a reload: the name and version stay)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = Snapshot()
        self._observers: list[Callable[[int, float], None]] = []

    def observe_executions(self, observer: Callable[[int, float], None]) -> None:
        """Call `observer(images, seconds)` after every model run from now on (once, however often registered)."""
        with self._lock:
            if observer not in self._observers:
                self._observers.append(observer)

    def record_execution(self, images: int, seconds: float) -> None:
        """Count one model run over `images` images."""
        with self._lock:
            self._now.inference_count += images
            self._now.execution_count += 1
            self._now.last_inference_ms = int(time.time() * 1000)
            self._now.compute.add(seconds)
            self._now.batches[images].add(seconds)
            observers = list(self._observers)
        for observer in observers:
            observer(images, seconds)

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


#: The served model's statistics (one model per process, as the metrics).
STATISTICS = InferenceStatistics()
