"""Kafka topics of the event catalog, created with an explicit partition count.

A consumer group spreads a topic's partitions over its members, so replicas of a service share
the work only up to the partition count (a fifth replica of a group on 4-partition topics idles).
Each event type is a topic; its dead-letter topic ``<type>.dlq`` (written by the consumers with
the record's key) is created with it, with the same partition count, so that a cluster that does
not auto-create topics has it before the first poison record.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import Any

#: Tansu's auto-created topics have 4 partitions, and docker-compose's Kafka sets num.partitions=4
DEFAULT_PARTITIONS = 4
DLQ_SUFFIX = ".dlq"
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS


def catalog_topics(*, dead_letter: bool = True) -> list[str]:
    """Every event type of ``runyard.shared.contracts`` (one topic each), plus its DLQ."""
    from runyard.shared import contracts

    types = sorted({event_type for event_type, _version in contracts.all_contracts()})
    return [*types, *(t + DLQ_SUFFIX for t in types)] if dead_letter else types


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Create the topics that do not exist (existing ones are left as they are).

    Returns the topics created and the partition count of every topic asked for."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created: list[str] = []
        if missing:
            response: Any = await admin.create_topics(
                [
                    NewTopic(t, partitions, replication_factor, topic_configs=dict(configs or {}))
                    for t in missing
                ]
            )
            failed = []
            for error in response.topic_errors:
                topic, code, message = error[0], error[1], error[-1]
                if code == 0:
                    created.append(topic)
                elif code != _TOPIC_EXISTS:  # created meanwhile by someone else: fine
                    failed.append(f"{topic}: error {code} {message or ''}".strip())
            if failed:
                raise RuntimeError("could not create topics: " + "; ".join(failed))
        described = await admin.describe_topics(wanted)
        counts = {d["topic"]: len(d["partitions"]) for d in described if not d["error_code"]}
    finally:
        await admin.close()
    return created, counts


def ensure_topics_blocking(
    bootstrap: str, topics: Iterable[str], **kwargs: Any
) -> tuple[list[str], dict[str, int]]:
    """``ensure_topics`` from synchronous code, even when the caller runs an event loop."""
    result: list[tuple[list[str], dict[str, int]]] = []
    failure: list[BaseException] = []
    topics = list(topics)

    def run() -> None:
        try:
            result.append(asyncio.run(ensure_topics(bootstrap, topics, **kwargs)))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="topics", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
