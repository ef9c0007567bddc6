"""Request and response bodies of the model registry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from runyard.experiments.schemas import Input, JsonObject, Name

MAX_TAGS = 100
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=250)]
TagValue = Annotated[str, StringConstraints(max_length=5000)]
VersionStatus = Literal["pending", "ready", "failed"]
#: an alias: letters, digits, ``_`` and ``-``; ``latest`` and ``v<digits>`` are reserved
#: (MLflow's model URIs ``models:/<name>/latest`` and ``models:/<name>/<version>`` use them)
ALIAS_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$"


def _bounded_tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return value


def reserved_alias(value: str) -> bool:
    lowered = value.lower()
    return lowered == "latest" or (lowered.startswith("v") and lowered[1:].isdigit())


def _not_reserved(value: str) -> str:
    if reserved_alias(value):
        raise ValueError("'latest' and 'v<number>' are reserved")
    return value


Tags = Annotated[dict[TagKey, TagValue], AfterValidator(_bounded_tags)]
Alias = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN), AfterValidator(_not_reserved)]
Description = Annotated[str, StringConstraints(max_length=10_000)]


class ModelCreate(Input):
    name: Name
    description: Description | None = None
    tags: Tags = Field(default_factory=dict)


class ModelUpdate(Input):
    name: Name | None = None
    description: Description | None = None
    #: replaces the model's tags
    tags: Tags | None = None


class VersionCreate(Input):
    #: lineage: the experiment whose artifact the version is
    experiment_id: uuid.UUID
    #: the artifact's path in the experiment: a file, or a directory (every file under it)
    artifact_path: Annotated[str, StringConstraints(max_length=1024)]
    description: Description | None = None
    tags: Tags = Field(default_factory=dict)
    #: JSON Schemas of the model's input and output (checked against the JSON Schema metaschema)
    input_schema: JsonObject | None = None
    output_schema: JsonObject | None = None


class VersionUpdate(Input):
    description: Description | None = None
    tags: Tags | None = None
    input_schema: JsonObject | None = None
    output_schema: JsonObject | None = None


class AliasSet(Input):
    version: int = Field(ge=1, le=2**31 - 1)


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    tags: dict[str, Any]
    #: the highest version number handed out (0: none yet)
    last_version: int
    #: alias -> version number
    aliases: dict[str, int] = {}
    created_at: datetime
    updated_at: datetime


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    model_id: uuid.UUID
    owner_id: uuid.UUID
    version: int
    description: str | None
    tags: dict[str, Any]
    experiment_id: uuid.UUID | None
    #: an MLflow logged model made outside a run whose files the version is (then no
    #: ``experiment_id`` and an empty ``artifact_path``)
    logged_model_id: str | None = None
    artifact_path: str
    source: str | None
    size: int | None
    sha256: str | None
    file_count: int | None
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    #: ``pending`` (the artifact is not uploaded yet), ``ready`` or ``failed``
    status: VersionStatus
    status_message: str | None
    metric_name: str | None
    metric_value: float | None
    archived_at: datetime | None
    aliases: list[str] = []
    created_at: datetime
    updated_at: datetime


class VersionFileOut(BaseModel):
    #: the file's path within the version: ``MLmodel``, ``data/model.pkl`` (a version of one
    #: file: its name)
    path: str
    size: int
    #: hex SHA-256 of the content (also the download's ETag)
    sha256: str
    content_type: str


class AliasOut(BaseModel):
    alias: str
    version: int
    #: the version the alias pointed at before this change (null: it is new)
    previous_version: int | None = None
