"""grpc.health.v1 over grpc.aio, with Watch fixed for several watchers of one service."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from grpc_health.v1 import health, health_pb2


class HealthServicer(health.aio.HealthServicer):
    """grpc's asyncio health servicer with Watch fixed for several watchers of one service.

    The stock Watch deletes the service's shared Condition when any one watcher leaves, so every other
    watcher of that service misses all later changes (NOT_SERVING on drain included). Here the Condition
    lives while anyone watches, and is dropped with the last watcher (unknown names cannot pile up). Once
    the server drains, each watch ends after telling NOT_SERVING, instead of holding the stop up for the
    whole grace period.
    """

    def __init__(self) -> None:
        super().__init__()
        self._watching: Counter[str] = Counter()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        """Stream the service's status now and at every change, until the client leaves."""
        service = request.service
        self._watching[service] += 1
        condition: asyncio.Condition = self._server_watchers[service]
        last = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        last = status
                    if self._gracefully_shutting_down and status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        # NOT_SERVING for good, and said: end the stream, so that it does not hold the server's stop up.
                        # (The flag alone is not enough: it is set before the statuses, which wait for this lock.)
                        return
                    await condition.wait()
        finally:
            self._watching[service] -= 1
            if not self._watching[service]:
                del self._watching[service]
                self._server_watchers.pop(service, None)
