"""The ``pipeline`` test schema: outbox, inbox and an ``effects`` table (see conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

SCHEMA = "pipeline"


@dataclass
class PipelineDb:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    url: str
