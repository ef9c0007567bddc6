from __future__ import annotations

from fastapi import FastAPI

from runyard.notifications.api import router
from runyard.notifications.config import Settings
from runyard.notifications.consumers import make_handlers
from runyard.notifications.models import SCHEMA
from runyard.notifications.workers import run_digest_scheduler, run_email_sender
from runyard.shared.contracts import notifications as contracts
from runyard.shared.runtime import ServiceSpec, create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_service_app(
        ServiceSpec(
            name="notifications",
            schema=SCHEMA,
            settings=settings,
            routers=[router],
            handlers=make_handlers(settings),
            workers={"email_sender": run_email_sender, "digest_scheduler": run_digest_scheduler},
            publishes=[
                contracts.EmailSent,
                contracts.EmailFailed,
                contracts.NotificationPreferenceUpdated,
                contracts.NotificationCreated,
                contracts.NotificationRead,
            ],
            description="Emails, digests and the in-app inbox, driven by domain events.",
        )
    )
