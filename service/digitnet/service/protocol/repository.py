"""The model repository: every model the server serves, each by its card's name with its own classifier, adaptive
batcher and statistics; one loaded, unloaded or reloaded without touching the others.

The repository is a folder of ONNX files, each with its card beside it (Triton's model repository, KServe's and
MLServer's alike). The server starts with the files it was given, else every file in the folder; the default
model (the first file given, else the folder's default.onnx) also answers to `digitnet`, the one name the
server had before it served several. The data plane resolves every call's model here.

Usage:
    repository = ModelRepository.open(settings)   # loads, verifies and warms every model (blocking: at start)
    served = repository.resolve("sigmoid", "")    # "" or "digitnet": the default model
    await repository.unload("sigmoid"); await repository.load("sigmoid")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from digitnet.service.contract.card import card_path_for, check_model_name, read_card
from digitnet.service.contract.constants import DEFAULT_MODEL_FILE, MODEL_NAME, MODEL_VERSION
from digitnet.service.contract.errors import (
    ConfigurationError,
    DigitnetError,
    InternalError,
    InvalidInput,
    ModelError,
    NotFound,
    RepositoryError,
    echo,
)
from digitnet.service.contract.model import Model
from digitnet.service.inference.batching import MicroBatcher
from digitnet.service.inference.classifier import Classifier
from digitnet.service.inference.statistics import ANSWERING, InferenceStatistics
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry.observability import RELOADS, describe_model, forget_model

log = logging.getLogger(__name__)

#: A model file's identity on disk (inode, modification time and size of the file and of its card), to notice
#: a change: a file replaced by renaming another over it (an atomic deploy) has a new inode, whatever its time.
Fingerprint = tuple[tuple[int, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """The file's and its card's (inode, mtime, size); zeros for one that is missing."""
    stats = []
    for file in (path, card_path_for(path)):
        try:
            stat = file.stat()
            stats.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
        except OSError:
            stats.append((0, 0, 0))
    return tuple(stats)


@dataclass
class ServedModel:
    """One loaded model: its name, file, the classifier that runs it and the adaptive batcher in front of it."""

    name: str
    path: Path
    classifier: Classifier
    batcher: MicroBatcher | None
    loaded_from: Fingerprint  # of the file the model now serving was read from

    @property
    def statistics(self) -> InferenceStatistics:
        """Its Open Inference Protocol statistics (kept across reloads)."""
        return self.classifier.statistics

    @property
    def model(self) -> Model:
        """The model now serving (a reload replaces it in place)."""
        return self.classifier.model


@dataclass(frozen=True)
class IndexEntry:
    """One model of the repository index: name, version, state (READY, UNAVAILABLE) and why it is not ready."""

    name: str
    version: str
    state: str
    reason: str


def load_model(path: Path, settings: ServerSettings) -> Model:
    """Load, verify (sha256 against the card) and warm one model file."""
    model = Model.load(path, provider=settings.provider, threads=1)
    model.warm_up()
    return model


def _name_of(model: Model, path: Path) -> str:
    return check_model_name(model.card.name if model.card else path.stem)


class ModelRepository:
    """The served models by name, and the folder they and the models that may be loaded come from."""

    def __init__(self, settings: ServerSettings, models: list[ServedModel]) -> None:
        self.settings = settings
        self.folder = settings.model_repository
        self._served = {served.name: served for served in models}
        #: The model `digitnet`, and requests that name none, get: the first one loaded at start.
        self.default_name = models[0].name
        self._lock = asyncio.Lock()  # one change (load, unload, reload) at a time
        self._names: dict[Path, tuple[Fingerprint, tuple[str, Path, str]]] = {}  # each file's name, by its fingerprint

    @classmethod
    def open(cls, settings: ServerSettings) -> ModelRepository:
        """Load every model to serve at start: the files given, else the folder's (its default.onnx first).
        A model that fails stops the start, in one line naming its file."""
        paths = settings.model or _folder_models(settings.model_repository)
        if not paths:
            raise ConfigurationError(
                f"no model to serve: {settings.model_repository} holds no .onnx file; give one with --model, "
                f"or train one (digitnet train --out {settings.model_repository / DEFAULT_MODEL_FILE})"
            )
        models: list[ServedModel] = []
        for path in paths:
            model = load_model(path, settings)
            try:
                name = _name_of(model, path)
            except InvalidInput as err:
                raise ModelError(f"{card_path_for(path)}: {err}") from None
            clash = next((m for m in models if m.name == name), None)
            if clash is not None:
                raise ConfigurationError(f"two models are named {name!r} (their cards' name): {clash.path} and {path}; rename one and retrain it")
            if name == MODEL_NAME and models:
                raise ConfigurationError(f"{path}: only the default model may be named {MODEL_NAME!r}, the name the default answers to")
            models.append(_serve(name, path, model, settings))
        return cls(settings, models)

    # What the data plane asks

    def resolve(self, name: str, version: str) -> ServedModel:
        """The loaded model a call names ("" or `digitnet`: the default), marked as answering the current call
        (statistics and metric labels); NOT_FOUND for a model or version this server does not serve now."""
        served = self._served.get(self.default_name if name in ("", MODEL_NAME) else name)
        if served is None:
            raise NotFound(self._not_served(name))
        if version not in ("", MODEL_VERSION):
            raise NotFound(f"unknown version {echo(version)} of {served.name!r}: available versions: {MODEL_VERSION}")
        ANSWERING.set(served.statistics)
        return served

    def is_known(self, name: str) -> bool:
        """Whether `name` is a model of the repository, loaded or not (or the default's other name)."""
        return name in ("", MODEL_NAME) or name in self._served or any(found == name for found, _, _ in self._candidates())

    def served(self) -> list[ServedModel]:
        """The loaded models, by name."""
        return [self._served[name] for name in sorted(self._served)]

    def index(self, ready: bool) -> list[IndexEntry]:
        """Every model of the repository by name: READY when loaded and the server takes work (`ready`), else
        UNAVAILABLE with the reason (draining, unloaded, or why its card cannot be read)."""
        entries = [
            IndexEntry(name, MODEL_VERSION, "READY" if ready else "UNAVAILABLE", "" if ready else "the server is draining") for name in self._served
        ]
        served_paths = {served.path.resolve() for served in self._served.values()}
        for name, path, problem in self._candidates():
            if name not in self._served and path.resolve() not in served_paths:
                entries.append(IndexEntry(name, MODEL_VERSION, "UNAVAILABLE", problem or "unloaded"))
        return sorted(entries, key=lambda entry: entry.name)

    # Changes

    async def load(self, name: str) -> ServedModel:
        """Load the repository's model `name` (a loaded one is reloaded from its file); a file that fails leaves
        everything as it was, and the error says why."""
        self._check_changes_allowed("load")
        async with self._lock:
            served = self._served.get(self.default_name if name == MODEL_NAME else name)
            if served is not None:
                if not await self._reload(served):
                    raise ModelError(f"{served.path}: reloading {served.name!r} failed (the server log says why); the old version still serves")
                return served
            path = self._path_of(name)
            model = await asyncio.get_running_loop().run_in_executor(None, load_model, path, self.settings)
            if _name_of(model, path) != name:  # the card changed since the folder was read
                raise ModelError(f"{path}: its card now names it {_name_of(model, path)!r}, not {name!r}; load it by that name")
            served = self._served[name] = _serve(name, path, model, self.settings)
            log.info("model %s loaded from %s: sha256 %s on %s", name, path, model.sha256[:12], model.provider)
            return served

    async def unload(self, name: str) -> None:
        """Stop serving the model `name` (calls already running finish); the last model cannot be unloaded."""
        self._check_changes_allowed("unload")
        async with self._lock:
            name = self.default_name if name == MODEL_NAME else name
            served = self._served.get(name)
            if served is None:
                raise NotFound(self._not_served(name))
            if len(self._served) == 1:
                raise RepositoryError(f"cannot unload {name!r}: it is the only model this server serves; load another first")
            del self._served[name]
            if served.batcher is not None:
                served.batcher.close()
            forget_model(name)
            log.info(
                "model %s unloaded%s",
                name,
                f" (the default: `{MODEL_NAME}` answers NOT_FOUND until it is loaded again)" if name == self.default_name else "",
            )

    def changed(self) -> list[ServedModel]:
        """The loaded models whose file or card changed since it was read."""
        return [served for served in self._served.values() if fingerprint(served.path) != served.loaded_from]

    async def reload_changed(self) -> list[bool]:
        """Reload each loaded model whose file or card changed since it was read (SIGHUP, --watch); a broken file
        leaves that model's old version serving and the others untouched. Whether each reload worked."""
        async with self._lock:
            return [await self._reload(served) for served in self.changed()]

    # Inside

    async def _reload(self, served: ServedModel) -> bool:
        loaded_from = fingerprint(served.path)
        try:
            # Off the event loop: requests keep being answered by the old model meanwhile.
            model = await asyncio.get_running_loop().run_in_executor(None, load_model, served.path, self.settings)
        except Exception as err:  # whatever went wrong, the old model keeps serving
            RELOADS.labels(served.name, "failed").inc()
            problem = err if isinstance(err, DigitnetError) else InternalError.logged(err, "model reload")
            log.error("reloading model %s failed; still serving sha256 %s: %s", served.name, served.model.sha256[:12], problem)
            served.loaded_from = loaded_from  # the same broken file is not retried until it changes again
            return False
        old = served.model
        served.classifier.model = model  # one reference assignment: each request sees the old or the new model
        served.loaded_from = loaded_from
        _publish(served.name, model)
        RELOADS.labels(served.name, "ok").inc()
        log.info("model %s reloaded: sha256 %s -> %s on %s", served.name, old.sha256[:12], model.sha256[:12], model.provider)
        if model.card and model.card.name != served.name:  # the file is the model's identity; its name stays until a restart
            log.warning(
                "model %s: its new card names it %r; it keeps serving as %s until the server restarts", served.name, model.card.name, served.name
            )
        return True

    def _check_changes_allowed(self, change: str) -> None:
        if self.settings.workers > 1:
            raise RepositoryError(
                f"cannot {change} a model in a server of {self.settings.workers} worker processes: each has its own models; "
                "change the model files and send SIGHUP (or use --watch), or run one worker per container"
            )

    def _candidates(self) -> Iterator[tuple[str, Path, str]]:
        """(name, file, why it cannot be loaded or "") for each model file the repository can load: the files
        given at start and those in the folder."""
        seen: set[Path] = set()
        for path in [*self.settings.model, *_folder_models(self.folder)]:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            yield self._card_name(path)

    def _card_name(self, path: Path) -> tuple[str, Path, str]:
        # Cards are read again only when their file changes: unknown names (a client's typo, a fuzzer) cost a stat.
        now = fingerprint(path)
        known = self._names.get(path)
        if known is None or known[0] != now:
            try:
                found = (check_model_name(read_card(path).name), path, "")
            except DigitnetError as err:
                found = (path.stem, path, str(err))
            known = self._names[path] = (now, found)
        return known[1]

    def _path_of(self, name: str) -> Path:
        matches = [(path, problem) for found, path, problem in self._candidates() if found == name]
        if not matches:
            raise NotFound(self._not_served(name))
        if len(matches) > 1:
            raise RepositoryError(f"{len(matches)} files of the repository are named {name!r}: {', '.join(str(p) for p, _ in matches)}")
        path, problem = matches[0]
        if problem:
            raise ModelError(problem)
        return path

    def _not_served(self, name: str) -> str:
        served = ", ".join(f"{n!r} (the default, also {MODEL_NAME!r})" if n == self.default_name else repr(n) for n in sorted(self._served))
        if name in ("", MODEL_NAME) and self.default_name not in self._served:  # not for load/unload(""): no model is named ""
            return f"the default model {self.default_name!r} (`{MODEL_NAME}`) is unloaded: load it again, or name one of: {served}"
        if any(found == name for found, _, _ in self._candidates()):
            return f"model {name!r} is not loaded: load it (RepositoryModelLoad, or POST /v2/repository/models/{name}/load), or name one of: {served}"
        return f"unknown model {echo(name)}: this server serves {served}"


def _folder_models(folder: Path) -> list[Path]:
    """The folder's model files, its default.onnx first."""
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.onnx"))
    return sorted(files, key=lambda path: path.name != DEFAULT_MODEL_FILE)


def _serve(name: str, path: Path, model: Model, settings: ServerSettings) -> ServedModel:
    classifier = Classifier(model, settings.limits, settings.max_request_images, settings.min_confidence, InferenceStatistics(name))
    batcher = None
    if settings.max_batch_delay_ms:
        # Looks the model up per batch, so that a reload applies to batched requests too.
        batcher = MicroBatcher(classifier.forward, settings.max_batch_size, settings.max_batch_delay_ms / 1000, classifier.statistics)
    _publish(name, model)
    return ServedModel(name, path, classifier, batcher, fingerprint(path))


def _publish(name: str, model: Model) -> None:
    """Describe a served model in the digitnet_model info metric."""
    card = model.card
    describe_model(name, model.sha256, model.provider, card.architecture.activation if card else "", MODEL_VERSION)
