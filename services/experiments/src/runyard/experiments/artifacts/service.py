"""Artifact use cases: upload, list, read, delete, and the clean-up of unreferenced blobs.

Uploads and deletes run their own short transactions (never one held open while a large body
streams in), so they take the sessionmaker rather than the request's session.

Blobs, rows and races. A content is stored once (``artifact_blobs``, its bytes under their
SHA-256); any number of artifacts reference it. Its bytes are written (``store.commit``) and
removed (``store.remove``) only under the blob's transaction-scoped advisory lock:

- an upload streams the body to a temporary name first (no lock); then, in one transaction, it
  takes the lock, commits the bytes (writing them if the blob is absent), records the blob and
  inserts its artifact row, and commits: the lock is released only once the row is visible;
- a clean-up (after a delete or a replacement commits) takes the lock, and removes the bytes and
  the blob's row only if no artifact row references the content.

So a clean-up either runs entirely before an upload's critical section (the upload then writes
the bytes again) or sees the upload's row; a crash between removing the bytes and committing
leaves a blob row without bytes, which the next upload of that content rewrites. Blobs orphaned
by a deleted experiment (its artifact rows go by cascade) are collected by the
``artifact-gc`` worker.

Quota: the sum of the sizes of an owner's artifacts (identical files counted each time), checked
under the owner's advisory lock so that concurrent uploads cannot pass it together.

Holders: an artifact belongs to an experiment, or to an MLflow logged model made outside a run
(``repository.Holder``); both take the same uploads, reads, deletes, quota and limits. An
experiment's files make ``artifact.*`` events, a logged model's ``logged_model_artifact.*``.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments import access, errors
from runyard.experiments.artifacts import repository
from runyard.experiments.artifacts.repository import Holder
from runyard.experiments.artifacts.store import ArtifactStore, Staged, TooLarge
from runyard.experiments.config import Settings
from runyard.experiments.models import Artifact, Experiment, LoggedModel
from runyard.experiments.repository import get_owned
from runyard.shared.contracts.experiments import (
    ArtifactCreated,
    ArtifactDeleted,
    LoggedModelArtifactCreated,
    LoggedModelArtifactDeleted,
)
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import EventPayload
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

MAX_PATH = 1024
MAX_SEGMENT = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"
Sessions = async_sessionmaker[AsyncSession]


def check_path(path: str) -> str:
    """A relative path of ``/``-separated names: 422 for an absolute path, ``.`` or ``..``,
    empty names, NUL, control characters or backslashes, or one too long."""
    if not path:
        raise errors.InvalidArtifactPath("empty")
    if len(path) > MAX_PATH:
        raise errors.InvalidArtifactPath(f"longer than {MAX_PATH} characters")
    if "\x00" in path:
        raise errors.InvalidArtifactPath("contains NUL")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise errors.InvalidArtifactPath("contains a control character")
    if "\\" in path:
        raise errors.InvalidArtifactPath("contains a backslash (separate names with /)")
    if path.startswith("/"):
        raise errors.InvalidArtifactPath("absolute (it must be relative)")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise errors.InvalidArtifactPath("empty, '.' or '..' names are not allowed")
        if len(segment) > MAX_SEGMENT:
            raise errors.InvalidArtifactPath(f"a name is longer than {MAX_SEGMENT} characters")
    return path


def content_type_of(path: str, declared: str | None) -> str:
    declared = (declared or "").strip()
    if declared and declared.split(";")[0].strip().lower() != DEFAULT_CONTENT_TYPE:
        return declared[:255]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or DEFAULT_CONTENT_TYPE


def event_fields(artifact: Artifact) -> dict[str, Any]:
    holder = (
        {"experiment_id": artifact.experiment_id}
        if artifact.experiment_id is not None
        else {"logged_model_id": artifact.logged_model_id}
    )
    return {
        "artifact_id": artifact.id,
        **holder,
        "owner_id": artifact.owner_id,
        "path": artifact.path,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "content_type": artifact.content_type,
    }


def created_event(artifact: Artifact, *, replaced: bool) -> EventPayload:
    if artifact.experiment_id is not None:
        return ArtifactCreated(**event_fields(artifact), replaced=replaced)
    return LoggedModelArtifactCreated(**event_fields(artifact), replaced=replaced)


def deleted_event(artifact: Artifact) -> EventPayload:
    if artifact.experiment_id is not None:
        return ArtifactDeleted(**event_fields(artifact))
    return LoggedModelArtifactDeleted(**event_fields(artifact))


async def writable_experiment(
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    return await get_owned(
        session, Experiment, experiment_id, principal=principal, what="experiment", write=True
    )


async def readable_experiment(
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    return await get_owned(
        session, Experiment, experiment_id, principal=principal, what="experiment"
    )


async def holder_owner(
    session: AsyncSession, principal: Principal, holder: Holder, *, write: bool = False
) -> uuid.UUID:
    """The owner of the holder the caller may read (``write``: add to and delete from; the
    holder's row then stays locked until the transaction ends); 404 for anything not theirs."""
    if holder.experiment_id is not None:
        check = writable_experiment if write else readable_experiment
        return (await check(session, principal, holder.experiment_id)).owner_id
    if write:
        require_writer(principal)
    query = select(LoggedModel).where(LoggedModel.id == holder.logged_model_id)
    if write:
        query = query.with_for_update()
    model = await session.scalar(query)
    (access.check_write if write else access.check_read)(principal, model, "logged model")
    assert model is not None
    return model.owner_id


def check_quota(settings: Settings, size: int, used: int) -> None:
    if used + size > settings.artifact_user_quota_bytes:
        raise errors.ArtifactQuotaExceeded(size, used, settings.artifact_user_quota_bytes)


async def upload(
    sessions: Sessions,
    store: ArtifactStore,
    settings: Settings,
    *,
    principal: Principal,
    holder: Holder,
    path: str,
    body: AsyncIterator[bytes],
    content_length: int | None,
    content_type: str | None,
) -> tuple[Artifact, bool]:
    """Store the body at ``path`` of the holder (replacing what was there); the artifact, and
    whether it replaced one. Refused before the body is read when the caller may not write
    there or the declared length passes a limit."""
    check_path(path)
    if content_length is not None and content_length > settings.artifact_max_bytes:
        raise errors.ArtifactTooLarge(settings.artifact_max_bytes)
    async with sessions() as session, session.begin():
        owner_id = await holder_owner(session, principal, holder, write=True)
        if content_length is not None:
            replaced = await repository.at_path(session, holder, path)
            used = await repository.used_bytes(session, owner_id)
            check_quota(settings, content_length, used - (replaced.size if replaced else 0))
    try:
        staged = await store.stage(body, max_bytes=settings.artifact_max_bytes)
    except TooLarge:
        raise errors.ArtifactTooLarge(settings.artifact_max_bytes) from None
    if content_length is not None and staged.size != content_length:
        await store.discard(staged)
        raise errors.ArtifactBodyIncomplete(content_length, staged.size)
    try:
        artifact, old_sha = await record(
            sessions, store, settings, principal, holder, path, staged, content_type
        )
    except BaseException:
        await store.discard(staged)
        raise
    if old_sha is not None and old_sha != artifact.sha256:
        await collect(sessions, store, old_sha)
    log.info(
        "experiments.artifact.stored",
        holder=str(holder.subject),
        path=path,
        size=artifact.size,
        replaced=old_sha is not None,
    )
    return artifact, old_sha is not None


async def record(
    sessions: Sessions,
    store: ArtifactStore,
    settings: Settings,
    principal: Principal,
    holder: Holder,
    path: str,
    staged: Staged,
    content_type: str | None,
) -> tuple[Artifact, str | None]:
    """The staged bytes become the blob and the artifact row, in one transaction; the replaced
    artifact's digest (``None``: a new path)."""
    async with sessions() as session, session.begin():
        # the holder locked (it still exists, and is still the caller's to write)
        owner_id = await holder_owner(session, principal, holder, write=True)
        await repository.lock_quota(session, owner_id)
        existing = await repository.at_path(session, holder, path, lock=True)
        used = await repository.used_bytes(session, owner_id)
        check_quota(settings, staged.size, used - (existing.size if existing else 0))
        await repository.lock_blob(session, staged.sha256)
        await store.commit(staged)
        await repository.add_blob(session, staged.sha256, staged.size)
        kind = content_type_of(path, content_type)
        old_sha = existing.sha256 if existing is not None else None
        if existing is None:
            artifact = Artifact(
                id=new_id(),
                experiment_id=holder.experiment_id,
                logged_model_id=holder.logged_model_id,
                owner_id=owner_id,
                path=path,
                size=staged.size,
                sha256=staged.sha256,
                content_type=kind,
            )
            session.add(artifact)
        else:
            artifact = existing
            artifact.size, artifact.sha256, artifact.content_type = (
                staged.size,
                staged.sha256,
                kind,
            )
            artifact.updated_at = utcnow()
        await session.flush()
        await emit(
            session,
            created_event(artifact, replaced=existing is not None),
            subject=holder.subject,
        )
    return artifact, old_sha


async def list_artifacts(
    session: AsyncSession,
    *,
    principal: Principal,
    holder: Holder,
    prefix: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Artifact], str | None]:
    await holder_owner(session, principal, holder)
    return await repository.list_artifacts(
        session, holder, prefix=prefix, limit=limit, cursor=cursor
    )


async def get_artifact(
    session: AsyncSession, *, principal: Principal, holder: Holder, path: str
) -> Artifact:
    check_path(path)
    await holder_owner(session, principal, holder)
    artifact = await repository.at_path(session, holder, path)
    if artifact is None:
        raise errors.NotFound("artifact")
    return artifact


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of a ``Range: bytes=...`` header (``None``: the whole file, also for
    a header this server does not serve as ranges: several ranges, another unit, bad syntax);
    416 when no byte of it lies in the file."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix < 0:
                return None
            if suffix == 0 or size == 0:
                raise errors.RangeNotSatisfiable(size)
            return ByteRange(max(size - suffix, 0), size - 1)
        start = int(first)
        end = int(last) if last != "" else size - 1
    except ValueError:
        return None
    if start < 0 or (last != "" and end < start):
        return None
    if start >= size:
        raise errors.RangeNotSatisfiable(size)
    return ByteRange(start, min(end, size - 1))


async def delete_artifact(
    sessions: Sessions,
    store: ArtifactStore,
    *,
    principal: Principal,
    holder: Holder,
    path: str,
) -> None:
    check_path(path)
    async with sessions() as session, session.begin():
        await holder_owner(session, principal, holder, write=True)
        artifact = await repository.at_path(session, holder, path, lock=True)
        if artifact is None:
            raise errors.NotFound("artifact")
        sha256 = artifact.sha256
        await emit(session, deleted_event(artifact), subject=holder.subject)
        await session.delete(artifact)
    await collect(sessions, store, sha256)


async def collect(sessions: Sessions, store: ArtifactStore, sha256: str) -> bool:
    """Remove the blob if no artifact references it; whether it did."""
    async with sessions() as session, session.begin():
        await repository.lock_blob(session, sha256)
        if await repository.referenced(session, sha256):
            return False
        await store.remove(sha256)
        await repository.forget_blob(session, sha256)
    return True


async def collect_unreferenced(sessions: Sessions, store: ArtifactStore, batch: int = 100) -> int:
    """One pass over the blobs nothing references; how many were removed."""
    async with sessions() as session, session.begin():
        candidates = await repository.unreferenced_blobs(session, batch)
    removed = 0
    for sha256 in candidates:
        removed += await collect(sessions, store, sha256)
    return removed
