"""`digitnet predict`: classify image files locally or through a server, one JSON object per line.

Usage:
    failed = predict_files([Path("a.png")], server="localhost:50051", out=sys.stdout)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from digitnet.service.core import Classifier, Outcome, Prediction
from digitnet.service.errors import DigitnetError


#: Images per ClassifyBatch request: well under the server's default batch and message limits.
_CHUNK = 256


def prediction_record(path: str, prediction: Prediction) -> dict[str, object]:
    """Describe one file's prediction as a JSON-ready dict (the same for local and server runs)."""
    record: dict[str, object] = {"path": path, "status": prediction.outcome.value}
    if prediction.outcome is Outcome.ERROR:
        record["error"] = prediction.reason
        return record
    record["label"] = prediction.label
    record["confidence"] = round(float(prediction.confidence), 6)
    record["probabilities"] = [round(float(p), 6) for p in prediction.probabilities]
    if prediction.reason:
        record["reason"] = prediction.reason
    return record


def predict_files(
    paths: Sequence[Path], server: str | None, model: Path, min_confidence: float, out: TextIO
) -> int:
    """Classify files, write one JSON line each, and return how many failed."""
    images: list[bytes | DigitnetError] = []
    for path in paths:
        try:
            images.append(path.read_bytes())
        except OSError as err:
            images.append(DigitnetError(f"cannot read {path}: {err.strerror}"))
    if server:
        from digitnet.service.client import DigitClient

        with DigitClient(server) as client:
            readable = [i for i in images if isinstance(i, bytes)]
            chunks = (readable[i : i + _CHUNK] for i in range(0, len(readable), _CHUNK))
            answers = iter([p for chunk in chunks for p in client.classify_batch(chunk, min_confidence)])
            predictions = [next(answers) if isinstance(i, bytes) else _error(i) for i in images]
    else:
        from digitnet.service.model import Model

        predictions = Classifier(Model.load(model, threads=1)).classify(images, min_confidence)
    failed = 0
    for path, prediction in zip(paths, predictions):
        failed += prediction.outcome is Outcome.ERROR
        out.write(json.dumps(prediction_record(str(path), prediction)) + "\n")
    return failed


def _error(error: DigitnetError) -> Prediction:
    return Prediction(Outcome.ERROR, reason=str(error), error=error)
