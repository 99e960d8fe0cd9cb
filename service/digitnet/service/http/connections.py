"""What the HTTP port gives a connection before any route sees it: time to send its headers, room for them, and
a place among a bounded number of connections, so that idle, slow or header-flooding clients starve no one.

uvicorn's own HTTP protocol (httptools) times out only idle keep-alive connections, bounds neither the size
nor the number of headers, and counts connections against its `limit_concurrency`, so 64 clients that send
nothing lock everyone out. This subclass of it adds, per connection:
- a header timeout: from the moment it connects (or starts a request) to the end of its headers; then
  408 and closed;
- a header bound: more bytes of request line and headers than `max_header_bytes`, or more than
  `max_headers` headers, is answered 431 and closed, before httptools holds more than one read of them;
- a connection bound: past `max_connections`, the connection idle the longest (no request in progress) is
  closed to make room; only when every one is busy is the newcomer answered 503 with Retry-After.
- a lingering close: a connection closed while its request body is still arriving (a refused upload, with
  `Connection: close`) first sends its answer and a FIN, and reads and drops what the client still sends for
  up to LINGER_SECONDS, so that a client that writes its whole body before reading gets the 429 or 401
  instead of a reset.
Requests in flight are bounded apart, by the app's guard (http/guard.py), and health routes are never counted.

Usage:
    uvicorn.Config(app, http=guarded_protocol(ConnectionLimits(1024, header_seconds=10, max_header_bytes=65536, max_headers=100)))
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

#: Longest a closing connection keeps reading (and dropping) a request body it refused.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds every HTTP connection is held to (ServerSettings' http_* fields hold the defaults)."""

    max_connections: int
    header_seconds: float
    max_header_bytes: int
    max_headers: int


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol held to `limits` (uvicorn.Config's `http` takes the class)."""
    return type("GuardedHttpToolsProtocol", (_Guarded,), {"limits": limits})


def _answer(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    return head.encode() + body


class _Guarded(HttpToolsProtocol):
    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # from connecting, and from the first byte of each request, to its headers' end
        self._header_bytes = 0  # as read, until the headers end
        self._header_size = 0  # as parsed: the URL, names and values
        self._header_count = 0
        self._too_large = ""
        self._header_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._close_with(_answer(503, "Service Unavailable", "the server is busy: too many connections; retry", "retry-after: 1\r\n"))
            return
        self._header_timer = self.loop.call_later(self.limits.header_seconds, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused body: dropped
        if self._in_headers:
            self._header_bytes += len(data)  # request line and headers (and maybe a body's start: checked below)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._too_large or (self._in_headers and self._header_bytes > self.limits.max_header_bytes):
            what = self._too_large or self._over_size()
            self._close_with(_answer(431, "Request Header Fields Too Large", f"{what} (DIGITNET_HTTP_MAX_HEADER_BYTES, DIGITNET_HTTP_MAX_HEADERS)"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_count, self._header_size, self._too_large = True, 0, 0, ""
        if self._header_timer is None:  # a request on a kept-alive connection: its own time for headers
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(self.limits.header_seconds, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        if self._header_size > self.limits.max_header_bytes:
            self._too_large = self._over_size()
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_size += len(name) + len(value)
        if self._header_count > self.limits.max_headers:
            self._too_large = f"more than {self.limits.max_headers} headers"
        elif self._header_size > self.limits.max_header_bytes:
            self._too_large = self._over_size()
        if self._too_large:
            return  # not kept: the connection is answered 431 once this read is parsed
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_timer()
        if self._too_large:
            return  # no app for a request whose headers were cut short
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_large:  # a request refused at its headers has no cycle to take its body
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._too_large:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.idle_since = time.monotonic()

    def eof_received(self) -> None:
        if self._lingering:
            self.transport.close()  # the client has sent everything: now close for real
            return
        super().eof_received()

    def linger(self, transport: asyncio.Transport) -> None:
        """Half-close after the answer, drop what still arrives, close on the client's EOF or after LINGER_SECONDS."""
        self._lingering = True
        transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def _over_size(self) -> str:
        return f"request line and headers over {self.limits.max_header_bytes:,} bytes"

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            message = f"the request's headers did not arrive within {self.limits.header_seconds:g} s (DIGITNET_HTTP_HEADER_SECONDS)"
            self._close_with(_answer(408, "Request Timeout", message))

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _close_with(self, answer: bytes) -> None:
        self._stop_header_timer()
        self.transport.write(answer)
        self.transport.close()

    def _make_room(self) -> bool:
        """Close the connection idle the longest (no request in progress) to admit this one; False if all are busy."""
        idle = [c for c in self.connections if c is not self and isinstance(c, _Guarded) and c._idle() and not c.transport.is_closing()]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        log.debug("HTTP connection limit (%d) reached: closing the connection idle longest", self.limits.max_connections)
        oldest.transport.close()
        oldest.connections.discard(oldest)  # room now, not when the close completes
        return True

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete


class _LingeringTransport:
    """The connection's transport as uvicorn sees it, but whose close() lingers while a request body is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: _Guarded) -> None:
        self._transport, self._protocol = transport, protocol
        # What uvicorn calls on every request, bound once: __getattr__ would run Python for each call.
        self.write, self.is_closing, self.get_extra_info = transport.write, transport.is_closing, transport.get_extra_info
        self.pause_reading, self.resume_reading = transport.pause_reading, transport.resume_reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        cycle = self._protocol.cycle
        unread = cycle is not None and cycle.more_body and not cycle.disconnected
        if unread and not self._protocol._lingering and not self._transport.is_closing() and self._transport.can_write_eof():
            self._protocol.linger(self._transport)
        else:
            self._transport.close()
