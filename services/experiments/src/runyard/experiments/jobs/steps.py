"""The steps of dataset generation and import jobs (see ``runner``)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.datasets import service as datasets
from runyard.experiments.datasets.schemas import MAX_SIGNALS_PER_REQUEST, DatasetCreate
from runyard.experiments.jobs import files, signal_model, storage
from runyard.experiments.jobs.lease import LostJob, Worker, finish, hold, job_fields
from runyard.experiments.jobs.repository import Job, JobModel
from runyard.experiments.models import DatasetGeneration, DatasetImport
from runyard.shared.contracts.experiments import (
    DatasetGenerationCompleted,
    DatasetGenerationProgressed,
    DatasetImportCompleted,
    DatasetImportProgressed,
)
from runyard.shared.events import EventPayload
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

#: percent of a job's progress that its steps before the final transaction account for
STEPS_SHARE = 90

# --- generation ----------------------------------------------------------------------------------


def write_chunk(directory: Path, config: dict[str, Any], specs: list[signal_model.Spec]) -> None:
    first, last = specs[0].index, specs[-1].index
    for stale in directory.glob("chunk-*.npz") if directory.exists() else []:
        if int(stale.stem.split("-")[1]) >= first:  # left by a step that never committed
            stale.unlink()
    rows = [
        (
            f"sig-{spec.index:06d}",
            spec.fault_class,
            spec.severity,
            signal_model.generate(
                spec,
                seed=config["seed"],
                sample_rate_hz=config["sample_rate_hz"],
                duration_s=config["duration_s"],
                shaft_frequency_hz=config["shaft_frequency_hz"],
                noise_std=config["noise_std"],
            ),
        )
        for spec in specs
    ]
    files.write_npz(directory / f"chunk-{first:06d}-{last:06d}.npz", rows, config["sample_rate_hz"])


async def generation_step(worker: Worker, job_id: uuid.UUID) -> bool:
    async with worker.sessionmaker() as session, session.begin():
        job = await hold(session, worker, DatasetGeneration, job_id)
        if job is not None:
            config, done, total = dict(job.config), job.items_done, job.num_signals
            output = job.output_path
    if job is None:
        raise LostJob("cancelled")
    assert output is not None
    directory = worker.data_dir / output
    if done < total:
        specs = signal_model.plan(
            config["fault_classes"], config["severities"], config["signals_per_combination"]
        )
        samples = storage.samples_per_signal(config["sample_rate_hz"], config["duration_s"])
        step = storage.signals_per_step(samples, worker.settings.generation_chunk_size)
        chunk = specs[done : done + step]
        await asyncio.to_thread(write_chunk, directory, config, chunk)
        return await record_progress(worker, DatasetGeneration, job_id, chunk[-1].index + 1, total)
    problems = files.Problems()
    # the service's own files, each at most one step's samples: the budget only counts signals
    budget = files.Budget(max_bytes=2**62, max_signals=total)
    signals: list[files.Row] = []
    for file in sorted(directory.glob("chunk-*.npz")):
        signals += await asyncio.to_thread(
            read_rows,
            file,
            name=str(file.relative_to(worker.data_dir)),
            default_rate=config["sample_rate_hz"],
            problems=problems,
            budget=budget,
        )
    files.add_duplicates(signals, problems)
    if problems.total or len(signals) != total:
        raise RuntimeError(f"generated files hold {len(signals)} valid signals, {total} expected")
    stored = await asyncio.to_thread(storage.bytes_on_disk, directory)
    completed = await complete(
        worker,
        DatasetGeneration,
        job_id,
        signals,
        generated=True,
        bytes_stored=stored,
        event=lambda job, fields: DatasetGenerationCompleted(
            **fields,
            num_signals=len(signals),
            fault_types=sorted({s.fault_class for s in signals if s.fault_class}),
            output_path=job.output_path,
        ),
    )
    if completed:
        log.info("experiments.generation.completed", job_id=str(job_id), signals=len(signals))
    return False


# --- import --------------------------------------------------------------------------------------


async def import_step(worker: Worker, job_id: uuid.UUID) -> bool:
    async with worker.sessionmaker() as session, session.begin():
        job = await hold(session, worker, DatasetImport, job_id)
        if job is not None:
            config, done = dict(job.config), job.items_done
            if job_id not in worker.staged and done:
                job.items_done = done = 0  # resumed by another worker: read every file again
    if job is None:
        raise LostJob("cancelled")
    names: list[str] = config["files"]
    staged = worker.staged.setdefault(job_id, [])
    problems = worker.problems.setdefault(job_id, files.Problems())
    budget = worker.budgets.setdefault(
        job_id,
        files.Budget(
            max_bytes=worker.settings.import_max_expanded_bytes,
            max_signals=worker.settings.import_max_signals,
        ),
    )
    if done < len(names):
        name = names[done]
        path = worker.data_dir / name
        if path.exists():
            staged += await asyncio.to_thread(
                read_rows,
                path,
                name=name,
                default_rate=config["sample_rate_hz"],
                problems=problems,
                budget=budget,
            )
        else:
            problems.add(name, "the file is gone")
        return await record_progress(worker, DatasetImport, job_id, done + 1, len(names))
    files.add_duplicates(staged, problems)
    if problems.total:
        raise ImportRefused(problems)
    completed = await complete(
        worker,
        DatasetImport,
        job_id,
        staged,
        generated=False,
        event=lambda _job, fields: DatasetImportCompleted(
            **fields, num_files=len(names), num_signals=len(staged)
        ),
    )
    if completed:
        log.info("experiments.import.completed", job_id=str(job_id), signals=len(staged))
    return False


class ImportRefused(Exception):
    def __init__(self, problems: files.Problems) -> None:
        super().__init__(f"{problems.total} problem(s) in the input; nothing was imported")
        self.problems = problems


# --- shared --------------------------------------------------------------------------------------


def progress_due(worker: Worker, job_id: uuid.UUID, progress: int, *, last_step: bool) -> bool:
    """Whether this step's progress gets an event: the first of this worker's run of the job,
    the step before the final transaction, a move by ``progress_event_step`` points, or
    ``progress_event_interval_s`` after the previous one. Notes the event when due."""
    now = time.monotonic()
    sent = worker.progress_sent.get(job_id)
    due = (
        sent is None
        or last_step
        or progress - sent[1] >= worker.progress_event_step
        or now - sent[0] >= worker.progress_event_interval_s
    )
    if due:
        worker.progress_sent[job_id] = (now, progress)
    return due


async def record_progress(
    worker: Worker, model: JobModel, job_id: uuid.UUID, items_done: int, total: int
) -> bool:
    """A step's work is done: where a resumed job goes on, and the percent done, with its
    ``*.progressed`` event when one is due (``progress_due``) in the same transaction. False
    when the job was cancelled meanwhile."""
    progress = math.floor(STEPS_SHARE * items_done / total)
    async with worker.sessionmaker() as session, session.begin():
        job = await hold(session, worker, model, job_id)
        if job is not None:
            job.items_done = items_done
            job.progress = progress
            if progress_due(worker, job_id, progress, last_step=items_done >= total):
                await emit(session, progress_event(job, items_done, total), subject=job.id)
    return job is not None


def progress_event(
    job: Job, items_done: int, total: int
) -> DatasetGenerationProgressed | DatasetImportProgressed:
    generation = isinstance(job, DatasetGeneration)
    fields: dict[str, Any] = {
        "job_id": job.id,
        "name": job.name,
        "owner_id": job.owner_id,
        "status": job.status,
        "progress": job.progress,
        "items_done": items_done,
        "items_total": total,
        "attempts": job.attempts,
        "started_at": job.started_at,
    }
    stage = "generating" if generation else "reading"
    if items_done >= total:
        stage = "storing"
    if generation:
        return DatasetGenerationProgressed(**fields, stage=stage)
    return DatasetImportProgressed(**fields, stage=stage)


async def complete(
    worker: Worker,
    model: JobModel,
    job_id: uuid.UUID,
    rows: list[files.Row],
    *,
    generated: bool,
    event: Callable[[Job, dict[str, Any]], EventPayload],
    bytes_stored: int | None = None,
) -> bool:
    """The last step, in one transaction: the dataset and its signals, the job completed (with
    the ``bytes_stored`` its files weigh, when it wrote them), and its ``event`` (made from the
    job's event fields and the dataset id). False when the job was cancelled meanwhile."""
    async with worker.sessionmaker() as session, session.begin():
        job = await hold(session, worker, model, job_id)
        if job is None:
            return False
        dataset_id = await store_dataset(session, job, rows, generated=generated)
        finish(job, dataset_id)
        if bytes_stored is not None:
            job.bytes_stored = bytes_stored
        fields = {**await job_fields(session, job), "dataset_id": dataset_id}
        await emit(session, event(job, fields), subject=job.id)
    return True


async def store_dataset(
    session: AsyncSession,
    job: Job,
    rows: list[files.Row],
    *,
    generated: bool,
) -> uuid.UUID:
    """The dataset and its signals with their features, as the job's owner."""
    config = job.config
    owner = Principal(user_id=job.owner_id, role="user")
    meta: dict[str, Any] = {
        "source": "generation" if generated else "import",
        "job_id": str(job.id),
    }
    if generated:
        meta["generator"] = {
            k: config[k]
            for k in ("sample_rate_hz", "duration_s", "shaft_frequency_hz", "noise_std", "seed")
        }
    dataset = await datasets.create_dataset(
        session,
        principal=owner,
        data=DatasetCreate(
            name=config["dataset_name"],
            description=config.get("description"),
            file_path=job.output_path,
            meta_data=meta,
        ),
    )
    for start in range(0, len(rows), MAX_SIGNALS_PER_REQUEST):
        await datasets.add_signals(
            session,
            principal=owner,
            dataset_id=dataset.id,
            signals=[row.signal_in() for row in rows[start : start + MAX_SIGNALS_PER_REQUEST]],
        )
    job.num_signals = len(rows)
    return dataset.id


def read_rows(
    path: Path, *, name: str, default_rate: float, problems: files.Problems, budget: files.Budget
) -> list[files.Row]:
    """One file's signals as rows with their features: each signal's samples are dropped as
    soon as its features are computed. A file with problems gives no rows."""
    before = problems.total
    rows = []
    for signal in files.read_file(
        path, name=name, default_rate=default_rate, problems=problems, budget=budget
    ):
        found = signal_model.features(signal.samples, signal.sample_rate_hz)
        rows.append(
            files.Row(
                signal_id=signal.signal_id,
                fault_class=signal.fault_class,
                severity=signal.severity,
                file=name,
                at=signal.at,
                rms=found.rms,
                kurtosis=found.kurtosis,
                dominant_frequency=found.dominant_frequency,
            )
        )
    return [] if problems.total > before else rows
