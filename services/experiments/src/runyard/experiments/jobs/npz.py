"""NPZ archives read without trusting them: a zip of ``.npy`` arrays, taken member by member.

An archive of about a megabyte can declare members of gigabytes (a decompression bomb), and
its headers can lie. So, before anything is decompressed, the declared uncompressed sizes of
the members an import wants are summed and held against the job's byte budget; then each
member is read alone through a reader that never returns more than the member declared; the
``.npy`` header's shape and type must account for exactly the bytes the member declared
(object arrays, which would need pickle, are refused); and the array's bytes are read into one
buffer of that size. Memory is bounded by the budget, never by what the archive claims.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

#: the largest .npy header read (numpy's own default)
MAX_HEADER_BYTES = 10_000
READ_CHUNK = 1024 * 1024
BUDGET_SETTING = "EXPERIMENTS_IMPORT_MAX_EXPANDED_BYTES"


class ArchiveRefused(ValueError):
    """The archive, or one of its members (``key``), is refused before or while reading."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class BoundedReader:
    """At most ``limit`` bytes of ``stream``, whatever the stream would go on to give."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        left = self.limit - self.consumed
        if size < 0 or size > left:
            size = left
        data = self.stream.read(size) if size > 0 else b""
        self.consumed += len(data)
        return data

    def read_exactly(self, size: int, key: str) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            chunk = self.read(min(READ_CHUNK, size - filled))
            if not chunk:
                raise ArchiveRefused("the member ends before its array does", key)
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        return buffer


def key_of(filename: str) -> str:
    return filename[:-4] if filename.endswith(".npy") else filename


def load(
    path: Path, wanted: Collection[str], *, max_bytes: int
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """The arrays named in ``wanted`` (member names without ``.npy``) and the bytes they
    declared. Raises ``ArchiveRefused`` (or ``zipfile.BadZipFile``, ``OSError``)."""
    with zipfile.ZipFile(path) as archive:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            key = key_of(info.filename)
            if key in wanted and key not in members:
                members[key] = info
        declared = sum(info.file_size for info in members.values())
        if declared > max_bytes:
            largest = max(members.values(), key=lambda info: info.file_size)
            raise ArchiveRefused(
                f"the arrays expand to {declared} bytes (the largest, {largest.filename!r}, to "
                f"{largest.file_size}); an import may read at most {max_bytes} ({BUDGET_SETTING})",
                key_of(largest.filename),
            )
        return {key: read_member(archive, info, key) for key, info in members.items()}, declared


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> npt.NDArray[Any]:
    if info.flag_bits & 0x1:
        raise ArchiveRefused("the member is encrypted", key)
    try:
        stream = archive.open(info)
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise ArchiveRefused(f"the member cannot be read ({exc})", key) from None
    with stream:
        reader = BoundedReader(stream, info.file_size)
        version = np.lib.format.read_magic(reader)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(reader, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(reader, max_header_size=MAX_HEADER_BYTES)
        else:
            raise ArchiveRefused(f"an .npy array of format version {version} is not read", key)
        shape, fortran_order, dtype = header
        if dtype.hasobject:
            raise ArchiveRefused("an array of Python objects (pickles are never loaded)", key)
        if dtype.itemsize == 0:
            raise ArchiveRefused("an array of empty items", key)
        count = math.prod(shape)
        size = count * dtype.itemsize
        left = info.file_size - reader.consumed
        if size != left:
            raise ArchiveRefused(
                f"the array's header declares {size} bytes of data, its member {left}", key
            )
        data = reader.read_exactly(size, key)  # to the member's end: zipfile checks its CRC
    array = np.frombuffer(data, dtype=dtype, count=count)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)
