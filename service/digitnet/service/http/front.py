"""The HTTP transport's server: uvicorn in the serving process's event loop (beside gRPC), over the same data
plane; it refuses new work while the server drains, and stops with it.

Usage (server/process.py does this when --http-port is not 0):
    front = await start_http(settings, plane, executor)
    ...
    await front.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import uvicorn

from digitnet.service.api.sockets import claim_port
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.http.app import create_app
from digitnet.service.http.connections import ConnectionLimits, guarded_protocol
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.settings.server import ServerSettings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # digitnet's serve() owns SIGTERM, SIGINT (drain) and SIGHUP (reload)


class HttpFront:
    """A running uvicorn server on a socket of its own."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], port: int) -> None:
        self._server, self._task, self.port = server, task, port

    @classmethod
    async def start(
        cls,
        app: Any,
        host: str,
        port: int,
        share: bool = False,
        *,
        limits: ConnectionLimits,
        tls: tuple[Path, Path, Path | None] | None = None,
        grace: float = 10.0,
    ) -> HttpFront:
        """Bind host:port (0: any free port; `share`: SO_REUSEPORT, for worker processes) and serve `app` there.
        `tls` is (certificate chain, key, client CA or None) as PEM files; every connection is held to `limits`
        (http/connections.py)."""
        sock = claim_port(host, port, share)
        sock.listen(2048)
        options: dict[str, Any] = {}
        if tls is not None:
            cert, key, client_ca = tls
            options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
            if client_ca is not None:
                options |= {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=max(1, math.ceil(grace)),
            # Connections are bounded by the protocol, requests in flight by the app's guard: uvicorn's own
            # limit_concurrency counts idle connections as requests, so a few idle clients locked HTTP out.
            http=guarded_protocol(limits),
            **options,
        )
        server = _Server(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():  # uvicorn failed to start (a bad TLS file, say): say why, in one line
                sock.close()
                error = task.exception()
                raise ConfigurationError(f"the HTTP server could not start on {host}:{port}: {error}")
            await asyncio.sleep(0.005)
        return cls(server, task, sock.getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace given at start), then close."""
        self._server.should_exit = True
        await self._task


async def start_http(settings: ServerSettings, plane: DataPlane, executor: Executor, port: int | None = None) -> HttpFront:
    """Serve HTTP over the data plane on settings.http_port (`port` overrides it; 0: any free port), with gRPC's
    token, limits and TLS."""
    limits = ConnectionLimits(
        max_connections=settings.http_max_connections,
        header_seconds=settings.http_header_seconds,
        max_header_bytes=settings.http_max_header_bytes,
        max_headers=settings.http_max_headers,
    )
    tls = (settings.tls_cert, settings.tls_key, settings.tls_client_ca) if settings.tls_cert and settings.tls_key else None
    app = create_app(plane, executor, settings)
    front = await HttpFront.start(
        app, settings.host, settings.http_port if port is None else port, settings.workers > 1, limits=limits, tls=tls, grace=settings.grace_seconds
    )
    url = page_url(settings.host, front.port, tls=tls is not None)
    log.info("the draw-a-digit page: open %s in a browser (HTTP also serves /v2, /v1/classify, /metrics, /openapi.json)", url)
    return front


def page_url(host: str, port: int, tls: bool) -> str:
    """The address a person on this machine opens for the page: a wildcard bind is reached on loopback."""
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    bare = local.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    return f"{'https' if tls else 'http'}://{shown}:{port}/"
