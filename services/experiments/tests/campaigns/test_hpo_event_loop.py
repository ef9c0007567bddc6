"""The Optuna work of HPO campaigns (rebuilding the study from its history, asking it, asking
its pruner) runs in a worker thread: a suggestion being computed does not stop the service
from answering other requests, and the campaign's row lock still orders suggestions.

The study functions are wrapped (not replaced: the real computation runs) to see which thread
runs them and to hold a suggestion mid-computation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from runyard.experiments.campaigns import study

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]},
}


async def new_campaign(client, who, **fields: Any) -> dict[str, Any]:
    body = {"name": "search", "search_space": SPACE, "metric": "val_accuracy", "seed": 7, **fields}
    response = await client.post("/api/v1/hpo-campaigns", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def suggest(client, who, campaign_id: str) -> Any:
    return await client.post(f"/api/v1/hpo-campaigns/{campaign_id}/suggest", headers=who.headers)


def spy(
    monkeypatch: pytest.MonkeyPatch, name: str, *, hold: threading.Event | None = None
) -> tuple[list[int], threading.Event]:
    """Wrap ``study.<name>``: record the thread of each call, refuse the event loop's thread
    (where waiting would freeze the loop), and wait for ``hold`` before computing."""
    real: Callable[..., Any] = getattr(study, name)
    loop_thread = threading.get_ident()
    threads: list[int] = []
    entered = threading.Event()

    def wrapped(*args: Any) -> Any:
        threads.append(threading.get_ident())
        if threading.get_ident() == loop_thread:
            raise AssertionError(f"study.{name} ran on the event loop's thread")
        entered.set()
        if hold is not None and not hold.wait(timeout=120):
            raise AssertionError("the test never released the computation")
        return real(*args)

    monkeypatch.setattr(study, name, wrapped)
    return threads, entered


async def until(entered: threading.Event, task: asyncio.Task[Any]) -> None:
    """Wait, without blocking the loop, until the wrapped computation has started."""
    while not entered.is_set():
        if task.done():
            task.result()  # the request's error, if it failed
            pytest.fail("the request finished without computing its suggestion in a thread")
        await asyncio.sleep(0.01)


async def test_other_requests_are_answered_while_a_suggestion_is_computed(
    client, alice, monkeypatch
) -> None:
    campaign = await new_campaign(client, alice, method="bayesian", budget={"max_trials": 10})
    release = threading.Event()
    threads, entered = spy(monkeypatch, "suggest_trial", hold=release)

    first = asyncio.create_task(suggest(client, alice, campaign["id"]))
    await until(entered, first)
    # the suggestion is mid-computation, and the service answers others meanwhile
    read = await client.get(f"/api/v1/hpo-campaigns/{campaign['id']}", headers=alice.headers)
    assert read.status_code == 200 and read.json()["trials_started"] == 0
    listed = await client.get("/api/v1/experiments", headers=alice.headers)
    assert listed.status_code == 200 and listed.json()["items"] == []
    # a second suggestion waits for the first one's row lock, not for the loop
    second = asyncio.create_task(suggest(client, alice, campaign["id"]))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()

    release.set()
    answers = [await first, await second]
    assert [a.status_code for a in answers] == [201, 201]
    assert sorted(a.json()["trial_number"] for a in answers) == [0, 1]
    assert len(threads) == 2 and threading.get_ident() not in threads


async def test_the_pruners_question_is_answered_off_the_event_loop(
    client, alice, monkeypatch
) -> None:
    campaign = await new_campaign(
        client, alice, method="random", pruner="median", budget={"max_trials": 3, "min_epochs": 1}
    )
    experiment_id = (await suggest(client, alice, campaign["id"])).json()["experiment"]["id"]
    await client.post(
        f"/api/v1/experiments/{experiment_id}/runs",
        json={"epoch": 0, "val_accuracy": 0.5},
        headers=alice.headers,
    )
    threads, _entered = spy(monkeypatch, "decide_pruning")
    answer = await client.get(
        f"/api/v1/experiments/{experiment_id}/should-prune", headers=alice.headers
    )
    assert answer.status_code == 200 and answer.json()["should_prune"] is False
    assert len(threads) == 1 and threads[0] != threading.get_ident()
