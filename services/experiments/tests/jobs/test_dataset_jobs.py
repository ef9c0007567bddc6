"""Dataset generation and import jobs, run by the job worker (called directly: one claim, run
to the end), against the real database and a temporary data directory."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runyard.experiments.jobs import runner as job_runner
from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import event_types, fetch, outbox
from services.experiments.tests.jobs.job_helpers import (
    csv_text,
    generate,
    job,
    signals_of,
    tone,
    upload,
    upload_area,
)


async def test_generated_signals_carry_the_features_their_fault_class_implies(
    client, db, alice, settings, make_worker
) -> None:
    created = await generate(client, alice, signals_per_combination=3, shaft_frequency_hz=25.0)
    assert (created["status"], created["progress"], created["num_signals"]) == ("pending", 0, 39)
    assert await job_runner.run_next(make_worker()) is True

    done = await job(client, alice, "dataset-generations", created["id"])
    assert (done["status"], done["progress"]) == ("completed", 100)
    assert done["duration_seconds"] is not None and done["dataset_id"] is not None
    signals = await signals_of(client, alice, done["dataset_id"])
    # 1 normal x 3 + 4 faults x 3 severities x 3
    assert len(signals) == 39 == len({s["signal_id"] for s in signals})
    bin_hz = 10_240 / 10_240  # sample rate / samples: one FFT bin

    def of(fault: str, severity: str | None = None) -> list[dict[str, Any]]:
        return [
            s
            for s in signals
            if s["fault_class"] == fault and (severity is None or s["severity"] == severity)
        ]

    for signal in of("imbalance") + of("normal"):
        assert abs(signal["dominant_frequency"] - 25.0) <= bin_hz
    for signal in of("misalignment"):
        assert abs(signal["dominant_frequency"] - 50.0) <= bin_hz
    normal_kurtosis = max(s["kurtosis"] for s in of("normal"))
    assert all(s["kurtosis"] > normal_kurtosis + 1 for s in of("bearing_defect", "severe"))
    normal_rms = max(s["rms"] for s in of("normal"))
    for severity in ("mild", "moderate", "severe"):
        assert all(s["rms"] > normal_rms for s in of("imbalance", severity))
    assert [round(s["rms"], 6) for s in of("imbalance", "mild")] < [
        round(s["rms"], 6) for s in of("imbalance", "severe")
    ]

    files = sorted((Path(settings.data_dir) / done["output_path"]).glob("*.npz"))
    assert files, "signal files were written"
    with np.load(files[0]) as archive:
        assert archive["signals"].shape[1] == 10_240
    assert signals[0]["file_path"].startswith(f"{done['output_path']}/chunk-")

    dataset = await client.get(f"/api/v1/datasets/{done['dataset_id']}", headers=alice.headers)
    assert sorted(dataset.json()["fault_types"]) == [
        "bearing_defect",
        "cavitation",
        "imbalance",
        "misalignment",
        "normal",
    ]
    event = next(e for e in await outbox(db) if e["type"] == "dataset_generation.completed")
    assert event["data"]["dataset_id"] == done["dataset_id"]
    assert event["data"]["num_signals"] == 39


async def test_a_generation_resumes_after_its_worker_died_and_writes_each_signal_once(
    client, db, alice, settings, make_worker
) -> None:
    small_steps = settings.model_copy(update={"generation_chunk_size": 5})
    created = await generate(client, alice, signals_per_combination=2)  # 26 signals
    job_id = uuid.UUID(created["id"])
    first = make_worker("worker-a", small_steps)
    assert await job_runner.claim(first, job_runner.DatasetGeneration) == job_id
    for _ in range(2):
        assert await job_runner.step(first, job_runner.DatasetGeneration, job_id) is True
    halfway = await job(client, alice, "dataset-generations", created["id"])
    assert (halfway["status"], halfway["progress"]) == ("running", 90 * 10 // 26)
    # worker-a dies here; another one finds nothing while its lease runs ...
    second = make_worker("worker-b", small_steps)
    assert await job_runner.run_next(second) is False
    # ... and takes the job over once the lease has expired
    await fetch(
        db,
        "UPDATE experiments.dataset_generations SET locked_until = now() - interval '1 s' "
        "WHERE id = $1",
        job_id,
    )
    assert await job_runner.run_next(second) is True
    # worker-a, back from the dead, has lost the job and changes nothing
    with pytest.raises(job_runner.LostJob):
        await job_runner.step(first, job_runner.DatasetGeneration, job_id)

    done = await job(client, alice, "dataset-generations", created["id"])
    assert (done["status"], done["attempts"]) == ("completed", 2)
    signals = await signals_of(client, alice, done["dataset_id"])
    assert sorted(s["signal_id"] for s in signals) == [f"sig-{i:06d}" for i in range(26)]
    assert (await event_types(db)).count("dataset_generation.completed") == 1


async def test_cancelling_a_running_generation_stops_it_and_leaves_nothing(
    client, db, alice, settings, make_worker
) -> None:
    small_steps = settings.model_copy(update={"generation_chunk_size": 5})
    created = await generate(client, alice)
    job_id = uuid.UUID(created["id"])
    worker = make_worker("worker-a", small_steps)
    await job_runner.claim(worker, job_runner.DatasetGeneration)
    assert await job_runner.step(worker, job_runner.DatasetGeneration, job_id) is True
    directory = Path(settings.data_dir) / created["output_path"]
    assert list(directory.glob("*.npz"))

    response = await client.post(
        f"/api/v1/dataset-generations/{job_id}/cancel", headers=alice.headers
    )
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    await job_runner.run(worker, job_runner.DatasetGeneration, job_id)

    done = await job(client, alice, "dataset-generations", created["id"])
    assert (done["status"], done["dataset_id"]) == ("cancelled", None)
    assert not directory.exists()
    assert await fetch(db, "SELECT id FROM experiments.datasets") == []
    # the first step's progress was announced; no end is
    types = [t for t in await event_types(db) if t.startswith("dataset_generation.")]
    assert types == ["dataset_generation.progressed"]
    again = await client.post(f"/api/v1/dataset-generations/{job_id}/cancel", headers=alice.headers)
    assert again.status_code == 409


async def test_a_pending_generation_is_cancelled_at_once_and_never_runs(
    client, alice, make_worker
) -> None:
    created = await generate(client, alice)
    response = await client.post(
        f"/api/v1/dataset-generations/{created['id']}/cancel", headers=alice.headers
    )
    assert response.json()["status"] == "cancelled"
    assert await job_runner.run_next(make_worker()) is False


async def test_a_generation_whose_dataset_name_was_taken_meanwhile_fails_cleanly(
    client, db, alice, settings, make_worker
) -> None:
    created = await generate(client, alice, dataset_name="pump-a")
    await client.post("/api/v1/datasets", json={"name": "pump-a"}, headers=alice.headers)
    await job_runner.run_next(make_worker())
    done = await job(client, alice, "dataset-generations", created["id"])
    assert done["status"] == "failed"
    assert "pump-a" in done["error_message"]
    assert not (Path(settings.data_dir) / created["output_path"]).exists()
    failed = [e for e in await outbox(db) if e["type"] == "dataset_generation.failed"]
    assert len(failed) == 1 and "pump-a" in failed[0]["data"]["error"]


# --- import ------------------------------------------------------------------------------------


async def test_an_uploaded_csv_is_imported_with_its_features(
    client, db, alice, make_worker
) -> None:
    text = csv_text(
        [("a", "imbalance", tone(4)), ("b", "normal", tone(8)), ("c", "normal", tone(2))]
    )
    response = await upload(client, alice, "pump7.csv", text.encode())
    assert response.status_code == 202, response.text
    created = response.json()
    assert (created["status"], created["num_files"]) == ("pending", 1)
    await job_runner.run_next(make_worker())

    done = await job(client, alice, "dataset-imports", created["id"])
    assert (done["status"], done["progress"], done["num_signals"]) == ("completed", 100, 3)
    signals = {s["signal_id"]: s for s in await signals_of(client, alice, done["dataset_id"])}
    assert {k: s["dominant_frequency"] for k, s in signals.items()} == {
        "a": 4.0,
        "b": 8.0,
        "c": 2.0,
    }
    assert signals["a"]["rms"] == pytest.approx(np.sqrt(0.5), abs=1e-3)
    assert signals["a"]["file_path"] == f"uploads/{alice.id}/{created['id']}/pump7.csv#1"
    event = next(e for e in await outbox(db) if e["type"] == "dataset_import.completed")
    assert (event["data"]["num_signals"], event["data"]["num_files"]) == (3, 1)


async def test_a_broken_import_file_changes_nothing_and_names_every_bad_row(
    client, db, alice, make_worker
) -> None:
    good = csv_text([("a", "normal", tone(4))] * 1)
    bad_rows = good + "b,,1,2,3,4,5,6,7,8" + ",0" * 56 + "\n" + "c,normal,n/a" + ",0" * 63 + "\n"
    response = await upload(client, alice, "broken.csv", bad_rows.encode())
    await job_runner.run_next(make_worker())

    done = await job(client, alice, "dataset-imports", response.json()["id"])
    assert (done["status"], done["dataset_id"]) == ("failed", None)
    assert [(e["row"], e["msg"]) for e in done["errors"]] == [
        (2, "fault_class is empty or longer than 100"),
        (3, "value 'n/a' in column 's0' is not a finite number"),
    ]
    assert await fetch(db, "SELECT id FROM experiments.datasets") == []
    assert await fetch(db, "SELECT id FROM experiments.signals") == []
    failed = next(e for e in await outbox(db) if e["type"] == "dataset_import.failed")
    assert len(failed["data"]["errors"]) == 2
    assert "dataset_import.completed" not in await event_types(db)


async def test_one_bad_file_in_a_directory_keeps_the_good_ones_out_too(
    client, db, alice, settings, make_worker
) -> None:
    directory = upload_area(settings, alice) / "incoming"
    directory.mkdir(parents=True)
    np.savez(
        directory / "a-good.npz",
        signals=np.array([tone(4), tone(8)]),
        labels=np.array(["normal", "cavitation"]),
        sample_rate=np.array(64.0),
    )
    np.savez(directory / "b-bad.npz", signals=np.array([tone(4)]), labels=np.array([1.5]))
    response = await client.post(
        "/api/v1/dataset-imports",
        json={"name": "incoming", "path": f"uploads/{alice.id}/incoming"},
        headers=alice.headers,
    )
    assert response.status_code == 202, response.text
    assert response.json()["num_files"] == 2
    await job_runner.run_next(make_worker())
    done = await job(client, alice, "dataset-imports", response.json()["id"])
    assert done["status"] == "failed"
    assert done["errors"] == [
        {
            "file": f"uploads/{alice.id}/incoming/b-bad.npz",
            "key": "labels",
            "msg": "'labels' must be 1 strings",
        }
    ]
    assert await fetch(db, "SELECT id FROM experiments.signals") == []

    (directory / "b-bad.npz").unlink()
    again = await client.post(
        "/api/v1/dataset-imports",
        json={"name": "incoming-2", "path": f"uploads/{alice.id}/incoming/a-good.npz"},
        headers=alice.headers,
    )
    await job_runner.run_next(make_worker())
    done = await job(client, alice, "dataset-imports", again.json()["id"])
    assert (done["status"], done["num_signals"]) == ("completed", 2)
    signals = await signals_of(client, alice, done["dataset_id"])
    assert [(s["fault_class"], s["dominant_frequency"]) for s in signals] == [
        ("normal", 4.0),
        ("cavitation", 8.0),
    ]


async def test_an_import_cancelled_while_running_imports_nothing(
    client, db, alice, settings, make_worker
) -> None:
    directory = upload_area(settings, alice) / "batch"
    directory.mkdir(parents=True)
    for name in ("a.csv", "b.csv"):
        (directory / name).write_text(csv_text([(name, "normal", tone(4))]))
    created = (
        await client.post(
            "/api/v1/dataset-imports",
            json={"name": "batch", "path": f"uploads/{alice.id}/batch"},
            headers=alice.headers,
        )
    ).json()
    job_id = uuid.UUID(created["id"])
    worker = make_worker()
    await job_runner.claim(worker, job_runner.DatasetImport)
    assert await job_runner.step(worker, job_runner.DatasetImport, job_id) is True
    response = await client.post(f"/api/v1/dataset-imports/{job_id}/cancel", headers=alice.headers)
    assert response.json()["cancel_requested"] is True
    await job_runner.run(worker, job_runner.DatasetImport, job_id)
    done = await job(client, alice, "dataset-imports", created["id"])
    assert (done["status"], done["dataset_id"]) == ("cancelled", None)
    assert await fetch(db, "SELECT id FROM experiments.signals") == []
    assert (directory / "a.csv").exists()  # the user's files stay


async def test_a_file_that_is_not_csv_at_all_fails_the_import_with_a_problem(
    client, alice, make_worker
) -> None:
    response = await upload(client, alice, "nul.csv", b"fault_class,a\x00b\n")
    await job_runner.run_next(make_worker())
    done = await job(client, alice, "dataset-imports", response.json()["id"])
    assert done["status"] == "failed"
    assert done["errors"][0]["file"].endswith("nul.csv")


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "nothing-here.csv", "x/../.."])
async def test_a_server_path_outside_the_data_directory_or_missing_is_400(
    client, db, alice, path
) -> None:
    response = await client.post(
        "/api/v1/dataset-imports", json={"name": "escape", "path": path}, headers=alice.headers
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["body", "path"]
    assert await fetch(db, "SELECT id FROM experiments.dataset_imports") == []


async def test_a_symlink_leading_out_of_the_data_directory_is_400(
    client, db, alice, settings, tmp_path
) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text(csv_text([("s", "normal", tone(4))]))
    directory = upload_area(settings, alice) / "linked"
    directory.mkdir(parents=True)
    (directory / "secret.csv").symlink_to(outside)
    response = await client.post(
        "/api/v1/dataset-imports",
        json={"name": "linked", "path": f"uploads/{alice.id}/linked"},
        headers=alice.headers,
    )
    assert response.status_code == 400
    assert await fetch(db, "SELECT id FROM experiments.dataset_imports") == []


async def test_an_upload_over_the_size_limit_is_413_and_leaves_no_job(settings, db, alice) -> None:
    limited = settings.model_copy(update={"upload_max_bytes": 1024})
    async with running_app(create_app(limited)) as client:
        big = io.BytesIO(b"x" * (1024 + 70 * 1024))
        response = await upload(client, alice, "big.csv", big.getvalue())
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        response = await upload(client, alice, "big.csv", b"x" * 2048)
        assert response.status_code == 413
    assert await fetch(db, "SELECT id FROM experiments.dataset_imports") == []


async def test_dataset_jobs_are_private_to_their_owner(client, alice, bob, viewer) -> None:
    created = await generate(client, alice)
    path = f"/api/v1/dataset-generations/{created['id']}"
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    assert (await client.post(f"{path}/cancel", headers=bob.headers)).status_code == 404
    assert (await client.get(path, headers=viewer.headers)).status_code == 200
    assert (await client.post(f"{path}/cancel", headers=viewer.headers)).status_code == 403
    listed = (await client.get("/api/v1/dataset-generations", headers=bob.headers)).json()
    assert listed["items"] == []
