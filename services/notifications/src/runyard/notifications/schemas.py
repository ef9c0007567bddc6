from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class EmailLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    to_address: str | None
    subject: str | None
    template_name: str | None
    event_type: str
    event_id: str
    status: str
    provider: str
    message_id: str | None
    error_message: str | None
    retry_count: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EmailLogPage(BaseModel):
    items: list[EmailLogOut]
    next_cursor: str | None
