"""The request vocabulary every feature's models use: inputs forbid unknown fields and
non-finite numbers, JSON documents are bounded, names and labels are trimmed."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from runyard.experiments.errors import NotNullable

MAX_JSON_KEYS = 200
#: the largest epoch number a run may carry (its columns are 32-bit integers)
MAX_EPOCH = 10_000_000


def _finite_json(value: Any, depth: int = 0) -> Any:
    """JSON documents (config, hyperparameters ...) may not hold NaN or infinities."""
    if depth > 32:
        raise ValueError("nested too deeply (more than 32 levels)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite numbers are not allowed")
    if isinstance(value, dict):
        for item in value.values():
            _finite_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item, depth + 1)
    return value


def _bounded_keys(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_JSON_KEYS:
        raise ValueError(f"at most {MAX_JSON_KEYS} keys")
    return value


#: a metric or parameter name: usable in filters as metrics.<key> (backticks quote odd ones)
Key = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^`\n]+$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
JsonObject = Annotated[dict[Key, Any], AfterValidator(_finite_json), AfterValidator(_bounded_keys)]
Metrics = Annotated[dict[Key, Finite], AfterValidator(_bounded_keys)]
Path = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def requested_changes(data: BaseModel, *, not_nullable: Collection[str]) -> dict[str, Any]:
    """The fields a PATCH body sets; 422 if it sets one of ``not_nullable`` to null."""
    changes = data.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None and k in not_nullable)
    if nulls:
        raise NotNullable(nulls)
    return changes


def changed_fields(row: Any, changes: dict[str, Any]) -> list[str]:
    """The fields whose requested value differs from the row's (only those are written)."""
    return sorted(k for k, v in changes.items() if getattr(row, k) != v)
