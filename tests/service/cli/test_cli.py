"""The `digitnet` command as a new user meets it: options checked, defaults that work from any folder,
stdin, outputs never overwritten silently, help that explains, and errors that say what to do."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from digitnet.service.cli.args import build_parser
from digitnet.service.cli.main import HANDLERS, main, server_settings

from ...conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL, RELU, REPO, SIGMOID
from ..conftest import ServerThread, running_server
from ..helpers import free_port

COMMAND = [sys.executable, "-m", "digitnet.service.cli"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse refusing an option
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "x", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["score", "x", "--batch-size", "-5"], "argument --batch-size: must be at least 1, got -5"),
        (["score", "x", "--workers", "-1"], "argument --workers: must be at least 1, got -1"),
        (["score", "x", "--workers", "two"], "argument --workers: expected a whole number, got 'two'"),
        (["score", "x", "--shard", "3/3"], "argument --shard: K counts from 0 and must be less than N, got '3/3'"),
        (["score", "x", "--shard", "0/0"], "argument --shard: N must be at least 1, got '0/0'"),
        (["score", "x", "--shard=-1/3"], "argument --shard: expected K/N, shard K of N with 0 <= K < N, got '-1/3'"),
        (["score", "x", "--shard", "1"], "argument --shard: expected K/N, shard K of N with 0 <= K < N, got '1'"),
        (["predict", "x", "--min-confidence", "2"], "argument --min-confidence: min_confidence must be a number in [0, 1], got 2"),
        (["train", "--heavy-pen", "1.5"], "argument --heavy-pen: must be in [0, 1], got 1.5"),
        (
            ["train", "--name", "x y"],
            "argument --name: model name 'x y' is not allowed: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ),
        (
            ["train", "--name", ""],
            "argument --name: model name '' is not allowed: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ),
        (["serve", "--workers", "0"], "--workers (or DIGITNET_WORKERS): Input should be greater than or equal to 1, got '0'"),
        (["serve", "--port", "http"], "--port (or DIGITNET_PORT): Input should be a valid integer, unable to parse string as an integer, got 'http'"),
        (["serve", "--token", "s3cret"], "--token would show the secret to every user of this machine (ps): set DIGITNET_TOKEN instead"),
    ],
)
def test_bad_options_are_one_clear_line_and_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = _run(capsys, *args)
    assert code == 2 and err.strip().splitlines()[-1].endswith(message) and "Traceback" not in err


def test_a_port_set_by_kubernetes_service_links_says_so(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_PORT", "tcp://10.0.0.7:50051")  # what a Service named digitnet gives every pod
    code, _, err = _run(capsys, "serve")
    assert code == 2 and "got 'tcp://10.0.0.7:50051'; Kubernetes sets that for a Service named digitnet" in err.strip().splitlines()[-1]


def test_serving_on_a_busy_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*COMMAND, "serve", "--port", str(port)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_format_follows_the_extension_and_a_conflict_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.jsonl"
    assert _run(capsys, "score", str(GOLDEN / "3_mnist.png"), "--out", str(out), "--workers", "1", "--quiet")[0] == 0
    assert json.loads(out.read_text())["label"] == 3  # JSON Lines, as the name says
    code, _, err = _run(capsys, "score", str(GOLDEN / "3_mnist.png"), "--out", str(tmp_path / "x.jsonl"), "--format", "csv")
    assert code == 2 and "--format csv does not match" in err


def test_resume_is_suggested_only_where_it_helps(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_RETRY_SECONDS", "0")
    code, _, err = _run(capsys, "score", str(GOLDEN), "--server", "127.0.0.1:1", "--out", str(tmp_path / "o.csv"), "--quiet")
    assert code == 2 and "UNAVAILABLE" in err and "--resume" not in err  # nothing was written: nothing to resume
    assert "is a digitnet server running at that address?" in err
    code, _, err = _run(capsys, "score", str(GOLDEN), "--server", "127.0.0.1:1", "--model", str(DEFAULT_MODEL))
    assert code == 2 and "--model and --server do not go together" in err and "--resume" not in err


def test_the_default_model_is_found_from_any_folder(tmp_path: Path) -> None:
    # It was models/default.onnx relative to the current folder: `digitnet predict` failed outside the checkout.
    image = tmp_path / "four.png"
    shutil.copy(GOLDEN / "4_scan.png", image)
    result = subprocess.run([*COMMAND, "predict", str(image)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == 4


def test_predict_reads_standard_input() -> None:
    result = subprocess.run(
        [*COMMAND, "predict", "-", str(GOLDEN / "2_mnist.png")], input=(GOLDEN / "6_scan.jpg").read_bytes(), capture_output=True, cwd=REPO, timeout=60
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0 and [(r["path"], r["label"]) for r in rows] == [("-", 6), (str(GOLDEN / "2_mnist.png"), 2)]


def test_explain_keeps_an_existing_picture_and_a_bad_image_exits_like_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"mine")
    code, _, err = _run(capsys, "explain", str(GOLDEN / "5_scan.png"), "-o", str(picture))
    assert code == 2 and "exists: pass --force" in err and picture.read_bytes() == b"mine"
    assert _run(capsys, "explain", str(GOLDEN / "5_scan.png"), "-o", str(picture), "--force")[0] == 0
    assert picture.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    explain_code, _, err = _run(capsys, "explain", str(bad), "-o", str(tmp_path / "other.png"))
    predict_code, _, _ = _run(capsys, "predict", str(bad))
    assert explain_code == predict_code == 1 and "not a readable image" in err


def test_every_command_has_a_description_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "evaluate", "serve", "health", "predict", "score", "explain", "weights", "report"):
        code, out, _ = _run(capsys, command, "--help")
        assert code == 0 and "example:\n  " in out and f"usage: digitnet {command}" in out
    out = _run(capsys, "serve", "--help")[1]
    assert "DIGITNET_TOKEN" in out and "--token" not in out


def test_the_command_summary_says_serve_answers_http_and_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    out = " ".join(_run(capsys, "--help")[1].split())
    assert "serve the model over gRPC and HTTP, with the draw-a-digit page" in out


def test_serve_flags_win_over_the_environment_which_wins_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_PORT", "7000")
    monkeypatch.setenv("DIGITNET_MAX_BATCH_SIZE", "9")
    args = build_parser(HANDLERS, serve_flags=True).parse_args(["serve", "--port", "5000", "--max-image-side", "99", "--watch"])
    settings = server_settings(args)
    assert (settings.port, settings.max_batch_size, settings.max_image_side, settings.watch, settings.host) == (5000, 9, 99, True, "127.0.0.1")


def test_every_server_setting_is_a_serve_flag_but_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    from digitnet.service.settings.server import ServerSettings

    out = " ".join(_run(capsys, "serve", "--help")[1].split())
    flags = {f"--{name.replace('_', '-')}" for name in ServerSettings.model_fields}
    assert {flag for flag in flags if f"[{flag} " not in out and f"[{flag}]" not in out} == {"--token"}
    assert "[--watch | --no-watch]" in out


def test_dev_without_a_task_prints_its_usage_only() -> None:
    result = subprocess.run([str(REPO / "dev")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "./dev test" in result.stderr and "set -euo" not in result.stderr


@pytest.mark.slow
def test_metrics_only_at_metrics_and_debug_logs_only_ours() -> None:
    metrics, port = free_port(), free_port()
    process = subprocess.Popen(
        [*COMMAND, "serve", "--port", str(port), "--metrics-port", str(metrics), "--log-level", "debug"], stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stderr is not None
    log = ""
    try:
        while "serving on port" not in log:
            line = process.stderr.readline()
            assert line, f"the server did not start: {log}"
            log += line
        assert b"digitnet_requests_total" in urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read()
        for path in ("/healthz", "/", "/metrics/x"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics}{path}", timeout=5)
            assert caught.value.code == 404
        assert main(["predict", "--server", f"127.0.0.1:{port}", str(GOLDEN / "1_mnist.png")]) == 0
    finally:
        process.terminate()
        log += process.communicate(timeout=30)[1]
    assert "rpc GetModelInfo OK" in log and "_cygrpc" not in log and "asyncio" not in log


def test_health_says_what_is_probably_wrong_with_tls(tmp_path: Path) -> None:
    from ..certs import make_pki

    pki = make_pki(tmp_path)
    with running_server(tls_cert=pki / "server.pem", tls_key=pki / "server.key") as server:
        result = subprocess.run([*COMMAND, "health", "--address", server.address], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert result.stdout.startswith("UNREACHABLE") and "set DIGITNET_TLS_CA" in result.stdout


def test_train_checks_it_can_write_before_it_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # It trained for a minute, then died with a PermissionError traceback on a read-only models/ folder.
    from digitnet.service.cli import outputs
    from digitnet.training import pipeline

    def denied(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")  # tests run as root, for whom chmod denies nothing

    def must_not_train(*args: object, **kwargs: object) -> object:
        raise AssertionError("training started before the output was known to be writable")

    monkeypatch.setattr(outputs.tempfile, "NamedTemporaryFile", denied)
    monkeypatch.setattr(pipeline, "train_and_export", must_not_train)
    code, _, err = _run(capsys, "train", "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and err.count("\n") == 1
    assert f"cannot write {tmp_path / 'm.onnx'}: Permission denied; make {tmp_path} writable" in err and "DIGITNET_UID" in err


def test_train_names_the_model_by_name_else_by_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from digitnet.training import pipeline

    names: list[str | None] = []

    def record(*args: object, name: str | None = None, **kwargs: object) -> object:
        names.append(name)
        raise KeyboardInterrupt  # no training: only the name it was given matters here

    monkeypatch.setattr(pipeline, "train_and_export", record)
    assert _run(capsys, "train", "--name", "relu", "--out", str(tmp_path / "default.onnx"))[0] == 130
    assert _run(capsys, "train", "--out", str(tmp_path / "default.onnx"))[0] == 130
    assert names == ["relu", None], "None: the pipeline names it by the --out file's stem"
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0 and "the model's name in the server's repository and its card (default: the --out file's stem)" in " ".join(out.split())


def test_serve_help_names_the_default_model_file_not_its_factory(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    out = _run(capsys, "serve", "--help")[1]
    assert "default factory" not in out and f"(default: {DEFAULT_MODEL.parent})" in out


def test_health_takes_server_as_predict_and_score_do(capsys: pytest.CaptureFixture[str]) -> None:
    with running_server() as server:
        assert _run(capsys, "health", "--server", server.address) == (0, "SERVING\n", "")
        assert _run(capsys, "health", "--address", server.address)[0] == 0  # the container's HEALTHCHECK spelling


def test_score_of_a_folder_that_does_not_exist_is_a_bad_option_and_writes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    code, _, err = _run(capsys, "score", str(tmp_path / "scans"), "--out", str(out))
    assert code == 2 and f"no such file or folder: {tmp_path / 'scans'}" in err and not out.exists()


def test_score_in_shards_then_merged_as_one_run_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples, whole = str(REPO / "samples"), tmp_path / "whole.jsonl"
    assert _run(capsys, "score", samples, "--out", str(whole), "--workers", "1", "--quiet")[0] == 0
    parts = [tmp_path / f"part-{index}.jsonl" for index in range(2)]
    for index, part in enumerate(parts):
        code, _, err = _run(capsys, "score", samples, "--shard", f"{index}/2", "--out", str(part), "--workers", "1")
        rows = part.read_text().count("\n")
        assert code == 0 and err.startswith(f"{rows} files: {rows} digit, 0 unknown, 0 error; scored {rows} now")  # its own files
    code, _, err = _run(capsys, "score", samples, "--out", str(tmp_path / "merged.jsonl"), "--merge", *map(str, parts))
    assert code == 0 and err.startswith("20 files: 20 digit, 0 unknown, 0 error; merged from 2 shard outputs in ")
    assert (tmp_path / "merged.jsonl").read_bytes() == whole.read_bytes()
    _, out, _ = _run(capsys, "score", "--help")
    assert "JOB_COMPLETION_INDEX" in out and "--merge SHARD_OUT [SHARD_OUT ...]" in out


# --model-name: a model of a server serving several, by the name its repository lists.


@pytest.fixture(scope="module")
def two_models() -> Iterator[ServerThread]:
    """A server of both committed models: the ReLU network (the default) and the sigmoid."""
    with running_server(model=[DEFAULT_MODEL, LOGISTIC_MODEL]) as server:
        yield server


def _probabilities(capsys: pytest.CaptureFixture[str], *args: str) -> list[list[float]]:
    code, out, err = _run(capsys, "predict", *args)
    assert code == 0, err
    return [json.loads(line)["probabilities"] for line in out.splitlines()]


def test_predict_asks_the_model_named(two_models: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    images = [str(GOLDEN / "7_scan.jpg"), str(GOLDEN / "2_rgba.png")]
    sigmoid = _probabilities(capsys, "--server", two_models.address, "--model-name", SIGMOID, *images)
    np.testing.assert_allclose(sigmoid, _probabilities(capsys, "--model", str(LOGISTIC_MODEL), *images), atol=1e-6)
    relu = _probabilities(capsys, "--server", two_models.address, "--model-name", RELU, *images)
    np.testing.assert_allclose(relu, _probabilities(capsys, "--model", str(DEFAULT_MODEL), *images), atol=1e-6)
    assert np.abs(np.array(sigmoid) - np.array(relu)).max() > 1e-3, "both names were answered by one model"
    assert _probabilities(capsys, "--server", two_models.address, *images) == relu  # no name: the server's default


def test_score_asks_the_model_named(two_models: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ("3_scan.png", "5_rgba.png", "8_scan.jpg"):
        shutil.copy(GOLDEN / name, folder / name)
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    assert _run(capsys, "score", str(folder), "--out", str(local), "--model", str(LOGISTIC_MODEL), "--workers", "1", "--quiet")[0] == 0
    code, _, err = _run(capsys, "score", str(folder), "--out", str(remote), "--server", two_models.address, "--model-name", SIGMOID, "--quiet")
    assert code == 0, err
    rows = [[json.loads(line) for line in out.read_text().splitlines()] for out in (local, remote)]
    assert [list(row) for row in rows[0]] == [list(row) for row in rows[1]]  # the same columns: nothing added
    assert [row["path"] for row in rows[0]] == [row["path"] for row in rows[1]] and len(rows[1]) == 3
    np.testing.assert_allclose([row["probabilities"] for row in rows[0]], [row["probabilities"] for row in rows[1]], atol=1e-6)


def test_explain_draws_the_model_named_and_says_which(two_models: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    image = str(GOLDEN / "4_scan.jpg")
    pictures = {name: tmp_path / f"{name}.png" for name in ("local", "sigmoid", "default")}
    assert _run(capsys, "explain", image, "--model", str(LOGISTIC_MODEL), "-o", str(pictures["local"]))[0] == 0
    code, out, _ = _run(capsys, "explain", image, "--server", two_models.address, "--model-name", SIGMOID, "-o", str(pictures["sigmoid"]))
    assert code == 0 and out.startswith(f"{image}: the network says 4 (") and f"; answered by the server's model {SIGMOID!r}; wrote" in out
    code, out, _ = _run(capsys, "explain", image, "--server", two_models.address, "-o", str(pictures["default"]))
    assert code == 0 and f"; answered by the server's model {RELU!r}; wrote" in out  # no name: the server's default, named
    drawn = {name: np.asarray(Image.open(path)) for name, path in pictures.items()}
    assert np.array_equal(drawn["local"], drawn["sigmoid"]) and not np.array_equal(drawn["sigmoid"], drawn["default"])


def test_health_of_a_model_loaded_unloaded_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    with running_server(model=[DEFAULT_MODEL, LOGISTIC_MODEL]) as server:  # its own: the test unloads a model
        assert _run(capsys, "health", "--server", server.address, "--model-name", SIGMOID) == (0, "SERVING\n", "")
        server.call(server.running.plane.repository.unload(SIGMOID))
        assert _run(capsys, "health", "--server", server.address, "--model-name", SIGMOID) == (
            1,
            f"NOT_SERVING: model {SIGMOID!r} is not loaded\n",
            "",
        )
        assert _run(capsys, "health", "--server", server.address, "--model-name", RELU)[0] == 0
        assert _run(capsys, "health", "--server", server.address)[0] == 0  # the server itself still serves
        code, out, err = _run(capsys, "health", "--server", server.address, "--model-name", "nine")
    assert code == 1 and not err and out.count("\n") == 1
    assert out.startswith("NOT_FOUND: unknown model 'nine': this server serves ") and repr(RELU) in out


@pytest.mark.parametrize("command", [["predict", str(GOLDEN / "1_mnist.png")], ["score", str(GOLDEN)], ["explain", str(GOLDEN / "1_mnist.png")]])
def test_model_name_needs_a_server_and_a_name_it_serves(
    command: list[str], two_models: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["-o", str(tmp_path / "e.png")] if command[0] == "explain" else []
    code, _, err = _run(capsys, *command, *out, "--model-name", SIGMOID)
    assert code == 2 and err.count("\n") == 1
    assert err.endswith("error: --model-name picks a model of a server (--server); without one, give the file with --model\n")
    code, stdout, err = _run(capsys, *command, *out, "--server", two_models.address, "--model-name", "nine")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and not stdout
    assert err.startswith(f"digitnet {command[0]}: error: NOT_FOUND: unknown model 'nine': this server serves ") and repr(SIGMOID) in err
