"""Dataset use cases: CRUD, signals in bulk, and the dataset checks other features need. They
change rows and write outbox events in the caller's transaction; they never commit.

A retried signal batch adds nothing twice (the statement skips known signal ids), and the
dataset's signal count, fault types and severity levels follow in the same transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.datasets import repository
from runyard.experiments.datasets.schemas import (
    DatasetCreate,
    DatasetUpdate,
    SamplesOut,
    SignalBatchResult,
    SignalIn,
)
from runyard.experiments.jobs import files, storage
from runyard.experiments.jobs import repository as jobs_repository
from runyard.experiments.models import Dataset, Signal
from runyard.experiments.repository import get_owned, list_owned, unique_or_conflict
from runyard.experiments.schemas import changed_fields, requested_changes
from runyard.shared.contracts.experiments import DatasetCreated, DatasetDeleted, DatasetUpdated
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

NOT_NULLABLE = {"name", "fault_types", "severity_levels", "meta_data"}


def name_taken(name: str) -> dict[str, ProblemError]:
    return {"uq_datasets_owner_id_name": errors.NameTaken("a dataset", name)}


def event_fields(dataset: Dataset) -> dict[str, Any]:
    return {
        "dataset_id": dataset.id,
        "owner_id": dataset.owner_id,
        "name": dataset.name,
        "description": dataset.description,
        "num_signals": dataset.num_signals,
        "fault_types": dataset.fault_types,
        "severity_levels": dataset.severity_levels,
    }


async def create_dataset(
    session: AsyncSession, *, principal: Principal, data: DatasetCreate
) -> Dataset:
    require_writer(principal)
    dataset = Dataset(id=new_id(), owner_id=principal.user_id, num_signals=0, version=1)
    async with unique_or_conflict(session, name_taken(data.name)):
        for key, value in data.model_dump().items():
            setattr(dataset, key, value)
        session.add(dataset)
    await emit(
        session,
        DatasetCreated(**event_fields(dataset)),
        subject=dataset.id,
        sequence=dataset.version,
    )
    return dataset


async def get_dataset(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, write: bool = False
) -> Dataset:
    return await get_owned(
        session, Dataset, dataset_id, principal=principal, what="dataset", write=write
    )


async def list_datasets(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[Dataset], str | None]:
    """Newest first."""
    return await list_owned(
        session,
        Dataset,
        principal=principal,
        kind="datasets",
        limit=limit,
        cursor=cursor,
        owner_id=owner_id,
    )


async def update_dataset(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, data: DatasetUpdate
) -> Dataset:
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id, write=True)
    changes = requested_changes(data, not_nullable=NOT_NULLABLE)
    changed = changed_fields(dataset, changes)
    if not changed:
        return dataset
    async with unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key in changed:
            setattr(dataset, key, changes[key])
        dataset.version += 1
    await emit(
        session,
        DatasetUpdated(**event_fields(dataset), changed=changed),
        subject=dataset.id,
        sequence=dataset.version,
    )
    return dataset


async def delete_dataset(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, data_dir: Path
) -> None:
    """Delete a dataset and its signals; refused (409) while experiments use it. The signal
    files of the job that made it (its generation's, its upload) go too, and with them their
    share of the owner's quota."""
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id, write=True)
    used_by = await repository.count_experiments_using(session, dataset.id)
    if used_by:
        raise errors.DatasetInUse(used_by)
    for job in await jobs_repository.lock_jobs_of_dataset(session, dataset.id):
        await storage.release_files(data_dir, job)
    dataset.version += 1
    await emit(
        session,
        DatasetDeleted(dataset_id=dataset.id, owner_id=dataset.owner_id, name=dataset.name),
        subject=dataset.id,
        sequence=dataset.version,
    )
    await session.delete(dataset)
    await session.flush()


async def add_signals(
    session: AsyncSession, *, principal: Principal, dataset_id: uuid.UUID, signals: list[SignalIn]
) -> SignalBatchResult:
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id, write=True)
    written = await repository.insert_signals(session, dataset.id, signals)
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
        await emit(
            session,
            DatasetUpdated(**event_fields(dataset), changed=sorted(changed)),
            subject=dataset.id,
            sequence=dataset.version,
        )
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
) -> tuple[list[Signal], str | None]:
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id)
    return await repository.list_signals(
        session,
        dataset.id,
        limit=limit,
        cursor=cursor,
        fault_class=fault_class,
        severity=severity,
    )


async def usable_dataset(
    session: AsyncSession, principal: Principal, owner_id: uuid.UUID, dataset_id: uuid.UUID
) -> Dataset:
    """A dataset an experiment or campaign of ``owner_id`` may use: one of that owner's (an
    admin may use any); else 422."""
    dataset = await repository.get_dataset(session, dataset_id)
    if dataset is None or not (principal.is_admin or dataset.owner_id == owner_id):
        raise errors.UnknownDataset()
    return dataset


async def check_name_free(session: AsyncSession, owner_id: uuid.UUID, name: str) -> None:
    """For a job that will create the dataset ``name``: 409 if the owner already has it."""
    if await repository.name_in_use(session, owner_id, name):
        raise errors.NameTaken("a dataset", name, field="dataset_name")


class NoSamples(ProblemError):
    """The signal's samples are not in a file the service stored: a signal added through the
    API names its file in ``file_path`` as the caller likes, and that is never opened."""

    def __init__(self) -> None:
        super().__init__(
            404,
            "Not Found",
            "The signal has no samples stored by Runyard: only the signals of a dataset "
            "generation or import have.",
        )


def samples_file(file_path: str | None, allowed: dict[str, float]) -> tuple[str, int, float] | None:
    """``generations/<job>/chunk-0-9.npz#3`` -> (the file, the signal's row or index), when the
    file is one the dataset's jobs wrote (directly in a generation's directory) or read."""
    if not file_path or "#" not in file_path:
        return None
    name, _, at = file_path.rpartition("#")
    if not at.isdigit() or ".." in name.split("/") or name.startswith("/"):
        return None
    if name in allowed:
        return name, int(at), allowed[name]
    folder, _, base = name.rpartition("/")
    if f"{folder}/" in allowed and base.startswith("chunk-") and base.endswith(".npz"):
        return name, int(at), allowed[f"{folder}/"]
    return None


def read_signal(
    data_dir: Path, name: str, at: int, *, rate: float, max_bytes: int
) -> tuple[npt.NDArray[np.float64], float] | None:
    """The samples and sample rate of the signal at ``at`` in a stored file, read with the
    importer's own readers (bounded, NPZ never unpickled); None when the file is gone or no
    longer reads."""
    base = data_dir.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    problems = files.Problems()
    budget = files.Budget(max_bytes=max_bytes, max_signals=files.MAX_SAMPLES)
    for signal in files.read_file(
        path, name=name, default_rate=rate, problems=problems, budget=budget
    ):
        if signal.at == at:
            return signal.samples, signal.sample_rate_hz
    return None


def downsample(
    values: npt.NDArray[np.float64], first: int, buckets: int
) -> tuple[list[int], list[float], list[float]]:
    """Per bucket of consecutive samples: the index of its first, its min and its max."""
    count = len(values)
    if count <= buckets:
        plain = [float(v) for v in values]
        return list(range(first, first + count)), plain, list(plain)
    starts = np.linspace(0, count, buckets + 1).astype(np.int64)[:-1]
    lows = np.minimum.reduceat(values, starts)
    highs = np.maximum.reduceat(values, starts)
    return (
        [first + int(i) for i in starts],
        [float(v) for v in lows],
        [float(v) for v in highs],
    )


async def signal_samples(
    session: AsyncSession,
    *,
    principal: Principal,
    dataset_id: uuid.UUID,
    signal_id: str,
    data_dir: Path,
    max_bytes: int,
    buckets: int,
    from_index: int | None = None,
    to_index: int | None = None,
) -> SamplesOut:
    """One signal's waveform for a chart, ``buckets`` min/max pairs over the samples from
    ``from_index`` to ``to_index`` (inclusive; zoom by asking for a narrower range)."""
    if from_index is not None and to_index is not None and to_index < from_index:
        raise errors.BadRequest("to_index is before from_index", loc=["query", "to_index"])
    dataset = await get_dataset(session, principal=principal, dataset_id=dataset_id)
    signal = await repository.get_signal(session, dataset.id, signal_id)
    if signal is None:
        raise errors.NotFound("signal")
    located = samples_file(signal.file_path, await repository.stored_files(session, dataset.id))
    if located is None:
        raise NoSamples()
    found = await asyncio.to_thread(
        read_signal, data_dir, located[0], located[1], rate=located[2], max_bytes=max_bytes
    )
    if found is None:
        raise NoSamples()
    samples, rate = found
    total = len(samples)
    first = from_index or 0
    last = min(total - 1, to_index if to_index is not None else total - 1)
    chosen = samples[first : last + 1] if first <= last else samples[:0]
    index, lows, highs = downsample(chosen, first, buckets)
    return SamplesOut(
        dataset_id=dataset.id,
        signal_id=signal.signal_id,
        sample_rate_hz=rate,
        num_samples=total,
        buckets=buckets,
        from_index=first if len(chosen) else None,
        to_index=last if len(chosen) else None,
        index=index,
        min=lows,
        max=highs,
    )
