"""How notifications write times and fact rows, shared by every template's context."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone_of(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_local(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "unknown"
    return moment.astimezone(zone_of(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def facts(*rows: tuple[str, Any]) -> list[tuple[str, str]]:
    """The (label, value) rows of a layout template, leaving out the unknown ones."""
    return [(label, str(value)) for label, value in rows if value not in (None, "", [])]
