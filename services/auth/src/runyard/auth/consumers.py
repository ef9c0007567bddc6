"""Event handlers. The shared EventConsumer runs each inside its inbox-guarded transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import api_keys
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.events import CloudEvent
from runyard.shared.inbox import Handler


async def on_api_key_used(session: AsyncSession, event: CloudEvent, payload: ApiKeyUsed) -> None:
    await api_keys.record_usage(session, event, payload)


HANDLERS: dict[str, Handler] = {ApiKeyUsed.event_type: on_api_key_used}
