"""Listening sockets: claim a port before a server takes it, so that a taken port is one clear line."""

from __future__ import annotations

import socket

from digitnet.service.contract.errors import ConfigurationError


def claim_port(host: str, port: int, share: bool) -> socket.socket:
    """Bind host:port as grpc will (shared between worker processes when `share`); refuse clearly if it is taken."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and without it a response
    # written in two parts waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {err.strerror or err} (is another server using the port?)") from err
    return sock
