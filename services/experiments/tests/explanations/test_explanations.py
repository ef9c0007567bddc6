"""Explanations of an experiment: store, list and filter by method and signal, size limit."""

from __future__ import annotations

from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import fetch, new_experiment


async def explain(client, who, experiment_id: str, **body) -> object:
    return await client.post(
        f"/api/v1/experiments/{experiment_id}/explanations", json=body, headers=who.headers
    )


async def test_explanations_are_stored_and_filtered_by_method_and_signal(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    stored = []
    for method, signal in (("shap", "sig-1"), ("lime", "sig-1"), ("shap", "sig-2")):
        response = await explain(
            client,
            alice,
            experiment["id"],
            method=method,
            signal_id=signal,
            explanation_data={"attributions": [0.1, -0.4, 0.7], "base_value": 0.2},
        )
        assert response.status_code == 201, response.text
        stored.append(response.json())
    path = f"/api/v1/experiments/{experiment['id']}/explanations"

    async def ids(query: str) -> list[str]:
        body = (await client.get(f"{path}{query}", headers=alice.headers)).json()
        return [e["id"] for e in body["items"]]

    assert await ids("") == [e["id"] for e in reversed(stored)]
    assert await ids("?method=shap") == [stored[2]["id"], stored[0]["id"]]
    assert await ids("?signal_id=sig-1") == [stored[1]["id"], stored[0]["id"]]
    assert await ids("?method=shap&signal_id=sig-1") == [stored[0]["id"]]
    page = (await client.get(f"{path}?limit=2", headers=alice.headers)).json()
    rest = (
        await client.get(f"{path}?limit=2&cursor={page['next_cursor']}", headers=alice.headers)
    ).json()
    assert [e["id"] for e in page["items"] + rest["items"]] == await ids("")
    assert (await client.get(f"{path}?method=magic", headers=alice.headers)).status_code == 422


async def test_an_explanation_over_the_size_limit_is_413_and_not_stored(
    settings, db, alice
) -> None:
    limited = settings.model_copy(update={"explanation_max_bytes": 2048})
    async with running_app(create_app(limited)) as client:
        experiment = await new_experiment(client, alice)
        response = await explain(
            client,
            alice,
            experiment["id"],
            method="grad_cam",
            explanation_data={"heatmap": [0.123456] * 1000},
        )
        assert response.status_code == 413
        assert response.json()["max_bytes"] == 2048
        assert await fetch(db, "SELECT id FROM experiments.explanations") == []


async def test_explanations_belong_to_the_experiments_owner(client, alice, bob, viewer) -> None:
    experiment = await new_experiment(client, alice)
    body = {"method": "integrated_gradients", "explanation_data": {"steps": 50}}
    created = await explain(client, alice, experiment["id"], **body)
    path = f"/api/v1/experiments/{experiment['id']}/explanations"
    assert (await explain(client, bob, experiment["id"], **body)).status_code == 404
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    assert (await client.get(path, headers=viewer.headers)).json()["items"][0]["id"] == (
        created.json()["id"]
    )
    assert (await explain(client, viewer, experiment["id"], **body)).status_code == 403
    one = f"{path}/{created.json()['id']}"
    assert (await client.delete(one, headers=bob.headers)).status_code == 404
    assert (await client.delete(one, headers=alice.headers)).status_code == 204
    assert (await client.get(one, headers=alice.headers)).status_code == 404
