"""Ownership: users see and change their own rows, viewers read everything and change nothing,
admins do anything. Another user's row is a 404, never a 403."""

from __future__ import annotations

from typing import Any

from services.experiments.tests.experiments_helpers import Caller, new_experiment


async def alices_things(client: Any, alice: Caller) -> dict[str, str]:
    dataset = await client.post("/api/v1/datasets", json={"name": "cwru"}, headers=alice.headers)
    experiment = await new_experiment(
        client, alice, "mine", dataset_id=dataset.json()["id"], tags=["baseline"]
    )
    tag = (await client.get("/api/v1/tags", headers=alice.headers)).json()["items"][0]
    saved = await client.post("/api/v1/saved-searches", json={"name": "all"}, headers=alice.headers)
    return {
        "e": experiment["id"],
        "d": dataset.json()["id"],
        "t": tag["id"],
        "s": saved.json()["id"],
    }


def reads(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("GET", f"/api/v1/experiments/{ids['e']}"),
        ("GET", f"/api/v1/experiments/{ids['e']}/runs"),
        ("GET", f"/api/v1/datasets/{ids['d']}"),
        ("GET", f"/api/v1/datasets/{ids['d']}/signals"),
        ("GET", f"/api/v1/tags/{ids['t']}"),
        ("GET", f"/api/v1/saved-searches/{ids['s']}"),
        ("POST", f"/api/v1/saved-searches/{ids['s']}/run"),
    ]


def writes(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    e, d, t, s = ids["e"], ids["d"], ids["t"], ids["s"]
    return [
        ("PATCH", f"/api/v1/experiments/{e}", {"notes": "mine now"}),
        *[("POST", f"/api/v1/experiments/{e}/{a}", None) for a in ("start", "complete", "cancel")],
        ("POST", f"/api/v1/experiments/{e}/runs", {"epoch": 0}),
        ("PUT", f"/api/v1/experiments/{e}/tags/stolen", None),
        ("DELETE", f"/api/v1/experiments/{e}/tags/baseline", None),
        ("DELETE", f"/api/v1/experiments/{e}", None),
        ("PATCH", f"/api/v1/datasets/{d}", {"description": "x"}),
        ("POST", f"/api/v1/datasets/{d}/signals", {"signals": [{"signal_id": "s1"}]}),
        ("DELETE", f"/api/v1/datasets/{d}", None),
        ("PATCH", f"/api/v1/tags/{t}", {"color": "#000000"}),
        ("DELETE", f"/api/v1/tags/{t}", None),
        ("PATCH", f"/api/v1/saved-searches/{s}", {"is_pinned": True}),
        ("DELETE", f"/api/v1/saved-searches/{s}", None),
    ]


async def request(client: Any, who: Caller, method: str, url: str, body: Any = None) -> Any:
    return await client.request(method, url, json=body, headers=who.headers)


async def test_another_user_sees_and_changes_nothing_of_mine(client, alice, bob, subtests) -> None:
    ids = await alices_things(client, alice)
    before = (await client.get(f"/api/v1/experiments/{ids['e']}", headers=alice.headers)).json()

    for method, url in reads(ids):
        with subtests.test(method=method, url=url):
            response = await request(client, bob, method, url)
            assert response.status_code == 404, response.text
            assert response.headers["content-type"] == "application/problem+json"
    for method, url, body in writes(ids):
        with subtests.test(method=method, url=url):
            assert (await request(client, bob, method, url, body)).status_code == 404
    for url in (
        "/api/v1/experiments",
        "/api/v1/datasets",
        "/api/v1/tags",
        "/api/v1/saved-searches",
    ):
        with subtests.test(list=url):
            page = (await client.get(url, headers=bob.headers)).json()
            assert page == {"items": [], "next_cursor": None}
    with subtests.test("bob cannot point his experiment at alice's dataset"):
        response = await client.post(
            "/api/v1/experiments", json={"name": "x", "dataset_id": ids["d"]}, headers=bob.headers
        )
        assert response.status_code == 422
    with subtests.test("an owner filter does not widen a user's scope"):
        page = await client.get(
            "/api/v1/experiments", params={"owner_id": str(alice.id)}, headers=bob.headers
        )
        assert page.json()["items"] == []

    after = (await client.get(f"/api/v1/experiments/{ids['e']}", headers=alice.headers)).json()
    assert after == before


async def test_names_are_unique_per_owner_only(client, alice, bob) -> None:
    await new_experiment(client, alice, "baseline")
    await new_experiment(client, bob, "baseline")
    again = await client.post(
        "/api/v1/experiments", json={"name": "baseline"}, headers=alice.headers
    )
    assert again.status_code == 409
    assert again.json()["field"] == "name"


async def test_a_viewer_reads_everything_and_changes_nothing(
    client, alice, bob, viewer, subtests
) -> None:
    ids = await alices_things(client, alice)
    await new_experiment(client, bob, "bobs")
    for method, url in reads(ids):
        with subtests.test(method=method, url=url):
            assert (await request(client, viewer, method, url)).status_code == 200
    for method, url, body in [
        *writes(ids),
        ("POST", "/api/v1/experiments", {"name": "v"}),
        ("POST", "/api/v1/datasets", {"name": "v"}),
        ("POST", "/api/v1/tags", {"name": "v"}),
        ("POST", "/api/v1/saved-searches", {"name": "v"}),
    ]:
        with subtests.test(method=method, url=url):
            response = await request(client, viewer, method, url, body)
            assert response.status_code == 403, response.text
    everything = await client.get("/api/v1/experiments", headers=viewer.headers)
    assert {e["name"] for e in everything.json()["items"]} == {"mine", "bobs"}


async def test_an_admin_reads_and_changes_every_users_rows(client, alice, bob, admin) -> None:
    ids = await alices_things(client, alice)
    await new_experiment(client, bob, "bobs")

    patched = await client.patch(
        f"/api/v1/experiments/{ids['e']}", json={"notes": "reviewed"}, headers=admin.headers
    )
    completed = await client.post(f"/api/v1/experiments/{ids['e']}/complete", headers=admin.headers)
    assert (patched.status_code, completed.status_code) == (200, 200)
    assert completed.json()["owner_id"] == str(alice.id)  # still alice's
    every = await client.get("/api/v1/experiments", headers=admin.headers)
    assert {e["name"] for e in every.json()["items"]} == {"mine", "bobs"}
    only_bob = await client.get(
        "/api/v1/experiments", params={"owner_id": str(bob.id)}, headers=admin.headers
    )
    assert [e["name"] for e in only_bob.json()["items"]] == ["bobs"]


async def test_without_gateway_identity_every_endpoint_is_401(client) -> None:
    for url in (
        "/api/v1/experiments",
        "/api/v1/datasets",
        "/api/v1/tags",
        "/api/v1/saved-searches",
    ):
        response = await client.get(url)
        assert response.status_code == 401
    forged = await client.get(
        "/api/v1/experiments",
        headers={"X-Runyard-User-Id": "not-a-uuid", "X-Runyard-User-Role": "user"},
    )
    assert forged.status_code == 401
