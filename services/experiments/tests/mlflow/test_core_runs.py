"""MLflow runs on Runyard experiments: create (running), get, update through the lifecycle
(events), soft delete and restore, write-once params, tags, inputs and outputs, access."""

from __future__ import annotations

import json
import uuid

from services.experiments.tests.experiments_helpers import event_types, fetch, outbox


async def test_a_run_is_created_running_and_finishes_through_the_lifecycle(
    mlflow, client, db, alice
) -> None:
    experiment_id = await mlflow.new_experiment(alice, "vision")
    run = await mlflow.new_run(
        alice,
        experiment_id,
        user_id="ignored",
        tags=[
            {"key": "mlflow.source.name", "value": "train.py"},
            {"key": "mlflow.user", "value": "ada"},
        ],
        run_name="first",
    )
    info = run["info"]
    run_id = info["run_id"]
    assert len(run_id) == 32 and info["run_uuid"] == run_id
    assert info["experiment_id"] == experiment_id
    assert (info["status"], info["lifecycle_stage"], info["run_name"]) == (
        "RUNNING",
        "active",
        "first",
    )
    assert (info["user_id"], info["start_time"]) == ("ada", 1_700_000_000_000)
    assert "end_time" not in info
    assert info["artifact_uri"] == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    assert {t["key"]: t["value"] for t in run["data"]["tags"]} == {
        "mlflow.source.name": "train.py",
        "mlflow.runName": "first",
        "mlflow.user": "ada",
    }
    # the Runyard experiment behind it, in the project, running
    native = await client.get(f"/api/v1/experiments/{uuid.UUID(run_id)}", headers=alice.headers)
    assert native.status_code == 200
    assert (native.json()["status"], native.json()["project_id"]) == ("running", experiment_id)

    # same run name again: allowed in MLflow, a suffixed Runyard name
    second = await mlflow.new_run(alice, experiment_id, run_name="first")
    assert second["info"]["run_name"] == "first"
    rows = await fetch(db, "SELECT name FROM experiments.experiments ORDER BY created_at")
    assert [r["name"] for r in rows] == ["first", f"first-{second['info']['run_id'][:8]}"]

    updated = await mlflow.ok(
        alice,
        "runs/update",
        {"run_id": run_id, "status": "FINISHED", "end_time": 1_700_000_060_000},
    )
    assert updated["run_info"]["status"] == "FINISHED"
    assert updated["run_info"]["end_time"] == 1_700_000_060_000
    # the same status again changes nothing; another end is refused, as is running again
    await mlflow.ok(alice, "runs/update", {"run_id": run_id, "status": "FINISHED"})
    assert await mlflow.error(alice, "runs/update", {"run_id": run_id, "status": "RUNNING"}) == (
        400,
        "INVALID_STATE",
    )
    assert await mlflow.error(alice, "runs/update", {"run_id": run_id, "status": "KILLED"}) == (
        400,
        "INVALID_STATE",
    )
    await mlflow.ok(alice, "runs/update", {"run_id": second["info"]["run_id"], "status": "KILLED"})

    types = await event_types(db)
    assert types.count("experiment.completed") == 1
    assert types.count("experiment.cancelled") == 1
    assert types.count("experiment.started") == 2
    completed = next(e for e in await outbox(db) if e["type"] == "experiment.completed")
    assert completed["data"]["experiment_id"] == str(uuid.UUID(run_id))


async def test_runs_in_the_default_experiment_and_rename(mlflow, client, alice) -> None:
    run = await mlflow.new_run(alice, "0", tags=[{"key": "mlflow.runName", "value": "r1"}])
    run_id = run["info"]["run_id"]
    assert (run["info"]["experiment_id"], run["info"]["run_name"]) == ("0", "r1")
    # runs/create without a name gets a generated one
    unnamed = await mlflow.new_run(alice, "0")
    assert unnamed["info"]["run_name"]
    assert await mlflow.error(
        alice,
        "runs/create",
        {"experiment_id": "0", "run_name": "a", "tags": [{"key": "mlflow.runName", "value": "b"}]},
    ) == (400, "INVALID_PARAMETER_VALUE")
    await mlflow.ok(alice, "runs/update", {"run_id": run_id, "run_name": "renamed"})
    got = await mlflow.get_run(alice, run_id)
    assert got["info"]["run_name"] == "renamed"
    assert {"key": "mlflow.runName", "value": "renamed"} in got["data"]["tags"]
    # the Runyard name stays what the run was created with
    native = await client.get(f"/api/v1/experiments/{uuid.UUID(run_id)}", headers=alice.headers)
    assert native.json()["name"] == "r1"
    # the run_uuid spelling and the dashed id are the same run
    by_uuid = await mlflow.ok(alice, "runs/get", params={"run_uuid": str(uuid.UUID(run_id))})
    assert by_uuid["run"]["info"]["run_id"] == run_id


async def test_soft_delete_and_restore_hide_the_run_from_runyard_lists(
    mlflow, client, db, alice
) -> None:
    run_id = (await mlflow.new_run(alice, "0", run_name="doomed"))["info"]["run_id"]
    await mlflow.ok(alice, "runs/delete", {"run_id": run_id})
    got = await mlflow.get_run(alice, run_id)
    assert got["info"]["lifecycle_stage"] == "deleted"
    listed = await client.get("/api/v1/experiments", headers=alice.headers)
    assert listed.json()["items"] == []
    # by id it still reads
    native = await client.get(f"/api/v1/experiments/{uuid.UUID(run_id)}", headers=alice.headers)
    assert native.status_code == 200
    # a deleted run takes nothing
    assert await mlflow.error(
        alice, "runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"}
    ) == (400, "INVALID_PARAMETER_VALUE")
    await mlflow.ok(alice, "runs/delete", {"run_id": run_id})
    await mlflow.ok(alice, "runs/restore", {"run_id": run_id})
    assert (await mlflow.get_run(alice, run_id))["info"]["lifecycle_stage"] == "active"
    listed = await client.get("/api/v1/experiments", headers=alice.headers)
    assert [e["name"] for e in listed.json()["items"]] == ["doomed"]
    await mlflow.ok(alice, "runs/restore", {"run_id": run_id})
    types = await event_types(db)
    assert types.count("experiment.deleted") == 1
    assert types.count("experiment.restored") == 1


async def test_params_are_write_once_and_tags_can_be_set_and_deleted(mlflow, db, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    await mlflow.ok(alice, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})
    await mlflow.ok(alice, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})
    assert await mlflow.error(
        alice, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.2"}
    ) == (400, "INVALID_PARAMETER_VALUE")
    await mlflow.ok(alice, "runs/set-tag", {"run_uuid": run_id, "key": "stage", "value": "a"})
    await mlflow.ok(alice, "runs/set-tag", {"run_id": run_id, "key": "stage", "value": "b"})
    await mlflow.ok(alice, "runs/set-tag", {"run_id": run_id, "key": "gone", "value": "x"})
    await mlflow.ok(alice, "runs/delete-tag", {"run_id": run_id, "key": "gone"})
    assert await mlflow.error(alice, "runs/delete-tag", {"run_id": run_id, "key": "gone"}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    data = (await mlflow.get_run(alice, run_id))["data"]
    assert data["params"] == [{"key": "lr", "value": "0.1"}]
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert tags["stage"] == "b" and "gone" not in tags
    rows = await fetch(
        db,
        "SELECT hyperparameters, kv_tags FROM experiments.experiments WHERE id = $1",
        uuid.UUID(run_id),
    )
    assert '"lr": "0.1"' in rows[0]["hyperparameters"]
    assert '"stage": "b"' in rows[0]["kv_tags"]


async def test_inputs_and_outputs_are_kept_once(mlflow, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    dataset = {
        "tags": [{"key": "mlflow.data.context", "value": "train"}],
        "dataset": {
            "name": "iris",
            "digest": "abc123",
            "source_type": "local",
            "source": '{"uri": "/data/iris.csv"}',
            "schema": '{"mlflow_colspec": []}',
        },
    }
    body = {"run_id": run_id, "datasets": [dataset], "models": [{"model_id": "m-1"}]}
    await mlflow.ok(alice, "runs/log-inputs", body)
    await mlflow.ok(alice, "runs/log-inputs", body)
    await mlflow.ok(
        alice, "runs/outputs", {"run_id": run_id, "models": [{"model_id": "m-2", "step": 3}]}
    )
    run = await mlflow.get_run(alice, run_id)
    assert run["inputs"]["dataset_inputs"] == [dataset]
    assert run["inputs"]["model_inputs"] == [{"model_id": "m-1"}]
    assert run["outputs"]["model_outputs"] == [{"model_id": "m-2", "step": 3}]


async def test_another_users_run_does_not_exist_and_random_ids_are_404(mlflow, alice, bob) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    assert await mlflow.error(bob, "runs/get", params={"run_id": run_id}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert await mlflow.error(
        bob, "runs/log-metric", {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}
    ) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert await mlflow.error(alice, "runs/get", params={"run_id": uuid.uuid4().hex}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert await mlflow.error(alice, "runs/get", params={"run_id": "not-a-run"}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert await mlflow.error(alice, "runs/create", {"experiment_id": str(uuid.uuid4())}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # bob's run in bob's Default experiment is not alice's
    await mlflow.new_run(bob, "0")
    found = await mlflow.ok(alice, "runs/search", {"experiment_ids": ["0"]})
    assert [r["info"]["run_id"] for r in found["runs"]] == [run_id]
    assert (await mlflow.ajax.get_run(alice, run_id))["info"]["run_id"] == run_id


async def test_log_model_appends_to_the_model_history_tag(mlflow, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    model = {"artifact_path": "model", "flavors": {"sklearn": {}}, "utc_time_created": "t"}
    for path in ("model", "model2"):
        body = {**model, "artifact_path": path, "run_id": run_id}
        await mlflow.ok(alice, "runs/log-model", {"run_id": run_id, "model_json": json.dumps(body)})
    assert await mlflow.error(
        alice, "runs/log-model", {"run_id": run_id, "model_json": json.dumps(model)}
    ) == (400, "INVALID_PARAMETER_VALUE")
    tags = {t["key"]: t["value"] for t in (await mlflow.get_run(alice, run_id))["data"]["tags"]}
    history = json.loads(tags["mlflow.log-model.history"])
    assert [m["artifact_path"] for m in history] == ["model", "model2"]


async def test_a_runyard_experiment_is_a_run_with_its_final_metrics(mlflow, client, alice) -> None:
    created = await client.post(
        "/api/v1/experiments",
        json={"name": "native", "hyperparameters": {"lr": 0.001, "arch": "cnn"}},
        headers=alice.headers,
    )
    experiment_id = created.json()["id"]
    runs = {"runs": [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}]}
    logged = await client.post(
        f"/api/v1/experiments/{experiment_id}/runs", json=runs, headers=alice.headers
    )
    assert logged.status_code == 201, logged.text
    done = await client.post(
        f"/api/v1/experiments/{experiment_id}/complete",
        json={"final_metrics": {"test_acc": 0.9}},
        headers=alice.headers,
    )
    assert done.status_code == 200, done.text
    run = await mlflow.get_run(alice, uuid.UUID(experiment_id).hex)
    assert (run["info"]["status"], run["info"]["experiment_id"]) == ("FINISHED", "0")
    assert run["data"]["params"] == [
        {"key": "arch", "value": "cnn"},
        {"key": "lr", "value": "0.001"},
    ]
    metrics = {m["key"]: (m["value"], m["step"]) for m in run["data"]["metrics"]}
    assert metrics == {"train_loss": (0.25, 2), "test_acc": (0.9, 0)}
