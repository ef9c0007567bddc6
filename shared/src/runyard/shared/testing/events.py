"""Events for tests: contract payloads wrapped as their producer would, and Kafka records.

    event = contract_event(ExperimentFailed(...), subject=experiment_id, sequence=3)
    await consumer.process(as_record(event, offset=0))

The source is the producing service's (``/runyard/<service>`` from the contract's module), so a
test event looks exactly like one the outbox relay puts on Kafka.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from runyard.shared.contracts.auth import UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import CONTENT_TYPE, CloudEvent, EventPayload, make_event


def producer_source(payload: EventPayload) -> str:
    """``/runyard/<service>`` of the service whose contracts module declares the payload."""
    return f"/runyard/{type(payload).__module__.rsplit('.', 1)[-1]}"


def contract_event(
    payload: EventPayload, *, subject: str | uuid.UUID, sequence: int | None = None
) -> CloudEvent:
    return make_event(payload, source=producer_source(payload), subject=subject, sequence=sequence)


def as_record(event: CloudEvent, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    """The Kafka record the relay would write for ``event`` (topic = type, key = subject)."""
    value = event.to_json()
    return ConsumerRecord(
        topic=event.type,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=event.subject.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(event.subject),
        serialized_value_size=len(value),
        headers=[("content-type", CONTENT_TYPE.encode())],
    )


def user_registered(
    user_id: uuid.UUID,
    *,
    username: str = "ann",
    email: str = "ann@example.com",
    full_name: str | None = "Ann Lee",
    sequence: int = 1,
    **fields: Any,
) -> CloudEvent:
    payload = UserRegistered(
        user_id=user_id, username=username, email=email, full_name=full_name, **fields
    )
    return contract_event(payload, subject=user_id, sequence=sequence)


def user_updated(
    user_id: uuid.UUID,
    *,
    username: str = "ann",
    email: str = "ann@example.com",
    sequence: int,
    **fields: Any,
) -> CloudEvent:
    payload = UserUpdated(
        user_id=user_id,
        username=username,
        email=email,
        **{"role": "user", "is_active": True, **fields},
    )
    return contract_event(payload, subject=user_id, sequence=sequence)


def user_deactivated(user_id: uuid.UUID, *, username: str = "ann", sequence: int) -> CloudEvent:
    payload = UserDeactivated(user_id=user_id, username=username)
    return contract_event(payload, subject=user_id, sequence=sequence)


def experiment_completed(
    owner_id: uuid.UUID, *, name: str = "cnn baseline", sequence: int = 2, **fields: Any
) -> CloudEvent:
    """A completed ``cnn1d`` run of 10 epochs (best 7); ``fields`` override any payload field."""
    experiment_id = fields.pop("experiment_id", None) or uuid.uuid4()
    values: dict[str, Any] = {
        "model_type": "cnn1d",
        "status": "completed",
        "final_metrics": {"val_accuracy": 0.93125, "val_loss": 0.21},
        "best_epoch": 7,
        "total_epochs": 10,
        "started_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        "ended_at": datetime(2025, 3, 1, 12, 42, 5, tzinfo=UTC),
        "duration_seconds": 2525.0,
        **fields,
    }
    payload = ExperimentCompleted(
        experiment_id=experiment_id, name=name, owner_id=owner_id, **values
    )
    return contract_event(payload, subject=experiment_id, sequence=sequence)
