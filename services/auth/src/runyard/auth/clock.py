"""The time every auth decision uses. Tests inject a clock they can move."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from runyard.shared.db import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()
