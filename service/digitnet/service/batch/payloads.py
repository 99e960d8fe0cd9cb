"""Reading a payload log back (`digitnet payloads`): its images into a folder for a person to label, and the
labelled folder into MNIST IDX files that `digitnet train --data idx:DIR` reads.

Usage:
    count = export_payloads([Path("payloads.jsonl")], Path("review"))   # review/unlabelled/*.png, review/manifest.csv
    # a person moves each file into review/0 ... review/9 (or deletes it)
    count = labelled_to_idx(Path("review"))                           # review/idx/train-{images-idx3,labels-idx1}-ubyte
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from digitnet.service.contract.constants import IMAGE_SIDE, N_PIXELS
from digitnet.service.contract.errors import DigitnetError, InvalidInput
from digitnet.service.contract.limits import Limits
from digitnet.service.inference.classifier import prepare
from digitnet.service.inference.image_header import sniff

#: The manifest's columns: one row per image written.
MANIFEST_FIELDS = ("file", "model", "answer", "confidence", "status", "time", "request_id")
#: The IDX files `--data idx:DIR` reads (training's train part).
IDX_IMAGES, IDX_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def read_records(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """Every record of the payload logs (rotated files too: pass them all), in file order; a line that is not a
    record (a file cut mid-line by a crash) is skipped."""
    for path in paths:
        with path.open("rb") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("inputs"), list):
                    yield record


def export_payloads(paths: Sequence[Path], out: Path) -> int:
    """Write each recorded image into OUT/unlabelled/ (the 784 pixels as a 28x28 PNG, or the original bytes) and
    OUT/manifest.csv (what the server answered); returns how many images were written."""
    unlabelled = out / "unlabelled"
    unlabelled.mkdir(parents=True, exist_ok=True)
    written = 0
    with (out / "manifest.csv").open("w", newline="") as manifest:
        rows = csv.DictWriter(manifest, MANIFEST_FIELDS)
        rows.writeheader()
        for record in read_records(paths):
            answers = record.get("answers") or []
            for index, given in enumerate(record["inputs"]):
                name = _write_input(given, unlabelled, f"{_safe(str(record.get('id', 'x')))}-{index}")
                if name is None:  # not kept (over the size cap, or an image the server could not read)
                    continue
                answer = answers[index] if index < len(answers) else {}
                label = answer.get("label")
                rows.writerow(
                    {
                        "file": f"unlabelled/{name}",
                        "model": record.get("model", ""),
                        "answer": label if label is not None else answer.get("status", ""),
                        "confidence": answer.get("confidence") if answer.get("confidence") is not None else "",
                        "status": record.get("status", ""),
                        "time": record.get("time", ""),
                        "request_id": record.get("id", ""),
                    }
                )
                written += 1
    return written


def _write_input(given: dict[str, Any], folder: Path, stem: str) -> str | None:
    if given.get("pixels"):
        pixels = np.frombuffer(base64.b64decode(given["pixels"]), dtype=np.uint8)
        if pixels.size != N_PIXELS:
            return None
        # As the model saw it (MNIST's form: white ink on black), which the server's preprocessing takes as it is.
        Image.fromarray(pixels.reshape(IMAGE_SIDE, IMAGE_SIDE), mode="L").save(folder / f"{stem}.png")
        return f"{stem}.png"
    if given.get("original"):
        data = base64.b64decode(given["original"])
        header = sniff(data)  # PNG or JPEG; any other format keeps its bytes under .bin (the server reads it by content)
        suffix = f".{header.kind}" if header is not None else ".bin"
        (folder / f"{stem}{suffix}").write_bytes(data)
        return f"{stem}{suffix}"
    return None


def _safe(text: str) -> str:
    """A request id as a file name: letters, digits, - and _ only."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64] or "x"


def labelled_to_idx(folder: Path, limits: Limits | None = None) -> int:
    """Read FOLDER/0 ... FOLDER/9 (images a person labelled by moving them there), preprocess each as the server
    does, and write FOLDER/idx/ in MNIST's IDX form; returns how many images. An unreadable image is refused
    with its path."""
    limits = limits or Limits()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for digit in range(10):
        for path in sorted((folder / str(digit)).glob("*")) if (folder / str(digit)).is_dir() else []:
            if not path.is_file() or path.name.startswith("."):
                continue
            try:
                pixels = prepare(path.read_bytes(), limits)
            except DigitnetError as err:
                raise InvalidInput(f"{path}: {err}") from err
            images.append(np.zeros(N_PIXELS, np.uint8) if pixels is None else np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8))
            labels.append(digit)
    if not images:
        raise InvalidInput(f"{folder}: no labelled images: move each image into {folder}/0 ... {folder}/9 first")
    out = folder / "idx"
    out.mkdir(exist_ok=True)
    count = len(images)
    dimensions = b"".join(n.to_bytes(4, "big") for n in (count, IMAGE_SIDE, IMAGE_SIDE))
    (out / IDX_IMAGES).write_bytes(b"\x00\x00\x08\x03" + dimensions + np.stack(images).tobytes())  # magic: unsigned bytes, 3 dimensions
    (out / IDX_LABELS).write_bytes(b"\x00\x00\x08\x01" + count.to_bytes(4, "big") + np.asarray(labels, np.uint8).tobytes())
    return count
