"""Signal files: where an import's files may come from (an upload, a path inside the data
directory), reading and validating them, and writing the files generation makes.

Two formats, one signal per row or per array row:

- **CSV** (``.csv``, UTF-8, header row): a ``fault_class`` (or ``label``) column, optional
  ``signal_id``, ``severity`` and ``sample_rate_hz`` columns; every other column is a sample, in
  header order (the "wide" layout of the UCR time-series archive). At least 8 samples.
- **NPZ** (``.npz``, loaded without pickle): ``signals`` (2-D numbers, one row per signal),
  ``labels`` (1-D strings, the fault classes), optional ``severities`` and ``signal_ids`` (1-D
  strings) and ``sample_rate`` (a number).

Every problem is collected with its file and row (CSV, 1 = first data row) or key (NPZ); a file
with any problem imports nothing, and neither does the job.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

MIN_SAMPLES = 8
MAX_ERRORS = 100
SUFFIXES = (".csv", ".npz")
META_COLUMNS = ("signal_id", "fault_class", "label", "severity", "sample_rate_hz")


class PathRefused(ValueError):
    """A server-side path outside the data directory, missing, or of no supported file."""


def resolve_inside(data_dir: Path, given: str) -> Path:
    base = data_dir.resolve()
    candidate = Path(given)
    full = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if not full.is_relative_to(base):
        raise PathRefused("the path must lie inside the service's data directory")
    if not full.exists():
        raise PathRefused("no such file or directory in the data directory")
    return full


def files_at(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not found:
            raise PathRefused("the directory holds no .csv or .npz file")
        return found
    if path.suffix.lower() not in SUFFIXES:
        raise PathRefused("only .csv and .npz files can be imported")
    return [path]


def locate(data_dir: Path, given: str) -> list[str]:
    """The files a server-side path names, relative to the data directory."""
    found = files_at(resolve_inside(data_dir, given))
    base = data_dir.resolve()
    if any(not p.resolve().is_relative_to(base) for p in found):  # a symlink leading out
        raise PathRefused("the path must lie inside the service's data directory")
    return [str(p.relative_to(base)) for p in found]


def safe_filename(filename: str | None) -> str:
    base = Path(filename or "upload").name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:200]
    return cleaned or "upload"


def store_upload(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


@dataclass
class ParsedSignal:
    signal_id: str
    fault_class: str
    severity: str | None
    samples: npt.NDArray[np.float64]
    sample_rate_hz: float
    #: ``<file>#<row or index>``, relative to the data directory
    file_path: str


@dataclass
class Problems:
    items: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, file: str, msg: str, **where: Any) -> None:
        self.total += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append({"file": file, **where, "msg": msg})


def label(value: str, max_length: int) -> str | None:
    value = value.strip()
    return value if 0 < len(value) <= max_length else None


def read_file(
    path: Path, *, name: str, default_rate: float, problems: Problems
) -> list[ParsedSignal]:
    """The signals of one file; problems are added to ``problems`` (then the result is junk)."""
    if path.suffix.lower() == ".csv":
        return read_csv(path, name=name, default_rate=default_rate, problems=problems)
    return read_npz(path, name=name, default_rate=default_rate, problems=problems)


def read_csv(
    path: Path, *, name: str, default_rate: float, problems: Problems
) -> list[ParsedSignal]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        problems.add(name, "not UTF-8 text")
        return []
    try:
        return parse_csv(text, name=name, default_rate=default_rate, problems=problems)
    except csv.Error as exc:
        problems.add(name, f"not readable as CSV ({exc})")
        return []


def parse_csv(
    text: str, *, name: str, default_rate: float, problems: Problems
) -> list[ParsedSignal]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if not header:
        problems.add(name, "empty file (a header row is needed)")
        return []
    label_column = "fault_class" if "fault_class" in header else "label"
    if label_column not in header:
        problems.add(name, "no fault_class (or label) column in the header", row=0)
        return []
    sample_columns = [i for i, h in enumerate(header) if h not in META_COLUMNS]
    if len(sample_columns) < MIN_SAMPLES:
        problems.add(name, f"at least {MIN_SAMPLES} sample columns are needed", row=0)
        return []
    index = {h: i for i, h in enumerate(header)}
    signals: list[ParsedSignal] = []
    for number, row in enumerate(reader, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.add(name, f"{len(row)} cells, the header has {len(header)}", row=number)
            continue
        fault = label(row[index[label_column]], 100)
        if fault is None:
            problems.add(name, f"{label_column} is empty or longer than 100", row=number)
            continue
        severity = None
        if "severity" in index and row[index["severity"]].strip():
            severity = label(row[index["severity"]], 50)
            if severity is None:
                problems.add(name, "severity longer than 50", row=number)
                continue
        rate = default_rate
        if "sample_rate_hz" in index and row[index["sample_rate_hz"]].strip():
            rate = number_or_none(row[index["sample_rate_hz"]]) or -1.0
            if rate <= 0:
                problems.add(name, "sample_rate_hz is not a positive number", row=number)
                continue
        values = [number_or_none(row[i]) for i in sample_columns]
        bad = next((i for i, v in zip(sample_columns, values, strict=True) if v is None), None)
        if bad is not None:
            problems.add(
                name,
                f"value {row[bad].strip()!r} in column {header[bad]!r} is not a finite number",
                row=number,
            )
            continue
        signal_id = row[index["signal_id"]].strip() if "signal_id" in index else ""
        if len(signal_id) > 255:
            problems.add(name, "signal_id longer than 255", row=number)
            continue
        signals.append(
            ParsedSignal(
                signal_id=signal_id or f"{Path(name).stem}-{number}",
                fault_class=fault,
                severity=severity,
                samples=np.asarray(values, dtype=np.float64),
                sample_rate_hz=rate,
                file_path=f"{name}#{number}",
            )
        )
    if not signals and problems.total == 0:
        problems.add(name, "no data rows")
    return signals


def number_or_none(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def strings(array: npt.NDArray[Any], count: int) -> list[str] | None:
    if array.ndim != 1 or len(array) != count or array.dtype.kind not in "US":
        return None
    return [str(v.decode() if isinstance(v, bytes) else v).strip() for v in array]


def read_npz(
    path: Path, *, name: str, default_rate: float, problems: Problems
) -> list[ParsedSignal]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        problems.add(name, f"not a readable .npz archive without pickled objects ({exc})")
        return []
    data = arrays.get("signals")
    if data is None or data.ndim != 2 or data.dtype.kind not in "iuf":
        problems.add(name, "'signals' must be a 2-D numeric array", key="signals")
        return []
    count, width = data.shape
    if width < MIN_SAMPLES:
        problems.add(name, f"at least {MIN_SAMPLES} samples per signal", key="signals")
    values = data.astype(np.float64)
    for row in np.flatnonzero(~np.isfinite(values).all(axis=1))[:MAX_ERRORS]:
        problems.add(name, "NaN or infinite samples", key="signals", index=int(row))
    labels = strings(arrays.get("labels", np.array([1])), count)
    if labels is None:
        problems.add(name, f"'labels' must be {count} strings", key="labels")
        labels = [""] * count
    else:
        for row, value in enumerate(labels):
            if not value or len(value) > 100:
                problems.add(name, "label is empty or longer than 100", key="labels", index=row)
    severities: list[str | None] = [None] * count
    if "severities" in arrays:
        found = strings(arrays["severities"], count)
        if found is None or any(len(s) > 50 for s in found):
            problems.add(name, f"'severities' must be {count} strings of <= 50", key="severities")
        else:
            severities = [s or None for s in found]
    ids = [f"{Path(name).stem}-{i}" for i in range(count)]
    if "signal_ids" in arrays:
        given = strings(arrays["signal_ids"], count)
        if given is None or any(not s or len(s) > 255 for s in given):
            problems.add(name, f"'signal_ids' must be {count} strings of 1-255", key="signal_ids")
        else:
            ids = given
    rate = default_rate
    if "sample_rate" in arrays:
        given_rate = arrays["sample_rate"]
        if given_rate.size != 1 or given_rate.dtype.kind not in "iuf" or not given_rate.item() > 0:
            problems.add(name, "'sample_rate' must be one positive number", key="sample_rate")
        else:
            rate = float(given_rate.item())
    return [
        ParsedSignal(ids[i], labels[i], severities[i], values[i], rate, f"{name}#{i}")
        for i in range(count)
    ]


class Located(Protocol):
    signal_id: str
    file_path: str | None


def add_duplicates(signals: Sequence[Located], problems: Problems) -> None:
    seen: dict[str, str | None] = {}
    for signal in signals:
        if signal.signal_id in seen:
            problems.add(
                (signal.file_path or "").split("#")[0],
                f"signal_id {signal.signal_id!r} appears twice (first at {seen[signal.signal_id]})",
                at=signal.file_path,
            )
        seen.setdefault(signal.signal_id, signal.file_path)


def write_npz(
    path: Path, signals: Sequence[tuple[str, str, str | None, npt.NDArray[Any]]], rate: float
) -> None:
    """Write signals in the import format (atomically: a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        np.savez(
            handle,
            signals=np.stack([s[3] for s in signals]).astype(np.float32),
            labels=np.array([s[1] for s in signals]),
            severities=np.array([s[2] or "" for s in signals]),
            signal_ids=np.array([s[0] for s in signals]),
            sample_rate=np.array(rate),
        )
    partial.replace(path)
