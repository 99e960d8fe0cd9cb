"""The output of `digitnet score`: CSV or JSON Lines rows written whole, resumable after any interruption.

Each row is formatted in memory and written with one write() and a flush, so an interrupted run
leaves whole rows; if a kill -9 lands mid-write, `--resume` cuts the torn last row off and goes on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TextIO

from digitnet.service.batch import Row
from digitnet.service.constants import LABELS, PATH_ERRORS
from digitnet.service.errors import ConfigurationError, echo

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
_PROBABILITY_COLUMNS = [f"p{label}" for label in LABELS]



#: Output formats by file extension, for --out without --format.
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_for(out: Path | None, given: Format | None) -> Format:
    """The output format: as given, else from --out's extension, else CSV; a conflict between the two is refused."""
    implied = _EXTENSIONS.get(out.suffix.lower()) if out is not None else None
    if given and implied and given != implied:
        raise ConfigurationError(f"--format {given} does not match {out}: name it {out.with_suffix('.' + given) if out else ''} or drop --format")
    return given or implied or "csv"


def columns(labels_from_dirs: bool) -> list[str]:
    """The CSV header."""
    return ["path", "status", "label", "confidence", *_PROBABILITY_COLUMNS, "error", "reason"] + (["true_label"] if labels_from_dirs else [])


def format_row(row: Row, fmt: Format, labels_from_dirs: bool) -> str:
    """Render one row as a complete line."""
    if fmt == "jsonl":
        record: dict[str, object] = {"path": row.path, "status": row.status, "label": row.label}
        record["confidence"] = None if row.confidence is None else _round(row.confidence)
        record["probabilities"] = [_round(p) for p in row.probabilities]
        record["error"], record["reason"] = row.error, row.reason
        if labels_from_dirs:
            record["true_label"] = row.true_label
        return json.dumps(record) + "\n"
    probabilities = [f"{p:.6g}" for p in row.probabilities] or [""] * len(_PROBABILITY_COLUMNS)
    confidence = "" if row.confidence is None else f"{row.confidence:.6g}"
    values = [row.path, row.status, _blank(row.label), confidence, *probabilities, row.error, row.reason]
    if labels_from_dirs:
        values.append(_blank(row.true_label))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _round(value: float) -> float:
    # float32 probabilities carry about 7 significant digits: print 6, as the CSV does.
    return float(f"{value:.6g}")


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def parse_rows(path: Path, fmt: Format, labels_from_dirs: bool) -> Iterator[Row]:
    """Read back the rows of an existing output (for --resume), checking it is the format asked for."""
    with path.open(newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, 1):
                try:
                    record = json.loads(line)
                    yield Row(record["path"], record["status"], record.get("label"), true_label=record.get("true_label"))
                except (ValueError, KeyError, TypeError) as err:
                    raise ConfigurationError(f"{path}:{number}: not a digitnet JSON Lines row ({err}); is --format right?") from err
            return
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != columns(labels_from_dirs):
            raise ConfigurationError(
                f"{path}: its header does not match this run's columns (check --format and --labels-from-dirs): {echo(header)}"
            )
        for values in reader:
            try:
                if len(values) != len(header):
                    raise ValueError(f"{len(values)} fields, expected {len(header)}")
                record = dict(zip(header, values))
                yield Row(record["path"], record["status"], _int(record["label"]), true_label=_int(record.get("true_label", "")))
            except ValueError as err:
                raise ConfigurationError(f"{path}:{reader.line_num}: not a digitnet CSV row ({err})") from err


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def drop_torn_row(path: Path, fmt: Format) -> None:
    """Cut off a last row that a kill interrupted mid-write, so that the file holds whole rows only."""
    with path.open("rb+") as handle:
        data = handle.read()
        length = _whole_rows_length(data, fmt)
        if length < len(data):
            handle.truncate(length)


def _whole_rows_length(data: bytes, fmt: Format) -> int:
    """How many leading bytes of an output file are whole rows."""
    if fmt == "jsonl":  # JSON escapes newlines: a row is a line
        return data.rfind(b"\n") + 1
    # A CSV row ends at a newline outside quotes (a path may hold a newline, quoted). Quotes inside a field
    # are doubled, so a newline is outside quotes exactly when an even number of quotes comes before it.
    quotes, end = data.count(b'"'), len(data)
    while (newline := data.rfind(b"\n", 0, end)) >= 0:
        quotes -= data.count(b'"', newline + 1, end)  # now: the quotes before this newline
        if quotes % 2 == 0:
            return newline + 1
        end = newline
    return 0


class RowWriter:
    """Writes rows to a file (or stdout) as they are scored, one flushed write per row."""

    def __init__(self, out: Path | None, fmt: Format, labels_from_dirs: bool, append: bool, stdout: TextIO) -> None:
        self.fmt = fmt
        self.labels_from_dirs = labels_from_dirs
        if out is None:
            self._handle, self._owned = stdout, False
        else:
            try:
                self._handle, self._owned = out.open("a" if append else "w", newline="", encoding="utf-8", errors=PATH_ERRORS), True
            except OSError as err:
                raise ConfigurationError(f"cannot write {out}: {err.strerror}") from err
        if fmt == "csv" and not append:
            self._write(",".join(columns(labels_from_dirs)) + "\n")

    def write(self, row: Row) -> None:
        """Write one whole row and flush it."""
        self._write(format_row(row, self.fmt, self.labels_from_dirs))

    def _write(self, line: str) -> None:
        self._handle.write(line)
        self._handle.flush()

    def close(self) -> None:
        """Close the file (never stdout)."""
        if self._owned:
            self._handle.close()
