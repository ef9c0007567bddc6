"""The CloudEvents 1.0 envelope every event travels in (docs/events.md) and the registry of
payload contracts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTENT_TYPE = "application/cloudevents+json"


class EventPayload(BaseModel):
    """Base of every event payload. Subclasses declare ``event_type`` and ``version``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    registry: ClassVar[dict[tuple[str, int], type[EventPayload]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            key = (cls.event_type, cls.version)
            if key in EventPayload.registry and EventPayload.registry[key] is not cls:
                raise TypeError(f"duplicate contract {key}")
            EventPayload.registry[key] = cls

    @classmethod
    def dataschema(cls) -> str:
        return schema_urn(cls.event_type, cls.version)


def schema_urn(event_type: str, version: int) -> str:
    return f"urn:runyard:{event_type}:{version}"


def parse_schema_urn(urn: str) -> tuple[str, int]:
    prefix, _, version = urn.rpartition(":")
    if not prefix.startswith("urn:runyard:") or not version.isdigit():
        raise ValueError(f"not a runyard dataschema: {urn!r}")
    return prefix.removeprefix("urn:runyard:"), int(version)


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured JSON mode."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    dataschema: str
    sequence: str | None = None
    data: dict[str, Any]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def topic(self) -> str:
        return self.type

    def payload(self) -> EventPayload:
        """Validate ``data`` against the registered contract for (type, dataschema version)."""
        event_type, version = parse_schema_urn(self.dataschema)
        if event_type != self.type:
            raise UnknownContractError(f"dataschema {self.dataschema} does not match {self.type}")
        model = EventPayload.registry.get((event_type, version))
        if model is None:
            raise UnknownContractError(f"no contract for {event_type} version {version}")
        return model.model_validate(self.data)


class UnknownContractError(ValueError):
    pass


def make_event(
    payload: EventPayload,
    *,
    source: str,
    subject: str | uuid.UUID,
    sequence: int | None = None,
    event_id: str | uuid.UUID | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    fields: dict[str, Any] = {
        "source": source,
        "type": payload.event_type,
        "subject": str(subject),
        "dataschema": payload.dataschema(),
        "sequence": None if sequence is None else str(sequence),
        "data": payload.model_dump(mode="json"),
    }
    if event_id is not None:
        fields["id"] = str(event_id)
    if time is not None:
        fields["time"] = time
    return CloudEvent(**fields)


def parse_event(raw: bytes | str) -> tuple[CloudEvent, EventPayload]:
    """Parse a record value into its envelope and typed payload; raises ``ValueError`` if bad."""
    try:
        event = CloudEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(f"not a CloudEvents document: {exc.errors(include_url=False)}") from exc
    if event.specversion != "1.0":
        raise UnknownContractError(f"unsupported specversion {event.specversion}")
    try:
        return event, event.payload()
    except ValidationError as exc:
        raise ValueError(
            f"payload invalid for {event.dataschema}: {exc.errors(include_url=False)}"
        ) from exc
