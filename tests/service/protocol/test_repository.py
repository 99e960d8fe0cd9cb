"""The model repository: models served by their cards' names, `digitnet` for the default, and one model loaded,
unloaded or reloaded without touching the others."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitnet.service.contract.card import read_card
from digitnet.service.contract.constants import MODEL_NAME
from digitnet.service.contract.errors import ConfigurationError, ModelError, NotFound, RepositoryError
from digitnet.service.inference.statistics import ANSWERING
from digitnet.service.protocol.repository import IndexEntry, ModelRepository
from digitnet.service.settings.server import ServerSettings

from ...conftest import DEFAULT_MODEL, LOGISTIC_MODEL
from ..conftest import write_model_that_fails_to_run, write_named_copy
from ..helpers import install, two_models

RELU, SIGMOID = read_card(DEFAULT_MODEL).name, read_card(LOGISTIC_MODEL).name


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A repository folder holding the two committed models."""
    return two_models(tmp_path / "models")


def _open(folder: Path, *models: Path, **settings: object) -> ModelRepository:
    return ModelRepository.open(ServerSettings(model_repository=folder, model=list(models), **settings))  # type: ignore[arg-type]


def test_a_folder_is_served_by_its_cards_names_with_its_default_onnx_as_the_default(folder: Path) -> None:
    repository = _open(folder)
    assert [served.name for served in repository.served()] == sorted([RELU, SIGMOID])
    assert repository.default_name == RELU
    assert repository.resolve(MODEL_NAME, "").name == repository.resolve("", "1").name == RELU
    assert repository.resolve(SIGMOID, "").model.card.architecture.activation == "logistic"  # type: ignore[union-attr]
    # Each model has its own classifier and statistics.
    relu, sigmoid = repository.resolve(RELU, ""), repository.resolve(SIGMOID, "")
    relu.classifier.classify_pixels(np.zeros((3, 784), dtype=np.float32))
    assert (relu.statistics.snapshot().inference_count, sigmoid.statistics.snapshot().inference_count) == (3, 0)


def test_resolving_marks_the_model_answering_the_call(folder: Path) -> None:
    repository = _open(folder)
    served = repository.resolve(SIGMOID, "")
    assert ANSWERING.get() is served.statistics


def test_an_unknown_model_or_version_is_not_found_naming_what_is_served(folder: Path) -> None:
    repository = _open(folder)
    with pytest.raises(NotFound) as caught:
        repository.resolve("mnist", "")
    assert f"unknown model 'mnist': this server serves '{RELU}' (the default, also 'digitnet')" in str(caught.value)
    assert f"'{SIGMOID}'" in str(caught.value)
    with pytest.raises(NotFound, match="available versions: 1"):
        repository.resolve(SIGMOID, "2")


def test_the_files_given_are_served_alone_the_first_as_the_default(folder: Path) -> None:
    repository = _open(folder, folder / "logistic.onnx")
    assert [served.name for served in repository.served()] == [SIGMOID] and repository.default_name == SIGMOID
    # The folder's other model is in the repository, not loaded.
    assert IndexEntry(RELU, "1", "UNAVAILABLE", "unloaded") in repository.index(ready=True)
    with pytest.raises(NotFound, match=f"model '{RELU}' is not loaded: load it"):
        repository.resolve(RELU, "")


def test_the_start_refuses_a_repository_it_cannot_serve(tmp_path: Path, folder: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match="no model to serve: .* holds no .onnx file"):
        _open(empty)
    install(DEFAULT_MODEL, folder / "copy.onnx")
    with pytest.raises(ConfigurationError, match=f"two models are named '{RELU}'"):
        _open(folder)
    with pytest.raises(ModelError, match="model name 'two words' is not allowed"):
        _open(folder, write_named_copy(DEFAULT_MODEL, tmp_path / "odd.onnx", "two words"))
    with pytest.raises(ConfigurationError, match="only the default model may be named 'digitnet'"):
        _open(folder, DEFAULT_MODEL, write_named_copy(DEFAULT_MODEL, tmp_path / "alias.onnx", MODEL_NAME))


def test_the_index_lists_every_model_with_its_state(folder: Path) -> None:
    (folder / "broken.onnx").write_bytes(b"not a model")  # and no card
    repository = _open(folder, folder / "default.onnx")
    entries = {entry.name: entry for entry in repository.index(ready=True)}
    assert entries[RELU] == IndexEntry(RELU, "1", "READY", "")
    assert entries[SIGMOID] == IndexEntry(SIGMOID, "1", "UNAVAILABLE", "unloaded")
    assert entries["broken"].state == "UNAVAILABLE" and "cannot read the model card" in entries["broken"].reason
    assert {entry.state for entry in repository.index(ready=False) if entry.name == RELU} == {"UNAVAILABLE"}


def test_unload_and_load_change_one_model_and_leave_the_others_serving(folder: Path) -> None:
    async def scenario() -> None:
        repository = _open(folder)
        await repository.unload(SIGMOID)
        assert [served.name for served in repository.served()] == [RELU]
        assert repository.resolve("", "").name == RELU
        with pytest.raises(NotFound, match="is not loaded"):
            repository.resolve(SIGMOID, "")
        with pytest.raises(RepositoryError, match=f"cannot unload '{RELU}': it is the only model"):
            await repository.unload(MODEL_NAME)  # the default's other name is the default
        with pytest.raises(NotFound, match="unknown model 'mnist'"):
            await repository.load("mnist")
        loaded = await repository.load(SIGMOID)
        assert repository.resolve(SIGMOID, "") is loaded
        await repository.unload(RELU)  # the default: `digitnet` then names a model that is not loaded
        with pytest.raises(NotFound, match=f"the default model '{RELU}' .* is unloaded"):
            repository.resolve(MODEL_NAME, "")
        await repository.load(RELU)
        assert repository.resolve(MODEL_NAME, "").name == RELU

    asyncio.run(scenario())


def test_a_file_that_fails_to_load_changes_nothing(tmp_path: Path, folder: Path) -> None:
    async def scenario() -> None:
        repository = _open(folder, folder / "default.onnx")
        write_named_copy(DEFAULT_MODEL, folder / "spare.onnx", "spare")
        shutil.copy(folder / "spare.onnx", tmp_path / "spare.onnx")
        (folder / "spare.onnx").write_bytes((tmp_path / "spare.onnx").read_bytes()[:-10])  # its sha256 no longer matches
        with pytest.raises(ModelError, match="does not match its card"):
            await repository.load("spare")
        assert [served.name for served in repository.served()] == [RELU]

    asyncio.run(scenario())


def test_a_server_of_several_workers_refuses_repository_changes(folder: Path) -> None:
    repository = _open(folder, workers=2)
    with pytest.raises(RepositoryError, match="2 worker processes"):
        asyncio.run(repository.unload(SIGMOID))


def test_only_changed_files_are_reloaded_and_a_broken_one_keeps_its_old_version(folder: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        repository = _open(folder)
        relu, sigmoid = repository.resolve(RELU, ""), repository.resolve(SIGMOID, "")
        before = relu.model, sigmoid.model
        assert await repository.reload_changed() == []  # nothing changed: nothing reloaded
        install(write_model_that_fails_to_run(tmp_path / "broken.onnx"), folder / "default.onnx")
        install(LOGISTIC_MODEL, folder / "logistic.onnx")  # the same model, a new file
        assert sorted(await repository.reload_changed()) == [False, True]
        assert relu.model is before[0] and sigmoid.model is not before[1]
        assert await repository.reload_changed() == []  # the broken file is not retried until it changes again

    asyncio.run(scenario())
