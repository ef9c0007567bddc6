"""Text PostgreSQL cannot store is the client's fault: 422 problem, nothing written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import text

from runyard.shared.http import PROBLEM_JSON, database_error_code, install_problem_handlers
from runyard.shared.testing import running_app
from shared.tests.pipeline import SCHEMA, PipelineDb


def build_app(db: PipelineDb) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/notes")
    async def add_note(request: Request) -> dict[str, str]:
        note = (await request.json())["note"]
        async with db.sessionmaker() as session, session.begin():
            await session.execute(
                text(f"INSERT INTO {SCHEMA}.effects (event_id, note) VALUES ('e', :n)"), {"n": note}
            )
        return {"note": note}

    @app.post("/configs")
    async def add_config(request: Request) -> dict[str, Any]:
        config = (await request.json())["config"]
        async with db.sessionmaker() as session, session.begin():
            await session.execute(
                text(f"INSERT INTO {SCHEMA}.configs (config) VALUES (CAST(:c AS jsonb))"),
                {"c": json.dumps(config)},
            )
        return {"config": config}

    @app.get("/divide")
    async def divide() -> None:
        async with db.sessionmaker() as session:
            await session.execute(text("SELECT 1 / 0"))

    return app


@pytest.fixture
async def client(pipeline_db: PipelineDb) -> AsyncIterator[Any]:
    async with pipeline_db.engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {SCHEMA}.configs (config jsonb NOT NULL)"))
    async with running_app(build_app(pipeline_db), raise_app_exceptions=False) as c:
        yield c


async def rows(db: PipelineDb, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.{table}"))).scalar())


async def test_nul_character_in_a_text_column_is_a_422_problem_and_nothing_is_written(
    client: Any, pipeline_db: PipelineDb
) -> None:
    answer = await client.post("/notes", json={"note": "before\x00after"})

    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["title"] == "Unsupported character"
    assert await rows(pipeline_db, "effects") == 0
    assert (await client.post("/notes", json={"note": "fine"})).status_code == 200


async def test_nul_character_in_a_jsonb_value_is_a_422_problem(
    client: Any, pipeline_db: PipelineDb
) -> None:
    answer = await client.post("/configs", json={"config": {"key\x00": ["v"]}})

    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert await rows(pipeline_db, "configs") == 0


async def test_other_database_errors_stay_500_without_internals(client: Any) -> None:
    answer = await client.get("/divide")

    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert "division" not in answer.text


def test_database_error_code_is_found_through_the_exception_chain() -> None:
    class DriverError(Exception):
        sqlstate = "22021"

    class WrapperError(Exception):
        def __init__(self, orig: BaseException) -> None:
            super().__init__("wrapped")
            self.orig = orig

    try:
        try:
            raise WrapperError(DriverError())
        except WrapperError as wrapped:
            raise RuntimeError("outer") from wrapped
    except RuntimeError as outer:
        assert database_error_code(outer) == "22021"
    assert database_error_code(ValueError("no database here")) is None


async def test_a_database_that_went_away_mid_request_is_a_503_to_retry_not_a_500(
    pipeline_db: PipelineDb,
) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/terminated")
    async def terminated() -> None:
        # what a PostgreSQL restart does to a pooled connection: 57P01 admin_shutdown
        async with pipeline_db.sessionmaker() as session:
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    @app.get("/unreachable")
    async def unreachable() -> None:
        from runyard.shared.db import create_engine
        from runyard.shared.testing import free_port

        engine = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    async with running_app(app, raise_app_exceptions=False) as c:
        for path in ("/terminated", "/unreachable"):
            response = await c.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.headers["retry-after"] == "1"


def test_a_database_starting_up_is_transient_for_consumers_too() -> None:
    """57P03 reaches the consumer as a plain DBAPIError (no connection_invalidated); it must be
    retried, not dead-lettered: the PostgreSQL-restart fault test lost an event that way."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    from runyard.shared.inbox import is_transient

    starting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    wrapped = DBAPIError("SELECT 1", {}, starting)
    assert not wrapped.connection_invalidated
    assert is_transient(wrapped)
    assert not is_transient(DBAPIError("SELECT 1", {}, asyncpg.exceptions.DivisionByZeroError()))
