"""The local write-ahead log of one run: ``$RUNYARD_DIR/runs/<id>/``.

- ``meta.json``: the experiment's id on the server (null until it is created there), what to
  create it with, the URL, the host and pid that wrote it; replaced atomically.
- ``wal.jsonl``: one JSON document per line, appended with one ``write(2)`` per ``log()`` on an
  ``O_APPEND`` descriptor. An epoch's line is exactly the server's ``RunIn`` body and starts with
  ``{"epoch":``; every other line is an operation: ``{"op":"tag"|"untag","tag":...}``,
  ``{"op":"update","body":{...}}``, ``{"op":"end","action":"complete"|"fail"|"cancel",
  "body":{...}}``. A line without its newline (a write cut by a power loss) is never read.
- ``acked``: the byte offset up to which the server has taken the log; replaced atomically after
  every accepted request. Everything after it is sent again, and the server's idempotency per
  (experiment, epoch) makes a repeat change nothing.
- ``lock``: held (``flock``) by the process that writes the run; a run whose lock is free belongs
  to nobody and ``runyard sync`` may upload it.
- ``rejected.jsonl``: lines the server refused for good (422), with its reason.
- ``artifacts/<id>``: a copy of each file ``log_artifact`` logged, taken when it was logged
  (the op line ``{"op":"artifact","file":<id>,"path":...}`` names it); removed once uploaded.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

#: metrics the server keeps in columns (the best epoch and search use them); any other name goes
#: into the epoch's ``metrics`` object
COLUMNS = frozenset(
    (
        "train_loss",
        "val_loss",
        "train_accuracy",
        "val_accuracy",
        "learning_rate",
        "duration_seconds",
    )
)
NON_NEGATIVE = frozenset(("learning_rate", "duration_seconds"))
MAX_EPOCH = 10_000_000
RUN_PREFIX = b'{"epoch":'
_BAD_NAME = re.compile(r"[`\n]")


def valid_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= 100 and not _BAD_NAME.search(name)


def encode_run(epoch: int, values: Mapping[str, float]) -> bytes:
    """One epoch as the server's ``RunIn``: known columns at the top, the rest in ``metrics``."""
    body: dict[str, Any] = {"epoch": epoch}
    extra = {}
    for name, value in values.items():
        if name in COLUMNS and not (name in NON_NEGATIVE and value < 0):
            body[name] = value
        else:
            extra[name] = value
    if extra:
        body["metrics"] = extra
    return (json.dumps(body, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode_values(line: bytes) -> tuple[int, dict[str, float]]:
    """The epoch and every metric of an epoch's line (columns and extra ones together)."""
    body = json.loads(line)
    values = {k: float(v) for k, v in body.items() if k in COLUMNS and v is not None}
    values.update({k: float(v) for k, v in (body.get("metrics") or {}).items()})
    return int(body["epoch"]), values


def epoch_of(line: bytes) -> int | None:
    """The epoch of a run line, read without decoding the whole line; None for an operation."""
    if not line.startswith(RUN_PREFIX):
        return None
    end = len(RUN_PREFIX)
    while end < len(line) and line[end : end + 1].isdigit():
        end += 1
    try:
        return int(line[len(RUN_PREFIX) : end])
    except ValueError:
        return None


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


@dataclass(frozen=True)
class Line:
    start: int
    end: int
    data: bytes  # without the newline

    @property
    def epoch(self) -> int | None:
        return epoch_of(self.data)


class Lock:
    """An exclusive ``flock`` on the run's lock file, released when the process dies."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _try_lock(fd: int) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class RunDir:
    """One run's directory (see the module's docstring for its files)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path / "meta.json"
        self.wal_path = path / "wal.jsonl"
        self.acked_path = path / "acked"
        self.lock_path = path / "lock"
        self.rejected_path = path / "rejected.jsonl"

    @classmethod
    def create(cls, root: Path, name: str, meta: Mapping[str, Any]) -> RunDir:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = root / name
        path.mkdir(mode=0o700, exist_ok=True)
        run = cls(path)
        run.write_meta(meta)
        return run

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict[str, Any]:
        data = json.loads(self.meta_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{self.meta_path} is not a JSON object")
        return data

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        _write_atomic(self.meta_path, json.dumps(meta, indent=1, sort_keys=True).encode())

    def acked(self) -> int:
        try:
            return int(self.acked_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def set_acked(self, offset: int) -> None:
        _write_atomic(self.acked_path, f"{offset}\n".encode())

    def size(self) -> int:
        try:
            return self.wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    def lock(self) -> Lock | None:
        """The run's lock, or None while another process holds it."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return Lock(fd)

    def holder(self) -> str | None:
        """The pid written by the lock's last holder (for messages)."""
        try:
            return self.lock_path.read_text().strip() or None
        except OSError:
            return None

    def artifact_copy(self, name: str) -> Path:
        return self.path / "artifacts" / Path(name).name

    def reject(self, line: bytes, reason: str) -> None:
        entry = json.dumps({"reason": reason, "line": line.decode("utf-8", "replace")})
        with open(self.rejected_path, "a", encoding="utf-8") as out:
            out.write(entry + "\n")

    def read(
        self, offset: int, *, max_bytes: int = 1024 * 1024, max_lines: int | None = None
    ) -> list[Line]:
        """Whole lines from ``offset`` on (see ``read_lines``)."""
        with open(self.wal_path, "rb") as wal:
            return read_lines(wal, offset, max_bytes, max_lines)

    def lines(self, offset: int = 0) -> Iterable[Line]:
        """Every whole line from ``offset`` to the end, a chunk at a time."""
        while True:
            chunk = self.read(offset)
            if not chunk:
                return
            yield from chunk
            offset = chunk[-1].end

    def ops(self) -> list[dict[str, Any]]:
        """Every operation in the log (small: tags, notes, the end)."""
        found = []
        for line in self.lines():
            if line.epoch is None:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line.data))
        return found

    def unsent_epochs(self, offset: int | None = None) -> int:
        """How many distinct epochs the log holds after ``offset`` (default: the acked one)."""
        start = self.acked() if offset is None else offset
        return len({line.epoch for line in self.lines(start) if line.epoch is not None})

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def read_lines(
    wal: IO[bytes], offset: int, max_bytes: int, max_lines: int | None = None
) -> list[Line]:
    """Whole lines from ``offset``: up to ``max_lines`` of them or about ``max_bytes`` (always at
    least one whole line when there is one). Reads 256 KiB at a time."""
    wal.seek(offset)
    lines: list[Line] = []
    buf, pos, start = b"", 0, offset
    while True:
        newline = buf.find(b"\n", pos)
        if newline < 0:
            chunk = wal.read(256 * 1024)
            if not chunk:
                return lines  # what is left has no newline: not a whole line (yet)
            buf, pos = buf[pos:] + chunk, 0
            continue
        raw = buf[pos:newline].rstrip(b"\r")
        end = start + newline + 1 - pos
        if raw.strip():
            lines.append(Line(start, end, raw))
        start, pos = end, newline + 1
        if (max_lines is not None and len(lines) >= max_lines) or start - offset >= max_bytes:
            return lines


class Writer:
    """Appends to the run's log: one ``write(2)`` per record, so a record is in the kernel (and
    survives the process being killed) when ``append`` returns."""

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self.fd = os.open(path, flags, 0o600)
        self.offset = os.fstat(self.fd).st_size

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.offset += len(data)

    def sync(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self.fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Metrics:
    """Turns ``log()``'s mapping into clean floats; every problem is reported once per name and
    drops only the metric concerned."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._good: set[str] = set()
        self._warned: set[tuple[str, str]] = set()

    def clean(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, raw in metrics.items():
            if name not in self._good:
                if not valid_name(name):
                    self._once(
                        repr(name),
                        "metric names are 1 to 100 characters without a backtick or newline",
                    )
                    continue
                self._good.add(name)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                self._once(name, f"its value {raw!r} is not a number")
                continue
            if not finite(value):
                self._once(name, f"its value {value} is not finite")
                continue
            values[name] = value
        return values

    def _once(self, name: str, why: str) -> None:
        if (name, why) not in self._warned:
            self._warned.add((name, why))
            self._warn(f"metric {name} not logged: {why} (reported once)")
