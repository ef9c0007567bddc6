"""Tags: CRUD with unique slugs per owner, tagging that keeps usage_count and search right."""

from __future__ import annotations

from services.experiments.tests.experiments_helpers import new_experiment


async def usage(client, who, slug: str) -> int:
    tags = (await client.get("/api/v1/tags", headers=who.headers)).json()["items"]
    return next(t["usage_count"] for t in tags if t["slug"] == slug)


async def test_tag_crud_with_unique_slug_and_colour(client, alice, bob) -> None:
    created = await client.post(
        "/api/v1/tags", json={"name": "Needs Review", "color": "#FF8800"}, headers=alice.headers
    )
    assert created.status_code == 201, created.text
    tag = created.json()
    assert (tag["slug"], tag["color"], tag["usage_count"]) == ("needs-review", "#FF8800", 0)
    clash = await client.post(
        "/api/v1/tags",
        json={"name": "needs review!", "slug": "needs-review"},
        headers=alice.headers,
    )
    assert clash.status_code == 409 and clash.json()["field"] == "slug"
    # bob has his own namespace
    assert (
        await client.post("/api/v1/tags", json={"name": "Needs Review"}, headers=bob.headers)
    ).status_code == 201
    bad_colour = await client.post(
        "/api/v1/tags", json={"name": "x", "color": "orange"}, headers=alice.headers
    )
    assert bad_colour.status_code == 422
    url = f"/api/v1/tags/{tag['id']}"
    patched = await client.patch(url, json={"color": "#00aa00"}, headers=alice.headers)
    assert patched.json()["color"] == "#00aa00"
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404


async def test_tagging_and_untagging_keep_usage_count_right(client, alice) -> None:
    one = await new_experiment(client, alice)
    two = await new_experiment(client, alice)
    for experiment in (one, two, one):  # tagging twice is a no-op
        response = await client.put(
            f"/api/v1/experiments/{experiment['id']}/tags/Baseline", headers=alice.headers
        )
        assert response.status_code == 200
        assert response.json()["tags"] == ["baseline"]
    assert await usage(client, alice, "baseline") == 2

    for _ in range(2):  # untagging twice is a no-op too
        gone = await client.delete(
            f"/api/v1/experiments/{one['id']}/tags/baseline", headers=alice.headers
        )
        assert gone.status_code == 204
    assert await usage(client, alice, "baseline") == 1
    assert (await client.get(f"/api/v1/experiments/{one['id']}", headers=alice.headers)).json()[
        "tags"
    ] == []

    await client.delete(f"/api/v1/experiments/{two['id']}", headers=alice.headers)
    assert await usage(client, alice, "baseline") == 0


async def test_renaming_a_slug_or_deleting_a_tag_follows_into_search(client, alice) -> None:
    experiment = await new_experiment(client, alice, tags=["wip"])
    tag = (await client.get("/api/v1/tags", headers=alice.headers)).json()["items"][0]

    await client.patch(
        f"/api/v1/tags/{tag['id']}", json={"slug": "in-progress"}, headers=alice.headers
    )
    found = await client.get(
        "/api/v1/experiments", params={"filter": "tag = 'in-progress'"}, headers=alice.headers
    )
    assert [e["id"] for e in found.json()["items"]] == [experiment["id"]]
    assert [
        e["id"]
        for e in (
            await client.get("/api/v1/experiments", params={"q": "progress"}, headers=alice.headers)
        ).json()["items"]
    ] == [experiment["id"]]

    await client.delete(f"/api/v1/tags/{tag['id']}", headers=alice.headers)
    stored = (
        await client.get(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)
    ).json()
    assert stored["tags"] == []
    assert (
        await client.get(
            "/api/v1/experiments", params={"filter": "tag = 'in-progress'"}, headers=alice.headers
        )
    ).json()["items"] == []


async def test_a_tag_without_letters_or_digits_is_refused(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    response = await client.put(
        f"/api/v1/experiments/{experiment['id']}/tags/---", headers=alice.headers
    )
    assert response.status_code == 422
