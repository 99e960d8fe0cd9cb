"""Whether the server takes work: the grpc.health.v1 statuses and OIP readiness move together."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpc_health.v1 import health, health_pb2

from digitnet.service._generated import digitnet_pb2 as pb

if TYPE_CHECKING:
    from digitnet.service.reload import ModelReloader

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DigitClassifier"].full_name


class ServingState:
    """NOT_SERVING until `serving()`; `draining()` turns it off again before a graceful stop."""

    def __init__(self) -> None:
        self.health = health.aio.HealthServicer()
        self.ready = False
        #: True from draining() on: new calls are answered UNAVAILABLE so that clients go elsewhere.
        self.draining_now = False
        #: Set by create_server: swaps in a reloaded model (SIGHUP, --watch).
        self.reloader: ModelReloader

    async def serving(self) -> None:
        """Report SERVING for the whole server and for digitnet.v1.DigitClassifier; OIP ready."""
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.ready = True

    async def draining(self) -> None:
        """Report NOT_SERVING everywhere, so that load balancers stop sending work."""
        self.ready = False
        self.draining_now = True
        await self.health.enter_graceful_shutdown()
