"""MLflow experiments on projects: create, get, get-by-name, rename, delete, restore, tags,
the virtual Default experiment "0", both prefixes, error codes, another user's experiments."""

from __future__ import annotations

from services.experiments.tests.experiments_helpers import event_types


async def test_experiment_crud_tags_and_lifecycle_publish_project_events(mlflow, db, alice) -> None:
    experiment_id = await mlflow.new_experiment(
        alice, "vision", tags=[{"key": "team", "value": "ml"}]
    )
    got = (await mlflow.ok(alice, "experiments/get", params={"experiment_id": experiment_id}))[
        "experiment"
    ]
    assert got["experiment_id"] == experiment_id
    assert (got["name"], got["lifecycle_stage"]) == ("vision", "active")
    assert got["artifact_location"] == f"mlflow-artifacts:/{experiment_id}"
    assert got["tags"] == [{"key": "team", "value": "ml"}]
    assert got["creation_time"] > 0 and got["last_update_time"] >= got["creation_time"]
    by_name = await mlflow.ok(
        alice, "experiments/get-by-name", params={"experiment_name": "vision"}
    )
    assert by_name["experiment"] == got

    assert await mlflow.error(alice, "experiments/create", {"name": "vision"}) == (
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    await mlflow.ok(alice, "experiments/update", {"experiment_id": experiment_id, "new_name": "v2"})
    await mlflow.ok(
        alice,
        "experiments/set-experiment-tag",
        {"experiment_id": experiment_id, "key": "mlflow.note.content", "value": "hello"},
    )
    await mlflow.ok(
        alice, "experiments/delete-experiment-tag", {"experiment_id": experiment_id, "key": "team"}
    )
    assert await mlflow.error(
        alice, "experiments/delete-experiment-tag", {"experiment_id": experiment_id, "key": "x"}
    ) == (404, "RESOURCE_DOES_NOT_EXIST")
    got = (await mlflow.ok(alice, "experiments/get", params={"experiment_id": experiment_id}))[
        "experiment"
    ]
    assert got["name"] == "v2"
    assert got["tags"] == [{"key": "mlflow.note.content", "value": "hello"}]

    run_id = (await mlflow.new_run(alice, experiment_id))["info"]["run_id"]
    await mlflow.ok(alice, "experiments/delete", {"experiment_id": experiment_id})
    await mlflow.ok(alice, "experiments/delete", {"experiment_id": experiment_id})
    got = (await mlflow.ok(alice, "experiments/get", params={"experiment_id": experiment_id}))[
        "experiment"
    ]
    assert got["lifecycle_stage"] == "deleted"
    # its runs went with it
    assert (await mlflow.get_run(alice, run_id))["info"]["lifecycle_stage"] == "deleted"
    # a deleted experiment takes no runs, no new name
    assert await mlflow.error(alice, "runs/create", {"experiment_id": experiment_id}) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert await mlflow.error(
        alice, "experiments/update", {"experiment_id": experiment_id, "new_name": "v3"}
    ) == (400, "INVALID_STATE")
    await mlflow.ok(alice, "experiments/restore", {"experiment_id": experiment_id})
    got = (await mlflow.ok(alice, "experiments/get", params={"experiment_id": experiment_id}))[
        "experiment"
    ]
    assert got["lifecycle_stage"] == "active"
    assert (await mlflow.get_run(alice, run_id))["info"]["lifecycle_stage"] == "active"

    assert await event_types(db) == [
        "project.created",
        "project.updated",
        "project.updated",
        "project.updated",
        "experiment.created",
        "experiment.started",
        "project.deleted",
        "experiment.deleted",
        "project.restored",
        "experiment.restored",
    ]


async def test_the_default_experiment_is_virtual_and_fixed(mlflow, alice) -> None:
    default = (await mlflow.ok(alice, "experiments/get", params={"experiment_id": "0"}))[
        "experiment"
    ]
    assert default == {
        "experiment_id": "0",
        "name": "Default",
        "artifact_location": "mlflow-artifacts:/0",
        "lifecycle_stage": "active",
        "tags": [],
    }
    by_name = await mlflow.ok(
        alice, "experiments/get-by-name", params={"experiment_name": "Default"}
    )
    assert by_name["experiment"] == default
    assert await mlflow.error(alice, "experiments/create", {"name": "Default"}) == (
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    assert await mlflow.error(alice, "experiments/delete", {"experiment_id": "0"}) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert await mlflow.error(
        alice, "experiments/update", {"experiment_id": "0", "new_name": "x"}
    ) == (400, "INVALID_PARAMETER_VALUE")
    assert await mlflow.error(
        alice, "experiments/set-experiment-tag", {"experiment_id": "0", "key": "k", "value": "v"}
    ) == (400, "INVALID_PARAMETER_VALUE")


async def test_errors_have_mlflow_codes_and_other_users_experiments_do_not_exist(
    mlflow, alice, bob
) -> None:
    experiment_id = await mlflow.new_experiment(alice, "mine")
    assert await mlflow.error(bob, "experiments/get", params={"experiment_id": experiment_id}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert await mlflow.error(
        bob, "experiments/get-by-name", params={"experiment_name": "mine"}
    ) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert await mlflow.error(bob, "experiments/delete", {"experiment_id": experiment_id}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert await mlflow.error(alice, "experiments/get", params={"experiment_id": "nope"}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # bob may use the same name: names are per user
    await mlflow.new_experiment(bob, "mine")
    assert await mlflow.error(alice, "experiments/create", {"name": ""}) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert await mlflow.error(
        alice, "experiments/create", {"name": "x", "artifact_location": "s3://bucket/x"}
    ) == (400, "INVALID_PARAMETER_VALUE")
    assert await mlflow.error(
        alice, "experiments/create", {"name": "x", "tags": [{"key": "../up", "value": "v"}]}
    ) == (400, "INVALID_PARAMETER_VALUE")
    # a malformed body is MLflow-shaped too
    assert await mlflow.error(alice, "experiments/create", {"name": ["a"]}) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )


async def test_both_prefixes_serve_the_same_experiments(mlflow, alice) -> None:
    experiment_id = await mlflow.ajax.new_experiment(alice, "from-the-ui")
    got = await mlflow.ok(alice, "experiments/get", params={"experiment_id": experiment_id})
    assert got["experiment"]["name"] == "from-the-ui"
    again = await mlflow.ajax.ok(alice, "experiments/get", params={"experiment_id": experiment_id})
    assert again == got


async def test_search_filters_orders_and_pages_the_default_experiment_like_any_other(
    mlflow, alice
) -> None:
    """As MLflow's own search: Default ("0", active, no tags, the oldest) has its place in every
    filter, order, page and view (``test_rest_tracking.py::test_search_experiments``)."""

    async def names(**request: object) -> list[str]:
        found = await mlflow.ok(alice, "experiments/search", request)
        return [e["name"] for e in found["experiments"]]

    assert await names() == ["Default"]
    ids = [
        await mlflow.new_experiment(alice, name, tags=tags)
        for name, tags in (
            ("a", [{"key": "key", "value": "value"}]),
            ("ab", [{"key": "key", "value": "vaLue"}]),
            ("Abc", []),
        )
    ]
    assert await names(filter="attribute.name = 'a'") == ["a"]
    assert await names(filter="attribute.name != 'a'") == ["Abc", "ab", "Default"]
    assert await names(filter="name LIKE 'a%'") == ["ab", "a"]
    assert await names(filter="name ILIKE 'd%'") == ["Default"]
    assert await names(filter="tag.key = 'value'") == ["a"]
    assert await names(filter="tag.key != 'value'") == ["ab"]
    assert await names(filter="tag.key ILIKE '%alu%'") == ["ab", "a"]
    assert await names(filter="attribute.experiment_id = '0'") == ["Default"]
    assert await names(filter=f"attribute.experiment_id IN ('0', '{ids[0]}')") == ["a", "Default"]
    assert await names(filter="attribute.creation_time > 0") == ["Abc", "ab", "a"]
    assert await names(order_by=["name DESC"]) == ["ab", "a", "Default", "Abc"]
    assert await names(order_by=["creation_time ASC"]) == ["Default", "a", "ab", "Abc"]
    everything = await names()
    assert everything == ["Abc", "ab", "a", "Default"]
    seen, token = [], None
    while True:
        page = await mlflow.ok(
            alice,
            "experiments/search",
            {"max_results": 1, **({"page_token": token} if token else {})},
        )
        assert len(page["experiments"]) == 1
        seen += [e["name"] for e in page["experiments"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == everything
    by_get = await mlflow.ok(alice, "experiments/search", params={"max_results": 10})
    assert [e["name"] for e in by_get["experiments"]] == everything
    assert by_get["experiments"][-1] == {
        "experiment_id": "0",
        "name": "Default",
        "artifact_location": "mlflow-artifacts:/0",
        "lifecycle_stage": "active",
        "tags": [],
    }
    deleted = await mlflow.ok(alice, "experiments/search", {"view_type": "DELETED_ONLY"})
    assert deleted["experiments"] == []
    await mlflow.ok(alice, "experiments/delete", {"experiment_id": ids[1]})
    assert await names(view_type="ACTIVE_ONLY") == ["Abc", "a", "Default"]
    assert await names(view_type="DELETED_ONLY") == ["ab"]
    assert await names(view_type="ALL") == ["Abc", "ab", "a", "Default"]
