"""Where the signal files of jobs live, whose they are, and what they weigh.

- ``uploads/<owner id>/<job id>/<file>``: an uploaded file, in its owner's upload area. An import
  by ``path`` reads only files inside the caller's own area: absolute paths, ``..`` and symlinks
  leading out are refused, and another user's area is outside like anything else (the same 400
  whether the file exists or not).
- ``generations/<job id>/chunk-*.npz``: what a generation writes.
- ``imports/<job id>/``: uploads stored before the upload areas existed (their jobs read them).

A job's ``bytes_stored`` is what its files weigh on disk (projected for a generation until it
completes); the sum over an owner's jobs is held against ``EXPERIMENTS_USER_QUOTA_BYTES``. The
files go, and their bytes with them, when the job fails or is cancelled and when its dataset is
deleted.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path

from runyard.experiments.jobs.repository import Job
from runyard.experiments.models import DatasetGeneration

UPLOADS = "uploads"
SUFFIXES = (".csv", ".npz")
#: bytes per generated signal on top of its float32 samples (its label, id and severity)
SIGNAL_OVERHEAD = 256
#: samples (as float64) one generation step holds in memory at most
STEP_BYTES = 32 * 1024 * 1024


class PathRefused(ValueError):
    """A server-side path outside the caller's upload area, missing, or of no supported file."""


def upload_area(owner_id: uuid.UUID) -> str:
    return f"{UPLOADS}/{owner_id}"


def upload_dir(owner_id: uuid.UUID, job_id: uuid.UUID) -> str:
    return f"{upload_area(owner_id)}/{job_id}"


def outside(owner_id: uuid.UUID) -> PathRefused:
    return PathRefused(f"the path must lie inside your upload area ({upload_area(owner_id)}/)")


def files_at(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not found:
            raise PathRefused("the directory holds no .csv or .npz file")
        return found
    if path.suffix.lower() not in SUFFIXES:
        raise PathRefused("only .csv and .npz files can be imported")
    return [path]


def locate(data_dir: Path, owner_id: uuid.UUID, given: str) -> list[str]:
    """The files a server-side path (relative to the data directory) names, relative to the data
    directory; each must lie inside ``owner_id``'s upload area, symlinks resolved."""
    base = data_dir.resolve()
    area = (base / upload_area(owner_id)).resolve()
    candidate = Path(given)
    if candidate.is_absolute():
        raise outside(owner_id)
    full = (base / candidate).resolve()
    if not full.is_relative_to(area):
        raise outside(owner_id)
    if not full.exists():
        raise PathRefused("no such file or directory in your upload area")
    found = files_at(full)
    if any(not p.resolve().is_relative_to(area) for p in found):
        raise outside(owner_id)
    return [str(p.relative_to(base)) for p in found]


def safe_filename(filename: str | None) -> str:
    base = Path(filename or "upload").name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:200]
    return cleaned or "upload"


def store_upload(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def own_files(job: Job) -> str | None:
    """The directory of files the job wrote (its generation's, its upload's), relative to the
    data directory; an import by path owns none (it read files of an earlier upload)."""
    if isinstance(job, DatasetGeneration) or job.config.get("source") == "upload":
        return job.output_path
    return None


async def release_files(data_dir: Path, job: Job) -> None:
    """Remove the job's own files; they no longer count against its owner's quota."""
    directory = own_files(job)
    if directory:
        await asyncio.to_thread(shutil.rmtree, data_dir / directory, True)
    job.bytes_stored = 0


def samples_per_signal(sample_rate_hz: float, duration_s: float) -> int:
    return round(sample_rate_hz * duration_s)


def generation_bytes(signals: int, samples: int) -> int:
    """What a generation's files weigh (float32 samples, plus labels and ids)."""
    return signals * (4 * samples + SIGNAL_OVERHEAD)


def signals_per_step(samples: int, chunk_size: int) -> int:
    """Signals one generation step writes: ``chunk_size``, fewer for long signals."""
    return max(1, min(chunk_size, STEP_BYTES // (8 * max(samples, 1))))


def bytes_on_disk(directory: Path) -> int:
    if not directory.exists():
        return 0
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
