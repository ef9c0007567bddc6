"""The fields a filter or ordering may name: the experiment's columns, its tags, and keys of its
metrics and hyperparameters (JSON documents read through SQL functions, keys bound)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, case, func

from runyard.experiments.models import SCHEMA, Experiment

MAX_KEY_LENGTH = 100


@dataclass(frozen=True)
class Attribute:
    column: Any
    kind: str  # "text" | "status" | "datetime" | "uuid" | "int" | "float"
    nullable: bool


ATTRIBUTES: dict[str, Attribute] = {
    "status": Attribute(Experiment.status, "status", False),
    "name": Attribute(Experiment.name, "text", False),
    "model_type": Attribute(Experiment.model_type, "text", True),
    "created_at": Attribute(Experiment.created_at, "datetime", False),
    "updated_at": Attribute(Experiment.updated_at, "datetime", False),
    "started_at": Attribute(Experiment.started_at, "datetime", True),
    "ended_at": Attribute(Experiment.ended_at, "datetime", True),
    "last_seen_at": Attribute(Experiment.last_seen_at, "datetime", True),
    "stalled_at": Attribute(Experiment.stalled_at, "datetime", True),
    "dataset_id": Attribute(Experiment.dataset_id, "uuid", True),
    "project": Attribute(Experiment.project_id, "uuid", True),
    "project_id": Attribute(Experiment.project_id, "uuid", True),
    "owner_id": Attribute(Experiment.owner_id, "uuid", False),
    "best_epoch": Attribute(Experiment.best_epoch, "int", True),
    "total_epochs": Attribute(Experiment.total_epochs, "int", False),
    "duration_seconds": Attribute(Experiment.duration_seconds, "float", True),
}
NAMESPACES = {"metrics": Experiment.metrics, "params": Experiment.hyperparameters}
FIELD_HELP = ", ".join([*ATTRIBUTES, "tag", "metrics.<key>", "params.<key>"])


def jsonb_number(document: Any, key: str) -> ColumnElement[float]:
    """``experiments.jsonb_number(doc, key)``: the key's JSON number as float8, else NULL.

    The same SQL function backs the expression indexes on common metrics (migration 0002).
    """
    number: ColumnElement[float] = getattr(func, SCHEMA).jsonb_number(document, key, type_=Float)
    return number


def jsonb_text(document: Any, key: str) -> ColumnElement[str]:
    """The key's JSON string, else NULL (a number or a missing key never compares as text)."""
    return case((func.jsonb_typeof(document[key]) == "string", document[key].astext))


def slugify(value: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")
