"""`digitnet score`: run a scoring job end to end (resume, progress, summary, accuracy report).

Usage:
    job = ScoreJob(roots=[Path("scans")], out=Path("scores.csv"), labels_from_dirs=True)
    summary = run_job(job, LocalBackend(Path("models/default.onnx"), workers=2))
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from digitnet.service.batch.job import Backend, ScoreRequest, walk
from digitnet.service.batch.rows import Format, Row, RowWriter, ScoredChunk, drop_torn_row, parse_rows
from digitnet.service.batch.shards import Shard
from digitnet.service.contract.constants import LABELS, N_CLASSES
from digitnet.service.contract.errors import ConfigurationError, ExitCode
from digitnet.service.contract.results import NO_LABEL, Outcome, confusion_matrix


@dataclass(frozen=True)
class ScoreJob:
    """What to score and where the rows go."""

    roots: list[Path]
    out: Path | None = None  # None: standard output
    fmt: Format = "csv"
    batch_size: int = 64
    min_confidence: float | None = None
    labels_from_dirs: bool = False
    shard: Shard | None = None  # None: every file
    resume: bool = False
    force: bool = False
    quiet: bool = False


@dataclass
class Summary:
    """Counts over every row of the output (earlier runs' rows too, when resuming)."""

    files: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)  # rows by outcome
    scored_now: int = 0
    merged: int = 0  # shard outputs merged (score --merge), instead of scoring
    seconds: float = 0.0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((N_CLASSES, N_CLASSES + 1), dtype=np.int64))

    def add(self, row: Row) -> None:
        """Count one row; with a true label, add it to the confusion matrix (last column: unknown)."""
        self.files += 1
        self.outcomes[row.status] += 1
        if row.true_label is not None and row.status is not Outcome.ERROR:
            self.confusion[row.true_label, N_CLASSES if row.label is None else row.label] += 1

    def add_chunk(self, chunk: ScoredChunk) -> None:
        """Count a chunk's rows, as add() does one by one."""
        self.files += len(chunk.statuses)
        for outcome in Outcome:
            self.outcomes[outcome] += chunk.count(outcome)
        truth = chunk.true_label_array()
        counted = (truth != NO_LABEL) & chunk.answered()
        if counted.any():
            self.confusion += confusion_matrix(truth[counted], chunk.label_array()[counted], unknown_column=True)

    @property
    def errors(self) -> int:
        """Rows whose file could not be scored."""
        return self.outcomes[Outcome.ERROR]

    @property
    def exit_code(self) -> int:
        """0 when every file was scored, 1 when some could not be."""
        return ExitCode.SOME_FAILED if self.errors else ExitCode.OK

    def report(self) -> dict[str, object]:
        """The accuracy report (for --labels-from-dirs)."""
        labelled = int(self.confusion.sum())
        correct = int(np.trace(self.confusion[:, :N_CLASSES]))
        return {
            "files": self.files,
            **{outcome.value: self.outcomes[outcome] for outcome in Outcome},
            "labelled": labelled,
            "accuracy": correct / labelled if labelled else None,
            "confusion_matrix": self.confusion[:, :N_CLASSES].tolist(),
            "unknown_by_true_label": self.confusion[:, N_CLASSES].tolist(),
        }

    def text(self, labels_from_dirs: bool) -> str:
        """The human summary printed at the end."""
        rate = self.scored_now / self.seconds if self.seconds else 0.0
        done = (
            f"merged from {self.merged} shard outputs in {self.seconds:.1f} s"
            if self.merged
            else f"scored {self.scored_now} now in {self.seconds:.1f} s ({rate:,.0f} images/s)"
        )
        lines = [f"{self.files} files: " + ", ".join(f"{self.outcomes[outcome]} {outcome.value}" for outcome in Outcome) + "; " + done]
        report = self.report()
        if labels_from_dirs and report["labelled"]:
            lines.append(f"accuracy {report['accuracy']:.4f} on {report['labelled']} labelled files (unknown counts as wrong)")
            lines.append("confusion matrix (rows: true digit; columns: predicted, then unknown)")
            lines.append("     " + "".join(f"{label:>6}" for label in LABELS) + "     ?")
            lines += [f"{label:>5}" + "".join(f"{n:>6}" for n in row) for label, row in zip(LABELS, self.confusion)]
        return "\n".join(lines)


def report_path(out: Path) -> Path:
    """Where the JSON accuracy report goes: beside the output."""
    return out.with_name(out.name + ".report.json")


def write_report(job: ScoreJob, summary: Summary) -> None:
    """Write the JSON accuracy report beside the output, for --labels-from-dirs into a file."""
    if job.labels_from_dirs and job.out is not None:
        report_path(job.out).write_text(json.dumps(summary.report(), indent=2) + "\n")


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(islice(paths, size)):
        yield chunk


def run_job(job: ScoreJob, backend: Backend, stderr: TextIO | None = None, stdout: TextIO | None = None) -> Summary:
    """Score every file not already in the output; write rows as they come; return the summary."""
    stderr, stdout = stderr or sys.stderr, stdout or sys.stdout
    summary = Summary()
    done: set[str] = set()
    append = False
    if job.out is not None and job.out.exists() and job.out.stat().st_size > 0:
        if job.resume:
            drop_torn_row(job.out, job.fmt)
            append = job.out.stat().st_size > 0  # a run killed inside its header starts afresh
            for row in parse_rows(job.out, job.fmt, job.labels_from_dirs) if append else ():
                done.add(row.path)
                summary.add(row)
        elif not job.force:
            raise ConfigurationError(f"{job.out} exists: --resume to finish that job, or --force to overwrite it")
    elif job.resume and job.out is None:
        raise ConfigurationError("--resume needs --out FILE")

    # Count first (paths only, nothing kept) so that the progress bar can show an ETA.
    total = listed_done = 0
    for item in walk(job.roots, job.shard):
        if (item.path if isinstance(item, Row) else item) in done:
            listed_done += 1
        else:
            total += 1
    if job.shard is not None and listed_done < len(done):  # most likely resumed with another shard's --shard
        raise ConfigurationError(
            f"{job.out} has rows of {len(done) - listed_done} files that are not in shard {job.shard} of this listing: "
            f"another shard's output, or files removed since (--force starts this shard afresh)"
        )
    request = ScoreRequest(job.min_confidence, job.fmt, job.labels_from_dirs)
    writer = RowWriter(job.out, job.fmt, job.labels_from_dirs, append, stdout)
    started = time.perf_counter()
    try:
        with tqdm(total=total, unit="img", disable=True if job.quiet else None, file=stderr, dynamic_ncols=True) as progress:

            def todo() -> Iterator[str]:
                for item in walk(job.roots, job.shard):
                    if isinstance(item, Row):  # an unlistable folder: report it, nothing to score
                        if item.path not in done:
                            writer.write(ScoredChunk.of([item], job.fmt, job.labels_from_dirs))
                            summary.add(item)
                            progress.update()
                    elif item not in done:
                        yield item

            for chunk in backend.score(_chunks(todo(), job.batch_size), request):
                writer.write(chunk)
                summary.add_chunk(chunk)
                summary.scored_now += len(chunk.statuses)
                progress.update(len(chunk.statuses))
    finally:
        summary.seconds = time.perf_counter() - started
        writer.close()
    write_report(job, summary)
    return summary
