"""Queries of datasets and signals.

Signals arrive in bulk (up to 10,000 per request): a batch is ONE statement, ``INSERT ... SELECT
unnest(...) ON CONFLICT (dataset_id, signal_id) DO NOTHING``, whatever its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, String, Uuid, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.datasets.schemas import SignalIn
from runyard.experiments.models import (
    Dataset,
    DatasetGeneration,
    DatasetImport,
    Experiment,
    Signal,
)
from runyard.shared.pagination import cut, decode_cursor


async def get_dataset(session: AsyncSession, dataset_id: uuid.UUID) -> Dataset | None:
    return await session.get(Dataset, dataset_id)


async def dataset_name(session: AsyncSession, dataset_id: uuid.UUID | None) -> str | None:
    if dataset_id is None:
        return None
    name: str | None = await session.scalar(select(Dataset.name).where(Dataset.id == dataset_id))
    return name


async def name_in_use(session: AsyncSession, owner_id: uuid.UUID, name: str) -> bool:
    found = await session.scalar(
        select(Dataset.id).where(Dataset.owner_id == owner_id, Dataset.name == name)
    )
    return found is not None


async def count_experiments_using(session: AsyncSession, dataset_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Experiment).where(Experiment.dataset_id == dataset_id)
    )
    return int(count or 0)


def insert_signals_statement(dataset_id: uuid.UUID, signals: Sequence[SignalIn]) -> Any:
    def column(name: str, type_: Any) -> Any:
        values = [getattr(s, name) for s in signals]
        return func.unnest(bindparam(f"p_{name}", values, type_=ARRAY(type_))).label(name)

    text_columns = ("signal_id", "fault_class", "severity", "file_path")
    float_columns = ("rms", "kurtosis", "dominant_frequency")
    source = select(
        literal(dataset_id, Uuid).label("dataset_id"),
        *(column(name, String) for name in text_columns),
        *(column(name, Float) for name in float_columns),
    )
    return (
        insert(Signal)
        .from_select(["dataset_id", *text_columns, *float_columns], source)
        .on_conflict_do_nothing(index_elements=["dataset_id", "signal_id"])
        .returning(Signal.fault_class, Signal.severity)
    )


async def insert_signals(
    session: AsyncSession, dataset_id: uuid.UUID, signals: Sequence[SignalIn]
) -> list[tuple[str | None, str | None]]:
    """Store the signals the dataset does not have yet; (fault class, severity) of each stored."""
    written = await session.execute(insert_signals_statement(dataset_id, signals))
    return [(fault, severity) for fault, severity in written]


def signal_key(signal: Signal) -> tuple[int]:
    return (signal.id,)


async def list_signals(
    session: AsyncSession,
    dataset_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    fault_class: str | None = None,
    severity: str | None = None,
) -> tuple[list[Signal], str | None]:
    """In insertion order, keyset-paginated on the signal's row id."""
    query = select(Signal).where(Signal.dataset_id == dataset_id)
    if fault_class is not None:
        query = query.where(Signal.fault_class == fault_class)
    if severity is not None:
        query = query.where(Signal.severity == severity)
    after = decode_cursor(cursor, "signals", int)
    if after is not None:
        query = query.where(Signal.id > after[0])
    rows = (await session.scalars(query.order_by(Signal.id).limit(limit + 1))).all()
    return cut(rows, limit, "signals", signal_key)


async def get_signal(session: AsyncSession, dataset_id: uuid.UUID, signal_id: str) -> Signal | None:
    found: Signal | None = await session.scalar(
        select(Signal).where(Signal.dataset_id == dataset_id, Signal.signal_id == signal_id)
    )
    return found


async def stored_files(session: AsyncSession, dataset_id: uuid.UUID) -> dict[str, float]:
    """The signal files the jobs that made the dataset wrote or read (relative to the data
    directory): the only files a samples read opens. A signal's ``file_path`` is the caller's
    to set (``POST .../signals``), the jobs' files are the service's own. Each with the sample
    rate its job assumed (a generation's directory ends with ``/``)."""
    found: dict[str, float] = {}
    table: Any
    for table in (DatasetGeneration, DatasetImport):
        rows = await session.execute(
            select(table.output_path, table.config).where(table.dataset_id == dataset_id)
        )
        for output, config in rows:
            config = config or {}
            rate = float(config.get("sample_rate_hz") or 1.0)
            if table is DatasetGeneration and output:
                found[f"{output}/"] = rate
            for name in config.get("files") or [] if table is DatasetImport else []:
                if isinstance(name, str):
                    found[name] = rate
    return found
