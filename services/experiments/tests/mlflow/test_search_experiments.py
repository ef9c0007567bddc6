"""MLflow's search-experiments over Runyard projects: name, tag, time and id filters, MLflow's
orderings and default order, view types, offset pages, errors, and who sees what."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments.mlflow import search
from runyard.experiments.mlflow.errors import MlflowError
from runyard.experiments.models import Project
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.identity import Principal

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def sessions(db: Any) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db.url, pool_size=2)
    yield create_sessionmaker(engine, schema="experiments")
    await engine.dispose()


@pytest.fixture
def alice() -> Principal:
    return Principal(uuid.uuid4(), "user", "alice")


def project(owner: Principal, name: str, minutes: int = 0, **fields: Any) -> Project:
    moment = T0 + timedelta(minutes=minutes)
    fields.setdefault("updated_at", moment)
    return Project(owner_id=owner.user_id, name=name, created_at=moment, **fields)


async def add(sessions: async_sessionmaker[AsyncSession], *rows: Any) -> list[Any]:
    async with sessions() as session, session.begin():
        session.add_all(rows)
    return list(rows)


async def find(
    sessions: async_sessionmaker[AsyncSession],
    who: Principal,
    filter: str | None = None,
    *,
    view_type: str = "ACTIVE_ONLY",
    max_results: int = 1000,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[list[Project | None], str | None]:
    async with sessions() as session:
        return await search.search_projects(
            session,
            principal=who,
            filter=filter,
            view_type=view_type,
            max_results=max_results,
            order_by=order_by or [],
            page_token=page_token,
        )


async def names(
    sessions: async_sessionmaker[AsyncSession], who: Principal, *args: Any, **kw: Any
) -> list[str]:
    rows, _ = await find(sessions, who, *args, **kw)
    return [name_of(row) for row in rows]


def name_of(row: Project | None) -> str:
    """A project's name; the virtual Default experiment is ``None`` in the results."""
    return "Default" if row is None else row.name


async def matching(
    sessions: async_sessionmaker[AsyncSession], who: Principal, filter: str
) -> set[str]:
    return set(await names(sessions, who, filter))


def ms(minutes: int) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


async def test_filters(sessions: Any, alice: Principal) -> None:
    first, *_ = await add(
        sessions,
        project(alice, "Vision", 0, tags={"team": "cv"}),
        project(alice, "speech", 1, tags={"team": "audio", "mlflow.note.content": "x"}),
        project(alice, "misc", 2, updated_at=T0 + timedelta(minutes=10)),
    )
    assert await matching(sessions, alice, "name = 'Vision'") == {"Vision"}
    assert await matching(sessions, alice, "attribute.name != 'Vision'") == {
        "speech",
        "misc",
        "Default",
    }
    assert await matching(sessions, alice, "name LIKE 's%'") == {"speech"}
    assert await matching(sessions, alice, "name ILIKE 'v%'") == {"Vision"}
    assert await matching(sessions, alice, "tags.team = 'cv'") == {"Vision"}
    assert await matching(sessions, alice, "tag.team != 'cv'") == {"speech"}
    assert await matching(sessions, alice, "tags.`mlflow.note.content` LIKE '%'") == {"speech"}
    assert await matching(sessions, alice, "tags.team IS NULL") == {"misc", "Default"}
    assert await matching(sessions, alice, "tags.team IS NOT NULL") == {"Vision", "speech"}
    assert await matching(sessions, alice, f"creation_time > {ms(0)}") == {"speech", "misc"}
    assert await matching(sessions, alice, f"creation_time <= {ms(1)}") == {"Vision", "speech"}
    assert await matching(sessions, alice, f"last_update_time >= {ms(5)}") == {"misc"}
    assert await matching(sessions, alice, f"experiment_id = '{first.id}'") == {"Vision"}
    assert await matching(sessions, alice, f"experiment_id NOT IN ('{first.id}', '0')") == {
        "speech",
        "misc",
    }
    assert await matching(sessions, alice, "experiment_id = '0'") == {"Default"}
    # Default has no times: no time condition holds for it
    assert await matching(sessions, alice, f"creation_time <= {ms(1)}") == {"Vision", "speech"}
    assert await matching(sessions, alice, "name LIKE '%s%' AND tags.team = 'audio'") == {"speech"}


async def test_orders_views_pages_and_access(sessions: Any, alice: Principal) -> None:
    bob = Principal(uuid.uuid4(), "user", "bob")
    await add(
        sessions,
        project(alice, "b", 0),
        project(alice, "a", 1),
        project(alice, "c", 2),
        project(alice, "gone", 3, lifecycle_stage="deleted", deleted_at=T0),
        project(bob, "bobs", 4),
    )
    # the Default experiment in its place: the oldest, "Default" before lower-case names
    assert await names(sessions, alice) == ["c", "a", "b", "Default"]
    assert await names(sessions, alice, order_by=["name"]) == ["Default", "a", "b", "c"]
    assert await names(sessions, alice, order_by=["name DESC"]) == ["c", "b", "a", "Default"]
    assert await names(sessions, alice, order_by=["creation_time ASC"]) == [
        "Default",
        "b",
        "a",
        "c",
    ]
    assert await names(sessions, alice, view_type="DELETED_ONLY") == ["gone"]
    assert await names(sessions, alice, view_type="ALL") == ["gone", "c", "a", "b", "Default"]
    viewer = Principal(uuid.uuid4(), "viewer")
    assert await names(sessions, viewer) == ["bobs", "c", "a", "b", "Default"]
    seen: list[str] = []
    token = None
    while True:
        page, token = await find(sessions, viewer, view_type="ALL", max_results=2, page_token=token)
        seen += [name_of(p) for p in page]
        if token is None:
            break
    assert seen == ["bobs", "gone", "c", "a", "b", "Default"]


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"filter": "params.x = 'a'"}, "Invalid entity type 'params'"),
        ({"filter": "name IN ('a')"}, "Only ['experiment_id'] attributes support comparison"),
        ({"filter": "name > 'a'"}, "Invalid comparator '>' not one of"),
        ({"filter": "name NOT IN ('a')"}, "Only ['experiment_id'] attributes support"),
        ({"filter": "creation_time > 1.5"}, "Invalid value for numeric attribute 'creation_time'"),
        ({"filter": "creation_time LIKE 1"}, "Invalid comparator 'LIKE' not one of"),
        ({"filter": "experiment_id > '1'"}, "Invalid comparator for experiment_id: >"),
        ({"filter": "experiment_id = 'x'"}, "Invalid experiment ID 'x'"),
        ({"filter": "name IS NULL"}, "IS NULL / IS NOT NULL is only supported for tags"),
        ({"filter": "lifecycle_stage = 'active'"}, "Invalid attribute key 'lifecycle_stage'"),
        ({"order_by": ["tags.team"]}, "Invalid order_by entity: tag"),
        ({"order_by": ["artifact_location"]}, "Invalid attribute key 'artifact_location'"),
        ({"page_token": "!!!"}, "Invalid page token"),
        ({"max_results": 50001}, "It must be at most 50000"),
    ],
)
async def test_invalid_requests(
    sessions: Any, alice: Principal, request_fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(MlflowError) as raised:
        await find(sessions, alice, **request_fields)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in raised.value.message
