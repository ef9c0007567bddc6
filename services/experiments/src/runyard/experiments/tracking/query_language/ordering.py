"""``order_by`` of the experiment search: one field (an attribute or ``metrics.<key>``) and a
direction; the id breaks ties."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runyard.experiments.models import Experiment
from runyard.experiments.tracking.query_language.fields import (
    ATTRIBUTES,
    MAX_KEY_LENGTH,
    jsonb_number,
)
from runyard.experiments.tracking.query_language.syntax import QueryLanguageError
from runyard.shared.pagination import KeyType

#: how a cursor holds each kind of sort key
KEY_TYPES: dict[str, KeyType] = {"datetime": datetime, "text": str, "int": int, "float": float}


@dataclass(frozen=True)
class Ordering:
    """One sort key plus the id as tie-breaker; ``signature`` goes into cursors."""

    key: str
    descending: bool
    expression: Any
    kind: str  # cursor value kind: datetime | text | int | float
    nullable: bool

    @property
    def signature(self) -> str:
        return f"{'-' if self.descending else ''}{self.key}"

    @property
    def key_type(self) -> tuple[KeyType, ...]:
        """What the sort key of a row may be in a cursor (None where a key may be missing)."""
        return (KEY_TYPES[self.kind], None) if self.nullable else (KEY_TYPES[self.kind],)

    def sort_value(self, row: Experiment) -> Any:
        """The row's sort key as the ordering sees it (a metric that is no number: missing)."""
        if self.key.startswith("metrics."):
            value = row.metrics.get(self.key[len("metrics.") :])
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return None
        return getattr(row, self.key)

    def key_of(self, row: Experiment) -> tuple[Any, uuid.UUID]:
        return self.sort_value(row), row.id


SORTABLE = {
    name: attribute
    for name, attribute in ATTRIBUTES.items()
    if name not in ("dataset_id", "owner_id")
}
ORDER_BY_RE = re.compile(
    r"^\s*(?P<minus>-)?(?P<key>(?:metrics\.(?:[A-Za-z0-9_./:-]+|`[^`\n]+`))|[a-z_]+)"
    r"(?:\s+(?P<dir>asc|desc))?\s*$",
    re.I,
)
DEFAULT_ORDER = "-created_at"


def parse_order_by(text: str | None) -> Ordering:
    """``created_at``, ``-created_at``, ``name asc``, ``metrics.val_accuracy desc`` ..."""
    text = text if text and text.strip() else DEFAULT_ORDER
    match = ORDER_BY_RE.match(text)

    def fail(message: str, position: int) -> QueryLanguageError:
        return QueryLanguageError(message, text=text, position=position, param="order_by")

    if not match:
        raise fail(
            "order_by is one field, optionally prefixed with '-' or followed by asc/desc "
            "(for example -created_at or metrics.val_accuracy desc)",
            0,
        )
    key = match["key"]
    if match["minus"] and match["dir"]:
        raise fail("Use either a '-' prefix or asc/desc, not both", match.start("dir"))
    descending = bool(match["minus"]) or (match["dir"] or "").lower() == "desc"
    if key.lower().startswith("metrics."):
        metric = key[len("metrics.") :]
        if metric.startswith("`"):
            metric = metric[1:-1]
        if len(metric) > MAX_KEY_LENGTH:
            raise fail(f"A key is 1 to {MAX_KEY_LENGTH} characters long.", match.start("key"))
        return Ordering(
            f"metrics.{metric}",
            descending,
            jsonb_number(Experiment.metrics, metric),
            "float",
            True,
        )
    attribute = SORTABLE.get(key.lower())
    if attribute is None:
        raise fail(
            f"Cannot order by {key!r}; order by {', '.join(SORTABLE)} or metrics.<key>",
            match.start("key"),
        )
    kind = "text" if attribute.kind == "status" else attribute.kind
    return Ordering(key.lower(), descending, attribute.column, kind, attribute.nullable)
