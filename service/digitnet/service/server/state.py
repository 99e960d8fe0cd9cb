"""Whether the server takes work: the data plane's readiness and the grpc.health.v1 statuses move together."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from digitnet.service.api.names import SERVICE_NAME
from digitnet.service.grpc.health import HealthServicer


class ServingState:
    """NOT_SERVING until `serving()`; `draining()` turns it off again before a graceful stop. The data plane reads
    `ready` and the transports' guards `draining_now` (protocol.dataplane.Readiness); gRPC serves `health`."""

    def __init__(self) -> None:
        self.health = HealthServicer()  # made on the server's event loop: its watchers wait on that loop
        self.ready = False
        #: True from draining() on: new calls are answered UNAVAILABLE so that clients go elsewhere.
        self.draining_now = False

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
