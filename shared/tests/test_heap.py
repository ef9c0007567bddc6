"""A started service leaves its start-up objects out of the cyclic collector's walks, and puts
them back when it stops; cycles made while it serves are collected as ever."""

from __future__ import annotations

import gc
import weakref

from fastapi import APIRouter

from runyard.shared.runtime import ServiceSpec, create_service_app
from runyard.shared.settings import ServiceSettings
from runyard.shared.testing import running_app


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


async def test_start_up_objects_are_frozen_while_the_app_runs(kafka_bootstrap: str) -> None:
    settings = ServiceSettings(
        environment="test",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:9/none",
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
    )
    spec: ServiceSpec[ServiceSettings, None] = ServiceSpec(
        name="heap", schema="heap", settings=settings, routers=[APIRouter()]
    )
    app = create_service_app(spec)
    assert gc.get_freeze_count() == 0
    async with running_app(app):
        assert gc.get_freeze_count() > 10_000  # the modules, the app, what the test process holds
        made_later = Node()
        gone = weakref.ref(made_later)
        del made_later
        gc.collect()
        assert gone() is None
    assert gc.get_freeze_count() == 0
