"""Moves one run's write-ahead log to the server, a batch or an operation at a time.

Used by the background sender of a live run and by ``runyard sync`` alike. The server takes an
epoch idempotently per (experiment, epoch): the same epoch sent again with the same values changes
nothing, so everything after the acknowledged offset may be sent again after any failure.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from runyard.sdk.api import Api, ApiError, AuthError, NotFound, RunyardError
from runyard.sdk.config import Settings
from runyard.sdk.wal import Line, RunDir

TERMINAL = ("completed", "failed", "cancelled")
TARGET = {"complete": "completed", "fail": "failed", "cancel": "cancelled"}
RUN_ID_KEY = "runyard.run_id"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


class Blocked(RunyardError):
    """No retry can get this run's log through (a refused key, a deleted or finished
    experiment). Sending stops; the log stays on disk for ``runyard sync``."""


@dataclass
class Stats:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


def quote_filter(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def resolve_dataset(api: Api, dataset: str) -> str:
    """A dataset id as it is, else the id of the caller's dataset with that name (created when
    there is none)."""
    if is_uuid(dataset):
        return dataset
    for item in api.pages("/datasets"):
        if item.get("name") == dataset:
            return str(item["id"])
    return str(api.post("/datasets", {"name": dataset})["id"])


def resolve_project(api: Api, project: str) -> str:
    """A project id as it is, else the id of the caller's project with that name (created when
    there is none; a deleted one is left for the server to refuse)."""
    if is_uuid(project):
        return project
    for attempt in range(2):
        page = api.get("/projects", name=project, lifecycle_stage="all", limit=1)
        if page["items"]:
            return str(page["items"][0]["id"])
        try:
            return str(api.post("/projects", {"name": project})["id"])
        except ApiError as exc:
            if exc.status != 409 or attempt:  # 409: created meanwhile by another run
                raise
    raise Blocked(f"cannot find or create the project {project!r}")


def _own_experiment(api: Api, name: str, run_id: str) -> dict[str, Any] | None:
    """The experiment called ``name`` that this run created before (its create request got
    through but the answer was lost)."""
    page = api.get("/experiments", filter=f"name = {quote_filter(name)}", limit=5)
    for item in page["items"]:
        if (item.get("config") or {}).get(RUN_ID_KEY) == run_id:
            return dict(item)
    return None


def create_experiment(
    api: Api, body: Mapping[str, Any], dataset: str | None, project: str | None = None
) -> dict[str, Any]:
    """Create and start the experiment. A name already taken gets `` (2)``, `` (3)`` ... unless
    the experiment holding it is this very run's (a repeated create)."""
    request = dict(body)
    if dataset:
        request["dataset_id"] = resolve_dataset(api, dataset)
    if project:
        request["project"] = resolve_project(api, project)
    run_id = str((request.get("config") or {}).get(RUN_ID_KEY, ""))
    name = str(request["name"])
    for number in range(2, 1000):
        try:
            experiment: dict[str, Any] = api.post("/experiments", request)
            break
        except ApiError as exc:
            if exc.status != 409 or exc.problem.get("field") != "name":
                raise
            own = _own_experiment(api, str(request["name"]), run_id) if run_id else None
            if own is not None:
                experiment = own
                break
            request["name"] = f"{name} ({number})"
    else:
        raise Blocked(f"too many experiments are named {name!r}")
    if experiment.get("status") == "pending":
        try:
            experiment = api.post(f"/experiments/{experiment['id']}/start")
        except ApiError as exc:
            if exc.status != 409:
                raise
    return experiment


def new_meta(
    settings: Settings, *, experiment_id: str | None, create: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "version": 1,
        "local_id": str(uuid.uuid4()) if create is None else create["config"][RUN_ID_KEY],
        "experiment_id": experiment_id,
        "create": create,
        "url": settings.url,
        "mode": settings.mode,
        "host": socket.gethostname(),
        "pid": None,
    }


class Uploader:
    def __init__(self, api: Api, run: RunDir, settings: Settings) -> None:
        self.api, self.run, self.settings = api, run, settings
        self.meta = run.read_meta()
        self.acked = run.acked()
        self.stats = Stats()
        self.ended: str | None = None  # the status the end operation left on the server
        self.problems: list[str] = []  # refusals reported (rejected lines and operations)

    @property
    def experiment_id(self) -> str | None:
        value = self.meta.get("experiment_id")
        return str(value) if value else None

    def ensure_experiment(self) -> str:
        if self.experiment_id:
            return self.experiment_id
        create = self.meta.get("create")
        if not create:
            raise Blocked(f"{self.run.path}: no experiment id and nothing to create it with")
        try:
            experiment = create_experiment(
                self.api, create["body"], create.get("dataset"), create.get("project")
            )
        except (AuthError, NotFound, ApiError) as exc:
            raise Blocked(f"cannot create the experiment: {exc}") from exc
        self.meta["experiment_id"] = str(experiment["id"])
        self.meta["name"] = experiment["name"]
        self.run.write_meta(self.meta)
        return str(experiment["id"])

    def pending(self) -> bool:
        return self.run.size() > self.acked or not self.experiment_id

    def step(self, until: int | None = None) -> bool:
        """Send the next batch of epochs (up to the next operation) or the next operation, of
        the log up to the offset ``until`` (all of it: None). False when the server has all of
        that. Raises ``Transient`` or ``Blocked``."""
        experiment_id = self.ensure_experiment()
        budget = self.settings.batch_bytes
        if until is not None:
            budget = min(budget, until - self.acked)
            if budget <= 0:
                return False
        lines = self.run.read(self.acked, max_bytes=budget, max_lines=self.settings.batch_size)
        if not lines:
            return False
        if lines[0].epoch is None:
            self._operation(experiment_id, lines[0])
            batch = lines[:1]
        else:
            batch = []
            for line in lines:
                if line.epoch is None or len(batch) >= self.settings.batch_size:
                    break
                batch.append(line)
            self._send_runs(experiment_id, batch)
        self.acked = batch[-1].end
        self.run.set_acked(self.acked)
        return True

    def drain(self) -> None:
        while self.step():
            pass

    # ------------------------------------------------------------------------------- epochs
    def _send_runs(self, experiment_id: str, lines: list[Line]) -> None:
        latest: dict[int, bytes] = {}
        for line in lines:  # one epoch at most once per request: its latest line counts
            latest[line.epoch or 0] = line.data
        chunk = list(latest.values())
        try:
            result = self.api.request(
                "POST",
                f"/experiments/{experiment_id}/runs",
                content=b'{"runs":[' + b",".join(chunk) + b"]}",
            )
        except AuthError as exc:
            raise Blocked(f"the server refused the epochs: {exc}") from exc
        except NotFound as exc:
            raise Blocked(f"experiment {experiment_id} is gone (deleted?): {exc}") from exc
        except ApiError as exc:
            if exc.status == 409:
                raise Blocked(
                    f"experiment {experiment_id} is {exc.current_status or 'finished'}: "
                    "it takes no more epochs"
                ) from exc
            if exc.status not in (413, 422):
                raise Blocked(f"the server refused the epochs: {exc}") from exc
            self._isolate(experiment_id, chunk, exc)
            return
        self.stats.inserted += int(result.get("inserted", 0))
        self.stats.updated += int(result.get("updated", 0))
        self.stats.unchanged += int(result.get("unchanged", 0))

    def _isolate(self, experiment_id: str, chunk: list[bytes], exc: ApiError) -> None:
        """Find the epochs the server refuses, keep them aside, send the others."""
        bad: set[int] = set()
        for error in exc.problem.get("errors") or []:
            loc = error.get("loc") if isinstance(error, dict) else None
            if (
                isinstance(loc, list)
                and len(loc) > 2
                and loc[:2] == ["body", "runs"]
                and isinstance(loc[2], int)
                and 0 <= loc[2] < len(chunk)
            ):
                bad.add(loc[2])
        if exc.status == 422 and bad:
            for index in sorted(bad):
                self._reject(chunk[index], exc.one_line())
            rest = [line for i, line in enumerate(chunk) if i not in bad]
        elif len(chunk) == 1:
            self._reject(chunk[0], exc.one_line())
            rest = []
        else:
            half = len(chunk) // 2
            self._send_lines(experiment_id, chunk[:half])
            rest = chunk[half:]
        if rest:
            self._send_lines(experiment_id, rest)

    def _send_lines(self, experiment_id: str, chunk: list[bytes]) -> None:
        self._send_runs(experiment_id, [Line(0, 0, data) for data in chunk])

    def _reject(self, line: bytes, reason: str) -> None:
        self.run.reject(line, reason)
        self.stats.rejected += 1
        self.problems.append(f"refused {line[:120].decode('utf-8', 'replace')}: {reason}")

    # --------------------------------------------------------------------------- operations
    def _operation(self, experiment_id: str, line: Line) -> None:
        try:
            op = json.loads(line.data)
            kind = op["op"]
        except (ValueError, KeyError, TypeError):
            self._reject(line.data, "not a record this client can read")
            return
        base = f"/experiments/{experiment_id}"
        try:
            if kind in ("tag", "untag"):
                method = "PUT" if kind == "tag" else "DELETE"
                self.api.request(method, f"{base}/tags/{quote(str(op['tag']), safe='')}")
            elif kind == "update":
                self.api.request("PATCH", base, json=op["body"])
            elif kind == "artifact":
                self._artifact(base, line, op)
            elif kind == "end":
                self._end(base, str(op["action"]), op.get("body") or {})
            else:
                self._reject(line.data, f"unknown operation {kind!r}")
        except (AuthError, NotFound) as exc:
            raise Blocked(f"the server refused {kind}: {exc}") from exc
        except ApiError as exc:
            self._reject(line.data, exc.one_line())

    def _artifact(self, base: str, line: Line, op: dict[str, Any]) -> None:
        """Upload the copy ``log_artifact`` made; it goes once the server has it. A file the
        server refuses for good (too large, over quota, a bad path) is kept and reported."""
        staged = self.run.artifact_copy(str(op["file"]))
        if not staged.is_file():
            self._reject(line.data, f"the copy {staged} is gone")
            return
        with open(staged, "rb") as file:
            self.api.upload(
                f"{base}/artifacts/{quote(str(op['path']), safe='/')}",
                file,
                content_type=op.get("content_type"),
            )
        staged.unlink(missing_ok=True)

    def _end(self, base: str, action: str, body: dict[str, Any]) -> None:
        target = TARGET[action]
        try:
            self.api.post(f"{base}/{action}", body)
        except ApiError as exc:
            current = exc.current_status
            if exc.status != 409 or current not in TERMINAL:
                raise
            if current != target:
                self.problems.append(f"the experiment was already {current}; left {current}")
            self.ended = current
            return
        self.ended = target
