"""Queries and database helpers shared by the use cases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Dataset, Experiment, User
from runyard.shared.http import ProblemError


async def get_experiment_for_update(
    session: AsyncSession, experiment_id: uuid.UUID
) -> Experiment | None:
    result = await session.execute(
        select(Experiment)
        .where(Experiment.id == experiment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def get_experiment(session: AsyncSession, experiment_id: uuid.UUID) -> Experiment | None:
    return await session.get(Experiment, experiment_id)


async def get_dataset(
    session: AsyncSession, dataset_id: uuid.UUID, *, for_update: bool = False
) -> Dataset | None:
    query = select(Dataset).where(Dataset.id == dataset_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def dataset_name(session: AsyncSession, dataset_id: uuid.UUID | None) -> str | None:
    if dataset_id is None:
        return None
    name: str | None = await session.scalar(select(Dataset.name).where(Dataset.id == dataset_id))
    return name


def constraint_of(exc: IntegrityError) -> str | None:
    """The name of the constraint a statement violated (asyncpg reports it)."""
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    return None


@asynccontextmanager
async def unique_or_conflict(
    session: AsyncSession, conflicts: Mapping[str, ProblemError]
) -> AsyncIterator[None]:
    """Run the block's changes in a SAVEPOINT and flush them; a violation of one of the named
    unique constraints becomes its 409 problem (the request's transaction stays usable).

    Make the changes inside the block: ``begin_nested`` flushes what is pending before it.
    """
    try:
        async with session.begin_nested():
            yield
            await session.flush()
    except IntegrityError as exc:
        problem = conflicts.get(constraint_of(exc) or "")
        if problem is None:
            raise
        raise problem from None


def conflict(detail: str, **extra: Any) -> ProblemError:
    return ProblemError(409, "Conflict", detail, **extra)
