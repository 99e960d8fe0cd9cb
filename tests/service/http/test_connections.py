"""The HTTP port under hostile connections, tried with raw sockets: idle and slow clients are timed out and
never lock out health or real requests, headers are bounded before memory grows, a full house evicts the
idlest connection, and requests in flight are bounded apart from connections."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from ..conftest import ServerThread, running_server

LIMITS = {"http_header_seconds": 1.0, "http_max_connections": 40, "http_max_header_bytes": 8192, "http_max_headers": 20, "max_concurrent_rpcs": 2}


@pytest.fixture(scope="module")
def http() -> Iterator[ServerThread]:
    with running_server(http=True, **LIMITS) as server:  # type: ignore[arg-type]
        yield server


def _connect(server: ServerThread) -> socket.socket:
    assert server.http is not None
    return socket.create_connection(("127.0.0.1", server.http.port), timeout=5)


def _answer(connection: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Read one whole answer: status, headers (lower-cased names) and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", 0)):
        body += connection.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def _get(server: ServerThread, path: str = "/v2/health/live", extra: str = "") -> tuple[int, dict[str, str], dict[str, object]]:
    with _connect(server) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
        return _answer(connection)


def _closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        while connection.recv(65536):
            pass  # an answer (408) may come first
        return True
    except (TimeoutError, OSError):
        return False


def test_idle_and_slow_connections_beyond_every_bound_lock_no_one_out_and_are_timed_out(http: ServerThread) -> None:
    idle = [_connect(http) for _ in range(60)]  # more than max_concurrent_rpcs and http_max_connections
    slow = [_connect(http) for _ in range(5)]
    try:
        for connection in slow:
            connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        for _ in range(3):
            assert _get(http)[0] == 200, "health answers while idle and slow clients hold connections"
            assert _get(http, "/v2/models/digitnet")[0] == 200, "and so does a real request"
            for connection in slow:
                connection.sendall(b"X-Drip: 1\r\n")  # a slowloris keeps dripping headers
            time.sleep(0.3)
        # Past http_header_seconds every one is closed, the dripping ones with a 408 first.
        with slow[0] as connection:
            status, headers, body = _answer(connection)
        assert status == 408 and "DIGITNET_HTTP_HEADER_SECONDS" in str(body["error"]) and headers["connection"] == "close"
        assert all(_closed_by_server(connection, within=3.0) for connection in idle + slow[1:])
    finally:
        for connection in idle + slow:
            connection.close()


def test_a_header_flood_is_refused_431_before_memory_grows(http: ServerThread) -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    sent = 0
    with _connect(http) as connection:
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        try:
            while sent < 30 * 2**20:
                connection.sendall(b"X-Flood: " + b"a" * 1014 + b"\r\n")
                sent += 1024
        except OSError:
            pass  # the server answered and closed: the rest of the flood is refused by the kernel
        # What was sent before the reset is what loopback's socket buffers took (a few MB), not what the server read.
        assert sent < 16 * 2**20, f"the server took {sent:,} bytes of headers"
    assert process.memory_info().rss - before < 10 * 2**20


@pytest.mark.parametrize(
    ("extra", "why"),
    [("".join(f"X-{n}: {n}\r\n" for n in range(30)), "more than 20 headers"), ("X-Big: " + "a" * 9000 + "\r\n", "over 8,192 bytes")],
    ids=["many", "one large"],
)
def test_too_many_or_too_large_headers_get_431_as_json(http: ServerThread, extra: str, why: str) -> None:
    status, headers, body = _get(http, extra=extra)
    assert status == 431 and why in str(body["error"]) and headers["content-type"] == "application/json"


def test_headers_within_the_bounds_are_served(http: ServerThread) -> None:
    assert _get(http, extra="".join(f"X-{n}: {n}\r\n" for n in range(15)) + "X-Big: " + "a" * 6000 + "\r\n")[0] == 200


def test_a_full_house_evicts_the_connection_idle_longest() -> None:
    with running_server(http=True, http_max_connections=3) as server:
        oldest, *others = [_connect(server) for _ in range(3)]
        try:
            time.sleep(0.1)
            assert _get(server)[0] == 200, "a fourth connection is served"
            assert _closed_by_server(oldest, within=2.0)
            assert not _closed_by_server(others[0], within=0.2)
        finally:
            for connection in [oldest, *others]:
                connection.close()


def test_only_when_every_connection_is_busy_is_a_newcomer_refused_503_with_retry_after() -> None:
    with running_server(http=True, http_max_connections=2, max_concurrent_rpcs=0) as server:
        busy = [_connect(server) for _ in range(2)]
        try:
            for connection in busy:  # requests in progress: headers done, body still coming
                connection.sendall(b"POST /v2/models/digitnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.2)
            status, headers, body = _get(server)
            assert status == 503 and headers["retry-after"] == "1" and "too many connections" in str(body["error"])
        finally:
            for connection in busy:
                connection.close()


def test_requests_in_flight_are_bounded_apart_and_health_is_never_counted(http: ServerThread) -> None:
    held = [_connect(http) for _ in range(2)]  # max_concurrent_rpcs: 2
    try:
        for connection in held:
            connection.sendall(b"POST /v2/models/digitnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        status, headers, body = _get(http, "/v2/models/digitnet")
        assert status == 503 and headers["retry-after"] == "1" and "DIGITNET_MAX_CONCURRENT_RPCS" in str(body["error"])
        assert _get(http)[0] == 200 and _get(http, "/v2/health/ready")[0] == 200
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.2)
    assert _get(http, "/v2/models/digitnet")[0] == 200, "the slots come back when the held requests end"


def test_a_client_that_sends_its_whole_refused_body_before_reading_gets_the_answer_not_a_reset() -> None:
    import urllib.error
    import urllib.request

    # urllib sends Connection: close and writes the whole body before it reads: the server must not close
    # (and reset) while the body it refused is still arriving.
    with running_server(http=True, max_message_bytes=100_000) as server:
        request = urllib.request.Request(f"{server.http_url}/v2/models/digitnet/infer", data=bytes(3_000_000), method="POST")
        for _ in range(3):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 429 and "over the limit" in json.loads(refused.value.read())["error"]
