"""Queries of artifacts and their blobs, and the locks that keep blobs and rows consistent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Artifact, ArtifactBlob
from runyard.shared.pagination import cut, decode_cursor

#: the first key of the two-int advisory locks: "ARTB" (a blob), "ARTQ" (an owner's quota)
BLOB_LOCK = 0x41525442
QUOTA_LOCK = 0x41525451


@dataclass(frozen=True)
class Holder:
    """Whose files: an experiment's (``experiment_id``), or those of an MLflow logged model made
    outside a run (``logged_model_id``), which has no experiment to keep them. Exactly one."""

    experiment_id: uuid.UUID | None = None
    logged_model_id: str | None = None

    def __post_init__(self) -> None:
        if (self.experiment_id is None) == (self.logged_model_id is None):
            raise ValueError("an artifact holder is an experiment or a logged model")

    @property
    def subject(self) -> str | uuid.UUID:
        """The id its artifact events are keyed on."""
        return self.experiment_id or str(self.logged_model_id)

    def owns(self) -> ColumnElement[bool]:
        """The artifacts of this holder (a WHERE clause)."""
        if self.experiment_id is not None:
            return Artifact.experiment_id == self.experiment_id
        return Artifact.logged_model_id == self.logged_model_id


def of_experiment(experiment_id: uuid.UUID) -> Holder:
    return Holder(experiment_id=experiment_id)


def lock_key(data: bytes) -> int:
    return int.from_bytes(data[:4], "big", signed=True)


async def lock_blob(session: AsyncSession, sha256: str) -> None:
    """Until the transaction ends: the only window in which a blob's bytes are written or
    removed."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :key)"),
        {"ns": BLOB_LOCK, "key": lock_key(bytes.fromhex(sha256))},
    )


async def lock_quota(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Until the transaction ends: one upload of the owner at a time checks and takes quota."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :key)"),
        {"ns": QUOTA_LOCK, "key": lock_key(owner_id.bytes)},
    )


async def used_bytes(session: AsyncSession, owner_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Artifact.size), 0)).where(Artifact.owner_id == owner_id)
    )
    return int(total or 0)


async def at_path(
    session: AsyncSession, holder: Holder, path: str, *, lock: bool = False
) -> Artifact | None:
    query = select(Artifact).where(holder.owns(), Artifact.path == path)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    found: Artifact | None = await session.scalar(query)
    return found


async def add_blob(session: AsyncSession, sha256: str, size: int) -> None:
    await session.execute(
        insert(ArtifactBlob)
        .values(sha256=sha256, size=size)
        .on_conflict_do_nothing(index_elements=["sha256"])
    )


async def referenced(session: AsyncSession, sha256: str) -> bool:
    return bool(await session.scalar(select(exists().where(Artifact.sha256 == sha256))))


async def forget_blob(session: AsyncSession, sha256: str) -> None:
    await session.execute(delete(ArtifactBlob).where(ArtifactBlob.sha256 == sha256))


async def unreferenced_blobs(session: AsyncSession, limit: int) -> list[str]:
    """Blobs no artifact references (left by deleted experiments, or an interrupted clean-up)."""
    query = (
        select(ArtifactBlob.sha256)
        .where(~exists().where(Artifact.sha256 == ArtifactBlob.sha256))
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


def path_key(artifact: Artifact) -> tuple[str]:
    return (artifact.path,)


async def list_artifacts(
    session: AsyncSession,
    holder: Holder,
    *,
    prefix: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Artifact], str | None]:
    """By path (byte order), keyset-paginated on the path."""
    query = select(Artifact).where(holder.owns())
    if prefix:
        query = query.where(func.starts_with(Artifact.path, prefix))
    after = decode_cursor(cursor, "artifacts", str)
    if after is not None:
        query = query.where(Artifact.path.collate("C") > after[0])
    ordered = query.order_by(Artifact.path.collate("C")).limit(limit + 1)
    rows = (await session.scalars(ordered)).all()
    return cut(rows, limit, "artifacts", path_key)
