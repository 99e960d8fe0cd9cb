"""Safe model reload: load and warm the new model beside the old one, then swap; on failure keep serving.

Triggered by SIGHUP, or by --watch when the model file or its card changes.
"""

from __future__ import annotations

import asyncio
import logging

from digitnet.service.contract.card import card_path_for
from digitnet.service.contract.constants import MODEL_VERSION
from digitnet.service.contract.errors import DigitnetError, InternalError
from digitnet.service.contract.model import Model
from digitnet.service.inference.classifier import Classifier
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry.observability import RELOADS, describe_model

log = logging.getLogger(__name__)


def load_model(settings: ServerSettings) -> Model:
    """Load, verify (sha256 against the card) and warm the configured model."""
    model = Model.load(settings.model, provider=settings.provider, threads=1)
    model.warm_up()
    return model


def publish(model: Model) -> None:
    """Describe the served model in the digitnet_model info metric."""
    card = model.card
    describe_model(card.name if card else "", model.sha256, model.provider, card.architecture.activation if card else "", MODEL_VERSION)


class ModelReloader:
    """Swaps a freshly loaded model into a Classifier; one reload at a time."""

    def __init__(self, classifier: Classifier, settings: ServerSettings) -> None:
        self.classifier = classifier
        self.settings = settings
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Load the model file again; swap it in if it loads, verifies and warms up. Return whether it did."""
        async with self._lock:
            try:
                # Off the event loop: requests keep being answered by the old model meanwhile.
                model = await asyncio.get_running_loop().run_in_executor(None, load_model, self.settings)
            except Exception as err:  # whatever went wrong, the old model keeps serving
                RELOADS.labels("failed").inc()
                problem = err if isinstance(err, DigitnetError) else InternalError.logged(err, "model reload")
                log.error("model reload failed; still serving sha256 %s: %s", self.classifier.model.sha256[:12], problem)
                return False
            old = self.classifier.model
            self.classifier.model = model  # one reference assignment: each request sees the old or the new model
            publish(model)
            RELOADS.labels("ok").inc()
            log.info("model reloaded: sha256 %s -> %s on %s", old.sha256[:12], model.sha256[:12], model.provider)
            return True

    async def watch(self, interval: float) -> None:
        """Reload whenever the model file or its card changes (checked every `interval` seconds)."""
        last = self._fingerprint()
        while True:
            await asyncio.sleep(interval)
            current = self._fingerprint()
            if current != last:
                await asyncio.sleep(interval)  # let a copy in progress finish before reading it
                last = self._fingerprint()
                await self.reload()

    def _fingerprint(self) -> tuple[tuple[int, int], ...]:
        stats = []
        for path in (self.settings.model, card_path_for(self.settings.model)):
            try:
                stat = path.stat()
                stats.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                stats.append((0, 0))
        return tuple(stats)
