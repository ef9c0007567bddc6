"""Import by path reads only the caller's own uploads: another user's upload, named in every
way a path can name it, gives the same 400 as a file that does not exist, and no job."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.experiments.jobs import runner as job_runner
from services.experiments.tests.experiments_helpers import fetch
from services.experiments.tests.jobs.job_helpers import (
    csv_text,
    job,
    signals_of,
    tone,
    upload,
    upload_area,
)


async def alices_upload(client, alice) -> dict[str, str]:
    content = csv_text([("secret-1", "imbalance", tone(4)), ("secret-2", "normal", tone(8))])
    response = await upload(client, alice, "pump7.csv", content.encode())
    assert response.status_code == 202, response.text
    created: dict[str, str] = response.json()
    assert created["output_path"] == f"uploads/{alice.id}/{created['id']}"
    return created


async def import_path(client, who, path: str, name: str = "borrowed") -> object:
    return await client.post(
        "/api/v1/dataset-imports", json={"name": name, "path": path}, headers=who.headers
    )


@pytest.mark.parametrize(
    "how",
    [
        "the file",
        "its directory",
        "the whole upload area",
        "dot-dot from bob's own area",
        "an absolute path",
        "a file that does not exist in alice's area",
    ],
)
async def test_bob_cannot_import_alices_upload_by_path(
    client, db, alice, bob, settings, make_worker, how: str
) -> None:
    created = await alices_upload(client, alice)
    directory = created["output_path"]
    path = {
        "the file": f"{directory}/pump7.csv",
        "its directory": directory,
        "the whole upload area": f"uploads/{alice.id}",
        "dot-dot from bob's own area": f"uploads/{bob.id}/../{alice.id}/{created['id']}/pump7.csv",
        "an absolute path": str((Path(settings.data_dir) / directory / "pump7.csv").resolve()),
        "a file that does not exist in alice's area": f"{directory}/nothing.csv",
    }[how]
    (upload_area(settings, bob) / "own").mkdir(parents=True)  # bob has an area of his own

    response = await import_path(client, bob, path)

    assert response.status_code == 400
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "path"]
    assert problem["detail"] == f"the path must lie inside your upload area (uploads/{bob.id}/)"
    rows = await fetch(db, "SELECT id FROM experiments.dataset_imports WHERE owner_id = $1", bob.id)
    assert rows == []
    await job_runner.run_next(make_worker())  # alice's own import, untouched
    listed = await client.get("/api/v1/datasets", headers=bob.headers)
    assert listed.json()["items"] == []


async def test_a_symlink_in_bobs_area_to_alices_upload_is_refused(
    client, db, alice, bob, settings
) -> None:
    created = await alices_upload(client, alice)
    target = Path(settings.data_dir) / created["output_path"] / "pump7.csv"
    own = upload_area(settings, bob) / "own"
    own.mkdir(parents=True)
    (own / "pump7.csv").symlink_to(target.resolve())
    for path in (f"uploads/{bob.id}/own", f"uploads/{bob.id}/own/pump7.csv"):
        response = await import_path(client, bob, path)
        assert response.status_code == 400, path
    assert (
        await fetch(db, "SELECT id FROM experiments.dataset_imports WHERE owner_id = $1", bob.id)
        == []
    )


async def test_alice_imports_her_own_upload_again_by_its_path(
    client, alice, settings, make_worker
) -> None:
    created = await alices_upload(client, alice)
    await job_runner.run_next(make_worker())
    response = await import_path(client, alice, created["output_path"], name="again")
    assert response.status_code == 202, response.text
    await job_runner.run_next(make_worker())
    done = await job(client, alice, "dataset-imports", response.json()["id"])
    assert (done["status"], done["num_signals"]) == ("completed", 2)
    signals = await signals_of(client, alice, done["dataset_id"])
    assert {s["signal_id"] for s in signals} == {"secret-1", "secret-2"}
    # an import by path owns no files: failing or deleting it leaves the upload in place
    assert (Path(settings.data_dir) / created["output_path"] / "pump7.csv").exists()
