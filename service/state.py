"""Whether the server takes work: the grpc.health.v1 statuses and OIP readiness move together."""

from __future__ import annotations

from grpc_health.v1 import health, health_pb2

from digitnet.service._generated import digitnet_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DigitClassifier"].full_name


class ServingState:
    """NOT_SERVING until `serving()`; `draining()` turns it off again before a graceful stop."""

    def __init__(self) -> None:
        self.health = health.aio.HealthServicer()
        self.ready = False

    async def serving(self) -> None:
        """Report SERVING for the whole server and for digitnet.v1.DigitClassifier; OIP ready."""
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.ready = True

    async def draining(self) -> None:
        """Report NOT_SERVING everywhere, so that load balancers stop sending work."""
        self.ready = False
        await self.health.enter_graceful_shutdown()
