"""Keyset cursors: opaque base64url JSON naming the ordering and the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import Query

from runyard.shared.http import ProblemError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"page size (default {DEFAULT_LIMIT})")
]
Cursor = Annotated[
    str | None,
    Query(max_length=2048, description="`next_cursor` of the previous page"),
]


def encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, kind: str) -> dict[str, Any] | None:
    """The cursor's content; 400 if it is garbage or was made for another list or ordering."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_cursor() from exc
    if not isinstance(data, dict) or data.get("k") != kind:
        raise invalid_cursor()
    return data


def invalid_cursor() -> ProblemError:
    return ProblemError(
        400,
        "Invalid cursor",
        "The cursor is not one this list returned (or it was made for another ordering).",
        errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
    )
