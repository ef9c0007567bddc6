"""Request and response bodies of projects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from runyard.experiments.schemas import Input, Name

MAX_TAGS = 100
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=250)]
TagValue = Annotated[str, StringConstraints(max_length=5000)]
LifecycleStage = Literal["active", "deleted"]
#: which projects a list shows: the active ones (default), the deleted ones, or all
StageFilter = Literal["active", "deleted", "all"]


def _bounded_tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return value


Tags = Annotated[dict[TagKey, TagValue], AfterValidator(_bounded_tags)]


class ProjectCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    #: key/value tags (MLflow's experiment tags)
    tags: Tags = Field(default_factory=dict)


class ProjectUpdate(Input):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    #: replaces the project's tags
    tags: Tags | None = None


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    tags: dict[str, Any]
    #: ``active``, or ``deleted`` (hidden from lists by default; restorable)
    lifecycle_stage: LifecycleStage
    deleted_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
