"""`digitnet predict`: JSON lines, the same locally and through a server, non-zero exit when an image failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from digitnet.service.cli.main import main

from ...conftest import DEFAULT_MODEL, GOLDEN
from ..conftest import ServerThread


def _predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, object]]]:
    code = main(["predict", *args])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_locally_and_through_the_server_agree(server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(GOLDEN / "8_scan.jpg"), str(GOLDEN / "0_rgba.png")]
    local_code, local = _predict(capsys, "--model", str(DEFAULT_MODEL), *files)
    remote_code, remote = _predict(capsys, "--server", server.address, *files)
    assert local_code == remote_code == 0
    assert [r["label"] for r in local] == [r["label"] for r in remote] == [8, 0]
    assert [r["status"] for r in local] == ["digit", "digit"] and len(local[0]["probabilities"]) == 10


def test_predict_reports_failures_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.png").write_bytes(b"nope")
    code, rows = _predict(capsys, "--model", str(DEFAULT_MODEL), str(GOLDEN / "1_mnist.png"), str(tmp_path / "bad.png"), str(tmp_path / "gone.png"))
    assert code == 1
    assert [r["status"] for r in rows] == ["digit", "error", "error"]
    assert "not a readable image" in str(rows[1]["error"]) and "No such file" in str(rows[2]["error"])
