"""`digitnet score --merge`: the shards' outputs merged into the output one process scoring every file writes.

The listing decides the order, as it does for one process: walk the input folders again and take each
file's row from its shard's output (each is in listing order already), so the merge streams, one row of
each output in memory, however large the run. Each row's bytes are copied as they are, so the result is
byte for byte what one process writes. The rows record nothing of the shards: each output's shard is
found by its first row (the first file of that shard), N is how many outputs are given, and an output
that does not hold exactly its shard's files, in order, is refused before anything is written.

Usage:
    job = ScoreJob(roots=[Path("scans")], out=Path("scores.csv"))
    summary = merge_shards(job, [Path("part-0.csv"), Path("part-1.csv"), Path("part-2.csv")])
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digitnet.service.batch.job import listing
from digitnet.service.batch.rows import Row, columns, implied_format, read_rows
from digitnet.service.batch.score import ScoreJob, Summary, write_report
from digitnet.service.batch.shards import shard_of
from digitnet.service.contract.errors import ConfigurationError, echo
from digitnet.service.contract.files import replacing

_FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON Lines"}


@dataclass
class _ShardOutput:
    """One shard's output, read a row at a time."""

    path: Path
    rows: Generator[tuple[bytes, Row], None, None]
    head: tuple[bytes, Row] | None = field(init=False)  # the next row; None once every row is taken
    shard: str = ""  # "K/N" once its first row is found in the listing
    last: str | None = None  # the path of the row taken last

    def __post_init__(self) -> None:
        self.head = next(self.rows, None)  # reads the header too: a wrong format is refused before any work

    def take(self, path: str, shard: str) -> tuple[bytes, Row]:
        """Take the next row, which must be the file `path` of shard `shard`."""
        if self.head is None:
            raise ConfigurationError(f"{self.path} is unfinished: it has no row for {echo(path)}; finish it with --shard {shard} --resume")
        raw, row = self.head
        if row.path != path:
            if row.path == self.last:
                raise ConfigurationError(f"{self.path} has a row twice: {echo(row.path)}")
            raise ConfigurationError(
                f"{self.path} does not follow the listing of shard {shard}: its row for {echo(row.path)} comes where {echo(path)}'s "
                "belongs (files added or removed since it was scored, or an output of another N?)"
            )
        self.last = row.path
        self.head = next(self.rows, None)
        return raw, row


def merge_shards(job: ScoreJob, outputs: Sequence[Path]) -> Summary:
    """Write to job.out (whole, or not at all) the rows one process scoring job.roots writes, from every shard's
    output (N: how many are given); refuse outputs that are not this listing's N shards, each complete."""
    assert job.out is not None, "the merge writes a file"
    count, started = len(outputs), time.perf_counter()
    _check_names(job, outputs)
    shards: list[_ShardOutput] = []
    by_index: dict[int, _ShardOutput] = {}
    summary = Summary(merged=count)
    try:
        for output in outputs:
            shards.append(_ShardOutput(output, read_rows(output, job.fmt, job.labels_from_dirs)))
        _check_first_rows(shards)
        with replacing(job.out, buffering=1 << 20) as out:  # a refused or interrupted merge leaves no half output
            if job.fmt == "csv":
                out.write((",".join(columns(job.labels_from_dirs)) + "\n").encode())
            for item, key in listing(job.roots):
                path = item.path if isinstance(item, Row) else item
                index = shard_of(key, count)
                shard = by_index.get(index) or _claim(shards, by_index, index, path)
                raw, row = shard.take(path, f"{index}/{count}")
                out.write(raw)
                summary.add(row)
            _check_all_taken(shards, count)
    finally:
        for shard in shards:
            shard.rows.close()  # the files, now rather than when collected
    summary.seconds = time.perf_counter() - started
    write_report(job, summary)
    return summary


def _check_names(job: ScoreJob, outputs: Sequence[Path]) -> None:
    """Refuse an output given twice, or one whose name says another format, before reading any."""
    seen: dict[Path, Path] = {}
    for path in outputs:
        if not path.is_file():
            raise ConfigurationError(f"no such shard output: {path}")
        if (twice := seen.setdefault(path.resolve(), path)) is not path:
            raise ConfigurationError(f"{twice} and {path} are the same file: give each shard's output once")
        implied = implied_format(path)
        if implied is not None and implied != job.fmt:
            raise ConfigurationError(f"{path} is {_FORMAT_NAMES[implied]} (its name says so), but this run writes {_FORMAT_NAMES[job.fmt]}")


def _check_first_rows(shards: list[_ShardOutput]) -> None:
    """Refuse two outputs that start with the same file: no two shards of one split do."""
    first: dict[str, Path] = {}
    for shard in shards:
        if shard.head is not None and (other := first.setdefault(shard.head[1].path, shard.path)) is not shard.path:
            raise ConfigurationError(
                f"{other} and {shard.path} both start with {echo(shard.head[1].path)}: the same shard twice, or outputs of another N?"
            )


def _claim(shards: list[_ShardOutput], by_index: dict[int, _ShardOutput], index: int, path: str) -> _ShardOutput:
    """Find the output of shard `index`: the one whose first row is `path`, that shard's first file."""
    count = len(shards)
    found = [shard for shard in shards if not shard.shard and shard.head is not None and shard.head[1].path == path]
    if not found:
        empty = [shard.path for shard in shards if not shard.shard and shard.head is None]
        why = f"{empty[0]} has no rows: unfinished? finish it with --resume" if empty else "a shard's output missing, or outputs of another N?"
        raise ConfigurationError(
            f"{count} outputs given, so {count} shards, but none holds shard {index}/{count} (its first file is {echo(path)}): {why}"
        )
    found[0].shard = f"{index}/{count}"
    by_index[index] = found[0]
    return found[0]


def _check_all_taken(shards: list[_ShardOutput], count: int) -> None:
    """Refuse rows left over once every listed file has its row: no file of the listing, or a row given twice."""
    for shard in shards:
        if shard.head is None:
            continue
        left = echo(shard.head[1].path)
        if shard.shard:
            raise ConfigurationError(
                f"{shard.path} has rows past the files of shard {shard.shard}, from {left} on: files removed since, or rows given twice?"
            )
        raise ConfigurationError(f"{shard.path} holds none of the {count} shards of this listing (its first row is {left}): another run's output?")
