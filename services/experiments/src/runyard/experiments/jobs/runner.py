"""The work of dataset generation and import jobs, step by step.

A worker claims the oldest runnable job (``pending``, or ``running`` with an expired lease) with
``FOR UPDATE SKIP LOCKED`` and holds it by a lease (``locked_until``) renewed at every step.
Each step runs in its own short transaction that first re-locks the job and checks it is still
this worker's and not cancelled. A worker that dies leaves the lease to expire; another worker
then goes on from ``items_done``:

- generation: each step writes one chunk of signals to
  ``<data dir>/generations/<job id>/chunk-<first>-<last>.npz`` (deterministic per signal index,
  so a redone chunk is identical); the last step reads the chunks back, computes the features and
  creates the dataset and all its signals with ``dataset_generation.completed``, in one
  transaction.
- import: each step reads and validates one file; the last step creates the dataset and its
  signals with ``dataset_import.completed`` in one transaction — or, when any file had a problem,
  fails the job with every problem listed (``dataset_import.failed``) and writes nothing. A
  resumed import reads its files again from the first (nothing was stored before the end). What
  one import may read and create is bounded (``files``: its ``Budget``).

A step's progress is written with a ``dataset_generation.progressed`` /
``dataset_import.progressed`` event in its transaction when one is due (``steps.progress_due``:
at most one per job and 0.5 s unless the progress moved by 5 points, and one before the final
transaction), so a page follows the job without polling.

A job claimed ``EXPERIMENTS_JOB_MAX_ATTEMPTS`` times without ending is failed, not claimed again
(``lease``).
"""

from __future__ import annotations

import uuid

from runyard.experiments.jobs.lease import LostJob, Worker, claim, fail
from runyard.experiments.jobs.repository import JobModel
from runyard.experiments.jobs.steps import ImportRefused, generation_step, import_step
from runyard.experiments.models import DatasetGeneration, DatasetImport
from runyard.shared.http import ProblemError
from runyard.shared.inbox import is_transient
from runyard.shared.logging import get_logger

log = get_logger(__name__)

__all__ = [
    "DatasetGeneration",
    "DatasetImport",
    "LostJob",
    "Worker",
    "claim",
    "run",
    "run_next",
    "step",
]


async def run_next(worker: Worker) -> bool:
    """Claim one job (generations first) and run it to its end; False when none was waiting."""
    for model in (DatasetGeneration, DatasetImport):
        job_id = await claim(worker, model)
        if job_id is not None:
            await run(worker, model, job_id)
            return True
    return False


async def run(worker: Worker, model: JobModel, job_id: uuid.UUID) -> None:
    try:
        while await step(worker, model, job_id):
            pass
    except LostJob:
        pass
    except Exception as exc:
        if is_transient(exc):
            raise  # the database, not the job: the lease expires and the job is resumed
        if isinstance(exc, ProblemError | ImportRefused):
            error = str(exc)
        else:
            log.exception("experiments.job.failed", job_id=str(job_id))
            error = f"{type(exc).__name__}: {exc}"
        await fail(worker, model, job_id, error=error[:2000])
    finally:
        worker.staged.pop(job_id, None)
        worker.problems.pop(job_id, None)
        worker.budgets.pop(job_id, None)
        worker.progress_sent.pop(job_id, None)


async def step(worker: Worker, model: JobModel, job_id: uuid.UUID) -> bool:
    """One unit of work; True while more is to do."""
    if model is DatasetGeneration:
        return await generation_step(worker, job_id)
    return await import_step(worker, job_id)
