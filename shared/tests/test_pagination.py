"""One keyset cursor for every list: round trips, and every foreign or broken cursor is a 400."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from runyard.shared.pagination import InvalidCursor, Page, cut, decode_cursor, encode_cursor

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
ROW = uuid.UUID("3f6c2a9e-8b1d-4c7a-9e25-6d0b7f4a1c83")


def test_a_cursor_gives_back_the_typed_sort_key() -> None:
    cursor = encode_cursor("datasets", (AT, ROW))
    assert decode_cursor(cursor, "datasets", datetime, uuid.UUID) == (AT, ROW)
    assert decode_cursor(None, "datasets", datetime, uuid.UUID) is None
    assert decode_cursor("", "datasets", datetime, uuid.UUID) is None  # ?cursor= : first page


def test_optional_and_alternative_key_types() -> None:
    cursor = encode_cursor("experiments", (None, ROW), variant="metrics.acc desc")
    assert decode_cursor(
        cursor, "experiments", (float, None), uuid.UUID, variant="metrics.acc desc"
    ) == (None, ROW)
    cursor = encode_cursor("runs", (7,))
    assert decode_cursor(cursor, "runs", int) == (7,)
    assert decode_cursor(encode_cursor("x", (3,)), "x", float) == (3.0,)


def forged(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "zzz",
        "%%%",
        forged([1, 2]),
        forged({"k": "tags", "v": [AT.isoformat(), str(ROW)]}),  # another list
        forged({"k": "datasets", "v": [AT.isoformat()]}),  # another shape
        forged({"k": "datasets", "v": ["yesterday", str(ROW)]}),
        forged({"k": "datasets", "v": ["2026-03-01T12:30:00", str(ROW)]}),  # no time zone
        forged({"k": "datasets", "v": [AT.isoformat(), "not-a-uuid"]}),
        forged({"k": "datasets", "v": [None, str(ROW)]}),
        forged({"k": "datasets", "v": [AT.isoformat(), str(ROW)], "o": "name asc"}),  # ordering
    ],
)
def test_a_cursor_this_list_did_not_return_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(cursor, "datasets", datetime, uuid.UUID)
    assert caught.value.status == 400
    assert caught.value.title == "Invalid cursor"


def test_integers_beyond_64_bits_and_booleans_are_invalid() -> None:
    for value in (2**63, True):
        with pytest.raises(InvalidCursor):
            decode_cursor(forged({"k": "ids", "v": [value]}), "ids", int)


def test_cut_returns_the_page_and_a_cursor_only_when_there_is_more() -> None:
    rows = [(AT, uuid.uuid4()) for _ in range(3)]
    page, cursor = cut(rows, 2, "datasets", lambda row: row)
    assert page == rows[:2]
    assert decode_cursor(cursor, "datasets", datetime, uuid.UUID) == rows[1]
    assert cut(rows, 3, "datasets", lambda row: row) == (rows, None)


def test_page_is_the_list_envelope() -> None:
    assert Page[int](items=[1], next_cursor=None).model_dump() == {
        "items": [1],
        "next_cursor": None,
    }
