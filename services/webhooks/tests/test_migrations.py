from __future__ import annotations

from runyard.shared.testing import ServiceDatabase
from runyard.shared.testing.migrations import model_differences, round_trip
from runyard.webhooks.models import Base


async def test_migrations_create_exactly_what_the_models_declare(db: ServiceDatabase) -> None:
    assert await model_differences(db, Base.metadata) == []


async def test_migrations_go_down_to_the_start_and_up_again(db: ServiceDatabase) -> None:
    await round_trip("runyard.webhooks", db)
    assert await model_differences(db, Base.metadata) == []
