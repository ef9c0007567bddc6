"""Keyset pagination, the one way every list of the API pages.

A list answers ``{"items": [...], "next_cursor": "..."|null}`` (``Page[T]``) and takes
``?limit=`` (``Limit``: default 50, at most 500) and ``?cursor=`` (``CursorParam``). A cursor is
opaque to clients: base64url of a small JSON document naming the list it belongs to (``kind``),
optionally the ordering it was made for (``variant``), and the last row's sort key. Keyset pages
cost the same at any depth and never shift when rows are inserted meanwhile.

Any cursor that is not one the same list (and ordering) returned is ``InvalidCursor``: a 400
problem+json titled "Invalid cursor" on every list of every service.

    rows = await session.scalars(query.where(tuple_(T.created_at, T.id) < key).limit(limit + 1))
    items, next_cursor = cut(rows.all(), limit, "datasets", lambda r: (r.created_at, r.id))

with the key read back by ``decode_cursor(cursor, "datasets", datetime, uuid.UUID)``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from runyard.shared.http import ProblemError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 2048

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"page size (default {DEFAULT_LIMIT})")
]
CursorParam = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page"),
]

T = TypeVar("T")
Row = TypeVar("Row")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class InvalidCursor(ProblemError):
    """The cursor is garbage, or was made by another list or for another ordering."""

    def __init__(self) -> None:
        super().__init__(
            400,
            "Invalid cursor",
            "The cursor is not one this list returned (or it was made for another ordering).",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        )


#: What a sort-key element may be decoded as; ``None`` in the list allows a missing value.
KeyType = type[datetime] | type[uuid.UUID] | type[int] | type[float] | type[str] | None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, int | float | str):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def encode_cursor(kind: str, key: Sequence[Any], *, variant: str | None = None) -> str:
    """The cursor after a row whose sort key is ``key`` (datetimes, UUIDs, numbers, text, None)."""
    data: dict[str, Any] = {"k": kind, "v": [_plain(v) for v in key]}
    if variant is not None:
        data["o"] = variant
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _typed(value: Any, types: tuple[KeyType, ...]) -> Any:
    if value is None:
        if None in types:
            return None
        raise ValueError("missing sort key")
    for kind in types:
        if kind is datetime and isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise ValueError("a cursor time has a time zone")
            return moment
        if kind is uuid.UUID and isinstance(value, str):
            return uuid.UUID(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**63:
                raise ValueError("out of range")
            return value
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    raise ValueError("sort key of the wrong type")


def decode_cursor(
    cursor: str | None,
    kind: str,
    *types: KeyType | tuple[KeyType, ...],
    variant: str | None = None,
) -> tuple[Any, ...] | None:
    """The sort key ``cursor`` holds, one element per entry of ``types`` (a type, or a tuple of
    allowed types such as ``(float, None)``); None without a cursor (an empty ``?cursor=`` is
    none: the first page); else ``InvalidCursor``."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or data.get("k") != kind or data.get("o") != variant:
            raise ValueError("cursor of another list or ordering")
        values = data.get("v")
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("cursor of another shape")
        return tuple(
            _typed(value, allowed if isinstance(allowed, tuple) else (allowed,))
            for value, allowed in zip(values, types, strict=True)
        )
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError) as exc:
        raise InvalidCursor() from exc


def cut(
    rows: Sequence[Row],
    limit: int,
    kind: str,
    key: Callable[[Row], Sequence[Any]],
    *,
    variant: str | None = None,
) -> tuple[list[Row], str | None]:
    """``rows`` were fetched with ``limit + 1``: the page, and the next cursor if there is more."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, encode_cursor(kind, key(page[-1]), variant=variant)
