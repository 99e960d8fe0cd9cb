"""`digitnet predict`: classify image files locally or through a server, one JSON object per line.

The lines are exactly `digitnet score --format jsonl` rows.

Usage:
    failed = predict_files([Path("a.png")], server="localhost:50051", model=None, min_confidence=0.0, out=sys.stdout)
    failed = predict_files([Path("a.png")], server="localhost:50051", model=None, min_confidence=None, out=sys.stdout, model_name="sigmoid")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from digitnet.service.batch.job import score_paths
from digitnet.service.batch.rows import format_row
from digitnet.service.contract.results import Outcome
from digitnet.service.inference.classifier import Classifier

#: Images per ClassifyBatch request: well under the server's default batch and message limits.
_CHUNK = 256


def predict_files(
    paths: Sequence[Path], server: str | None, model: Path | None, min_confidence: float | None, out: TextIO, model_name: str = ""
) -> int:
    """Classify files with the model file `model`, or the server's model `model_name` ("": its default); write
    one JSON line each, and return how many failed."""
    names = [str(path) for path in paths]
    if server:
        from digitnet.service.client.digit_client import DigitClient

        with DigitClient(server, model=model_name) as client:
            chunks = (names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK))
            rows = [row for chunk in chunks for row in score_paths(client.classify_batch, chunk, min_confidence, False)]
    else:
        from digitnet.service.contract.model import Model

        assert model is not None, "predict needs a server or a model"
        rows = score_paths(Classifier(Model.load(model, threads=1)).classify, names, min_confidence, False)
    for row in rows:
        out.write(format_row(row, "jsonl", labels_from_dirs=False))
    return sum(row.status is Outcome.ERROR for row in rows)
