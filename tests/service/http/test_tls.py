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
