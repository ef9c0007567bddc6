"""Attacks on the import worker's memory: decompression bombs, archives whose headers lie, and
CSV files that are small on disk and huge once parsed. Each stays within the upload limit, and
the worker's allocations while reading it (traced by tracemalloc, numpy's arrays included) stay
under 256 MiB with the default settings."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from runyard.experiments.config import Settings
from runyard.experiments.jobs import files
from runyard.experiments.jobs import runner as job_runner
from runyard.experiments.jobs.steps import read_rows
from runyard.shared.db import create_engine, create_sessionmaker
from services.experiments.tests.experiments_helpers import fetch, outbox
from services.experiments.tests.jobs.archives import (
    bomb,
    deflated,
    labels_member,
    lying_array_header,
    lying_zip_header,
    npy,
    npy_header,
    zip_archive,
)

WORKER_MEMORY = 256 * 1024 * 1024
DEFAULTS = Settings(environment="test")


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    """The peak of memory allocated inside the block (bytes), appended on leaving it."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1] - start)
        if not was_tracing:
            tracemalloc.stop()


@pytest.mark.slow
async def test_an_npz_bomb_fails_its_job_before_anything_expands(
    client, db, alice, settings, tmp_path
) -> None:
    archive = bomb(2048)  # about 2 MB: signals.npy declares 2 GiB of float64
    assert len(archive) < settings.upload_max_bytes
    response = await client.post(
        "/api/v1/dataset-imports",
        files={"file": ("bomb.npz", archive, "application/octet-stream")},
        data={"name": "bomb"},
        headers=alice.headers,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        worker = job_runner.Worker(create_sessionmaker(engine, schema="experiments"), settings, "w")
        with traced_peak() as peak:
            assert await job_runner.run_next(worker) is True
    finally:
        await engine.dispose()

    assert peak[0] < WORKER_MEMORY
    done = (await client.get(f"/api/v1/dataset-imports/{job['id']}", headers=alice.headers)).json()
    assert (done["status"], done["dataset_id"]) == ("failed", None)
    [problem] = done["errors"]
    assert problem["key"] == "signals"
    assert "expand to 2153775360 bytes" in problem["msg"]
    assert f"at most {settings.import_max_expanded_bytes}" in problem["msg"]
    assert await fetch(db, "SELECT id FROM experiments.signals") == []
    failed = [e for e in await outbox(db) if e["type"] == "dataset_import.failed"]
    assert len(failed) == 1 and failed[0]["data"]["errors"] == done["errors"]
    # the bomb does not stay on disk, nor count against alice's quota
    assert not (Path(settings.data_dir) / job["output_path"]).exists()
    [row] = await fetch(db, "SELECT bytes_stored FROM experiments.dataset_imports")
    assert row["bytes_stored"] == 0


def many_rows_csv() -> bytes:
    """Eight-sample rows up to the upload limit: over 400,000 signals once parsed."""
    header = b"fault_class," + b",".join(b"s%d" % i for i in range(8)) + b"\n"
    row = b"normal,0,1,0,1,0,1,0,1\n"
    return header + row * ((DEFAULTS.upload_max_bytes - len(header)) // len(row))


def one_line_csv() -> bytes:
    """One header line of distinct two-character columns, as long as the upload limit."""
    names = [b"%02x" % (i % 256) for i in range(DEFAULTS.upload_max_bytes // 3 - 20)]
    return b"fault_class," + b",".join(names) + b"\n"


def npz_at_the_budget() -> bytes:
    """A valid archive as large as one import may read, with as many signals as it may create
    (a few hundred KiB deflated)."""
    signals = np.zeros((DEFAULTS.import_max_signals, 160), dtype=np.float32)
    return zip_archive(
        {
            "signals.npy": deflated(npy(signals)),
            "labels.npy": labels_member(DEFAULTS.import_max_signals),
        }
    )


HOSTILE: dict[str, tuple[str, Callable[[], bytes], str | None, int]] = {
    # name: (suffix, content, the problem's text or None, signals read)
    "npz whose array header claims 8 GiB": (
        ".npz",
        lambda: lying_array_header(2**20),
        "the array's header declares 8589934592 bytes of data, its member 64",
        0,
    ),
    "npz whose zip header hides 1 GiB more": (
        ".npz",
        lambda: lying_zip_header(np.ones((4, 16)), 1024),
        None,
        4,
    ),
    "csv of 400,000 short rows": (
        ".csv",
        many_rows_csv,
        f"more than {DEFAULTS.import_max_signals} signals",
        0,
    ),
    "csv of one 10 MiB line": (".csv", one_line_csv, "a line longer than", 0),
    "npz as large as the budget": (".npz", npz_at_the_budget, None, DEFAULTS.import_max_signals),
}


# the two largest shapes take most of a minute each under tracemalloc: `make test` runs them,
# the quick loop (`make test-fast`) leaves them out
SLOW_SHAPES = {"csv of 400,000 short rows", "npz as large as the budget"}


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_SHAPES else name
        for name in HOSTILE
    ],
)
def test_hostile_files_up_to_the_upload_limit_are_read_in_bounded_memory(
    shape: str, tmp_path: Path
) -> None:
    suffix, make, problem, count = HOSTILE[shape]
    content = make()
    assert len(content) <= DEFAULTS.upload_max_bytes
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(content)
    del content
    problems = files.Problems()
    budget = files.Budget(DEFAULTS.import_max_expanded_bytes, DEFAULTS.import_max_signals)

    with traced_peak() as peak:
        rows = read_rows(path, name=path.name, default_rate=64.0, problems=problems, budget=budget)

    assert peak[0] < WORKER_MEMORY, f"{peak[0] / 2**20:.0f} MiB"
    assert len(rows) == count
    if problem is None:
        assert problems.items == []
    else:
        assert [p["file"] for p in problems.items] == [path.name]
        assert problem in problems.items[0]["msg"]


def test_the_expansion_budget_is_shared_by_the_files_of_one_job(tmp_path: Path) -> None:
    signals = np.zeros((10, 1024), dtype=np.float64)  # 80 KiB once expanded, 1 KiB on disk
    for name in ("a.npz", "b.npz"):
        (tmp_path / name).write_bytes(
            zip_archive({"signals.npy": deflated(npy(signals)), "labels.npy": labels_member(10)})
        )
    problems = files.Problems()
    budget = files.Budget(max_bytes=100 * 1024, max_signals=1000)
    first = read_rows(
        tmp_path / "a.npz", name="a.npz", default_rate=64.0, problems=problems, budget=budget
    )
    second = read_rows(
        tmp_path / "b.npz", name="b.npz", default_rate=64.0, problems=problems, budget=budget
    )
    assert (len(first), len(second)) == (10, 0)
    assert [(p["file"], p["key"]) for p in problems.items] == [("b.npz", "signals")]
    assert "an import may read at most" in problems.items[0]["msg"]


def truncated() -> bytes:
    whole = zip_archive({"signals.npy": deflated(npy(np.zeros((2, 8))))})
    return whole[:40] + whole[60:]


ODD: dict[str, tuple[Callable[[], bytes], str]] = {
    "pickled objects": (
        lambda: zip_archive({"signals.npy": deflated(npy_header((1, 8), "|O") + bytes(64))}),
        "Python objects",
    ),
    "unknown npy version": (
        lambda: zip_archive({"signals.npy": deflated(b"\x93NUMPY\x03\x00" + bytes(64))}),
        "format version (3, 0)",
    ),
    "corrupt": (truncated, "not a readable .npz"),
}


@pytest.mark.parametrize("odd", list(ODD))
def test_npz_members_that_are_not_plain_arrays_are_refused(odd: str, tmp_path: Path) -> None:
    make, problem = ODD[odd]
    path = tmp_path / "odd.npz"
    path.write_bytes(make())
    problems = files.Problems()
    budget = files.Budget(DEFAULTS.import_max_expanded_bytes, DEFAULTS.import_max_signals)
    assert (
        read_rows(path, name="odd.npz", default_rate=64.0, problems=problems, budget=budget) == []
    )
    assert problem in problems.items[0]["msg"]
