"""Prometheus metrics (scraped over HTTP) and structured JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digitnet.service.client.digit_client import DigitClient, RemoteError
from digitnet.service.contract.card import read_card
from digitnet.service.telemetry.observability import start_metrics

from ...conftest import DEFAULT_MODEL, GOLDEN, RELU, REPO
from ..conftest import ServerThread
from ..helpers import free_port, scrape

IMAGE = (GOLDEN / "2_mnist.png").read_bytes()


def test_metrics_count_requests_errors_batches_and_describe_the_model(server: ServerThread, client: DigitClient) -> None:
    port = free_port()
    start_metrics(port, host="127.0.0.1")
    before = scrape(port)
    for _ in range(3):
        client.classify(IMAGE)
    with pytest.raises(RemoteError):
        client.classify(b"not an image")
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    model = read_card(DEFAULT_MODEL).name  # each call counted against the model that answered it
    assert delta("digitnet_requests_total", rpc="Classify", code="OK", model=model) == 3
    assert delta("digitnet_requests_total", rpc="Classify", code="INVALID_ARGUMENT", model=model) == 1
    assert delta("digitnet_request_seconds_count", rpc="Classify", model=model) == 4
    assert delta("digitnet_errors_total", kind="InvalidInput") == 1
    assert delta("digitnet_images_total", outcome="digit", model=model) == 3
    assert delta("digitnet_batch_images_count") >= 3 and delta("digitnet_batch_images_sum") >= 3
    [info] = [dict(labels) for (name, labels) in after if name == "digitnet_model_info" and dict(labels)["model"] == model]
    assert info["provider"] == "CPUExecutionProvider" and len(info["sha256"]) == 64 and info["activation"] == "relu"


@pytest.mark.slow
def test_json_logs_show_startup_and_requests_without_payloads(tmp_path: Path) -> None:
    port = free_port()
    payloads = tmp_path / "payloads.jsonl"  # on: its record of the call and the call's log line share one id
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitnet.service.cli",
            "serve",
            "--model",
            str(DEFAULT_MODEL),
            "--port",
            str(port),
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--payload-log",
            str(payloads),
            "--payload-log-sample",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        lines: list[dict[str, object]] = []
        assert process.stderr is not None
        while not any("serving on port" in str(line.get("message")) for line in lines):
            assert time.monotonic() < deadline, "server did not start"
            lines.append(json.loads(process.stderr.readline()))
        with DigitClient(f"127.0.0.1:{port}") as client:
            client.classify(IMAGE)
        process.terminate()
        process.wait(timeout=30)
        lines += [json.loads(line) for line in process.stderr.read().splitlines() if line.strip()]
    finally:
        process.kill()
    assert all({"asctime", "level", "name", "message"} <= line.keys() for line in lines)
    startup = next(line for line in lines if "sha256" in str(line["message"]))  # a line per model
    assert str(startup["message"]).startswith(f"model {RELU} (the default") and "CPUExecutionProvider" in str(startup["message"])
    assert any("worker threads" in str(line["message"]) for line in lines)
    request = next(line for line in lines if str(line["message"]).startswith("rpc Classify OK"))
    assert request["level"] == "DEBUG" and request["model"] == RELU
    [record] = [json.loads(line) for line in payloads.read_text().splitlines()]
    assert request["request_id"] == record["id"], "the log line and the payload record of one call name it alike"
    assert not any("PNG" in json.dumps(line) or "encoded" in json.dumps(line) for line in lines), "an image reached the log"


@pytest.mark.slow
def test_metrics_listen_on_the_servers_host_unless_told_otherwise() -> None:
    # /metrics has no token and shows the model and the traffic: it used to bind 0.0.0.0 whatever --host said.
    import psutil

    from ..helpers import serve

    port = free_port()
    process, _ = serve(DEFAULT_MODEL, "--host", "127.0.0.1", "--metrics-port", str(port))
    try:
        listening = {c.laddr for c in psutil.Process(process.pid).net_connections() if c.status == psutil.CONN_LISTEN}
        assert (("127.0.0.1", port)) in {(a.ip, a.port) for a in listening}
        assert scrape(port)  # and it serves
    finally:
        process.kill()
        process.wait()


def test_json_logs_leave_out_uvicorns_coloured_copy_of_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from digitnet.service.telemetry.observability import configure_logging

    configure_logging(logging.INFO, "json")
    try:
        logging.getLogger("uvicorn.error").info("Started %s", "x", extra={"color_message": "\x1b[1mStarted\x1b[0m %s"})
        logging.getLogger("digitnet.test").info("hello", extra={"request_id": "abc"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        logging.getLogger().handlers.clear()
    assert lines[0]["message"] == "Started x" and "color_message" not in lines[0]
    assert lines[1]["request_id"] == "abc", "the fields digitnet adds are kept"
