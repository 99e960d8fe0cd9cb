"""HTTPS with the server's own TLS files: TLS, and mutual TLS that refuses a client without a certificate."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ...conftest import GOLDEN
from ..certs import make_pki
from ..conftest import running_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _classify(url: str, context: ssl.SSLContext) -> int:
    request = urllib.request.Request(f"{url}/v1/classify", (GOLDEN / "6_scan.png").read_bytes())
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        return int(json.loads(answer.read())["label"])


def test_https_with_the_server_certificate(pki: Path) -> None:
    with running_server(http=True, tls_cert=pki / "server.pem", tls_key=pki / "server.key") as server:
        url = server.http_url.replace("http://", "https://")
        assert _classify(url, ssl.create_default_context(cafile=pki / "ca.pem")) == 6
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _classify(url, ssl.create_default_context())  # the system's CAs do not know ours


def test_mutual_tls_needs_a_client_certificate(pki: Path) -> None:
    with running_server(http=True, tls_cert=pki / "server.pem", tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem") as server:
        url = server.http_url.replace("http://", "https://")
        with_certificate = ssl.create_default_context(cafile=pki / "ca.pem")
        with_certificate.load_cert_chain(pki / "client.pem", pki / "client.key")
        assert _classify(url, with_certificate) == 6
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _classify(url, ssl.create_default_context(cafile=pki / "ca.pem"))


def test_idle_tls_connections_past_every_bound_lock_no_one_out_and_are_timed_out(pki: Path) -> None:
    import socket
    import time

    context = ssl.create_default_context(cafile=pki / "ca.pem")
    settings = {"http_header_seconds": 1.0, "http_max_connections": 20, "max_concurrent_rpcs": 2}
    with running_server(http=True, tls_cert=pki / "server.pem", tls_key=pki / "server.key", **settings) as server:  # type: ignore[arg-type]
        assert server.http is not None
        address = ("127.0.0.1", server.http.port)
        idle = [context.wrap_socket(socket.create_connection(address, timeout=5), server_hostname="localhost") for _ in range(30)]
        try:  # every one has finished its handshake and sends nothing
            url = server.http_url.replace("http://", "https://")
            with urllib.request.urlopen(f"{url}/v2/health/live", context=context, timeout=10) as answer:
                assert answer.status == 200
            assert _classify(url, context) == 6
            time.sleep(1.5)
            assert all(_closed_by_server(connection) for connection in idle)
        finally:
            for connection in idle:
                connection.close()


def _closed_by_server(connection: ssl.SSLSocket) -> bool:
    """Whether the server has closed the connection (after its 408, if it sent one); False if it still holds it."""
    connection.settimeout(2)
    try:
        while connection.recv(4096):
            pass  # the 408 answer comes before the close
        return True
    except TimeoutError:
        return False  # still open: the server never closed it
    except OSError:  # a reset or TLS's abrupt end: closed
        return True
