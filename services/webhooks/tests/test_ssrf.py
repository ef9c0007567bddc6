"""Deliveries never reach the service's own network: checked on save and at every attempt."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from runyard.shared.testing import identity_headers, running_app
from runyard.shared.testing.events import experiment_completed
from runyard.webhooks.config import Settings
from runyard.webhooks.context import new_http_session
from runyard.webhooks.main import create_app
from runyard.webhooks.ssrf import (
    StaticLookup,
    SystemLookup,
    TargetPolicy,
    TargetRefused,
    address_problem,
)
from runyard.webhooks.workers import deliver_due
from services.webhooks.tests.webhooks_helpers import (
    consume,
    create_webhook,
    deliveries,
    logs,
    query,
)

PUBLIC = "93.184.215.14"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("fd12:3456::1", "unique-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.10.20", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.100.100.200", "CGNAT"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "this network"),
        ("::", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of a loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped form of the cloud metadata"),
        ("::7f00:1", "IPv4-compatible"),
        ("2002:7f00:1::", "6to4"),
        ("2002:5db8:d70e::1", "6to4"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
        ("64:ff9b::7f00:1", "NAT64 form of a loopback"),
        ("64:ff9b::a9fe:a9fe", "NAT64 form of the cloud metadata"),
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        ("2001:db8::1", "documentation"),
    ],
)
def test_addresses_that_are_not_globally_routable_are_refused_with_a_reason(
    address: str, reason: str
) -> None:
    problem = address_problem(address)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "address", [PUBLIC, "8.8.8.8", "2606:4700::1111", "::ffff:93.184.215.14", "64:ff9b::5db8:d70e"]
)
def test_public_addresses_and_their_mapped_forms_are_accepted(address: str) -> None:
    assert address_problem(address) is None


HOSTS = {
    "public.test": [PUBLIC],
    "metadata.test": ["169.254.169.254"],
    "cgnat.test": ["100.100.100.200"],
    "mapped.test": ["::ffff:10.0.0.7"],
    "mixed.test": [PUBLIC, "10.0.0.5"],
    "six.test": ["2606:4700::1111", "fe80::1"],
}


@pytest.fixture
def lookup() -> StaticLookup:
    return StaticLookup(HOSTS, fallback=SystemLookup())


@pytest.fixture
def strict(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_targets": False})


@pytest.fixture
async def strict_client(strict: Settings, lookup: StaticLookup) -> AsyncIterator[Any]:
    async with running_app(create_app(strict, lookup=lookup)) as c:
        yield c


async def stored(db: Any) -> int:
    return len(await query(db, "SELECT id FROM webhooks.webhook_configurations"))


@pytest.mark.parametrize(
    "url",
    [
        "http://public.test/hook",
        "ftp://public.test/hook",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://224.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[2002:7f00:1::]/hook",
        "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",
        "https://[64:ff9b::a9fe:a9fe]/hook",
        "https://localhost:8443/hook",
        "https://2130706433/hook",
        "https://metadata.test/hook",
        "https://cgnat.test/hook",
        "https://mapped.test/hook",
        "https://mixed.test/hook",
        "https://six.test/hook",
        "https://nowhere.test/hook",
    ],
)
async def test_saving_a_target_that_is_not_https_to_public_addresses_is_422(
    strict_client, db, url
) -> None:
    answer = await create_webhook_raw(strict_client, url)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["loc"] == ["body", "url"]
    assert await stored(db) == 0


async def create_webhook_raw(client: Any, url: str) -> Any:
    return await client.post(
        "/api/v1/webhooks",
        json={"name": "hook", "url": url, "enabled_events": ["*"]},
        headers=identity_headers(uuid.uuid4()),
    )


async def test_the_refusal_says_what_the_host_resolves_to(strict_client) -> None:
    answer = await create_webhook_raw(strict_client, "https://metadata.test/hook")
    assert "'metadata.test' resolves to 169.254.169.254" in answer.json()["detail"]
    assert "cloud metadata" in answer.json()["detail"]


@pytest.mark.parametrize(
    "url", [f"https://{PUBLIC}/hook", "https://public.test/hook", "https://[2606:4700::1111]/x"]
)
async def test_https_to_public_addresses_is_accepted(strict_client, url) -> None:
    answer = await create_webhook_raw(strict_client, url)
    assert answer.status_code == 201, answer.text


async def test_plain_http_is_accepted_only_for_hosts_the_settings_allow(strict, lookup, db) -> None:
    allowing = strict.model_copy(update={"http_allowed_hosts": "*.test, example.org"})
    async with running_app(create_app(allowing, lookup=lookup)) as c:
        assert (await create_webhook_raw(c, "http://public.test/hook")).status_code == 201
        assert (await create_webhook_raw(c, "http://metadata.test/hook")).status_code == 422
        assert (await create_webhook_raw(c, f"http://{PUBLIC}/hook")).status_code == 422


async def test_a_host_re_pointed_at_a_private_address_after_saving_is_refused_at_the_attempt(
    strict_client, strict, lookup, db, sessionmaker, receiver
) -> None:
    owner = uuid.uuid4()
    lookup.hosts["rebind.test"] = [PUBLIC]
    await create_webhook(strict_client, owner, f"https://rebind.test:{receiver.port}/hook")
    lookup.hosts["rebind.test"] = ["127.0.0.1"]  # DNS rebinding
    await consume(sessionmaker, experiment_completed(owner))

    async with new_http_session(strict, lookup) as http:
        await deliver_due(sessionmaker, http, settings=strict)

    assert receiver.requests == []
    [log] = await logs(db)
    assert log["status"] == "failed"
    assert log["error_message"].startswith("refused: 'rebind.test' resolves to 127.0.0.1")
    [delivery] = await deliveries(db)
    assert delivery["status"] == "pending"  # retried on schedule; DNS may be fixed


async def test_a_target_saved_while_private_targets_were_allowed_is_refused_once_they_are_not(
    client, strict, db, sessionmaker, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))  # http://127.0.0.1:<port>
    await consume(sessionmaker, experiment_completed(owner))

    async with new_http_session(strict) as http:
        await deliver_due(sessionmaker, http, settings=strict)

    assert receiver.requests == []
    [log] = await logs(db)
    assert log["error_message"] == "refused: only https URLs are allowed"


async def test_the_connection_goes_to_the_looked_up_address_with_the_host_name_kept(
    settings, db, sessionmaker, receiver
) -> None:
    lookup = StaticLookup({"receiver.test": ["127.0.0.1"]})
    owner = uuid.uuid4()
    async with running_app(create_app(settings, lookup=lookup)) as c:
        await create_webhook(c, owner, f"http://receiver.test:{receiver.port}/hook")
    await consume(sessionmaker, experiment_completed(owner))

    async with new_http_session(settings, lookup) as http:
        await deliver_due(sessionmaker, http, settings=settings)

    [request] = receiver.requests
    assert request.headers["Host"] == f"receiver.test:{receiver.port}"
    assert lookup.calls == ["receiver.test"]  # one lookup, by our resolver, nothing else


# --- the dev/test switch opens loopback, nothing else; production refuses it ---------------


def test_private_targets_allowed_in_production_refuse_to_load(settings: Settings) -> None:
    real = "r" * 48
    with pytest.raises(ValidationError, match="allow_private_targets is refused"):
        Settings(
            environment="production",
            allow_private_targets=True,
            identity_secret=real,
            secret_encryption_key=real,
        )
    production = Settings(
        environment="production", identity_secret=real, secret_encryption_key=real
    )
    assert production.target_policy().allow_private is False


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://169.254.169.254:80/computeMetadata/v1/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://169.254.10.20/hook",
        "http://[fe80::1]/hook",
        "http://[fe80::1%25eth0]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_with_private_targets_allowed_metadata_link_local_and_private_urls_are_still_422(
    client, db, url
) -> None:
    answer = await create_webhook_raw(client, url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["body", "url"]
    assert await stored(db) == 0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hook", "http://127.8.9.10:9/hook", "http://[::1]:9/hook"]
)
async def test_with_private_targets_allowed_loopback_is_accepted(client, url) -> None:
    answer = await create_webhook_raw(client, url)
    assert answer.status_code == 201, answer.text


async def test_with_private_targets_allowed_a_name_for_the_metadata_address_is_refused_at_the_attempt(
    settings, db, sessionmaker, receiver
) -> None:
    lookup = StaticLookup({"metadata.google.internal": ["169.254.169.254"]})
    owner = uuid.uuid4()
    async with running_app(create_app(settings, lookup=lookup)) as c:
        await create_webhook(c, owner, f"http://metadata.google.internal:{receiver.port}/hook")
    await consume(sessionmaker, experiment_completed(owner))

    async with new_http_session(settings, lookup) as http:
        await deliver_due(sessionmaker, http, settings=settings)

    assert receiver.requests == []
    [log] = await logs(db)
    assert log["error_message"].startswith(
        "refused: 'metadata.google.internal' resolves to 169.254.169.254"
    )


async def test_with_private_targets_allowed_a_name_for_loopback_is_delivered(
    settings, db, sessionmaker, receiver
) -> None:
    lookup = StaticLookup({"receiver.test": ["127.0.0.1"]})
    owner = uuid.uuid4()
    async with running_app(create_app(settings, lookup=lookup)) as c:
        await create_webhook(c, owner, f"http://receiver.test:{receiver.port}/hook")
    await consume(sessionmaker, experiment_completed(owner))

    async with new_http_session(settings, lookup) as http:
        await deliver_due(sessionmaker, http, settings=settings)

    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("169.254.1.1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("10.0.0.1", False),
        ("fd12:3456::1", False),
    ],
)
def test_the_dev_policy_opens_loopback_only(address: str, allowed: bool) -> None:
    policy = TargetPolicy(allow_private=True)
    if allowed:
        policy.check_address(address, host=address)
    else:
        with pytest.raises(TargetRefused):
            policy.check_address(address, host=address)
