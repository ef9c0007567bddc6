from __future__ import annotations

from runyard.gateway.models import Base
from runyard.shared.testing import ServiceDatabase
from runyard.shared.testing.migrations import model_differences, round_trip


async def test_migrations_match_the_models(db: ServiceDatabase) -> None:
    assert await model_differences(db, Base.metadata) == []


async def test_migrations_go_down_and_up_again(db: ServiceDatabase) -> None:
    await round_trip("runyard.gateway", db)
    assert await model_differences(db, Base.metadata) == []
