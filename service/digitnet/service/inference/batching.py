"""Adaptive batching: merge concurrent requests' images into one onnxruntime call (asyncio, no gRPC).

A request that finds others waiting waits at most `max_delay` for more to join (a lone request runs at
once); a batch closes early once it holds `max_size` images. Each caller gets back exactly its own rows, in its own order: the batch
remembers which rows belong to whom (mixing them up is a known bug class in other servers).

Usage:
    batcher = MicroBatcher(model.run, max_size=64, max_delay=0.002)
    output = await batcher.run(pixels)        # float32 [n, 784] -> ModelOutput of n rows
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from digitnet.service.contract.errors import Unavailable
from digitnet.service.contract.model import ModelOutput
from digitnet.service.inference.statistics import InferenceStatistics


@dataclass
class _Pending:
    pixels: np.ndarray
    done: asyncio.Future[ModelOutput]
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Queue of pending requests drained by one task on the running event loop."""

    def __init__(
        self, run: Callable[[np.ndarray], ModelOutput], max_size: int, max_delay: float, statistics: InferenceStatistics | None = None
    ) -> None:
        self._model_run = run  # looked up per batch by the caller's function, so a model reload applies
        self._statistics = statistics or InferenceStatistics()
        self.max_size = max_size
        self.max_delay = max_delay
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        #: Model calls made and images they held, for the average batch size (images / calls).
        self.calls = 0
        self.images = 0
        self._last_requests = 0

    async def run(self, pixels: np.ndarray) -> ModelOutput:
        """Run `pixels` [n, 784] through the model together with whatever else arrives in time."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            # A context of its own: the worker outlives the request that started it, and must not put every later
            # batch's spans (or any other context variable) under that one request.
            self._worker = asyncio.get_running_loop().create_task(self._drain(), name="digitnet-batcher", context=contextvars.Context())
        done: asyncio.Future[ModelOutput] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(pixels, done))
        return await done

    def close(self) -> None:
        """Stop the batching task (its model is unloaded); requests still queued are answered UNAVAILABLE."""
        if self._worker is not None:
            self._worker.cancel()
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.done.done():
                pending.done.set_exception(Unavailable("the model was unloaded before this request ran; retry"))

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            try:
                await self._gather(batch)
            except asyncio.CancelledError:  # closed while gathering: nobody will run these
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(Unavailable("the model was unloaded before this request ran; retry"))
                raise
            self._last_requests = len(batch)
            self._run(batch)

    async def _gather(self, batch: list[_Pending]) -> None:
        """Add whoever joins in time to `batch`."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        size = len(batch[0].pixels)
        while size < self.max_size and not self._queue.empty():  # whoever is waiting already joins
            batch.append(self._queue.get_nowait())
            size += len(batch[-1].pixels)
        # Adaptive in fact: wait for company only under concurrent load (others are waiting now, or the
        # last batch merged several requests); a lone request runs at once, so batching costs nothing at
        # concurrency 1.
        concurrent = len(batch) > 1 or self._last_requests > 1
        deadline = loop.time() + (self.max_delay if concurrent else 0.0)
        while size < self.max_size:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                break
            batch.append(item)
            size += len(item.pixels)

    def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        for item in batch:
            self._statistics.record_queue(started - item.queued)
        try:
            output = self._model_run(np.concatenate([item.pixels for item in batch]))
        except Exception as err:  # hand the failure to every waiting caller; keep the batcher alive
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(err)
            return
        self.calls += 1
        self.images += len(output.labels)
        start = 0
        for item in batch:
            rows = slice(start, start + len(item.pixels))
            start = rows.stop
            if not item.done.done():  # the caller may have been cancelled (deadline, disconnect)
                item.done.set_result(
                    ModelOutput(
                        output.probabilities[rows], output.labels[rows], (output.hidden[0][rows], output.hidden[1][rows]), output.inputs[rows]
                    )
                )
