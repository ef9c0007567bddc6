"""The running service with its workers on the real broker: an HPO trial's result travels as
the service's own ``experiment.completed`` (outbox -> Kafka -> inbox consumer) back into the
campaign, and the ``dataset-jobs`` worker runs a generation to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import act, event_types

pytestmark = pytest.mark.pipeline


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``predicate`` for up to a minute."""
    async with asyncio.timeout(60):
        while not await predicate():
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_the_campaign_learns_a_trial_result_from_its_own_event_on_kafka(
    settings, db, alice
) -> None:
    running = settings.model_copy(update={"run_workers": True, "job_poll_interval_s": 0.1})
    async with running_app(create_app(running)) as client:
        campaign = (
            await client.post(
                "/api/v1/hpo-campaigns",
                json={
                    "name": "pipeline-search",
                    "method": "bayesian",
                    "search_space": {
                        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}
                    },
                    "budget": {"max_trials": 1},
                    "metric": "val_accuracy",
                },
                headers=alice.headers,
            )
        ).json()
        suggestion = (
            await client.post(
                f"/api/v1/hpo-campaigns/{campaign['id']}/suggest", headers=alice.headers
            )
        ).json()
        experiment_id = suggestion["experiment"]["id"]
        await client.post(
            f"/api/v1/experiments/{experiment_id}/runs",
            json={"epoch": 0, "val_accuracy": 0.87},
            headers=alice.headers,
        )
        await act(client, alice, experiment_id, "complete")

        async def campaign_completed() -> bool:
            response = await client.get(
                f"/api/v1/hpo-campaigns/{campaign['id']}", headers=alice.headers
            )
            return bool(response.json()["status"] == "completed")

        await until(campaign_completed)
        done = (
            await client.get(f"/api/v1/hpo-campaigns/{campaign['id']}", headers=alice.headers)
        ).json()
        assert (done["best_experiment_id"], done["best_value"]) == (experiment_id, 0.87)
        assert "hpo_campaign.completed" in await event_types(db)

        job = (
            await client.post(
                "/api/v1/dataset-generations",
                json={"name": "pipeline-gen", "signals_per_combination": 1},
                headers=alice.headers,
            )
        ).json()

        async def generated() -> bool:
            response = await client.get(
                f"/api/v1/dataset-generations/{job['id']}", headers=alice.headers
            )
            return bool(response.json()["status"] == "completed")

        await until(generated)
        assert "dataset_generation.completed" in await event_types(db)
