"""Signal files: reading and validating what an import gives, within the job's budget, and
writing the files generation makes (where files live and whose they are: ``storage``).

Two formats, one signal per row or per array row:

- **CSV** (``.csv``, UTF-8, header row): a ``fault_class`` (or ``label``) column, optional
  ``signal_id``, ``severity`` and ``sample_rate_hz`` columns; every other column is a sample, in
  header order (the "wide" layout of the UCR time-series archive). At least 8 samples.
- **NPZ** (``.npz``, never unpickled): ``signals`` (2-D numbers, one row per signal),
  ``labels`` (1-D strings, the fault classes), optional ``severities`` and ``signal_ids`` (1-D
  strings) and ``sample_rate`` (a number).

Every problem is collected with its file and row (CSV, 1 = first data row) or key (NPZ); a file
with any problem imports nothing, and neither does the job.

What a file claims never sizes the worker's memory. A job has a ``Budget``: the bytes it reads
(each CSV's size, and the declared uncompressed size of each NPZ member it wants, counted before
reading: ``EXPERIMENTS_IMPORT_MAX_EXPANDED_BYTES``) and the signals it creates
(``EXPERIMENTS_IMPORT_MAX_SIGNALS``). NPZ members are read one at a time, never beyond what
they declared (``npz``); a CSV is read a line at a time (lines of at most 2 Mi characters, at
most 100,000 columns); a signal has at most 1,000,000 samples. Signals are handed on one at a
time, and a job keeps only their features (``Row``), never their samples.
"""

from __future__ import annotations

import csv
import math
import sys
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from runyard.experiments.datasets.schemas import SignalIn
from runyard.experiments.jobs import npz

MIN_SAMPLES = 8
MAX_SAMPLES = 1_000_000
MAX_CSV_COLUMNS = 100_000
MAX_CSV_LINE = 2 * 1024 * 1024
MAX_ERRORS = 100
META_COLUMNS = ("signal_id", "fault_class", "label", "severity", "sample_rate_hz")
NPZ_KEYS = ("signals", "labels", "severities", "signal_ids", "sample_rate")


@dataclass
class Budget:
    """What one job may still read (bytes, as expanded) and create (signals)."""

    max_bytes: int
    max_signals: int
    bytes_read: int = 0
    signals: int = 0

    @property
    def bytes_left(self) -> int:
        return self.max_bytes - self.bytes_read

    def take_bytes(self, size: int) -> bool:
        if size > self.bytes_left:
            return False
        self.bytes_read += size
        return True

    def take_signals(self, count: int) -> bool:
        if self.signals + count > self.max_signals:
            return False
        self.signals += count
        return True

    def too_many_signals(self) -> str:
        return (
            f"more than {self.max_signals} signals; an import may create at most "
            f"{self.max_signals} (EXPERIMENTS_IMPORT_MAX_SIGNALS)"
        )

    def too_large(self, size: int) -> str:
        return (
            f"the file is {size} bytes, more than the {self.bytes_left} the import may still "
            f"read (of {self.max_bytes}: {npz.BUDGET_SETTING})"
        )


@dataclass
class ParsedSignal:
    signal_id: str
    fault_class: str
    severity: str | None
    samples: npt.NDArray[np.float64]
    sample_rate_hz: float
    #: the row (CSV, 1 = first data row) or index (NPZ) in its file
    at: int


@dataclass(frozen=True, slots=True)
class Row:
    """A signal read, without its samples: what a job keeps until it stores the dataset."""

    signal_id: str
    fault_class: str
    severity: str | None
    #: the file, relative to the data directory (one string shared by the file's rows)
    file: str
    at: int
    rms: float
    kurtosis: float
    dominant_frequency: float

    @property
    def file_path(self) -> str:
        return f"{self.file}#{self.at}"

    def signal_in(self) -> SignalIn:
        return SignalIn(
            signal_id=self.signal_id,
            fault_class=self.fault_class,
            severity=self.severity,
            file_path=self.file_path,
            rms=self.rms,
            kurtosis=self.kurtosis,
            dominant_frequency=self.dominant_frequency,
        )


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
    return sys.intern(value) if 0 < len(value) <= max_length else None


def read_file(
    path: Path, *, name: str, default_rate: float, problems: Problems, budget: Budget
) -> Iterator[ParsedSignal]:
    """The signals of one file, one at a time; problems are added to ``problems`` (then what
    was given is junk)."""
    reader = read_csv if path.suffix.lower() == ".csv" else read_npz
    return reader(path, name=name, default_rate=default_rate, problems=problems, budget=budget)


class LineTooLong(ValueError):
    pass


def lines(handle: IO[str]) -> Iterator[str]:
    while line := handle.readline(MAX_CSV_LINE + 1):
        if len(line) > MAX_CSV_LINE:
            raise LineTooLong()
        yield line


def read_csv(
    path: Path, *, name: str, default_rate: float, problems: Problems, budget: Budget
) -> Iterator[ParsedSignal]:
    size = path.stat().st_size
    if not budget.take_bytes(size):
        problems.add(name, budget.too_large(size))
        return
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield from parse_csv(
                csv.reader(lines(handle)),
                name=name,
                default_rate=default_rate,
                problems=problems,
                budget=budget,
            )
    except UnicodeDecodeError:
        problems.add(name, "not UTF-8 text")
    except LineTooLong:
        problems.add(name, f"a line longer than {MAX_CSV_LINE} characters")
    except csv.Error as exc:
        problems.add(name, f"not readable as CSV ({exc})")


def parse_csv(
    reader: Iterable[list[str]],
    *,
    name: str,
    default_rate: float,
    problems: Problems,
    budget: Budget,
) -> Iterator[ParsedSignal]:
    rows = iter(reader)
    header = [h.strip() for h in next(rows, [])]
    if not header:
        problems.add(name, "empty file (a header row is needed)")
        return
    if len(header) > MAX_CSV_COLUMNS + len(META_COLUMNS):
        problems.add(name, f"{len(header)} columns; at most {MAX_CSV_COLUMNS} samples", row=0)
        return
    label_column = "fault_class" if "fault_class" in header else "label"
    if label_column not in header:
        problems.add(name, "no fault_class (or label) column in the header", row=0)
        return
    sample_columns = [i for i, h in enumerate(header) if h not in META_COLUMNS]
    if len(sample_columns) < MIN_SAMPLES:
        problems.add(name, f"at least {MIN_SAMPLES} sample columns are needed", row=0)
        return
    index = {h: i for i, h in enumerate(header)}
    before, given = problems.total, 0
    for number, row in enumerate(rows, start=1):
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
        if not budget.take_signals(1):
            problems.add(name, budget.too_many_signals(), row=number)
            return
        given += 1
        samples = np.asarray(values, dtype=np.float64)
        del values
        yield ParsedSignal(
            signal_id or f"{Path(name).stem}-{number}", fault, severity, samples, rate, number
        )
    if not given and problems.total == before:
        problems.add(name, "no data rows")


def number_or_none(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def strings(array: npt.NDArray[Any], count: int) -> list[str] | None:
    if array.ndim != 1 or len(array) != count or array.dtype.kind not in "US":
        return None
    return [
        sys.intern(str(v.decode(errors="replace") if isinstance(v, bytes) else v).strip())
        for v in array
    ]


def read_npz(
    path: Path, *, name: str, default_rate: float, problems: Problems, budget: Budget
) -> Iterator[ParsedSignal]:
    try:
        arrays, declared = npz.load(path, NPZ_KEYS, max_bytes=budget.bytes_left)
    except npz.ArchiveRefused as exc:
        problems.add(name, str(exc), **({"key": exc.key} if exc.key else {}))
        return
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        problems.add(name, f"not a readable .npz archive without pickled objects ({exc})")
        return
    budget.take_bytes(declared)
    data = arrays.get("signals")
    if data is None or data.ndim != 2 or data.dtype.kind not in "iuf":
        problems.add(name, "'signals' must be a 2-D numeric array", key="signals")
        return
    count, width = data.shape
    if not MIN_SAMPLES <= width <= MAX_SAMPLES:
        problems.add(
            name, f"{MIN_SAMPLES} to {MAX_SAMPLES} samples per signal, not {width}", key="signals"
        )
        return
    if not budget.take_signals(count):
        problems.add(name, budget.too_many_signals(), key="signals")
        return
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
    for i in range(count):
        values = data[i].astype(np.float64)
        if not np.isfinite(values).all():
            problems.add(name, "NaN or infinite samples", key="signals", index=i)
            continue
        yield ParsedSignal(ids[i], labels[i], severities[i], values, rate, i)


class Located(Protocol):
    @property
    def signal_id(self) -> str: ...

    @property
    def file_path(self) -> str | None: ...


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
