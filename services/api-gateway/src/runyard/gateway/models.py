"""The gateway's schema. Skeleton: only the outbox and inbox (request logs come later)."""

from __future__ import annotations

from runyard.shared.db import make_base
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "gateway"
Base = make_base(SCHEMA)
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
