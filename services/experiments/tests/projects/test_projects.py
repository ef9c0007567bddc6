"""Projects: CRUD, unique names, soft delete and restore, experiments in a project, the filter
field, access rules and events."""

from __future__ import annotations

from services.experiments.tests.experiments_helpers import new_experiment, outbox

URL = "/api/v1/projects"


async def new_project(client, who, name="vision", **fields) -> dict:
    response = await client.post(URL, json={"name": name, **fields}, headers=who.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_project_crud_soft_delete_and_restore_publish_events(client, db, alice) -> None:
    project = await new_project(client, alice, description="cnn runs", tags={"team": "ml"})
    assert (project["lifecycle_stage"], project["tags"]) == ("active", {"team": "ml"})
    url = f"{URL}/{project['id']}"
    assert (await client.get(url, headers=alice.headers)).json() == project

    renamed = await client.patch(url, json={"name": "vision-2"}, headers=alice.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "vision-2"
    same = await client.patch(url, json={"name": "vision-2"}, headers=alice.headers)
    assert same.json()["version"] == renamed.json()["version"]
    null_name = await client.patch(url, json={"name": None}, headers=alice.headers)
    assert null_name.status_code == 422

    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    deleted = (await client.get(url, headers=alice.headers)).json()
    assert deleted["lifecycle_stage"] == "deleted"
    assert deleted["deleted_at"] is not None
    # a deleted project: hidden from the default list, refuses changes, keeps its name
    assert (await client.get(URL, headers=alice.headers)).json()["items"] == []
    listed = await client.get(URL, params={"lifecycle_stage": "deleted"}, headers=alice.headers)
    assert [p["id"] for p in listed.json()["items"]] == [project["id"]]
    change = await client.patch(url, json={"description": "x"}, headers=alice.headers)
    assert change.status_code == 409
    assert change.headers["content-type"] == "application/problem+json"
    taken = await client.post(URL, json={"name": "vision-2"}, headers=alice.headers)
    assert taken.status_code == 409
    again = await client.delete(url, headers=alice.headers)
    assert again.status_code == 204

    restored = await client.post(f"{url}/restore", headers=alice.headers)
    assert restored.status_code == 200
    assert (restored.json()["lifecycle_stage"], restored.json()["deleted_at"]) == ("active", None)
    twice = await client.post(f"{url}/restore", headers=alice.headers)
    assert twice.status_code == 409

    events = await outbox(db)
    assert [e["type"] for e in events] == [
        "project.created",
        "project.updated",
        "project.deleted",
        "project.restored",
    ]
    assert [e["sequence"] for e in events] == ["1", "2", "3", "4"]
    assert events[1]["data"]["changed"] == ["name"]
    assert events[2]["data"]["lifecycle_stage"] == "deleted"
    assert {e["subject"] for e in events} == {project["id"]}
    assert all(e["data"]["owner_id"] == str(alice.id) for e in events)


async def test_names_are_unique_per_owner(client, alice, bob) -> None:
    await new_project(client, alice, "shared-name")
    await new_project(client, bob, "shared-name")
    duplicate = await client.post(URL, json={"name": "shared-name"}, headers=alice.headers)
    assert duplicate.status_code == 409
    assert duplicate.json()["field"] == "name"
    other = await new_project(client, alice, "other")
    rename = await client.patch(
        f"{URL}/{other['id']}", json={"name": "shared-name"}, headers=alice.headers
    )
    assert rename.status_code == 409


async def test_list_pages_newest_first_and_finds_by_name(client, alice, bob) -> None:
    made = [await new_project(client, alice, f"p{n}") for n in range(5)]
    await new_project(client, bob, "bobs")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(URL, params=params, headers=alice.headers)).json()
        seen += [p["name"] for p in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [p["name"] for p in reversed(made)]
    by_name = await client.get(URL, params={"name": "p3"}, headers=alice.headers)
    assert [p["id"] for p in by_name.json()["items"]] == [made[3]["id"]]
    bad = await client.get(URL, params={"cursor": "nonsense"}, headers=alice.headers)
    assert bad.status_code == 400


async def test_access_rules(client, alice, bob, viewer) -> None:
    project = await new_project(client, alice)
    url = f"{URL}/{project['id']}"
    assert (await client.get(url, headers=bob.headers)).status_code == 404
    assert (await client.patch(url, json={"name": "x"}, headers=bob.headers)).status_code == 404
    assert (await client.delete(url, headers=bob.headers)).status_code == 404
    assert (await client.get(URL, headers=bob.headers)).json()["items"] == []
    assert (await client.get(url, headers=viewer.headers)).status_code == 200
    assert (await client.delete(url, headers=viewer.headers)).status_code == 403
    assert (await client.post(URL, json={"name": "v"}, headers=viewer.headers)).status_code == 403


async def test_experiments_join_a_project_by_id_or_name_and_filter_by_it(
    client, db, alice, bob
) -> None:
    vision = await new_project(client, alice, "vision")
    audio = await new_project(client, alice, "audio")
    by_id = await new_experiment(client, alice, project=vision["id"])
    by_name = await new_experiment(client, alice, project="vision")
    elsewhere = await new_experiment(client, alice, project="audio")
    await new_experiment(client, alice)
    assert by_id["project_id"] == by_name["project_id"] == vision["id"]

    def ids(response) -> set[str]:
        assert response.status_code == 200, response.text
        return {e["id"] for e in response.json()["items"]}

    experiments = "/api/v1/experiments"
    in_vision = {by_id["id"], by_name["id"]}
    query = {"filter": f"project = '{vision['id']}'"}
    assert ids(await client.get(experiments, params=query, headers=alice.headers)) == in_vision
    param = {"project_id": vision["id"]}
    assert ids(await client.get(experiments, params=param, headers=alice.headers)) == in_vision
    none = {"filter": "project IS NULL"}
    assert len(ids(await client.get(experiments, params=none, headers=alice.headers))) == 1

    moved = await client.patch(
        f"{experiments}/{elsewhere['id']}", json={"project": vision["id"]}, headers=alice.headers
    )
    assert moved.json()["project_id"] == vision["id"]
    detached = await client.patch(
        f"{experiments}/{elsewhere['id']}", json={"project": None}, headers=alice.headers
    )
    assert detached.json()["project_id"] is None
    events = await outbox(db)
    updates = [e for e in events if e["type"] == "experiment.updated"]
    assert updates[0]["data"]["changed"] == ["project_id"]
    assert updates[0]["data"]["project_id"] == vision["id"]

    # another owner's project, an unknown name, a deleted project: 422
    bobs = await new_project(client, bob, "bobs")
    for reference in (bobs["id"], "bobs", "nope"):
        refused = await client.post(
            experiments,
            json={"name": f"x-{reference}", "project": reference},
            headers=alice.headers,
        )
        assert refused.status_code == 422, reference
        assert refused.json()["errors"][0]["loc"] == ["body", "project"]
    await client.delete(f"{URL}/{audio['id']}", headers=alice.headers)
    refused = await client.post(
        experiments, json={"name": "late", "project": "audio"}, headers=alice.headers
    )
    assert refused.status_code == 422
    # a deleted project's experiments are untouched
    kept = await client.get(f"{experiments}/{by_id['id']}", headers=alice.headers)
    assert kept.json()["project_id"] == vision["id"]
