from __future__ import annotations

import json
import uuid

import pytest

from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import UnknownContractError, make_event, parse_event


def completed(owner: uuid.UUID) -> ExperimentCompleted:
    return ExperimentCompleted(
        experiment_id=uuid.uuid4(),
        name="baseline",
        owner_id=owner,
        status="completed",
        final_metrics={"val_accuracy": 0.91},
        total_epochs=10,
    )


def test_envelope_follows_cloudevents_structured_mode() -> None:
    payload = completed(uuid.uuid4())
    event = make_event(
        payload, source="/runyard/experiments", subject=payload.experiment_id, sequence=3
    )
    doc = json.loads(event.to_json())
    assert doc["specversion"] == "1.0"
    assert doc["type"] == "experiment.completed"
    assert doc["dataschema"] == "urn:runyard:experiment.completed:1"
    assert doc["subject"] == str(payload.experiment_id)
    assert doc["sequence"] == "3"
    assert doc["datacontenttype"] == "application/json"
    assert doc["time"].endswith("Z")
    uuid.UUID(doc["id"])


def test_round_trip_gives_the_typed_payload() -> None:
    payload = completed(uuid.uuid4())
    event = make_event(payload, source="/runyard/experiments", subject=payload.experiment_id)
    parsed, typed = parse_event(event.to_json())
    assert parsed.id == event.id
    assert isinstance(typed, ExperimentCompleted)
    assert typed.final_metrics == {"val_accuracy": 0.91}


def test_unknown_schema_version_is_rejected() -> None:
    payload = completed(uuid.uuid4())
    doc = json.loads(make_event(payload, source="/x", subject="s").to_json())
    doc["dataschema"] = "urn:runyard:experiment.completed:99"
    with pytest.raises(UnknownContractError):
        parse_event(json.dumps(doc))


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"specversion": "1.0"}', b"\xff\xfe"])
def test_garbage_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_event(raw)


def test_payload_missing_required_field_is_a_value_error() -> None:
    payload = completed(uuid.uuid4())
    doc = json.loads(make_event(payload, source="/x", subject="s").to_json())
    del doc["data"]["owner_id"]
    with pytest.raises(ValueError, match="payload invalid"):
        parse_event(json.dumps(doc))
