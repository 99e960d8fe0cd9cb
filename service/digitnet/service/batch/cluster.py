"""Score on a Dask distributed cluster: each worker loads the model once and scores chunks of the file list.

The files must be readable at the same paths on the workers (a shared filesystem or volume); the
model travels with the job, so workers need only digitnet installed. Output, order and resume are
exactly those of a local run: the client writes the rows, in order.

Usage:
    backend = ClusterBackend("tcp://scheduler:8786", Path("models/default.onnx"), window=8)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from digitnet.service.batch.job import ScoreRequest, in_order
from digitnet.service.batch.rows import ScoredChunk
from digitnet.service.contract.card import ModelCard
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.contract.model import Model
from digitnet.service.inference.classifier import Classifier

# Per worker process: classifiers by model sha256, so the model is loaded once however many chunks run.
_classifiers: dict[str, Classifier] = {}


def _score_on_worker(paths: list[str], model: tuple[bytes, ModelCard], request: ScoreRequest) -> ScoredChunk:
    data, card = model
    key = str(card.model_sha256)
    if key not in _classifiers:
        _classifiers[key] = Classifier(Model(data, card, threads=1))
    return request.score(_classifiers[key].classify, paths)


@dataclass
class ClusterBackend:
    """Score through a Dask scheduler at `address` (e.g. tcp://10.0.0.5:8786)."""

    address: str
    model_path: Path
    window: int = 0  # chunks in flight; 0 = twice the cluster's worker threads
    _model: object = field(init=False)

    def __post_init__(self) -> None:
        from distributed import Client  # imported here: only --cluster needs dask

        model = Model.load(self.model_path, threads=1)  # verify here, before shipping it anywhere
        try:
            self._client = Client(self.address, timeout="10s")
        except OSError as err:
            raise ConfigurationError(f"cannot reach the Dask scheduler at {self.address}: {err}") from err
        # Ship the model once to every worker, not once per chunk.
        self._model = self._client.scatter((model.data, model.card), broadcast=True)
        if not self.window:
            self.window = 2 * max(1, sum(self._client.nthreads().values()))

    def score(self, chunks: Iterable[list[str]], request: ScoreRequest) -> Iterator[ScoredChunk]:
        """Yield each chunk's rows, in order."""

        def submit(chunk: list[str]):  # type: ignore[no-untyped-def]
            # pure=False: the same paths may hold new files on a later run; never reuse a cached result.
            return self._client.submit(_score_on_worker, chunk, self._model, request, pure=False)

        return in_order(submit, chunks, self.window)

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        self._client.close()
