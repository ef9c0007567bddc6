"""Search: the filter language (valid, invalid with positions, injection attempts), full text,
ordering and keyset pagination."""

from __future__ import annotations

from typing import Any

import pytest

from runyard.experiments.tracking.query_language import (
    QueryLanguageError,
    compile_filter,
    parse_order_by,
)
from services.experiments.tests.experiments_helpers import (
    Caller,
    act,
    caller,
    fetch,
    new_experiment,
)


async def catalog(client: Any, alice: Caller) -> dict[str, Any]:
    """Five experiments of alice's (A..E) and one of someone else's."""
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "cwru"}, headers=alice.headers)
    ).json()
    a = await new_experiment(
        client,
        alice,
        "resnet-baseline",
        model_type="resnet",
        notes="Bearing faults at the drive end",
        hyperparameters={"lr": 0.001, "optimizer": "adam", "pretrained": True},
        tags=["baseline"],
    )
    await act(
        client, alice, a["id"], "complete", final_metrics={"val_accuracy": 0.95, "val_loss": 0.12}
    )
    b = await new_experiment(
        client,
        alice,
        "cnn1d-small",
        model_type="cnn1d",
        notes="pump cavitation study",
        hyperparameters={"lr": 0.01, "optimizer": "sgd"},
        tags=["pump"],
    )
    await client.post(
        f"/api/v1/experiments/{b['id']}/runs",
        json={"epoch": 0, "val_accuracy": 0.88, "val_loss": 0.3},
        headers=alice.headers,
    )
    c = await new_experiment(
        client,
        alice,
        "cnn1d-large",
        model_type="cnn1d",
        hyperparameters={"lr": 0.001, "optimizer": "adam", "batch_size": 64},
        tags=["baseline", "pump"],
    )
    await act(client, alice, c["id"], "fail", final_metrics={"val_accuracy": 0.91})
    d = await new_experiment(
        client, alice, "lstm-probe", model_type="lstm", dataset_id=dataset["id"]
    )
    e = await new_experiment(
        client,
        alice,
        "tmp-scratch",
        hyperparameters={"note": "it's a 'quoted' value"},
        tags=["Scratch Work"],
    )
    await act(client, alice, e["id"], "cancel")
    await new_experiment(client, caller(), "cnn1d-someone-else", model_type="cnn1d")
    return {
        "dataset": dataset["id"],
        "ids": {k: v["id"] for k, v in zip("ABCDE", (a, b, c, d, e), strict=True)},
    }


async def search(client: Any, who: Caller, **params: Any) -> Any:
    return await client.get("/api/v1/experiments", params=params, headers=who.headers)


async def names(client: Any, who: Caller, **params: Any) -> set[str]:
    response = await search(client, who, **params)
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


LETTER = {
    "A": "resnet-baseline",
    "B": "cnn1d-small",
    "C": "cnn1d-large",
    "D": "lstm-probe",
    "E": "tmp-scratch",
}

VALID = [
    ("status = 'completed'", "A"),
    ("status != 'completed'", "BCDE"),
    ("STATUS = 'completed' AND model_type = 'resnet'", "A"),
    ("model_type = 'cnn1d' and metrics.val_accuracy > 0.9", "C"),
    ("model_type in ('cnn1d', 'lstm')", "BCD"),
    # a comparison with a missing value is false, and NOT of it true (two-valued logic)
    ("model_type != 'cnn1d'", "AD"),
    ("not model_type = 'cnn1d'", "ADE"),
    ("model_type not in ('cnn1d')", "ADE"),
    ("model_type is null", "E"),
    ("metrics.val_accuracy >= 0.91", "AC"),
    ("metrics.`val_accuracy` >= 0.91", "AC"),
    ("metrics.val_accuracy < 0.9 or metrics.val_loss < 0.2", "AB"),
    ("metrics.val_accuracy = 0.88", "B"),
    ("metrics.val_accuracy in (0.88, 0.95)", "AB"),
    ("metrics.f1 is null", "ABCDE"),
    ("params.lr = 0.001", "AC"),
    ("params.lr < 5e-3", "AC"),
    ("params.optimizer = 'adam' and not tag = 'pump'", "A"),
    ("params.optimizer like 'a%'", "AC"),
    ("params.optimizer != 'adam'", "B"),
    ("params.pretrained = true", "A"),
    ("params.note = 'it''s a ''quoted'' value'", "E"),
    ("params.note = \"it's a 'quoted' value\"", "E"),
    ("params.batch_size is not null", "C"),
    ("tag = 'baseline'", "AC"),
    ("tag = 'Scratch Work'", "E"),
    ("tag in ('pump', 'scratch-work')", "BCE"),
    ("tag != 'pump'", "ADE"),
    ("tag is null", "D"),
    ("tag like 'scr%'", "E"),
    ("name like 'cnn1d-%'", "BC"),
    ("name ilike 'CNN1D-%'", "BC"),
    ("(model_type = 'resnet' or model_type = 'lstm') and status in ('completed', 'pending')", "AD"),
    ("not (status = 'pending' or status = 'cancelled')", "ABC"),
    ("dataset_id is null", "ABCE"),
    ("created_at > '2000-01-01'", "ABCDE"),
    ("created_at < '2000-01-01T00:00:00Z'", ""),
    ("best_epoch = 0 and total_epochs >= 1", "B"),
    ("duration_seconds >= 0", "A"),  # C failed before it ever started
    ("(" * 40 + "status = 'completed'" + ")" * 40, "A"),
]


async def test_valid_filters_find_exactly_the_matching_experiments(client, alice, subtests) -> None:
    data = await catalog(client, alice)
    for expression, expected in [
        *VALID,
        (f"dataset_id = '{data['dataset']}'", "D"),
        (f"dataset_id in ('{data['dataset']}')", "D"),
    ]:
        with subtests.test(filter=expression):
            assert await names(client, alice, filter=expression) == {LETTER[x] for x in expected}


# (filter, 0-based position of the error, words of the message)
INVALID = [
    ("status = ", 9, "end of the filter"),
    ("status == 'completed'", 8, "Unexpected '='"),
    ("name = 'unterminated", 7, "Unexpected character"),
    ("status = 'completed' and", 24, "end of the filter"),
    ("status = 'completed' and and", 25, "Unexpected 'and'"),
    ("foo = 1", 0, "Unknown field 'foo'"),
    ("metrics > 1", 7, "needs a key"),
    ("colour.red = 1", 0, "only metrics.<key> and params.<key>"),
    ("status > 'completed'", 7, "only supports = and !="),
    ("status = 'finished'", 9, "not a status"),
    ("created_at > 'yesterday'", 13, "ISO 8601"),
    ("created_at like '2026%'", 11, "LIKE works on text"),
    ("metrics.val_accuracy > 'high'", 23, "compare it with a number"),
    ("(status = 'completed'", 21, "expected"),
    ("status = 'completed')", 20, "Unexpected ')'"),
    ("tag < 'x'", 4, "tag only supports"),
    ("model_type like 5", 16, "Unexpected '5'"),
    ("dataset_id = 'not-a-uuid'", 13, "UUID"),
    ("total_epochs = 1.5", 15, "whole number"),
    ("name = 1", 7, "string"),
    ("params.x > true", 11, "true and false"),
    ("not " * 40 + "status = 'pending'", 4 * 32, "nests deeper"),
    ("in = 1", 0, "Unexpected 'in'"),
    ("params.in = 1", 7, "quoted key"),
]


@pytest.mark.parametrize(("expression", "position", "message"), INVALID)
def test_invalid_filters_name_the_error_and_its_position(
    expression: str, position: int, message: str
) -> None:
    with pytest.raises(QueryLanguageError) as raised:
        compile_filter(expression)
    assert raised.value.position == position
    assert message in raised.value.message


async def test_an_invalid_filter_is_a_400_problem_pointing_at_the_error(client, alice) -> None:
    response = await search(client, alice, filter="status = 'completed' andd model_type = 'x'")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Invalid filter"
    assert (problem["position"], problem["column"]) == (21, 22)
    assert problem["pointer"] == "status = 'completed' andd model_type = 'x'\n" + " " * 21 + "^"
    assert problem["errors"][0]["loc"] == ["query", "filter"]
    assert "Unexpected 'andd' at position 21" in problem["detail"]


INJECTIONS_REFUSED = [
    ("name = 'x' or 1=1", 14),
    ("name = 'x'; DROP TABLE experiments.experiments; --", 10),
    ("status = 'completed' -- and owner_id = 'me'", 21),
    ("name like '%' union select * from experiments.users", 14),
    ("name = $$x$$", 7),
    ("name = 'x' /* comment */", 11),
    ("name = E'\\x27'", 7),
    ("owner_id = owner_id", 11),
    ("metrics.val_accuracy > 0 or pg_sleep(5) is null", 36),
    ("name like '%'' OR ''%'='", 22),
]
INJECTIONS_AS_DATA = [
    "name = 'x'' or ''1''=''1'",
    "name = 'x''; DROP TABLE experiments.experiments; --'",
    "metrics.`val_accuracy') > 0 OR 1=1 --` > 0",
    'params.`lr"; DROP TABLE experiments.experiments; --` = 1',
    "tag = '''); DELETE FROM experiments.tags; --'",
]


async def test_injection_attempts_are_refused_or_matched_as_plain_data(
    client, db, alice, subtests
) -> None:
    await catalog(client, alice)
    for expression, position in INJECTIONS_REFUSED:
        with subtests.test(filter=expression):
            response = await search(client, alice, filter=expression)
            assert response.status_code == 400
            assert response.json()["position"] == position
    for expression in INJECTIONS_AS_DATA:
        with subtests.test(filter=expression):
            assert await names(client, alice, filter=expression) == set()
    counts = await fetch(
        db,
        "SELECT (SELECT count(*) FROM experiments.experiments) AS experiments, "
        "(SELECT count(*) FROM experiments.tags) AS tags",
    )
    assert (counts[0]["experiments"], counts[0]["tags"]) == (6, 3)


async def test_full_text_covers_name_notes_model_type_and_tags(client, alice, subtests) -> None:
    data = await catalog(client, alice)
    for words, expected in [
        ("bearing", "A"),
        ("fault", "A"),  # stemmed: the notes say "faults"
        ("pump", "BC"),  # B's notes and tag, C's tag
        ("cnn1d", "BC"),
        ("resnet", "A"),
        ("baseline -pump", "A"),
        ('"drive end"', "A"),
        ("scratch", "E"),
        ("nothing-like-this", ""),
    ]:
        with subtests.test(q=words):
            assert await names(client, alice, q=words) == {LETTER[x] for x in expected}
    # the vector follows notes edits and tagging
    d = data["ids"]["D"]
    await client.patch(
        f"/api/v1/experiments/{d}", json={"notes": "vibration spectra"}, headers=alice.headers
    )
    await client.put(f"/api/v1/experiments/{d}/tags/gearbox", headers=alice.headers)
    assert await names(client, alice, q="vibration") == {"lstm-probe"}
    assert await names(client, alice, q="gearbox") == {"lstm-probe"}
    assert await names(client, alice, q="pump", filter="status = 'running'") == {"cnn1d-small"}


async def test_simple_parameters_combine_with_the_filter(client, alice) -> None:
    await catalog(client, alice)
    assert await names(client, alice, model_type="cnn1d") == {"cnn1d-small", "cnn1d-large"}
    assert await names(client, alice, model_type="cnn1d", status="failed") == {"cnn1d-large"}
    assert await names(client, alice, tag="baseline", filter="params.lr = 0.001") == {
        "resnet-baseline",
        "cnn1d-large",
    }
    assert (await search(client, alice, status="finished")).status_code == 422


async def pages(client: Any, who: Caller, limit: int, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await search(client, who, **query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        seen += [item["name"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_order_by_metrics_sorts_missing_values_last_and_pages_agree(client, alice) -> None:
    await catalog(client, alice)
    best_first = await pages(client, alice, 50, order_by="-metrics.val_accuracy")
    assert best_first[:3] == ["resnet-baseline", "cnn1d-large", "cnn1d-small"]
    assert set(best_first[3:]) == {"lstm-probe", "tmp-scratch"}
    worst_first = await pages(client, alice, 50, order_by="metrics.val_accuracy asc")
    assert worst_first[:3] == ["cnn1d-small", "cnn1d-large", "resnet-baseline"]
    for order in (
        "-metrics.val_accuracy",
        "metrics.val_loss",
        "name",
        "-created_at",
        "started_at",
        "-duration_seconds",
        "status desc",
        "best_epoch",
    ):
        assert await pages(client, alice, 2, order_by=order) == await pages(
            client, alice, 50, order_by=order
        ), order
    assert await pages(client, alice, 2, order_by="name") == sorted(LETTER.values())


async def test_a_cursor_only_works_with_its_own_ordering(client, alice) -> None:
    await catalog(client, alice)
    first = (await search(client, alice, order_by="name", limit=2)).json()
    mismatch = await search(client, alice, order_by="-name", cursor=first["next_cursor"])
    assert mismatch.status_code == 400
    assert mismatch.json()["title"] == "Invalid cursor"
    assert (await search(client, alice, limit=501)).status_code == 422
    assert (await search(client, alice, limit=0)).status_code == 422


@pytest.mark.parametrize(
    ("order_by", "position"),
    [("bogus", 0), ("-name desc", 6), ("metrics.", 0), ("dataset_id", 0), ("name sideways", 0)],
)
def test_invalid_order_by_is_refused_with_a_position(order_by: str, position: int) -> None:
    with pytest.raises(QueryLanguageError) as raised:
        parse_order_by(order_by)
    assert raised.value.position == position
    assert raised.value.param == "order_by"


async def test_a_search_over_its_time_limit_is_cancelled_with_a_503(db, settings, alice) -> None:
    import asyncio

    import asyncpg

    from runyard.experiments.main import create_app
    from runyard.shared.db import asyncpg_dsn
    from runyard.shared.testing import running_app

    quick = settings.model_copy(update={"search_statement_timeout_ms": 100})
    blocker = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        async with running_app(create_app(quick)) as client:
            await new_experiment(client, alice)
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE experiments.experiments IN ACCESS EXCLUSIVE MODE")
            try:  # without the limit the search would wait for the lock: fail, do not hang
                response = await asyncio.wait_for(
                    search(client, alice, filter="status = 'pending'"), timeout=10
                )
            finally:
                await transaction.rollback()
            assert response.status_code == 503
            assert response.json()["title"] == "Search took too long"
            assert (await search(client, alice)).status_code == 200
    finally:
        await blocker.close()
