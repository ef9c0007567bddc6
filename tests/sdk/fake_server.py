"""A small real HTTP server in this process that answers the part of ``/api/v1`` the SDK's
sender uses, idempotent per (experiment, epoch) as Runyard is, and fails on demand: 503s, a
response lost after the request was applied, a refused epoch, a refused key."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

GOOD_KEY = "ry_good"
TERMINAL = {"complete": "completed", "fail": "failed", "cancel": "cancelled"}


@dataclass
class Fake:
    url: str = ""
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs_requests: list[int] = field(default_factory=list)  # epochs per POST .../runs
    unchanged: int = 0
    down: bool = False  # every request: 503
    lose_responses: dict[str, int] = field(default_factory=dict)  # "runs"/"create": how many
    poison: str = "poison"  # an epoch with this metric is refused (422 naming its index)
    key: str = GOOD_KEY
    heartbeat_exists: bool = False
    heartbeats: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def runs(self, experiment_id: str) -> dict[int, dict[str, Any]]:
        return dict(self.experiments[experiment_id]["runs"])

    def only(self) -> dict[str, Any]:
        assert len(self.experiments) == 1, list(self.experiments)
        return next(iter(self.experiments.values()))


def problem(status: int, title: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"type": "about:blank", "title": title, "status": status, **extra}


def handle(fake: Fake, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
    """(status, body) or "lose" (apply, then close the connection without an answer)."""
    if fake.down:
        return problem(503, "Service Unavailable")
    match = re.fullmatch(r"/api/v1/experiments(?:/([^/]+))?(?:/([^/]+))?(?:/(.+))?", path)
    if not match:
        return problem(404, "Not Found")
    experiment_id, action, _rest = match.groups()
    if experiment_id is None and method == "POST":
        if any(e["name"] == body["name"] for e in fake.experiments.values()):
            return problem(409, "Conflict", field="name")
        created = {
            "id": str(uuid.uuid4()),
            "name": body["name"],
            "status": "pending",
            "config": body.get("config", {}),
            "total_epochs": 0,
            "runs": {},
            "end": None,
        }
        fake.experiments[created["id"]] = created
        return lose(fake, "create") or (201, public(created))
    if experiment_id is None and method == "GET":
        wanted = re.fullmatch(r"name = '(.*)'", query.get("filter", [""])[0])
        items = [public(e) for e in fake.experiments.values() if wanted and e["name"] == wanted[1]]
        return 200, {"items": items, "next_cursor": None}
    found = fake.experiments.get(str(experiment_id))
    if found is None:
        return problem(404, "Not Found")
    if action == "start":
        found["status"] = "running"
        return 200, public(found)
    if action == "heartbeat":
        fake.heartbeats += 1
        return (200, {}) if fake.heartbeat_exists else problem(404, "Not Found")
    if action in TERMINAL:
        if found["status"] in TERMINAL.values():
            return problem(409, "Conflict", current_status=found["status"])
        found["status"], found["end"] = TERMINAL[action], body
        return 200, public(found)
    if action == "runs":
        return log_runs(fake, found, body.get("runs", [body]))
    if action in ("tags", None):
        return 200, public(found)
    return problem(404, "Not Found")


def log_runs(fake: Fake, found: dict[str, Any], runs: list[dict[str, Any]]) -> Any:
    if found["status"] in TERMINAL.values():
        return problem(409, "Conflict", current_status=found["status"])
    bad = [i for i, r in enumerate(runs) if fake.poison in (r.get("metrics") or {})]
    if bad:
        errors = [
            {"loc": ["body", "runs", i, "metrics"], "msg": "refused", "type": "x"} for i in bad
        ]
        return problem(422, "Validation failed", errors=errors)
    fake.runs_requests.append(len(runs))
    inserted = 0
    for run in runs:
        before = found["runs"].get(run["epoch"])
        if before is None:
            inserted += 1
        elif before == run:
            fake.unchanged += 1
        found["runs"][run["epoch"]] = run
    found["total_epochs"] += inserted
    found["status"] = "running"
    result = {"inserted": inserted, "updated": 0, "unchanged": 0, "received": len(runs)}
    return lose(fake, "runs") or (201 if inserted else 200, result)


def lose(fake: Fake, what: str) -> str | None:
    if fake.lose_responses.get(what, 0) > 0:
        fake.lose_responses[what] -= 1
        return "lose"
    return None


def public(experiment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in experiment.items() if k not in ("runs", "end")}


@contextmanager
def serving() -> Iterator[Fake]:
    fake = Fake()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlparse(self.path)
            if self.headers.get("x-api-key") != fake.key:
                answer: Any = problem(401, "Unauthorized", detail="Invalid API key")
            else:
                with fake.lock:
                    body = json.loads(raw) if raw else {}
                    answer = handle(
                        fake, self.command, unquote(url.path), parse_qs(url.query), body
                    )
            if answer == "lose":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, payload = answer
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
