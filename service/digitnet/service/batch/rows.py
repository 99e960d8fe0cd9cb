"""The output of `digitnet score`: CSV or JSON Lines rows written whole, resumable after any interruption.

Rows are formatted where they are scored (in the worker processes), a chunk at a time, and each chunk
is written with one write() and a flush, so an interrupted run leaves whole rows; if a kill -9 lands
mid-write, `--resume` cuts the torn last row off and goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, TextIO

import numpy as np

from digitnet.service.contract.constants import LABELS, PATH_ERRORS
from digitnet.service.contract.errors import ConfigurationError, echo
from digitnet.service.contract.results import NO_LABEL, Outcome, Prediction, record

#: What outputs written before the status words became the outcome words said for a digit (read by --resume).
_LEGACY_DIGIT = "ok"


@dataclass(frozen=True)
class Row:
    """One scored file, as written to the output."""

    path: str
    status: Outcome  # written as its word: digit, unknown or error
    label: int | None = None
    confidence: float | None = None
    probabilities: tuple[float, ...] = ()
    error: str = ""  # why the file could not be scored (status error)
    reason: str = ""  # why there is no digit (status unknown)
    true_label: int | None = None


def true_label_of(path: str) -> int | None:
    """Return the digit named by a file's parent folder (DIR/7/x.png -> 7), or None."""
    parent = os.path.basename(os.path.dirname(path))
    return int(parent) if len(parent) == 1 and parent.isdigit() else None


def to_row(path: str, prediction: Prediction, labels_from_dirs: bool) -> Row:
    """Turn a prediction into an output row."""
    truth = true_label_of(path) if labels_from_dirs else None
    if prediction.outcome is Outcome.ERROR:
        return Row(path, Outcome.ERROR, error=prediction.reason, true_label=truth)
    return Row(
        path,
        prediction.outcome,
        label=prediction.label,
        confidence=float(prediction.confidence) if prediction.probabilities.size else None,
        probabilities=tuple(prediction.probabilities.tolist()),
        reason=prediction.reason,
        true_label=truth,
    )


Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
_PROBABILITY_COLUMNS = [f"p{label}" for label in LABELS]


#: Output formats by file extension, for --out without --format.
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def implied_format(path: Path) -> Format | None:
    """The format a file's extension names, if any."""
    return _EXTENSIONS.get(path.suffix.lower())


def format_for(out: Path | None, given: Format | None) -> Format:
    """The output format: as given, else from --out's extension, else CSV; a conflict between the two is refused."""
    implied = implied_format(out) if out is not None else None
    if given and implied and given != implied:
        raise ConfigurationError(f"--format {given} does not match {out}: name it {out.with_suffix('.' + given) if out else ''} or drop --format")
    return given or implied or "csv"


def columns(labels_from_dirs: bool) -> list[str]:
    """The CSV header."""
    return ["path", "status", "label", "confidence", *_PROBABILITY_COLUMNS, "error", "reason"] + (["true_label"] if labels_from_dirs else [])


def format_row(row: Row, fmt: Format, labels_from_dirs: bool) -> str:
    """Render one row as a complete line."""
    return format_rows([row], fmt, labels_from_dirs)


def format_rows(rows: Sequence[Row], fmt: Format, labels_from_dirs: bool) -> str:
    """Render rows as complete lines, in one go (one writer for them all: it costs more than a row)."""
    if fmt == "jsonl":
        return "".join(json.dumps(_record(row, labels_from_dirs)) + "\n" for row in rows)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(_values(row, labels_from_dirs) for row in rows)
    return buffer.getvalue()


def _record(row: Row, labels_from_dirs: bool) -> dict[str, object]:
    fields = record(row.status, row.label, row.confidence, row.probabilities, row.error, row.reason)
    return {"path": row.path, **fields, **({"true_label": row.true_label} if labels_from_dirs else {})}


def _values(row: Row, labels_from_dirs: bool) -> list[str]:
    probabilities = [f"{p:.6g}" for p in row.probabilities] or _NO_PROBABILITIES
    confidence = "" if row.confidence is None else f"{row.confidence:.6g}"
    values = [row.path, row.status.value, _blank(row.label), confidence, *probabilities, row.error, row.reason]
    if labels_from_dirs:
        values.append(_blank(row.true_label))
    return values


_NO_PROBABILITIES = [""] * len(_PROBABILITY_COLUMNS)
#: A ScoredChunk's byte for each outcome: its position among the outcomes.
_OUTCOME_BYTES = {outcome: bytes([position]) for position, outcome in enumerate(Outcome)}


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk's rows formatted for the output, and what the summary counts of them: compact, because a
    worker process sends it back whole (pickling row objects cost more than formatting them)."""

    text: str  # whole rows, in order
    statuses: bytes  # one per row: its outcome (_OUTCOME_BYTES)
    labels: bytes  # int8, one per row: the predicted digit, or NO_LABEL
    true_labels: bytes  # int8, one per row: the digit named by its folder, or NO_LABEL

    @classmethod
    def of(cls, rows: Sequence[Row], fmt: Format, labels_from_dirs: bool) -> ScoredChunk:
        """Format rows and note their counts."""
        return cls(
            format_rows(rows, fmt, labels_from_dirs),
            b"".join(_OUTCOME_BYTES[row.status] for row in rows),
            _label_bytes(row.label for row in rows),
            _label_bytes(row.true_label for row in rows),
        )

    def count(self, outcome: Outcome) -> int:
        """How many rows have this outcome."""
        return self.statuses.count(_OUTCOME_BYTES[outcome])

    def answered(self) -> np.ndarray:
        """Which rows got an answer (a digit or unknown), not an error: bool [rows]."""
        return np.frombuffer(self.statuses, dtype=np.uint8) != _OUTCOME_BYTES[Outcome.ERROR][0]

    def label_array(self) -> np.ndarray:
        """The predicted digits: int8 [rows], NO_LABEL where there is none."""
        return np.frombuffer(self.labels, dtype=np.int8)

    def true_label_array(self) -> np.ndarray:
        """The digits named by the rows' folders: int8 [rows], NO_LABEL where there is none."""
        return np.frombuffer(self.true_labels, dtype=np.int8)


def _label_bytes(labels: Iterable[int | None]) -> bytes:
    return np.array([NO_LABEL if label is None else label for label in labels], dtype=np.int8).tobytes()


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def _header_difference(header: list[str] | None, expected: list[str]) -> str:
    """What makes an output's header differ from the columns a run writes, in a few words."""
    if not header:
        return "the file has no header"
    extra, missing = [c for c in header if c not in expected], [c for c in expected if c not in header]
    problems = []
    if extra:  # anyone's CSV may come here: its column names are clipped as any echoed input is
        problems.append(f"it has {echo(', '.join(extra))}, which this run does not write")
    if missing:
        problems.append(f"it lacks {', '.join(missing)}")
    return "; ".join(problems) if problems else f"its columns are in another order: {echo(header)}"


def parse_rows(path: Path, fmt: Format, labels_from_dirs: bool) -> Iterator[Row]:
    """Read back the rows of an existing output (for --resume), checking it is the format asked for."""
    for _, row in read_rows(path, fmt, labels_from_dirs):
        yield row


def read_rows(path: Path, fmt: Format, labels_from_dirs: bool) -> Generator[tuple[bytes, Row], None, None]:
    """Read back an output's rows, each with its exact bytes (`score --merge` copies them), checking it is this
    run's format and columns; a torn last row is refused (drop_torn_row cuts it off)."""
    with path.open("rb") as handle:
        records, line = _records(handle, fmt), 1
        if fmt == "csv":
            raw_header = next(records, b"")
            header, expected = (_csv_values(raw_header) if raw_header.endswith(b"\n") else None), columns(labels_from_dirs)
            if header != expected:
                raise ConfigurationError(
                    f"{path}: its header is not this run's: {_header_difference(header, expected)} (check --format and --labels-from-dirs)"
                )
            line += 1
        for record in records:
            if not record.endswith(b"\n"):
                raise ConfigurationError(f"{path}:{line}: its last row is torn (the run was killed mid-write): finish it with --resume")
            yield record, _parse_record(path, line, record, fmt, labels_from_dirs)
            line += record.count(b"\n")


def _records(handle: BinaryIO, fmt: Format) -> Iterator[bytes]:
    """Split an output into its rows' bytes: a line each, or in a CSV as many lines as a quoted name holding
    newlines spans (as in _whole_rows_length: a row ends at a newline after an even number of quotes)."""
    if fmt == "jsonl":
        yield from handle
        return
    pending: list[bytes] = []
    quotes = 0
    for line in handle:
        pending.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield b"".join(pending)
            pending.clear()
    if pending:
        yield b"".join(pending)  # torn inside a quoted name


def _csv_values(record: bytes) -> list[str]:
    return next(csv.reader([record.decode("utf-8", PATH_ERRORS)]), [])


def _parse_record(path: Path, line: int, record: bytes, fmt: Format, labels_from_dirs: bool) -> Row:
    """One row of an output, as much of it as --resume and the summary need."""
    if fmt == "jsonl":
        try:
            fields = json.loads(record)
            row = Row(fields["path"], _outcome(fields["status"]), fields.get("label"), true_label=fields.get("true_label"))
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigurationError(f"{path}:{line}: not a digitnet JSON Lines row ({err}); is --format right?") from err
        if ("true_label" in fields) != labels_from_dirs:  # the CSV's header says as much; a JSON row says it in each row
            has = "lacks true_label" if labels_from_dirs else "has true_label, which this run does not write"
            raise ConfigurationError(f"{path}:{line}: its row {has} (check --labels-from-dirs)")
        return row
    names = columns(labels_from_dirs)
    try:
        values = _csv_values(record)
        if len(values) != len(names):
            raise ValueError(f"{len(values)} fields, expected {len(names)}")
        fields = dict(zip(names, values))
        return Row(fields["path"], _outcome(fields["status"]), _int(fields["label"]), true_label=_int(fields.get("true_label", "")))
    except ValueError as err:
        raise ConfigurationError(f"{path}:{line}: not a digitnet CSV row ({err})") from err


def _outcome(word: str) -> Outcome:
    return Outcome.DIGIT if word == _LEGACY_DIGIT else Outcome(word)  # ValueError: not a status word


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
    """Writes rows to a file (or stdout) as they are scored, one flushed write per chunk."""

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

    def write(self, chunk: ScoredChunk) -> None:
        """Write a chunk's whole rows and flush them."""
        self._write(chunk.text)

    def _write(self, line: str) -> None:
        self._handle.write(line)
        self._handle.flush()

    def close(self) -> None:
        """Close the file (never stdout)."""
        if self._owned:
            self._handle.close()
