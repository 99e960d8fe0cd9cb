"""Each HTTP handler on its own, without a server or a transport: called directly over a real data plane."""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from digitnet.service.contract.errors import NotFound
from digitnet.service.contract.picture_style import STRONGEST
from digitnet.service.http.routes import ROUTES, Routes
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.protocol.repository import ModelRepository
from digitnet.service.settings.server import ServerSettings

from ...conftest import DEFAULT_MODEL


@dataclass
class _State:
    ready: bool = True
    draining_now: bool = False


@pytest.fixture(scope="module")
def routes() -> Routes:
    settings = ServerSettings(model=DEFAULT_MODEL)
    return Routes(DataPlane(ModelRepository.open(settings), ThreadPoolExecutor(1), _State(ready=False)), ThreadPoolExecutor(1), settings)


def test_the_route_table_names_every_handler_and_only_handlers() -> None:
    handlers = {name for name, member in inspect.getmembers(Routes, inspect.iscoroutinefunction) if name not in ("body_of", "work")}
    assert {route.handler for route in ROUTES} == handlers


def test_metadata_and_readiness_answer_without_a_server(routes: Routes) -> None:
    assert asyncio.run(routes.model_metadata("digitnet"))["inputs"][0]["name"] == "pixels"
    assert asyncio.run(routes.ready()).status_code == 503  # this plane's server is not ready
    with pytest.raises(NotFound, match="unknown model 'other'"):
        asyncio.run(routes.model_config("other"))


def test_the_network_route_gives_the_page_what_it_draws(routes: Routes) -> None:
    network = asyncio.run(routes.network())
    assert [len(w) for w in network["weights"]] == [784, 16, 16] and network["strongest"] == STRONGEST
    assert network["min_confidence"] == 0.5
