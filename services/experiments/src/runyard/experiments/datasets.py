"""Datasets and their signals.

Signals arrive in bulk (up to 10,000 per request) with their features (RMS, kurtosis, dominant
frequency). A batch is ONE statement, ``INSERT ... SELECT unnest(...) ON CONFLICT (dataset_id,
signal_id) DO NOTHING``: a retried request adds nothing twice, and the dataset's signal count,
fault types and severity levels follow in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, Uuid, bindparam, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, pagination, repository
from runyard.experiments.models import Dataset, Experiment, Signal
from runyard.experiments.schemas import DatasetCreate, DatasetUpdate, SignalBatchResult, SignalIn
from runyard.shared.contracts.experiments import DatasetCreated, DatasetDeleted, DatasetUpdated
from runyard.shared.db import new_id
from runyard.shared.events import EventPayload, make_event
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "/runyard/experiments"


def name_taken(name: str) -> dict[str, ProblemError]:
    return {
        "uq_datasets_owner_id_name": repository.conflict(
            f"You already have a dataset named {name!r}.", field="name"
        )
    }


def fields(dataset: Dataset) -> dict[str, Any]:
    return {
        "dataset_id": dataset.id,
        "owner_id": dataset.owner_id,
        "name": dataset.name,
        "description": dataset.description,
        "num_signals": dataset.num_signals,
        "fault_types": dataset.fault_types,
        "severity_levels": dataset.severity_levels,
    }


async def publish(session: AsyncSession, dataset: Dataset, payload: EventPayload) -> None:
    await add_event(
        session, make_event(payload, source=SOURCE, subject=dataset.id, sequence=dataset.version)
    )


async def create_dataset(
    session: AsyncSession, *, principal: Principal, data: DatasetCreate
) -> Dataset:
    require_writer(principal)
    dataset = Dataset(id=new_id(), owner_id=principal.user_id, num_signals=0, version=1)
    async with repository.unique_or_conflict(session, name_taken(data.name)):
        for key, value in data.model_dump().items():
            setattr(dataset, key, value)
        session.add(dataset)
    await publish(session, dataset, DatasetCreated(**fields(dataset)))
    return dataset


async def get_dataset(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, write: bool = False
) -> Dataset:
    if write:
        require_writer(principal)
    dataset = await repository.get_dataset(session, dataset_id, for_update=write)
    (access.check_write if write else access.check_read)(principal, dataset, "dataset")
    assert dataset is not None
    return dataset


async def list_datasets(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
) -> tuple[Sequence[Dataset], str | None]:
    """Newest first."""
    query = select(Dataset)
    scope = access.owner_scope(Dataset.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    after = pagination.decode_cursor(cursor, kind="datasets")
    if after is not None:
        try:
            key = (datetime.fromisoformat(after["t"]), uuid.UUID(after["i"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise pagination.invalid_cursor() from exc
        query = query.where(tuple_(Dataset.created_at, Dataset.id) < key)
    rows = (
        await session.scalars(
            query.order_by(Dataset.created_at.desc(), Dataset.id.desc()).limit(limit + 1)
        )
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor(
            {"k": "datasets", "t": rows[-1].created_at.isoformat(), "i": str(rows[-1].id)}
        )
    return rows, next_cursor


NOT_NULLABLE = {"name", "fault_types", "severity_levels", "meta_data"}


async def update_dataset(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, data: DatasetUpdate
) -> Dataset:
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id, write=True)
    changes = data.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None and k in NOT_NULLABLE)
    if nulls:
        raise ProblemError(
            422,
            "Validation failed",
            f"{', '.join(nulls)} cannot be null.",
            errors=[
                {"loc": ["body", k], "msg": "may not be null", "type": "value_error"} for k in nulls
            ],
        )
    changed = sorted(k for k, v in changes.items() if getattr(dataset, k) != v)
    if not changed:
        return dataset
    async with repository.unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key in changed:
            setattr(dataset, key, changes[key])
        dataset.version += 1
    await publish(session, dataset, DatasetUpdated(**fields(dataset), changed=changed))
    return dataset


async def delete_dataset(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID
) -> None:
    """Delete a dataset and its signals; refused (409) while experiments use it."""
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id, write=True)
    used_by = await session.scalar(
        select(func.count()).select_from(Experiment).where(Experiment.dataset_id == dataset.id)
    )
    if used_by:
        raise repository.conflict(
            f"{used_by} experiment(s) use this dataset; delete them or point them at another "
            "dataset first.",
            experiments=used_by,
        )
    dataset.version += 1
    await publish(
        session,
        dataset,
        DatasetDeleted(dataset_id=dataset.id, owner_id=dataset.owner_id, name=dataset.name),
    )
    await session.delete(dataset)
    await session.flush()


# --- signals -----------------------------------------------------------------------------------


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


async def add_signals(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, signals: list[SignalIn]
) -> SignalBatchResult:
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id, write=True)
    written = (await session.execute(insert_signals_statement(dataset.id, signals))).all()
    if written:
        before = (list(dataset.fault_types), list(dataset.severity_levels))
        dataset.num_signals += len(written)
        new_faults = {f for f, _s in written if f is not None} - set(dataset.fault_types)
        new_levels = {s for _f, s in written if s is not None} - set(dataset.severity_levels)
        dataset.fault_types = [*dataset.fault_types, *sorted(new_faults)]
        dataset.severity_levels = [*dataset.severity_levels, *sorted(new_levels)]
        dataset.version += 1
        await session.flush()
        changed = ["num_signals"]
        changed += ["fault_types"] if list(dataset.fault_types) != before[0] else []
        changed += ["severity_levels"] if list(dataset.severity_levels) != before[1] else []
        await publish(session, dataset, DatasetUpdated(**fields(dataset), changed=sorted(changed)))
    log.info(
        "experiments.signals.added",
        dataset_id=str(dataset.id),
        received=len(signals),
        inserted=len(written),
    )
    return SignalBatchResult(
        dataset_id=dataset.id,
        received=len(signals),
        inserted=len(written),
        skipped=len(signals) - len(written),
        num_signals=dataset.num_signals,
    )


async def list_signals(
    session: AsyncSession,
    *,
    principal: Principal,
    dataset_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    fault_class: str | None = None,
    severity: str | None = None,
) -> tuple[Sequence[Signal], str | None]:
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id)
    query = select(Signal).where(Signal.dataset_id == dataset.id)
    if fault_class is not None:
        query = query.where(Signal.fault_class == fault_class)
    if severity is not None:
        query = query.where(Signal.severity == severity)
    after = pagination.decode_cursor(cursor, kind="signals")
    if after is not None:
        if not isinstance(after.get("i"), int):
            raise pagination.invalid_cursor()
        query = query.where(Signal.id > after["i"])
    rows = (await session.scalars(query.order_by(Signal.id).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor({"k": "signals", "i": rows[-1].id})
    return rows, next_cursor
