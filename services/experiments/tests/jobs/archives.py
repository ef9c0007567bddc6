"""Hostile archives for the upload tests, written byte by byte (``zipfile`` would not write a
member whose header lies, nor deflate gigabytes quickly): ``from
services.experiments.tests.jobs.archives import ...``."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

BLOCK = 1 << 20


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` of ``dtype`` (no data)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclass
class Member:
    name: str
    #: raw deflate stream (``method`` 8) or the stored bytes (``method`` 0)
    data: bytes
    #: what the headers declare: uncompressed size and CRC-32
    file_size: int
    crc: int
    method: int = 8


def deflated(content: bytes) -> Member:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(content) + compressor.flush()
    return Member("", data, len(content), zlib.crc32(content))


def deflated_zeros(prefix: bytes, blocks: int) -> Member:
    """``prefix`` then ``blocks`` MiB of zero bytes, deflated: a thousand to one, built from
    one compressed block repeated (each block ends in a full flush, so it stands alone)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(BLOCK)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = head + block * blocks + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    return Member("", data, len(prefix) + blocks * BLOCK, crc)


def zip_archive(members: dict[str, Member]) -> bytes:
    """A zip of ``members`` (by name) with exactly the sizes and CRCs they declare."""
    out = io.BytesIO()
    central = []
    for name, member in members.items():
        encoded = name.encode()
        offset = out.tell()
        out.write(
            struct.pack(
                "<4s2B4HL2L2H",
                b"PK\x03\x04",
                20,
                0,
                0,
                member.method,
                0,
                0x21,
                member.crc,
                len(member.data),
                member.file_size,
                len(encoded),
                0,
            )
        )
        out.write(encoded)
        out.write(member.data)
        central.append(
            struct.pack(
                "<4s4B4HL2L5H2L",
                b"PK\x01\x02",
                20,
                3,
                20,
                0,
                0,
                member.method,
                0,
                0x21,
                member.crc,
                len(member.data),
                member.file_size,
                len(encoded),
                0,
                0,
                0,
                0,
                0o644 << 16,
                offset,
            )
            + encoded
        )
    start = out.tell()
    directory = b"".join(central)
    out.write(directory)
    out.write(
        struct.pack(
            "<4s4H2LH",
            b"PK\x05\x06",
            0,
            0,
            len(members),
            len(members),
            len(directory),
            start,
            0,
        )
    )
    return out.getvalue()


def labels_member(count: int, label: str = "normal") -> Member:
    return deflated(npy(np.array([label] * count)))


def bomb(blocks: int, *, width: int = 1024) -> bytes:
    """An honest .npz whose ``signals`` expand to ``blocks`` MiB of float64 zeros (about
    ``blocks`` KiB compressed); its headers tell the truth."""
    rows = blocks * BLOCK // (8 * width)
    signals = deflated_zeros(npy_header((rows, width)), blocks)
    return zip_archive({"signals.npy": signals, "labels.npy": labels_member(rows)})


def lying_array_header(rows: int, width: int = 1024) -> bytes:
    """An .npz whose ``signals`` member is tiny and says so, but whose .npy header claims
    ``rows`` x ``width`` float64."""
    signals = deflated(npy_header((rows, width)) + bytes(64))
    return zip_archive({"signals.npy": signals, "labels.npy": labels_member(1)})


def lying_zip_header(real: np.ndarray, blocks: int) -> bytes:
    """An .npz whose ``signals`` member declares the size and CRC of ``real`` (an honest
    array) while its deflate stream goes on to ``blocks`` MiB more of zeros."""
    content = npy(real)
    stream = deflated_zeros(content, blocks)
    signals = Member("", stream.data, len(content), zlib.crc32(content))
    return zip_archive({"signals.npy": signals, "labels.npy": labels_member(len(real))})
