"""MLflow's search-runs over Runyard experiments: every comparator class of MLflow's filter
language, its identifiers and quoting, MLflow's orderings (missing values last), offset pages,
view types, the errors MLflow answers for a bad request, and who sees what."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments.mlflow import search
from runyard.experiments.mlflow.errors import MlflowError
from runyard.experiments.models import Experiment, Project, User
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.identity import Principal

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
async def sessions(db: Any) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db.url, pool_size=2)
    yield create_sessionmaker(engine, schema="experiments")
    await engine.dispose()


@pytest.fixture
def alice() -> Principal:
    return Principal(uuid.uuid4(), "user", "alice")


@pytest.fixture
def bob() -> Principal:
    return Principal(uuid.uuid4(), "user", "bob")


def make_run(owner: Principal, name: str | None = None, **fields: Any) -> Experiment:
    fields.setdefault("status", "running")
    fields.setdefault("started_at", T0)
    return Experiment(owner_id=owner.user_id, name=name or f"run-{uuid.uuid4().hex[:8]}", **fields)


async def add(sessions: async_sessionmaker[AsyncSession], *rows: Any) -> list[Any]:
    async with sessions() as session, session.begin():
        session.add_all(rows)
    return list(rows)


async def find(
    sessions: async_sessionmaker[AsyncSession],
    who: Principal,
    filter: str | None = None,
    *,
    experiment_ids: list[uuid.UUID | None] | None = None,
    view_type: str = "ACTIVE_ONLY",
    max_results: int = 1000,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[list[Experiment], str | None]:
    async with sessions() as session:
        return await search.search_runs(
            session,
            principal=who,
            experiment_ids=[None] if experiment_ids is None else experiment_ids,
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
    return [row.name for row in rows]


async def matching(
    sessions: async_sessionmaker[AsyncSession], who: Principal, filter: str
) -> set[str]:
    return set(await names(sessions, who, filter))


async def test_metric_comparators_and_missing_metrics(sessions: Any, alice: Principal) -> None:
    await add(
        sessions,
        make_run(alice, "low", metrics={"acc": 0.1, "val loss": 2.0}),
        make_run(alice, "mid", metrics={"acc": 0.5, "val loss": 0.5}),
        make_run(alice, "high", metrics={"acc": 0.9}),
        make_run(alice, "none", metrics={}),
        make_run(alice, "text", metrics={"acc": "n/a"}),
    )
    assert await matching(sessions, alice, "metrics.acc > 0.4") == {"mid", "high"}
    assert await matching(sessions, alice, "metrics.acc >= 0.5") == {"mid", "high"}
    assert await matching(sessions, alice, "metric.acc < 0.5") == {"low"}
    assert await matching(sessions, alice, "metrics.acc <= 0.5") == {"low", "mid"}
    assert await matching(sessions, alice, "metrics.acc = 0.5") == {"mid"}
    # a run without the metric never matches, not even !=
    assert await matching(sessions, alice, "metrics.acc != 0.5") == {"low", "high"}
    assert await matching(sessions, alice, "metrics.acc > -1e3") == {"low", "mid", "high"}
    assert await matching(sessions, alice, "metrics.`val loss` < 1") == {"mid"}
    assert await matching(sessions, alice, 'metrics."val loss" >= 1') == {"low"}
    assert await matching(sessions, alice, "metrics.acc > 0.2 AND metrics.acc < 0.8") == {"mid"}


async def test_params_strings_and_runyard_numbers(sessions: Any, alice: Principal) -> None:
    await add(
        sessions,
        make_run(alice, "adam", hyperparameters={"opt": "adam", "lr": 0.001, "batch size": "32"}),
        make_run(alice, "sgd", hyperparameters={"opt": "SGD", "lr": "0.1", "layers": 4}),
        make_run(alice, "bare", hyperparameters={}),
    )
    assert await matching(sessions, alice, "params.opt = 'adam'") == {"adam"}
    assert await matching(sessions, alice, 'params.opt = "SGD"') == {"sgd"}
    assert await matching(sessions, alice, "params.opt != 'adam'") == {"sgd"}
    assert await matching(sessions, alice, "params.opt LIKE 'a%'") == {"adam"}
    assert await matching(sessions, alice, "params.opt LIKE 's%'") == set()
    assert await matching(sessions, alice, "params.opt ILIKE 's%'") == {"sgd"}
    # a Runyard-native number compares by its text
    assert await matching(sessions, alice, "params.lr = '0.001'") == {"adam"}
    assert await matching(sessions, alice, "param.layers = '4'") == {"sgd"}
    assert await matching(sessions, alice, "parameters.lr LIKE '0.%'") == {"adam", "sgd"}
    assert await matching(sessions, alice, "params.`batch size` = '32'") == {"adam"}
    assert await matching(sessions, alice, "params.opt IS NULL") == {"bare"}
    assert await matching(sessions, alice, "params.opt IS NOT NULL") == {"adam", "sgd"}


async def test_tags(sessions: Any, alice: Principal) -> None:
    await add(
        sessions,
        make_run(alice, "a", kv_tags={"team": "vision", "mlflow.source.type": "LOCAL"}),
        make_run(alice, "b", kv_tags={"team": "Speech"}),
        make_run(alice, "c", kv_tags={}),
    )
    assert await matching(sessions, alice, "tags.team = 'vision'") == {"a"}
    assert await matching(sessions, alice, "tags.team != 'vision'") == {"b"}
    assert await matching(sessions, alice, "tags.team ILIKE 'SPEE%'") == {"b"}
    assert await matching(sessions, alice, "tags.`mlflow.source.type` = 'LOCAL'") == {"a"}
    assert await matching(sessions, alice, "tags.mlflow.source.type = 'LOCAL'") == {"a"}
    assert await matching(sessions, alice, "tag.team IS NULL") == {"c"}
    assert await matching(sessions, alice, "tags.team is not null") == {"a", "b"}
    assert await matching(sessions, alice, "tags.team = 'vision' and tags.team = 'Speech'") == set()


async def test_run_id_name_and_user(sessions: Any, alice: Principal, bob: Principal) -> None:
    a, b, c = await add(
        sessions,
        make_run(alice, "runyard-name", kv_tags={"mlflow.runName": "shown", "mlflow.user": "ann"}),
        make_run(alice, "plain"),
        make_run(alice, "other"),
    )
    await add(sessions, User(user_id=alice.user_id, username="alice", sequence=1))
    assert await matching(sessions, alice, f"attributes.run_id = '{a.id.hex}'") == {a.name}
    assert await matching(sessions, alice, f"attributes.run_id = '{a.id}'") == {a.name}
    assert await matching(sessions, alice, "attributes.run_id = 'not-an-id'") == set()
    assert await matching(sessions, alice, "attributes.run_id != 'not-an-id'") == {
        a.name,
        b.name,
        c.name,
    }
    assert await matching(sessions, alice, f"run_id IN ('{a.id.hex}', '{b.id}')") == {
        a.name,
        b.name,
    }
    assert await matching(sessions, alice, f"attr.run_id NOT IN ('{a.id.hex}')") == {
        b.name,
        c.name,
    }
    assert await matching(sessions, alice, f"run_id LIKE '{b.id.hex[:6]}%'") == {b.name}
    # run_name: the mlflow.runName tag, else the Runyard name
    assert await matching(sessions, alice, "attributes.run_name = 'shown'") == {a.name}
    assert await matching(sessions, alice, "attributes.run_name = 'runyard-name'") == set()
    assert await matching(sessions, alice, "run.run_name = 'plain'") == {"plain"}
    assert await matching(sessions, alice, "attributes.`Run name` ILIKE 'PL%'") == {"plain"}
    # user_id: the mlflow.user tag, else the owner's username
    assert await matching(sessions, alice, "attributes.user_id = 'ann'") == {a.name}
    assert await matching(sessions, alice, "attributes.user_id = 'alice'") == {"plain", "other"}
    # no such user known yet: the owner's id
    await add(sessions, make_run(bob, "bob-run"))
    assert await names(sessions, bob, f"user_id = '{bob.user_id}'") == ["bob-run"]
    # artifact_uri: mlflow-artifacts:/<experiment id>/<run id>/artifacts
    uri = f"mlflow-artifacts:/0/{c.id.hex}/artifacts"
    assert await matching(sessions, alice, f"attributes.artifact_uri = '{uri}'") == {"other"}


async def test_status_mapping(sessions: Any, alice: Principal) -> None:
    for status in ("pending", "running", "paused", "completed", "failed", "cancelled"):
        await add(sessions, make_run(alice, status, status=status))
    assert await matching(sessions, alice, "attributes.status = 'SCHEDULED'") == {"pending"}
    assert await matching(sessions, alice, "status = 'RUNNING'") == {"running", "paused"}
    assert await matching(sessions, alice, "status = 'FINISHED'") == {"completed"}
    assert await matching(sessions, alice, "status = 'FAILED'") == {"failed"}
    assert await matching(sessions, alice, "status = 'KILLED'") == {"cancelled"}
    assert await matching(sessions, alice, "status = 'finished'") == set()
    assert await matching(sessions, alice, "status != 'RUNNING'") == {
        "pending",
        "completed",
        "failed",
        "cancelled",
    }
    assert await matching(sessions, alice, "status LIKE 'F%'") == {"completed", "failed"}
    assert await matching(sessions, alice, "status ILIKE '%ed'") == {
        "pending",
        "completed",
        "failed",
        "cancelled",
    }


async def test_times(sessions: Any, alice: Principal) -> None:
    await add(
        sessions,
        make_run(alice, "early", started_at=T0, ended_at=T0 + timedelta(seconds=5)),
        make_run(alice, "late", started_at=T0 + timedelta(hours=1)),
        make_run(alice, "never", status="pending", started_at=None),
    )
    start = ms(T0)
    assert await matching(sessions, alice, f"attributes.start_time > {start}") == {"late"}
    assert await matching(sessions, alice, f"attributes.start_time >= {start}") == {
        "early",
        "late",
    }
    assert await matching(sessions, alice, f"start_time = {start}") == {"early"}
    assert await matching(sessions, alice, f"attributes.created < {start + 1}.5") == {"early"}
    assert await matching(sessions, alice, f"end_time <= {start + 5000}") == {"early"}
    assert await matching(sessions, alice, f"end_time != {start}") == {"early"}


async def test_dataset_inputs(sessions: Any, alice: Principal) -> None:
    def dataset_input(name: str, digest: str, context: str | None) -> dict[str, Any]:
        tags = [{"key": "mlflow.data.context", "value": context}] if context else []
        return {"dataset": {"name": name, "digest": digest, "source_type": "code"}, "tags": tags}

    await add(
        sessions,
        make_run(
            alice,
            "two",
            inputs=[dataset_input("iris", "d1", "training"), dataset_input("wine", "d2", "eval")],
        ),
        make_run(alice, "one", inputs=[dataset_input("iris", "d3", None)]),
        make_run(alice, "none"),
    )
    assert await matching(sessions, alice, "dataset.name = 'iris'") == {"two", "one"}
    assert await matching(sessions, alice, "datasets.name IN ('wine', 'x')") == {"two"}
    assert await matching(sessions, alice, "dataset.digest LIKE 'd%'") == {"two", "one"}
    assert await matching(sessions, alice, "dataset.context = 'training'") == {"two"}
    assert await matching(sessions, alice, "dataset.context NOT IN ('training')") == {"two"}
    assert await matching(sessions, alice, "dataset.name != 'iris'") == {"two"}


async def test_view_types(sessions: Any, alice: Principal) -> None:
    await add(
        sessions,
        make_run(alice, "kept"),
        make_run(alice, "gone", deleted_at=T0),
    )
    assert set(await names(sessions, alice)) == {"kept"}
    assert set(await names(sessions, alice, view_type="DELETED_ONLY")) == {"gone"}
    assert set(await names(sessions, alice, view_type="ALL")) == {"kept", "gone"}


async def test_experiments_and_access(sessions: Any, alice: Principal, bob: Principal) -> None:
    mine, bobs = await add(
        sessions,
        Project(owner_id=alice.user_id, name="p"),
        Project(owner_id=bob.user_id, name="p"),
    )
    await add(
        sessions,
        make_run(alice, "default"),
        make_run(alice, "in-project", project_id=mine.id),
        make_run(bob, "bob-default"),
        make_run(bob, "bob-in-project", project_id=bobs.id),
    )
    assert await names(sessions, alice) == ["default"]
    assert await names(sessions, alice, experiment_ids=[mine.id]) == ["in-project"]
    assert set(await names(sessions, alice, experiment_ids=[None, mine.id])) == {
        "default",
        "in-project",
    }
    # another owner's runs do not exist for a user, even asked for by their experiment
    assert await names(sessions, alice, experiment_ids=[bobs.id]) == []
    assert await names(sessions, alice, experiment_ids=[]) == []
    # a viewer reads everyone's experiments; Default is the caller's own
    viewer = Principal(uuid.uuid4(), "viewer")
    assert await names(
        sessions, viewer, experiment_ids=[bobs.id, mine.id], order_by=["run_name"]
    ) == [
        "bob-in-project",
        "in-project",
    ]
    assert await names(sessions, viewer, experiment_ids=[None]) == []


async def test_default_order_and_pages(sessions: Any, alice: Principal) -> None:
    starts = [T0 + timedelta(minutes=i % 7) for i in range(23)]
    runs = [make_run(alice, f"r{i:02d}", started_at=start) for i, start in enumerate(starts)]
    await add(sessions, *runs, make_run(alice, "unstarted", status="pending", started_at=None))
    everything, token = await find(sessions, alice)
    assert token is None
    expected = sorted(zip(starts, runs, strict=True), key=lambda s: (-s[0].timestamp(), s[1].id))
    assert [r.id for r in everything[:23]] == [run.id for _start, run in expected]
    assert everything[-1].name == "unstarted"
    seen: list[uuid.UUID] = []
    token = None
    pages = 0
    while True:
        page, token = await find(sessions, alice, max_results=5, page_token=token)
        seen += [r.id for r in page]
        pages += 1
        if token is None:
            break
    assert pages == 5
    assert seen == [r.id for r in everything]


async def test_order_by_keys_and_missing_values(sessions: Any, alice: Principal) -> None:
    await add(
        sessions,
        make_run(alice, "a", metrics={"acc": 0.5}, hyperparameters={"opt": "sgd"}),
        make_run(alice, "b", metrics={"acc": 0.9}, hyperparameters={"opt": "adam"}),
        make_run(alice, "c", metrics={}, hyperparameters={"opt": "adam"}),
        make_run(alice, "d", metrics={"acc": 0.5}, hyperparameters={}, kv_tags={"k": "z"}),
    )
    assert await names(sessions, alice, order_by=["metrics.acc DESC", "run_name"]) == [
        "b",
        "a",
        "d",
        "c",
    ]
    assert await names(sessions, alice, order_by=["metrics.acc", "attributes.run_name DESC"]) == [
        "d",
        "a",
        "b",
        "c",
    ]
    assert await names(sessions, alice, order_by=["params.opt ASC", "metrics.acc desc"]) == [
        "b",
        "c",
        "a",
        "d",
    ]
    assert await names(sessions, alice, order_by=["params.opt DESC", "metrics.acc"]) == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert (await names(sessions, alice, order_by=["tags.k DESC"]))[0] == "d"
    assert (await names(sessions, alice, order_by=["tags.k"]))[0] == "d"
    assert await names(sessions, alice, order_by=["metrics.`acc` DESC", "run_name"]) == [
        "b",
        "a",
        "d",
        "c",
    ]


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ("metrics.acc > 0.5 OR metrics.b < 1", "Invalid clause(s) in filter string: 'OR'"),
        ("metrics.acc >", "Invalid clause(s) in filter string: 'metrics.acc', '>'"),
        ("metrics.acc > '0.5'", "Expected numeric value type for metric. Found '0.5'"),
        ("params.x = 1", "Expected a quoted string value for parameter"),
        ("tags.x = abc", "not quoted or unidentified quote types used for string value abc"),
        ("foo.bar = 1", "Invalid entity type 'foo'"),
        ("attributes.lifecycle_stage = 'active'", "Invalid attribute key 'lifecycle_stage'"),
        ("dataset.foo = 'x'", "Invalid dataset key 'foo'"),
        ("metrics.acc LIKE 1", "Invalid comparator 'LIKE' not one of"),
        ("tags.x < 'a'", "Invalid comparator '<' not one of"),
        ("status IN ('FINISHED')", "Only ['run_id'] attributes support comparison with a list"),
        ("run_id IN ()", "expected a non-empty list of string values, but got empty list"),
        ("metrics.x IS NULL", "IS NULL / IS NOT NULL is only supported for tags and params"),
        ("start_time > 'yesterday'", "Expected numeric value type for numeric attribute"),
        ("metrics.a = 1; metrics.b = 2", "Search filter contained multiple expression"),
        ("(metrics.acc = 1)", "Invalid clause(s) in filter string: '('"),
        ("metrics.a = 1 #", "Error on parsing filter"),
    ],
)
async def test_invalid_filters(sessions: Any, alice: Principal, filter: str, message: str) -> None:
    with pytest.raises(MlflowError) as raised:
        await find(sessions, alice, filter)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"order_by": ["metrics.acc sideways"]}, "Invalid ordering key in order_by clause"),
        ({"order_by": ["metrics.acc DESC extra"]}, "Invalid order_by clause"),
        ({"order_by": ["lifecycle_stage"]}, "Invalid attribute key 'lifecycle_stage'"),
        ({"order_by": ["dataset.name"]}, "Invalid identifier type 'dataset'"),
        ({"order_by": ["metrics.a", "metrics.a DESC"]}, "`order_by` contains duplicate fields"),
        ({"page_token": "bm90IGpzb24="}, "Invalid page token, decoded value="),
        ({"page_token": "eyJvZmZzZXQiOiAwfQ=="}, "Invalid page token, parsed value="),
        ({"page_token": "eyJvZmZzZXQiOiAieCJ9"}, "Invalid page token, not stringable x"),
        ({"max_results": 0}, "It must be a positive integer"),
        ({"max_results": 50001}, "It must be at most 50000"),
        ({"view_type": "SOME"}, "Invalid view_type 'SOME'"),
    ],
)
async def test_invalid_requests(
    sessions: Any, alice: Principal, request_fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(MlflowError) as raised:
        await find(sessions, alice, **request_fields)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in raised.value.message


@pytest.mark.parametrize(
    "filter", ["metrics.acc > 0.1", "metrics.acc > 0.85", "tags.k = 'x'", "metrics.acc >= 0"]
)
async def test_pages_looking_through_the_newest_runs_first(
    sessions: Any, alice: Principal, monkeypatch: pytest.MonkeyPatch, filter: str
) -> None:
    """A filtered search in the default order first walks a prefix of it (the newest runs):
    with a prefix of a few rows, pages are the same rows as the unbounded query's, whether the
    prefix holds the page (common filters) or not (rare ones), ties and unstarted runs included."""
    runs = [
        make_run(
            alice,
            f"r{i:02d}",
            started_at=None if i % 10 == 0 else T0 + timedelta(minutes=i % 4),
            metrics={"acc": i / 40},
            kv_tags={"k": "x"} if i % 3 else {},
        )
        for i in range(40)
    ]
    await add(sessions, *runs, make_run(alice, "gone", deleted_at=T0, metrics={"acc": 1.0}))

    async def all_pages() -> list[str]:
        seen: list[str] = []
        token = None
        while True:
            page, token = await find(sessions, alice, filter, max_results=3, page_token=token)
            seen += [r.name for r in page]
            if token is None:
                return seen

    monkeypatch.setattr(search, "PROBE_ROWS", 10**9)
    unbounded = await all_pages()
    assert unbounded == await names(sessions, alice, filter)
    monkeypatch.setattr(search, "PROBE_ROWS", 4)
    monkeypatch.setattr(search, "PROBE_FACTOR", 1)
    assert await all_pages() == unbounded
