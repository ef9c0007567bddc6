"""Saved searches: CRUD, unique name per user, pinned first, running them counts their use."""

from __future__ import annotations

from services.experiments.tests.experiments_helpers import act, new_experiment


async def test_saved_search_crud_with_unique_names_per_user(client, alice, bob) -> None:
    created = await client.post(
        "/api/v1/saved-searches",
        json={"name": "good cnns", "query": "model_type = 'cnn1d' and metrics.val_accuracy > 0.9"},
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    saved = created.json()
    assert (saved["usage_count"], saved["last_used_at"], saved["is_pinned"]) == (0, None, False)
    duplicate = await client.post(
        "/api/v1/saved-searches", json={"name": "good cnns"}, headers=alice.headers
    )
    assert duplicate.status_code == 409
    assert (
        await client.post("/api/v1/saved-searches", json={"name": "good cnns"}, headers=bob.headers)
    ).status_code == 201
    url = f"/api/v1/saved-searches/{saved['id']}"
    pinned = await client.patch(url, json={"is_pinned": True}, headers=alice.headers)
    assert pinned.json()["is_pinned"] is True
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404


async def test_an_invalid_query_is_refused_when_saved_with_its_position(client, alice) -> None:
    response = await client.post(
        "/api/v1/saved-searches",
        json={"name": "broken", "query": "status = 'completed' or"},
        headers=alice.headers,
    )
    assert response.status_code == 400
    assert response.json()["position"] == 23
    bad_order = await client.post(
        "/api/v1/saved-searches", json={"name": "x", "order_by": "colour"}, headers=alice.headers
    )
    assert bad_order.status_code == 400
    assert bad_order.json()["title"] == "Invalid order_by"


async def test_running_a_saved_search_returns_matches_and_counts_the_use(client, alice) -> None:
    done = await new_experiment(client, alice, "done", model_type="cnn1d")
    await act(client, alice, done["id"], "complete", final_metrics={"val_accuracy": 0.95})
    await new_experiment(client, alice, "other", model_type="cnn1d")
    saved = (
        await client.post(
            "/api/v1/saved-searches",
            json={"name": "best", "query": "metrics.val_accuracy > 0.9", "order_by": "-name"},
            headers=alice.headers,
        )
    ).json()
    url = f"/api/v1/saved-searches/{saved['id']}"

    for _ in range(2):
        run = await client.post(f"{url}/run", headers=alice.headers)
        assert run.status_code == 200
        assert [e["name"] for e in run.json()["items"]] == ["done"]

    after = (await client.get(url, headers=alice.headers)).json()
    assert after["usage_count"] == 2
    assert after["last_used_at"] is not None


async def test_pinned_searches_list_first_then_by_name(client, alice) -> None:
    for name, pinned in (("b", False), ("a", False), ("z", True), ("c", True)):
        await client.post(
            "/api/v1/saved-searches",
            json={"name": name, "is_pinned": pinned},
            headers=alice.headers,
        )
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/v1/saved-searches", params=params, headers=alice.headers)
        ).json()
        seen += [s["name"] for s in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ["c", "z", "a", "b"]
    only_pinned = await client.get(
        "/api/v1/saved-searches", params={"pinned": "true"}, headers=alice.headers
    )
    assert [s["name"] for s in only_pinned.json()["items"]] == ["c", "z"]
