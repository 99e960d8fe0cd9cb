"""`digitnet score --shard K/N` and `--merge`: disjoint shards that cover the listing and stay put as files are added,
shards scored (and resumed) then merged byte for byte into the one-process output, and every refusal one line."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from PIL import Image

from digitnet.service.batch.job import ScoreRequest, walk
from digitnet.service.batch.merge import merge_shards
from digitnet.service.batch.rows import Format, Row, ScoredChunk
from digitnet.service.batch.score import ScoreJob, Summary, report_path, run_job
from digitnet.service.batch.shards import Shard, key_of, shard_of
from digitnet.service.cli.main import main
from digitnet.service.contract.errors import ConfigurationError, ExitCode
from digitnet.service.contract.model import Model
from digitnet.service.inference.classifier import Classifier

from ...conftest import DEFAULT_MODEL, GOLDEN, REPO

SAMPLES = REPO / "samples"
COUNTS = (1, 2, 3, 7)
FORMATS: list[tuple[Format, bool]] = [("csv", True), ("csv", False), ("jsonl", True), ("jsonl", False)]


class InProcess:
    """A backend scoring in this process (LocalBackend's workers, without spawning them): the same rows, faster."""

    def __init__(self) -> None:
        self.classifier = Classifier(Model.load(DEFAULT_MODEL, threads=1))

    def score(self, chunks: Iterable[list[str]], request: ScoreRequest) -> Iterator[ScoredChunk]:
        """Score each chunk, in order."""
        return (request.score(self.classifier.classify, chunk) for chunk in chunks)

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture(scope="module")
def backend() -> InProcess:
    return InProcess()


def make_folder(root: Path, count: int = 300) -> Path:
    """Small PNGs in nested labelled folders, bad files, odd names, a hidden file and a hidden folder."""
    digits = [(GOLDEN / f"{d}_mnist.png").read_bytes() for d in range(10)]
    for i in range(count):
        folder = root / f"batch{i % 4}" / str(i % 10) / ("deep" if i % 11 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.png").write_bytes(digits[i % 10])
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "truncated.png").write_bytes(digits[4][:200])
    (bad / "notes.txt").write_text("not an image")
    Image.new("L", (40, 40), 255).save(bad / "blank.png")
    for name in ("a\nb.png", 'say "hi", ok.png', os.fsdecode(b"latin-1 \xe9.png")):  # quoted, escaped, written byte for byte
        (root / "batch1" / "3" / name).write_bytes(digits[3])
    (root / ".hidden.png").write_bytes(digits[1])
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(digits[1])
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("shards"))


def _paths(roots: Sequence[Path], shard: Shard | None = None) -> list[str]:
    return [item.path if isinstance(item, Row) else item for item in walk(roots, shard)]


def _score(backend: InProcess, roots: list[Path], out: Path, fmt: Format, labels: bool, shard: Shard | None = None, resume: bool = False) -> Summary:
    job = ScoreJob(roots=roots, out=out, fmt=fmt, batch_size=16, labels_from_dirs=labels, shard=shard, resume=resume, quiet=True)
    return run_job(job, backend)


@pytest.fixture(scope="module")
def whole(backend: InProcess, folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[Format, bool], tuple[Path, Summary]]:
    """The one-process output and summary of the folder and the samples, in every format."""
    outputs = tmp_path_factory.mktemp("whole")
    runs = {}
    for fmt, labels in FORMATS:
        out = outputs / f"whole-{labels}.{fmt}"
        runs[fmt, labels] = out, _score(backend, [folder, SAMPLES], out, fmt, labels)
    return runs


def _shard_outputs(backend: InProcess, roots: list[Path], where: Path, fmt: Format, labels: bool, count: int) -> list[Path]:
    outputs = [where / f"part-{index}.{fmt}" for index in range(count)]
    for index, out in enumerate(outputs):
        _score(backend, roots, out, fmt, labels, Shard(index, count))
    return outputs


@pytest.mark.parametrize("count", COUNTS)
def test_shards_are_disjoint_and_cover_the_listing_in_its_order(folder: Path, count: int) -> None:
    for roots in ([folder], [SAMPLES], [folder, SAMPLES]):
        every = _paths(roots)
        shards = [_paths(roots, Shard(index, count)) for index in range(count)]
        assert sorted(path for shard in shards for path in shard) == sorted(every)  # together, each file once
        assert len(set(every)) == len(every)
        for shard in shards:
            assert shard == [path for path in every if path in set(shard)], "a shard lists its files in the listing's order"
    if count > 1:  # a spread, not everything in one shard (the hash is fixed: these are facts, not chances)
        assert all(_paths([folder], Shard(index, count)) for index in range(count))


def test_a_files_shard_depends_on_its_own_path_under_its_root_only(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(folder, copy)

    def shards(root: Path, count: int) -> dict[str, int]:
        return {Path(path).relative_to(root).as_posix(): index for index in range(count) for path in _paths([root], Shard(index, count))}

    before = {count: shards(copy, count) for count in COUNTS}
    assert before == {count: shards(folder, count) for count in COUNTS}, "the same files under another root split alike"
    (copy / "batch2" / "new").mkdir()
    for name in ("batch2/new/x.png", "batch0/0/0000a.png", "zzz.png", "batch3/7/deep/new.png"):
        shutil.copy(GOLDEN / "5_mnist.png", copy / name)
    for count in COUNTS:
        after = shards(copy, count)
        assert len(after) == len(before[count]) + 4
        assert {path: after[path] for path in before[count]} == before[count], "adding files moved another file between shards"
    # What decides it: a hash of the path under the root, the same in every process (no salted hash()).
    assert key_of(str(folder / "batch1" / "3" / "0003.png"), str(folder)) == "batch1/3/0003.png"
    assert key_of("/x.png", "/") == "x.png" and key_of("one.png", "one.png") == "one.png"
    # Pinned: outputs scored by another process, or another version, must split alike.
    assert [shard_of("batch1/3/0003.png", count) for count in (1, 2, 3, 7, 1000)] == [0, 1, 2, 3, 249]


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize(("fmt", "labels"), FORMATS)
def test_shards_scored_and_merged_are_the_one_process_output(
    backend: InProcess,
    folder: Path,
    whole: dict[tuple[Format, bool], tuple[Path, Summary]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: Format,
    labels: bool,
    count: int,
) -> None:
    reference, summary = whole[fmt, labels]
    roots = [folder, SAMPLES]
    outputs = _shard_outputs(backend, roots, tmp_path, fmt, labels, count)
    merged = tmp_path / f"merged.{fmt}"
    code = main(["score", *map(str, roots), "--out", str(merged), *(["--labels-from-dirs"] if labels else []), "--merge", *map(str, outputs)])
    err = capsys.readouterr().err
    assert code == summary.exit_code == ExitCode.SOME_FAILED  # the bad files' error rows, as one process says
    assert merged.read_bytes() == reference.read_bytes()
    # The same summary: counts, accuracy and confusion matrix; only how the rows came differs.
    one_process, printed = summary.text(labels).splitlines(), err.splitlines()
    assert printed[0].split(";")[0] == one_process[0].split(";")[0] and summary.files == 327 and summary.errors == 3
    assert f"; merged from {count} shard outputs in " in printed[0]
    assert printed[1:] == one_process[1:] and (len(one_process) > 1) == labels
    if labels:
        assert report_path(merged).read_text() == report_path(reference).read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no temporary file left behind"


@pytest.mark.parametrize(("fmt", "labels"), [("csv", True), ("jsonl", False)])
def test_an_interrupted_shard_resumed_then_merged_is_still_the_one_process_output(
    backend: InProcess, folder: Path, whole: dict[tuple[Format, bool], tuple[Path, Summary]], tmp_path: Path, fmt: Format, labels: bool
) -> None:
    roots = [folder, SAMPLES]
    outputs = _shard_outputs(backend, roots, tmp_path, fmt, labels, 3)
    complete = outputs[1].read_bytes()
    newline_name = complete.index(b"a\nb.png" if fmt == "csv" else b"a\\nb.png")  # in quotes; JSON escapes it
    for cut in (newline_name + 2, len(complete) // 2, len(complete) - 3):  # torn inside a quoted name, mid-file, in the last row
        outputs[1].write_bytes(complete[:cut])
        summary = _score(backend, roots, outputs[1], fmt, labels, Shard(1, 3), resume=True)
        assert outputs[1].read_bytes() == complete
        assert summary.files == len(_paths(roots, Shard(1, 3))) and 0 < summary.scored_now < summary.files  # its files, and only its own
    merged = tmp_path / f"merged.{fmt}"
    merge_shards(ScoreJob(roots=roots, out=merged, fmt=fmt, labels_from_dirs=labels), outputs)
    assert merged.read_bytes() == whole[fmt, labels][0].read_bytes()


@pytest.fixture(scope="module")
def parts(backend: InProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The samples scored whole and in 3 shards (and in 2), as CSV with labels; JSON Lines in 3 shards."""
    where = tmp_path_factory.mktemp("parts")
    _score(backend, [SAMPLES], where / "whole.csv", "csv", True)
    for count in (2, 3):
        (where / str(count)).mkdir()
        _shard_outputs(backend, [SAMPLES], where / str(count), "csv", True, count)
    (where / "jsonl").mkdir()
    _shard_outputs(backend, [SAMPLES], where / "jsonl", "jsonl", True, 3)
    (where / "nolabels").mkdir()
    _shard_outputs(backend, [SAMPLES], where / "nolabels", "csv", False, 3)
    return where


def _merge(capsys: pytest.CaptureFixture[str], out: Path, *args: str | Path) -> tuple[int, str]:
    try:
        code = main(["score", str(SAMPLES), "--out", str(out), "--labels-from-dirs", "--merge", *map(str, args)])
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def _edited(source: Path, target: Path, edit: str) -> Path:
    """A copy of a shard output, edited: a row twice, rows cut off, or another file's row."""
    lines = source.read_bytes().splitlines(keepends=True)
    changed = {
        "twice": lines[:2] + lines[1:],
        "unfinished": lines[:-1],
        "torn": lines[:-1] + [lines[-1][:20]],
        "empty": lines[:1],
        "extra": lines + [lines[-1].replace(b".png", b"-gone.png", 1)],
    }[edit]
    target.write_bytes(b"".join(changed))
    return target


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("jsonl shard", "part-1.jsonl is JSON Lines (its name says so), but this run writes CSV"),
        ("jsonl content", "part-1.out: its header is not this run's"),
        ("no labels", "its header is not this run's: it lacks true_label (check --format and --labels-from-dirs)"),
        ("missing", "2 outputs given, so 2 shards, but none holds shard "),
        ("another N", "or outputs of another N?"),
        ("same file twice", "are the same file: give each shard's output once"),
        ("a copy", "both start with"),
        ("twice", "has a row twice: "),
        ("unfinished", "is unfinished: it has no row for "),
        ("torn", "its last row is torn (the run was killed mid-write): finish it with --resume"),
        ("empty", "has no rows: unfinished? finish it with --resume"),
        ("extra", "has rows past the files of shard"),
        ("no such", "no such shard output: "),
    ],
)
def test_merge_refuses_what_is_not_every_shard_complete_in_one_line(
    parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    three = [parts / "3" / f"part-{index}.csv" for index in range(3)]
    cases: dict[str, Callable[[], list[Path]]] = {  # made only when asked for: each case's files are its own
        "jsonl shard": lambda: [three[0], parts / "jsonl" / "part-1.jsonl", three[2]],
        "jsonl content": lambda: [three[0], Path(shutil.copy(parts / "jsonl" / "part-1.jsonl", tmp_path / "part-1.out")), three[2]],
        "no labels": lambda: [three[0], parts / "nolabels" / "part-1.csv", three[2]],
        "missing": lambda: three[:2],
        "another N": lambda: [parts / "2" / "part-0.csv", parts / "2" / "part-1.csv", three[2]],
        "same file twice": lambda: [three[0], three[1], three[1]],
        "a copy": lambda: [three[0], three[1], Path(shutil.copy(three[1], tmp_path / "copy.csv"))],
        "no such": lambda: [three[0], three[1], tmp_path / "part-2.csv"],
    }
    given = cases[case]() if case in cases else [three[0], _edited(three[1], tmp_path / "edited.csv", case), three[2]]
    out = tmp_path / "merged.csv"
    code, err = _merge(capsys, out, *given)
    assert code == ExitCode.RUN_FAILED and len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in given if p.exists() and p.parent == tmp_path), "nothing written, nothing left"


def test_merge_and_shard_options_are_refused_in_one_line(parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    three = [str(parts / "3" / f"part-{index}.csv") for index in range(3)]
    existing = tmp_path / "merged.csv"
    existing.write_text("precious\n")
    refusals = {
        ("--out", str(existing)): "merged.csv exists: pass --force to overwrite it",
        ("--shard", "0/3", "--out", str(tmp_path / "m.csv")): "it takes no --shard or --resume",
        ("--resume", "--out", str(tmp_path / "m.csv")): "it takes no --shard or --resume",
        (): "--merge needs --out FILE",
    }
    for args, message in refusals.items():
        code = main(["score", str(SAMPLES), "--labels-from-dirs", *args, "--merge", *three])
        err = capsys.readouterr().err
        assert code == ExitCode.RUN_FAILED and len(err.strip().splitlines()) == 1 and message in err, (args, err)
    assert existing.read_text() == "precious\n"
    code = main(["score", str(SAMPLES), "--labels-from-dirs", "--out", str(existing), "--force", "--quiet", "--merge", *three])
    assert code == ExitCode.OK and existing.read_bytes() == (parts / "whole.csv").read_bytes()


def test_resuming_a_shard_with_another_shards_output_is_refused(backend: InProcess, parts: Path, tmp_path: Path) -> None:
    out = Path(shutil.copy(parts / "3" / "part-0.csv", tmp_path / "part-0.csv"))
    with pytest.raises(ConfigurationError, match=r"part-0.csv has rows of \d+ files that are not in shard 1/3 of this listing"):
        _score(backend, [SAMPLES], out, "csv", True, Shard(1, 3), resume=True)
    assert out.read_bytes() == (parts / "3" / "part-0.csv").read_bytes()
    assert _score(backend, [SAMPLES], out, "csv", True, Shard(0, 3), resume=True).scored_now == 0  # its own: nothing left to do


def test_the_report_of_a_merge_is_the_one_process_report(parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged.csv"
    code, err = _merge(capsys, out, *sorted((parts / "3").glob("part-*.csv")))
    assert code == ExitCode.OK and "20 files: 20 digit, 0 unknown, 0 error; merged from 3 shard outputs" in err
    assert json.loads(report_path(out).read_text())["accuracy"] == 1.0
    assert report_path(out).read_text() == report_path(parts / "whole.csv").read_text()


def test_json_lines_rows_of_other_columns_are_refused_as_a_csv_header_is(parts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A JSON row names its columns itself: true_label where the shards were scored with --labels-from-dirs.
    jsonl = [str(parts / "jsonl" / f"part-{index}.jsonl") for index in range(3)]
    code = main(["score", str(SAMPLES), "--out", str(tmp_path / "merged.jsonl"), "--merge", *jsonl])
    err = capsys.readouterr().err
    assert code == ExitCode.RUN_FAILED and err.strip().endswith(
        ":1: its row has true_label, which this run does not write (check --labels-from-dirs)"
    )
    assert os.listdir(tmp_path) == []
