"""Cursor pagination (CONTRACT §2): newest first, the cursor is the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from runyard.shared.http import ProblemError

T = TypeVar("T")
Key = tuple[datetime, uuid.UUID | int]


def encode(at: datetime, row_id: uuid.UUID | int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, row_id = raw.partition("|")
        moment = datetime.fromisoformat(at)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(422, "Validation failed", "Invalid cursor.") from exc
    if moment.tzinfo is None or not row_id:
        raise ProblemError(422, "Validation failed", "Invalid cursor.")
    return moment, row_id


def decode(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    moment, row_id = _decode(cursor)
    try:
        return moment, uuid.UUID(row_id)
    except ValueError as exc:
        raise ProblemError(422, "Validation failed", "Invalid cursor.") from exc


def decode_int(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    moment, row_id = _decode(cursor)
    if not row_id.isdigit():
        raise ProblemError(422, "Validation failed", "Invalid cursor.")
    return moment, int(row_id)


def cut(rows: Sequence[T], limit: int, key: Callable[[T], Key]) -> tuple[Sequence[T], str | None]:
    """Rows were fetched with ``limit + 1``: the page, and the cursor if there is more."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode(*key(rows[limit - 1]))
