"""Safe model reload, per model: load and warm a changed file beside the model it replaces, then swap; a file
that fails leaves that model's old version serving and the others untouched (protocol/repository.py).

Triggered by SIGHUP, or by --watch when a served model's file or card changes.
"""

from __future__ import annotations

import asyncio

from digitnet.service.protocol.repository import ModelRepository


class ModelReloader:
    """Reloads the repository's changed models on SIGHUP, or on a change noticed by watching their files."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    async def reload(self) -> bool:
        """Reload each model whose file or card changed since it was read; whether every reload worked (the
        repository logs and counts each)."""
        return all(await self.repository.reload_changed())

    async def watch(self, interval: float) -> None:
        """Reload the models whose files or cards change (looked at every `interval` seconds)."""
        while True:
            await asyncio.sleep(interval)
            if self.repository.changed():
                await asyncio.sleep(interval)  # let a copy in progress finish before reading it
                await self.reload()
