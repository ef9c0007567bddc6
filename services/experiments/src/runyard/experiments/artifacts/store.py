"""Where artifact bytes live: a content-addressed store, one blob per distinct content, named
by its SHA-256. Two implementations: a directory under the service's data dir (the default) and
an S3-compatible bucket (production).

An upload is staged first (streamed to a temporary name while its digest and size are
computed: never held whole in memory), then committed under its digest. ``commit`` and
``remove`` run only while the caller holds the blob's lock (``artifacts.repository.lock_blob``),
so a blob is never removed between an upload finding it present and its row being committed:
see ``artifacts.service`` for the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from runyard.experiments.config import Settings

#: the smallest part S3 accepts (every part but the last)
S3_MIN_PART = 5 * 1024 * 1024


class TooLarge(Exception):
    """The staged content passed ``max_bytes``; what was written is gone."""


@dataclass(frozen=True)
class Staged:
    """Content streamed to a temporary name (``token``), with its digest and size."""

    token: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    async def stage(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Staged: ...

    async def commit(self, staged: Staged) -> None:
        """Make the staged content the blob ``staged.sha256`` (idempotent), and drop the
        temporary copy. Only under the blob's lock."""

    async def discard(self, staged: Staged) -> None: ...

    def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of the blob, a chunk at a time."""
        ...

    async def remove(self, sha256: str) -> None:
        """Only under the blob's lock, when no artifact references it."""

    async def exists(self, sha256: str) -> bool: ...

    async def sweep_staged(self, before: datetime) -> int:
        """Remove what uploads staged before ``before`` and never committed or discarded (the
        process was killed mid-upload); the number of staged copies removed."""
        ...


def blob_name(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


class Chunker:
    """Regroups a body's chunks (whatever their sizes) into ``size``-byte chunks, counting and
    hashing them; ``TooLarge`` past ``max_bytes``."""

    def __init__(self, size: int, max_bytes: int) -> None:
        self.size, self.max_bytes = size, max_bytes
        self.digest = hashlib.sha256()
        self.total = 0

    async def chunks(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        buffer = bytearray()
        async for piece in source:
            if not piece:
                continue
            self.total += len(piece)
            if self.total > self.max_bytes:
                raise TooLarge()
            self.digest.update(piece)
            buffer += piece
            while len(buffer) >= self.size:
                with memoryview(buffer) as view:  # one copy out, no intermediate slice
                    chunk = bytes(view[: self.size])
                del buffer[: self.size]
                yield chunk
        if buffer:
            yield bytes(buffer)


# --- a directory ---------------------------------------------------------------------------------


def _write_all(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)


def _finish(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


class LocalStore:
    """``<root>/blobs/ab/cd/<sha256>``, staged in ``<root>/tmp/`` (the same file system, so a
    commit is a rename)."""

    def __init__(self, root: Path, chunk_bytes: int) -> None:
        self.root, self.chunk_bytes = root, chunk_bytes
        self.blobs, self.tmp = root / "blobs", root / "tmp"

    def path(self, sha256: str) -> Path:
        return self.blobs / blob_name(sha256)

    async def stage(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Staged:
        await asyncio.to_thread(self.tmp.mkdir, parents=True, exist_ok=True)
        token = str(self.tmp / uuid.uuid4().hex)
        chunker = Chunker(self.chunk_bytes, max_bytes)
        handle = await asyncio.to_thread(open, token, "wb")
        try:
            async for chunk in chunker.chunks(chunks):
                await asyncio.to_thread(_write_all, handle, chunk)
            await asyncio.to_thread(_finish, handle)
        except BaseException:
            handle.close()
            await asyncio.to_thread(Path(token).unlink, missing_ok=True)
            raise
        return Staged(token, chunker.digest.hexdigest(), chunker.total)

    async def commit(self, staged: Staged) -> None:
        def move() -> None:
            target = self.path(staged.sha256)
            if target.exists():
                Path(staged.token).unlink(missing_ok=True)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.token, target)

        await asyncio.to_thread(move)

    async def discard(self, staged: Staged) -> None:
        await asyncio.to_thread(Path(staged.token).unlink, missing_ok=True)

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        # opened once: a blob removed while it streams (its last artifact deleted meanwhile)
        # stays readable through the open descriptor
        handle = await asyncio.to_thread(self.path(sha256).open, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                data = await asyncio.to_thread(handle.read, min(self.chunk_bytes, remaining))
                if not data:
                    return
                yield data
                remaining -= len(data)
        finally:
            await asyncio.to_thread(handle.close)

    async def remove(self, sha256: str) -> None:
        await asyncio.to_thread(self.path(sha256).unlink, missing_ok=True)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path(sha256).exists)

    async def sweep_staged(self, before: datetime) -> int:
        def sweep() -> int:
            removed = 0
            for entry in self.tmp.iterdir() if self.tmp.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < before.timestamp():
                        entry.unlink()
                        removed += 1
            return removed

        return await asyncio.to_thread(sweep)


# --- an S3-compatible bucket ---------------------------------------------------------------------


class S3Store:
    """``<prefix>blobs/ab/cd/<sha256>`` in the bucket, staged as ``<prefix>tmp/<uuid>`` with a
    multipart upload (one part in memory at a time) and committed with a server-side copy.
    boto3's client is synchronous and thread-safe: each call runs in a worker thread."""

    def __init__(self, client: Any, bucket: str, prefix: str, part_bytes: int) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.part_bytes = max(part_bytes, S3_MIN_PART)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=settings.artifact_s3_endpoint_url or None,
            region_name=settings.artifact_s3_region,
            aws_access_key_id=settings.artifact_s3_access_key_id or None,
            aws_secret_access_key=settings.artifact_s3_secret_access_key or None,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        return cls(
            client,
            settings.artifact_s3_bucket,
            settings.artifact_s3_prefix,
            settings.artifact_chunk_bytes,
        )

    def key(self, sha256: str) -> str:
        return f"{self.prefix}blobs/{blob_name(sha256)}"

    async def call(self, method: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.client, method), **kwargs)

    async def stage(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Staged:
        key = f"{self.prefix}tmp/{uuid.uuid4().hex}"
        chunker = Chunker(self.part_bytes, max_bytes)
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunker.chunks(chunks):
                if upload_id is None:
                    started = await self.call(
                        "create_multipart_upload", Bucket=self.bucket, Key=key
                    )
                    upload_id = started["UploadId"]
                number = len(parts) + 1
                sent = await self.call(
                    "upload_part",
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
            if upload_id is None:  # an empty file
                await self.call("put_object", Bucket=self.bucket, Key=key, Body=b"")
            else:
                await self.call(
                    "complete_multipart_upload",
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                await self.call(
                    "abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise
        return Staged(key, chunker.digest.hexdigest(), chunker.total)

    async def commit(self, staged: Staged) -> None:
        if not await self.exists(staged.sha256):
            # a managed copy: multipart server-side for objects over 5 GB
            await asyncio.to_thread(
                self.client.copy,
                {"Bucket": self.bucket, "Key": staged.token},
                self.bucket,
                self.key(staged.sha256),
            )
        await self.discard(staged)

    async def discard(self, staged: Staged) -> None:
        await self.call("delete_object", Bucket=self.bucket, Key=staged.token)

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        response = await self.call(
            "get_object", Bucket=self.bucket, Key=self.key(sha256), Range=f"bytes={start}-{end}"
        )
        body = response["Body"]
        try:
            while True:
                data = await asyncio.to_thread(body.read, self.part_bytes)
                if not data:
                    return
                yield data
        finally:
            body.close()

    async def remove(self, sha256: str) -> None:
        await self.call("delete_object", Bucket=self.bucket, Key=self.key(sha256))

    async def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self.call("head_object", Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def sweep_staged(self, before: datetime) -> int:
        staging = f"{self.prefix}tmp/"
        removed = 0
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in await asyncio.to_thread(
            lambda: list(pages.paginate(Bucket=self.bucket, Prefix=staging))
        ):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < before:
                    await self.call(
                        "abort_multipart_upload",
                        Bucket=self.bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
                    removed += 1
        objects = self.client.get_paginator("list_objects_v2")
        for page in await asyncio.to_thread(
            lambda: list(objects.paginate(Bucket=self.bucket, Prefix=staging))
        ):
            for found in page.get("Contents", []):
                if found["LastModified"] < before:
                    await self.call("delete_object", Bucket=self.bucket, Key=found["Key"])
                    removed += 1
        return removed


def make_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "s3":
        return S3Store.from_settings(settings)
    return LocalStore(Path(settings.data_dir) / "artifacts", settings.artifact_chunk_bytes)
