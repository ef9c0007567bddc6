"""Requests the fuzzer found answering 500, replayed exactly: each must stay a 4xx problem.

- int32 overflow (experiments, fixed there while this suite was written): an integer field
  without an upper bound reached an INTEGER column, and asyncpg refused the value.
- NUL character (any service, fixed in ``runyard.shared.http``): PostgreSQL stores U+0000
  neither in text nor in jsonb; the driver error became a 500.

If a service regresses and cannot be fixed at once, mark the test
``pytest.mark.xfail(strict=True, reason=...)`` with the precise cause, never delete it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from runyard.devstack import Stack

from .helpers import FuzzIdentities

pytestmark = pytest.mark.fuzz

INT32_MAX = 2**31 - 1


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30.0) as client:
        yield client


def assert_problem(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_nas_campaign_with_more_epochs_per_trial_than_an_integer_column_holds_is_a_422(
    api: httpx.Client, identities: FuzzIdentities
) -> None:
    answer = api.post(
        "/api/v1/nas-campaigns",
        json={
            "name": "fuzz-found",
            "search_algorithm": "random",
            "num_trials": 1,
            "max_epochs_per_trial": INT32_MAX + 1,
        },
        headers=identities.user_token.headers,
    )
    assert_problem(answer, 422)


def test_completing_with_a_best_epoch_bigger_than_an_integer_column_holds_is_a_422(
    api: httpx.Client, identities: FuzzIdentities
) -> None:
    auth = identities.user_token.headers
    made = api.post("/api/v1/experiments", json={"name": "fuzz-found"}, headers=auth)
    assert made.status_code == 201, made.text
    experiment = made.json()["id"]
    started = api.post(f"/api/v1/experiments/{experiment}/start", headers=auth)
    assert started.status_code == 200, started.text

    answer = api.post(
        f"/api/v1/experiments/{experiment}/complete",
        json={"best_epoch": INT32_MAX + 1, "total_epochs": 1},
        headers=auth,
    )
    assert_problem(answer, 422)
    still = api.get(f"/api/v1/experiments/{experiment}", headers=auth)
    assert still.json()["status"] == "running"


def test_saved_search_named_with_a_nul_character_is_a_422_and_not_saved(
    api: httpx.Client, identities: FuzzIdentities
) -> None:
    auth = identities.user_token.headers
    answer = api.post("/api/v1/saved-searches", json={"name": "a\x00b"}, headers=auth)
    assert_problem(answer, 422)
    listed = api.get("/api/v1/saved-searches", headers=auth).json()["items"]
    assert all("\x00" not in item["name"] for item in listed)


def test_nas_search_space_with_a_nul_character_in_a_key_is_a_422(
    api: httpx.Client, identities: FuzzIdentities
) -> None:
    answer = api.post(
        "/api/v1/nas-campaigns",
        json={
            "name": "fuzz-found",
            "search_algorithm": "random",
            "num_trials": 1,
            "search_space_config": {"layers\x00": [1, 2]},
        },
        headers=identities.user_token.headers,
    )
    assert_problem(answer, 422)
