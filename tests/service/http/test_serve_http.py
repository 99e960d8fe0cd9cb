"""`digitnet serve` with HTTP beside gRPC, as an operator runs it: one process or workers, then a drain."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from digitnet.service.http.front import page_url

from ...conftest import DEFAULT_MODEL, GOLDEN
from ..helpers import free_port, serve


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_http_beside_grpc_and_drains_both(workers: int) -> None:
    http = free_port()
    log: list[str] = []
    process, _grpc_port = serve(DEFAULT_MODEL, "--http-port", str(http), "--workers", str(workers), log=log)
    try:
        assert any(f"open http://127.0.0.1:{http}/ in a browser" in line for line in log), "the start-up log names the page's address"
        labels = []
        for label in (0, 4, 8):
            request = urllib.request.Request(f"http://127.0.0.1:{http}/v1/classify", (GOLDEN / f"{label}_scan.png").read_bytes())
            with urllib.request.urlopen(request, timeout=30) as answer:
                labels.append(json.loads(answer.read())["label"])
        assert labels == [0, 4, 8]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()


PAGE_URLS = [
    ("127.0.0.1", False, "http://127.0.0.1:8080/"),
    ("0.0.0.0", True, "https://127.0.0.1:8080/"),
    ("::", False, "http://[::1]:8080/"),
    ("example.org", False, "http://example.org:8080/"),
]


@pytest.mark.parametrize(("host", "tls", "url"), PAGE_URLS)
def test_the_page_address_is_one_a_person_on_this_machine_can_open(host: str, tls: bool, url: str) -> None:
    assert page_url(host, 8080, tls) == url


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--http-port", "--metrics-port"])
def test_a_taken_http_or_metrics_port_is_one_clear_line_before_the_model_loads(flag: str) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = ["--http-port", "0"] if flag != "--http-port" else []
        done = subprocess.run(
            [sys.executable, "-m", "digitnet.service.cli", "serve", "--port", "0", *others, flag, str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
