"""Artifacts and projects through the SDK against the stack: ``init(project=...)`` finds or
creates the project; ``log_artifact``/``log_artifacts`` copy the files into the run's log at once
and upload them in the background; an offline run's artifacts go up with ``runyard sync``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import runyard

from .conftest import runyard as runyard_cli

pytestmark = pytest.mark.sdk


def artifacts(server: httpx.Client, experiment_id: str) -> dict[str, bytes]:
    listed = server.get(f"/experiments/{experiment_id}/artifacts")
    assert listed.status_code == 200, listed.text
    found = {}
    for item in listed.json()["items"]:
        got = server.get(f"/experiments/{experiment_id}/artifacts/{item['path']}")
        assert got.status_code == 200, got.text
        found[item["path"]] = got.content
        # HEAD through the gateway: the download's headers, its length kept, no bytes
        head = server.head(f"/experiments/{experiment_id}/artifacts/{item['path']}")
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(got.content))
        assert head.headers["etag"] == got.headers["etag"]
    return found


def test_artifacts_and_a_project_of_an_online_run(
    sdk_env: dict[str, str], server: httpx.Client, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"epoch-1 weights")
    plots = tmp_path / "plots"
    (plots / "val").mkdir(parents=True)
    (plots / "loss.png").write_bytes(b"\x89PNG loss")
    (plots / "val" / "acc.png").write_bytes(b"\x89PNG acc")

    with runyard.init(name="with artifacts", project="sdk-project") as run:
        run.log({"train_loss": 1.0})
        run.log_artifact(checkpoint, artifact_path="checkpoints")
        checkpoint.write_bytes(b"overwritten after logging")  # the logged copy counts
        run.log_artifacts(plots, artifact_path="plots")
    with runyard.init(name="same project", project="sdk-project") as second:
        second.log({"train_loss": 2.0})

    assert artifacts(server, str(run.id)) == {
        "checkpoints/model.ckpt": b"epoch-1 weights",
        "plots/loss.png": b"\x89PNG loss",
        "plots/val/acc.png": b"\x89PNG acc",
    }
    first = server.get(f"/experiments/{run.id}").json()
    other = server.get(f"/experiments/{second.id}").json()
    project = server.get(f"/projects/{first['project_id']}").json()
    assert project["name"] == "sdk-project"
    assert other["project_id"] == project["id"]
    # nothing is left in the run's log directory once uploaded
    assert not list(Path(sdk_env["RUNYARD_DIR"]).rglob("artifacts/*"))


def test_an_offline_runs_artifacts_go_up_with_sync(
    sdk_env: dict[str, str], server: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNYARD_MODE", "offline")
    report = tmp_path / "report.txt"
    report.write_text("confusion matrix")
    with runyard.init(name="offline artifacts", project="sdk-offline") as run:
        run.log({"train_loss": 0.5})
        run.log_artifact(report)
    assert run.id is None
    synced = runyard_cli(sdk_env, "sync")
    assert synced.returncode == 0, synced.stderr
    page = server.get("/experiments", params={"filter": "name = 'offline artifacts'"}).json()
    (experiment,) = page["items"]
    assert artifacts(server, experiment["id"]) == {"report.txt": b"confusion matrix"}
    project = server.get(f"/projects/{experiment['project_id']}").json()
    assert project["name"] == "sdk-offline"
