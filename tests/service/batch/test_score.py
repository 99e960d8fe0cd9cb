"""`digitnet score`: mixed folders, CSV and JSONL, labels, exit codes, resume after kill -9, server and cluster modes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitnet.service.batch import job as batch
from digitnet.service.batch.rows import Row, columns, drop_torn_row, parse_rows
from digitnet.service.cli.main import main
from digitnet.service.contract.errors import ConfigurationError, ExitCode
from digitnet.service.contract.results import Outcome

from ...conftest import CORPUS, DEFAULT_MODEL, GOLDEN, REPO
from ..conftest import running_server
from ..helpers import make_many, png_header_only


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labelled folders of golden images plus every kind of bad file, a hidden file and a hidden folder."""
    root = tmp_path_factory.mktemp("mixed")
    for label in range(10):
        (root / str(label)).mkdir()
        for form in ("mnist.png", "scan.jpg"):
            shutil.copy(GOLDEN / f"{label}_{form}", root / str(label) / f"{label}_{form}")
    shutil.copy(GOLDEN / "7_rgba.png", root / "7" / "no-extension")  # recognised by content
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "truncated.png").write_bytes((GOLDEN / "4_scan.png").read_bytes()[:200])
    (bad / "notes.txt").write_text("not an image")
    (bad / "bomb.png").write_bytes(png_header_only(20_000, 20_000))
    Image.new("L", (40, 40), 255).save(bad / "blank.png")
    (root / ".hidden.png").write_bytes((GOLDEN / "1_mnist.png").read_bytes())
    (root / ".cache").mkdir()
    shutil.copy(GOLDEN / "1_mnist.png", root / ".cache" / "x.png")
    return root


def _score(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["score", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_mixed_folder_csv(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.csv"
    code, _, err = _score(capsys, str(mixed), "--out", str(out), "--workers", "2", "--batch-size", "4", "--labels-from-dirs")
    assert code == ExitCode.SOME_FAILED
    rows = _rows(out)
    paths = [Path(r["path"]).relative_to(mixed).as_posix() for r in rows]
    assert paths == sorted(paths, key=lambda p: (p.split("/")[0], p)) and len(paths) == 26  # 20 + 1 + 5 bad, no hidden
    assert not any(".hidden" in p or ".cache" in p for p in paths)
    by_name = {Path(r["path"]).name: r for r in rows}
    for name in ("empty.png", "truncated.png", "notes.txt", "bomb.png"):
        assert by_name[name]["status"] == "error" and by_name[name]["error"], name
    assert "over the limit" in by_name["bomb.png"]["error"] and "0 bytes" in by_name["empty.png"]["error"]
    assert by_name["blank.png"]["status"] == "unknown" and by_name["blank.png"]["label"] == ""
    assert by_name["blank.png"]["reason"] == "blank image: too little ink to be a digit" and by_name["blank.png"]["error"] == ""
    assert by_name["no-extension"]["label"] == "7"
    good = [r for r in rows if r["true_label"]]
    assert all(r["label"] == r["true_label"] for r in good) and len(good) == 21
    report = json.loads((tmp_path / "scores.csv.report.json").read_text())
    assert report["accuracy"] == 1.0 and report["labelled"] == 21 and report["error"] == 4
    assert np.trace(np.array(report["confusion_matrix"])) == 21
    assert "4 error" in err and "accuracy 1.0000 on 21 labelled files" in err


def test_jsonl_and_stdout(mixed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _score(capsys, str(mixed / "3"), "--format", "jsonl", "--workers", "1", "--quiet")
    assert code == ExitCode.OK
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in records] == [3, 3] and all(len(r["probabilities"]) == 10 for r in records)


def test_exit_code_2_when_output_not_writable(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _score(capsys, str(mixed / "1"), "--out", str(tmp_path / "missing" / "x.csv"), "--workers", "1")
    assert code == ExitCode.RUN_FAILED and "cannot write" in err


def test_existing_output_is_never_overwritten_silently(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keep.csv"
    out.write_text("precious\n")
    code, _, err = _score(capsys, str(mixed / "1"), "--out", str(out), "--workers", "1")
    assert code == ExitCode.RUN_FAILED and "--resume" in err and out.read_text() == "precious\n"


def test_unreadable_file_becomes_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests run as root, for whom chmod 000 denies nothing: simulate the denial instead.
    def denied(path: str, mode: str = "r") -> bytes:
        raise PermissionError(13, "Permission denied")

    (tmp_path / "x.png").write_bytes(b"x")
    monkeypatch.setattr(batch, "open", denied, raising=False)  # the module's name for the builtin
    [error] = batch.read_images([str(tmp_path / "x.png")])
    assert isinstance(error, Exception) and "cannot read file: Permission denied" in str(error)


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("a,b\n1,2\n3,", "a,b\n1,2\n"),
        ("a,b\n1,2\n", "a,b\n1,2\n"),
        ('a,b\n"x\ny.png",2\n"torn\n', 'a,b\n"x\ny.png",2\n'),  # torn inside a quoted name holding a newline
        ('a,b\n"x\ny.png",2\n"torn\nname', 'a,b\n"x\ny.png",2\n'),
        ('a,b\n"say ""hi""\n.png",2\n', 'a,b\n"say ""hi""\n.png",2\n'),  # doubled quotes inside a field
        ("a,", ""),
        ("path,status,lab", ""),  # killed inside the header
    ],
)
def test_drop_torn_row(tmp_path: Path, text: str, whole: str) -> None:
    out = tmp_path / "o.csv"
    out.write_text(text)
    drop_torn_row(out, "csv")
    assert out.read_text() == whole


def test_odd_names_survive_a_torn_row_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A file name holding a newline, and one that is not UTF-8: written exactly, read back by --resume.
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a\nb.png", "c.png", "d.png"):
        shutil.copy(GOLDEN / "2_mnist.png", data / name)
    (data / os.fsdecode(b"latin-1 \xe9.png")).write_bytes((GOLDEN / "2_mnist.png").read_bytes())
    reference, out = tmp_path / "reference.csv", tmp_path / "out.csv"
    assert _score(capsys, str(data), "--out", str(reference), "--workers", "1", "--quiet")[0] == 0
    whole = reference.read_bytes()
    assert b"\xe9.png" in whole and b'a\nb.png"' in whole
    out.write_bytes(whole[: whole.index(b"a\nb.png") + 2])  # killed in the middle of the quoted name
    assert _score(capsys, str(data), "--out", str(out), "--workers", "1", "--resume", "--quiet")[0] == 0
    assert out.read_bytes() == whole
    out.write_bytes(whole[:30])  # killed inside the header: the first --resume starts afresh
    assert _score(capsys, str(data), "--out", str(out), "--workers", "1", "--resume", "--quiet")[0] == 0
    assert out.read_bytes() == whole


@pytest.mark.slow
def test_resume_after_kill_9_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_many(data, 3000)
    command = [sys.executable, "-m", "digitnet.service.cli", "score", str(data), "--model", str(DEFAULT_MODEL), "--workers", "1", "--batch-size", "8"]
    reference = tmp_path / "reference.csv"
    subprocess.run([*command, "--out", str(reference), "--quiet"], check=True, cwd=REPO)

    out = tmp_path / "killed.csv"
    process = subprocess.Popen([*command, "--out", str(out), "--quiet"], cwd=REPO)
    deadline = time.monotonic() + 60
    while (not out.exists() or out.read_text().count("\n") < 200) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = out.read_text().count("\n")
    assert 200 <= written < 3001, "the kill did not land mid-run"
    with out.open("a") as handle:
        handle.write(str(data / "9" / "torn-row.png") + ",digit,9,0.9")  # as if killed mid-write
    resumed = subprocess.run([*command, "--out", str(out), "--resume", "--quiet"], cwd=REPO)
    assert resumed.returncode == 0
    assert out.read_text() == reference.read_text(), "resume lost, duplicated or reordered rows"


@pytest.mark.slow
def test_server_mode_agrees_with_in_process(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    _score(capsys, str(mixed), "--out", str(local), "--format", "jsonl", "--workers", "2", "--quiet")
    with running_server() as server:
        code, _, _ = _score(capsys, str(mixed), "--out", str(remote), "--format", "jsonl", "--server", server.address, "--quiet")
    assert code == ExitCode.SOME_FAILED
    _assert_same_rows(local, remote)


def test_unreachable_server_is_a_run_failure(mixed: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_RETRY_SECONDS", "1")
    code, _, err = _score(capsys, str(mixed / "1"), "--server", "127.0.0.1:1", "--quiet")
    assert code == ExitCode.RUN_FAILED and "UNAVAILABLE" in err and "(retried for 1 s)" in err


def _assert_same_rows(a: Path, b: Path) -> None:
    rows_a = [json.loads(line) for line in a.read_text().splitlines()]
    rows_b = [json.loads(line) for line in b.read_text().splitlines()]
    assert [(r["path"], r["status"], r["label"]) for r in rows_a] == [(r["path"], r["status"], r["label"]) for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        np.testing.assert_allclose(ra["probabilities"], rb["probabilities"], atol=1e-5)


@pytest.mark.slow
def test_dask_cluster_agrees_with_in_process(mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import LocalCluster

    local, remote = tmp_path / "local.jsonl", tmp_path / "cluster.jsonl"
    _score(capsys, str(mixed), "--out", str(local), "--format", "jsonl", "--workers", "1", "--quiet")
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", protocol="tcp", dashboard_address=None) as cluster:
        code, _, _ = _score(
            capsys,
            str(mixed),
            "--out",
            str(remote),
            "--format",
            "jsonl",
            "--cluster",
            cluster.scheduler_address,
            "--model",
            str(DEFAULT_MODEL),
            "--quiet",
        )  # --model goes with --cluster: the workers get this model
    assert code == ExitCode.SOME_FAILED
    _assert_same_rows(local, remote)


def test_unlistable_folders_become_error_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, which can list anything: make os.walk report the failures instead.
    (tmp_path / "a.png").write_bytes(b"x")

    def walk(root: object, onerror: object = None) -> object:
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "locked")))  # type: ignore[operator]
        yield str(tmp_path), [], ["a.png"]
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "last")))  # type: ignore[operator]

    monkeypatch.setattr(batch.os, "walk", walk)
    items = list(batch.walk([tmp_path]))
    rows = [item for item in items if isinstance(item, Row)]
    assert [Path(r.path).name for r in rows] == ["locked", "last"]
    assert all(r.status is Outcome.ERROR and "cannot list folder: Permission denied" in r.error for r in rows)
    assert str(tmp_path / "a.png") in items


def test_a_folder_of_odd_files_finishes_in_process_and_through_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Files Pillow chokes on in unusual ways (OverflowError, a LAB TIFF once) used to crash the whole job,
    # or fail every ClassifyBatch through a server (exit 2 on every --resume).
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tiff_tiles_2G.tif", "tiff_LAB.tif", "bmp_rle8_4999x4999_eob.bmp", "png_ihdr_1x2000000.png"):
        shutil.copy(CORPUS / name, data / name)
    shutil.copy(GOLDEN / "5_scan.jpg", data / "5.jpg")
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    assert _score(capsys, str(data), "--out", str(local), "--format", "jsonl", "--workers", "1", "--quiet")[0] == ExitCode.SOME_FAILED
    with running_server() as server:
        code, _, _ = _score(capsys, str(data), "--out", str(remote), "--format", "jsonl", "--server", server.address, "--quiet")
    assert code == ExitCode.SOME_FAILED
    _assert_same_rows(local, remote)
    rows = {Path(r["path"]).name: r for r in map(json.loads, local.read_text().splitlines())}
    assert rows["5.jpg"]["label"] == 5 and rows["tiff_LAB.tif"]["status"] == "digit"
    assert "OverflowError" in rows["tiff_tiles_2G.tif"]["error"] and "longest side" in rows["png_ihdr_1x2000000.png"]["error"]


def test_server_mode_splits_requests_to_fit_the_servers_message_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 8 files of 300 KB, each under the image limit, 2.4 MB together: over the server's 1 MB message limit.
    # The client learns the limits from GetModelInfo and sends as many requests as it takes.
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(data / f"{i}.png")
        assert 250_000 < (data / f"{i}.png").stat().st_size < 400_000
    (data / "big.bin").write_bytes(bytes(1_500_000))  # over the message limit on its own: an error row, not a failed run
    out = tmp_path / "out.csv"
    with running_server(max_image_bytes=2_000_000, max_message_bytes=1_000_000) as server:
        code, _, err = _score(capsys, str(data), "--out", str(out), "--server", server.address, "--quiet")
    rows = {Path(row["path"]).name: row for row in _rows(out)}
    assert code == ExitCode.SOME_FAILED, err
    assert all(rows[f"{i}.png"]["status"] in ("digit", "unknown") for i in range(8)), "answered: noise gets a guess or an abstention"
    assert rows["big.bin"]["status"] == "error"
    assert "the image's 1500000 bytes do not fit the server's message limit of 1000000 bytes" in rows["big.bin"]["error"]


def test_a_chunk_counts_as_its_rows_one_by_one() -> None:
    from digitnet.service.batch.rows import ScoredChunk
    from digitnet.service.batch.score import Summary

    rows = [
        Row("a/3/x.png", Outcome.DIGIT, label=3, confidence=0.9, probabilities=(0.1,) * 10, true_label=3),
        Row("a/3/y.png", Outcome.DIGIT, label=5, confidence=0.9, probabilities=(0.1,) * 10, true_label=3),
        Row("a/7/z.png", Outcome.UNKNOWN, reason="blank image: too little ink to be a digit", true_label=7),
        Row("a/7/w.png", Outcome.ERROR, error="cannot decode", true_label=7),
        Row("b/v.png", Outcome.DIGIT, label=1, confidence=0.5, probabilities=(0.1,) * 10),
    ]
    one_by_one, at_once = Summary(), Summary()
    for row in rows:
        one_by_one.add(row)
    at_once.add_chunk(ScoredChunk.of(rows, "csv", labels_from_dirs=True))
    assert at_once.report() == one_by_one.report()
    assert (at_once.files, *(at_once.outcomes[outcome] for outcome in Outcome)) == (5, 3, 1, 1)


def test_rows_say_the_outcome_words_and_outputs_from_before_them_still_resume(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"  # written when a digit's status was "ok"
    old.write_text(
        ",".join(columns(False))
        + "\n"
        + "a.png,ok,3,0.9"
        + ",0.1" * 10
        + ",,\n"
        + "b.png,unknown,,,,,,,,,,,,,,blank image: too little ink to be a digit\n"
    )
    assert [(row.path, row.status, row.label) for row in parse_rows(old, "csv", False)] == [
        ("a.png", Outcome.DIGIT, 3),
        ("b.png", Outcome.UNKNOWN, None),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.png", "status": "fine", "label": 3}\n')
    with pytest.raises(ConfigurationError, match="bad.jsonl:1: not a digitnet JSON Lines row"):
        list(parse_rows(bad, "jsonl", False))


def test_resuming_another_runs_output_says_which_columns_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.csv"
    assert _score(capsys, str(REPO / "samples"), "--out", str(out), "--labels-from-dirs", "--workers", "1", "--quiet")[0] == ExitCode.OK
    code, _, err = _score(capsys, str(REPO / "samples"), "--out", str(out), "--resume", "--workers", "1", "--quiet")
    assert code == ExitCode.RUN_FAILED and "it has 'true_label', which this run does not write" in err
