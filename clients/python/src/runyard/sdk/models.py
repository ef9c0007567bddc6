"""The model registry from Python: register a version from a run's artifact, move aliases, and
log a version's predictions durably.

``register_model``, ``set_alias``, ``delete_alias``, ``get_model_version`` call the API at once
(retrying a network error a few times) and raise ``ApiError`` for a refusal.

``log_predictions`` works like ``Run.log``: it validates, appends one line per prediction to a
local write-ahead log (``$RUNYARD_DIR/predictions/<id>/``, the same files as a run's: ``meta.json``
naming the model and version, ``wal.jsonl``, ``acked``, ``sending``, ``lock``,
``rejected.jsonl``) and returns.
A background thread sends what follows the acknowledged offset in batches of up to 1,000
(``POST /models/{name}/versions/{v}/predictions``, all stored or none), retrying with backoff
through an outage. A process that dies leaves its log behind: the next process that logs
predictions to the same server with the same API key, or ``flush_predictions()``, adopts it (its
lock is free) and sends the rest. A prediction's ``time`` is set when it is logged, not when
it is sent.

Delivery is **exactly once**: before a batch is first sent, its byte range in ``wal.jsonl`` is
written to ``sending``, and every send of it carries the same ``Idempotency-Key`` (the log's id,
that range and the body's digest). A retry after a lost answer (a timeout after the server's
commit, or the process killed between the answer and writing ``acked``), by this process or by
the one that adopts the log, sends the same lines with the same key: the server, which stored
the key with the rows, answers like the first time and stores nothing again.

A batch the server refuses (422) is retried without the prediction it names, which goes to
``rejected.jsonl`` with the reason (kept when the rest of the log is removed); a 404/409/403
(no such version, archived, no write access) rejects the whole batch; a 401 stops sending (the
log stays on disk).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runyard.sdk import output
from runyard.sdk.api import Api, ApiError, AuthError, NotFound, RunyardError, Transient, retrying
from runyard.sdk.config import Settings
from runyard.sdk.sender import BACKOFF_MAX, backoff
from runyard.sdk.upload import is_uuid
from runyard.sdk.wal import Line, RunDir, Writer

#: predictions per request (the server takes up to 10,000)
BATCH_SIZE = 1000
#: the file of a log's batch in flight: ``"<start> <end>"`` byte offsets in ``wal.jsonl``
SENDING = "sending"
IDEMPOTENCY_KEY = "Idempotency-Key"
FIELDS = frozenset(("input", "output", "confidence", "latency_ms", "time", "error"))


def _api(url: str | None, api_key: str | None) -> tuple[Settings, Api]:
    settings = Settings.load(url=url, api_key=api_key, mode="online")
    return settings, Api(settings.url, settings.api_key, settings.timeout)


def _model_path(name: str) -> str:
    return f"/models/{quote(name, safe='')}"


def find_model(api: Api, name: str) -> dict[str, Any] | None:
    """The caller's registered model with exactly this name (or this id); None if none."""
    if is_uuid(name):
        try:
            found: dict[str, Any] = retrying(lambda: api.get(f"/models/{name}"))
            return found
        except NotFound:
            pass
    page = retrying(lambda: api.get("/models", name=name, limit=1))
    return dict(page["items"][0]) if page["items"] else None


def model_of(api: Api, name: str) -> dict[str, Any]:
    found = find_model(api, name)
    if found is None:
        raise RunyardError(f"no registered model {name!r}")
    return found


def _experiment_id(run: Any) -> str:
    """A Run's experiment id (after sending its log, so its artifacts are on the server), or an
    experiment id as given."""
    if isinstance(run, str):
        if not is_uuid(run):
            raise ValueError(f"run must be a Run or an experiment id, got {run!r}")
        return run
    flush = getattr(run, "flush", None)
    if callable(flush):
        flush()
    experiment_id = getattr(run, "id", None)
    if not experiment_id:
        raise RunyardError(
            "the run is not on the server yet (offline, or the server was unreachable): "
            "register the model once it is synced"
        )
    return str(experiment_id)


def register_model(
    run: Any,
    artifact_path: str,
    name: str,
    *,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    input_schema: Mapping[str, Any] | None = None,
    output_schema: Mapping[str, Any] | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """A new version of the registered model ``name`` (created if you have none by that name)
    made from the artifact ``artifact_path`` (a file or a directory) of ``run``: a ``Run`` (its
    unsent log is sent first, so its artifacts are there) or an experiment id. Returns the version
    (``version``, ``status``: ``ready``, or ``pending`` while the artifact is not uploaded yet,
    ``size``, ``sha256``, ``experiment_id``...)."""
    experiment_id = _experiment_id(run)
    _, api = _api(url, api_key)
    with api:
        model = find_model(api, name)
        if model is None:
            try:
                model = retrying(lambda: api.post("/models", {"name": name}))
            except ApiError as exc:
                if exc.status != 409:  # created meanwhile by someone else
                    raise
                model = model_of(api, name)
        assert model is not None
        body: dict[str, Any] = {"experiment_id": experiment_id, "artifact_path": artifact_path}
        for key, value in (
            ("description", description),
            ("tags", dict(tags) if tags else None),
            ("input_schema", dict(input_schema) if input_schema is not None else None),
            ("output_schema", dict(output_schema) if output_schema is not None else None),
        ):
            if value is not None:
                body[key] = value
        version: dict[str, Any] = api.post(f"/models/{model['id']}/versions", body)
        return version


def set_alias(
    name: str, alias: str, version: int, *, url: str | None = None, api_key: str | None = None
) -> dict[str, Any]:
    """Point ``alias`` of the model at ``version`` (creating or moving it, in one change).
    Returns ``{"alias", "version", "previous_version"}``."""
    _, api = _api(url, api_key)
    with api:
        model = model_of(api, name)
        path = f"/models/{model['id']}/aliases/{quote(alias, safe='')}"
        answer: dict[str, Any] = retrying(
            lambda: api.request("PUT", path, json={"version": int(version)})
        )
        return answer


def delete_alias(
    name: str, alias: str, *, url: str | None = None, api_key: str | None = None
) -> None:
    """Remove ``alias`` from the model (``NotFound`` if it has no such alias)."""
    _, api = _api(url, api_key)
    with api:
        model = model_of(api, name)
        retrying(
            lambda: api.request("DELETE", f"/models/{model['id']}/aliases/{quote(alias, safe='')}")
        )


def get_model_version(
    name: str, version: int | str, *, url: str | None = None, api_key: str | None = None
) -> dict[str, Any]:
    """A version by its number, or by an alias (``"champion"``)."""
    _, api = _api(url, api_key)
    with api:
        model = model_of(api, name)
        if isinstance(version, int) or str(version).isdigit():
            path = f"/models/{model['id']}/versions/{int(version)}"
        else:
            path = f"/models/{model['id']}/aliases/{quote(str(version), safe='')}"
        found: dict[str, Any] = retrying(lambda: api.get(path))
        return found


# ------------------------------------------------------------------------ the prediction log
def encode_prediction(prediction: Mapping[str, Any], now: datetime) -> bytes:
    """One prediction as the server's ``PredictionIn``, one JSON line; ``ValueError`` names what
    is wrong (nothing is logged then)."""
    if not isinstance(prediction, Mapping):
        raise ValueError(f"a prediction is a mapping, got {type(prediction).__name__}")
    unknown = set(prediction) - FIELDS
    if unknown:
        raise ValueError(f"unknown prediction fields {sorted(unknown)}: use {sorted(FIELDS)}")
    if "input" not in prediction:
        raise ValueError("a prediction needs its input")
    body = dict(prediction)
    try:
        latency = float(body["latency_ms"])
    except KeyError:
        raise ValueError("a prediction needs latency_ms") from None
    except (TypeError, ValueError):
        raise ValueError(f"latency_ms {body['latency_ms']!r} is not a number") from None
    if not (latency >= 0 and math.isfinite(latency)):
        raise ValueError(f"latency_ms {latency} is not a number >= 0")
    body["latency_ms"] = latency
    confidence = body.get("confidence")
    if confidence is not None:
        confidence = float(confidence)
        if not 0 <= confidence <= 1:
            raise ValueError(f"confidence {confidence} is not between 0 and 1")
        body["confidence"] = confidence
    moment = body.get("time")
    if moment is None:
        body["time"] = now.isoformat()
    elif isinstance(moment, datetime):
        body["time"] = (
            moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        ).isoformat()
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError as exc:
        raise ValueError(f"the prediction is not JSON: {exc}") from None
    return (text + "\n").encode()


class Stream:
    """One (model, version) log: written by this process (``writer``) or adopted from a process
    that is gone (``writer`` is None)."""

    def __init__(self, run_dir: RunDir, lock: Any, writer: Writer | None) -> None:
        self.dir = run_dir
        self.lock = lock
        self.writer = writer
        meta = run_dir.read_meta()
        self.model, self.version = str(meta["model"]), int(meta["version"])
        self.acked = run_dir.acked()
        self.blocked: str | None = None

    def written(self) -> int:
        return self.writer.offset if self.writer is not None else self.dir.size()

    def pending(self) -> bool:
        return self.blocked is None and self.acked < self.written()


class PredictionLog:
    """Every prediction stream of this process to one server, and the thread that sends them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.home / "predictions"
        #: names the API key without keeping it: a log is adopted only with the key that wrote it
        self.key_id = hashlib.sha256((settings.api_key or "").encode()).hexdigest()[:16]
        self.api = Api(settings.url, settings.api_key, settings.timeout)
        self.streams: dict[tuple[str, int], Stream] = {}
        self.adopted: list[Stream] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._stopping = False
        self.failing: str | None = None
        self.failures = 0
        self._since_kick = 0
        self._thread = threading.Thread(target=self._loop, name="runyard-predictions", daemon=True)
        self._adopt()
        self._thread.start()

    # ------------------------------------------------------------------------------ writing
    def append(self, model: str, version: int, lines: list[bytes]) -> None:
        with self._lock:
            stream = self.streams.get((model, version))
            if stream is None:
                stream = self._open(model, version)
            assert stream.writer is not None
            stream.writer.append(b"".join(lines))
            self._since_kick += len(lines)
            kick = self._since_kick >= BATCH_SIZE
            if kick:
                self._since_kick = 0
        if kick:  # a full batch waits: send it now (else within batch_seconds)
            self._wake.set()

    def _open(self, model: str, version: int) -> Stream:
        meta = {
            "kind": "predictions",
            "model": model,
            "version": version,
            "url": self.settings.url,
            "key": self.key_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        run_dir = RunDir.create(self.root, str(uuid.uuid4()), meta)
        lock = run_dir.lock()
        stream = Stream(run_dir, lock, Writer(run_dir.wal_path))
        self.streams[(model, version)] = stream
        return stream

    def _adopt(self) -> None:
        """Take over the logs of processes that are gone (their lock is free)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.iterdir()):
            run_dir = RunDir(path)
            try:
                meta = run_dir.read_meta()
            except (OSError, ValueError):
                continue
            mine = meta.get("url") == self.settings.url and meta.get("key") == self.key_id
            if not mine or meta.get("kind") != "predictions":
                continue
            lock = run_dir.lock()
            if lock is None:
                continue
            self.adopted.append(Stream(run_dir, lock, None))

    # ------------------------------------------------------------------------------ sending
    def all_streams(self) -> list[Stream]:
        with self._lock:
            return [*self.streams.values(), *self.adopted]

    def done(self) -> bool:
        return not any(s.pending() for s in self.all_streams())

    def flush(self, timeout: float) -> bool:
        """Wait until the server has every prediction logged so far (at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._progress:
            while not self.done():
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    break
                # no new kick here: the sender's backoff stands (kicked on every failed try's
                # notice, it would retry in a tight loop for as long as the server is down)
                self._progress.wait(min(left, 0.25))
        return self.done()

    def close(self, timeout: float) -> None:
        sent = self.flush(timeout)
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        left = 0
        for stream in self.all_streams():
            if stream.writer is not None:
                stream.writer.sync()
                stream.writer.close()
            if not stream.pending() and stream.blocked is None:
                retire(stream.dir)
            else:
                left += len(stream.dir.read(stream.acked, max_bytes=1 << 62))
            if stream.lock is not None:
                stream.lock.release()
        self.api.close()
        if not sent and left:
            why = f" ({self.failing})" if self.failing else ""
            output.warn(
                f"{left} predictions are not on the server yet{why}; kept in {self.root} and "
                "sent by the next process that logs predictions (or runyard.flush_predictions())"
            )

    def _loop(self) -> None:
        while not self._stopping:
            pause = self._cycle()
            if self._wake.wait(pause):
                self._wake.clear()

    def _cycle(self) -> float:
        try:
            for stream in self.all_streams():
                if stream.writer is not None:
                    stream.writer.sync()
                while not self._stopping and stream.pending():
                    self._send(stream)
                    self._notify()
        except Transient as exc:
            self.failures += 1
            if self.failing is None:
                output.warn(
                    f"{exc}; predictions are kept in {self.root} until the server takes them "
                    "(reported once)"
                )
            self.failing = str(exc)
            self._notify()
            if exc.retry_after is not None:
                return min(exc.retry_after, BACKOFF_MAX)
            return backoff(self.failures)
        except Exception as exc:  # a bug or a full disk must not end the thread silently
            self.failures += 1
            self.failing = f"{type(exc).__name__}: {exc}"
            self._notify()
            return backoff(self.failures)
        if self.failing is not None:
            output.warn("the server is reachable again; the predictions kept meanwhile were sent")
        self.failing, self.failures = None, 0
        self._cleanup_adopted()
        self._notify()
        return self.settings.batch_seconds

    def _send(self, stream: Stream) -> None:
        start = stream.acked
        end = pinned(stream.dir, start)
        lines: list[Line]
        if end is not None:  # the batch sent before (by this process or a dead one): the same
            lines = stream.dir.read(start, max_bytes=end - start)
        else:
            lines = stream.dir.read(
                start, max_bytes=self.settings.batch_bytes, max_lines=BATCH_SIZE
            )
            if lines:
                end = lines[-1].end
                pin(stream.dir, start, end)
        if not lines or end is None:
            stream.acked = end if end is not None else stream.written()  # only blank lines
            return
        path = f"{_model_path(stream.model)}/versions/{stream.version}/predictions"
        batch = list(lines)
        while batch:
            body = b'{"predictions":[' + b",".join(line.data for line in batch) + b"]}"
            try:
                _post(self.api, path, body, batch_key(stream.dir.name, start, end, body))
                break
            except AuthError as exc:
                if exc.status == 401:
                    stream.blocked = exc.one_line()
                    output.warn(f"{exc.one_line()}; predictions stay in {stream.dir.path}")
                    return
                self._reject(stream, batch, exc)
                break
            except ApiError as exc:
                index = _refused_index(exc, len(batch))
                if exc.status == 422 and index is not None:
                    self._reject(stream, [batch.pop(index)], exc)
                    continue
                self._reject(stream, batch, exc)
                break
        stream.acked = lines[-1].end
        stream.dir.set_acked(stream.acked)

    def _reject(self, stream: Stream, lines: list[Line], exc: ApiError) -> None:
        reason = exc.one_line()
        for line in lines:
            stream.dir.reject(line.data, reason)
        output.warn_once(
            f"predictions-rejected-{stream.model}-{stream.version}",
            f"the server refused predictions of {stream.model} v{stream.version}: {reason}; "
            f"kept in {stream.dir.rejected_path}",
        )

    def _cleanup_adopted(self) -> None:
        with self._lock:
            for stream in list(self.adopted):
                if not stream.pending():
                    if stream.blocked is None:
                        retire(stream.dir)
                    if stream.lock is not None:
                        stream.lock.release()
                    self.adopted.remove(stream)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()


def _sending_path(run_dir: RunDir) -> Path:
    return run_dir.path / SENDING


def pin(run_dir: RunDir, start: int, end: int) -> None:
    """Record the batch ``[start, end)`` before it is first sent (atomically): a retry, in this
    process or in the one that adopts the log, sends these lines and no more."""
    path = _sending_path(run_dir)
    tmp = path.with_name(f".{SENDING}.{os.getpid()}.tmp")
    tmp.write_text(f"{start} {end}\n", encoding="ascii")
    os.replace(tmp, path)


def pinned(run_dir: RunDir, start: int) -> int | None:
    """The end of the batch pinned at ``start`` (None: none is, the last one was acknowledged)."""
    try:
        first, end = (int(x) for x in _sending_path(run_dir).read_text().split())
    except (OSError, ValueError):
        return None
    return end if first == start and end > start else None


def batch_key(log: str, start: int, end: int, body: bytes) -> str:
    """The ``Idempotency-Key`` of a batch: the log, the lines' offsets and the body's digest
    (the body differs from the pinned lines only by those the server refused, which it stored
    nothing of), so every send of the same batch has the same key."""
    return f"{log}:{start}-{end}:{hashlib.sha256(body).hexdigest()[:32]}"


def _post(api: Api, path: str, body: bytes, key: str) -> Any:
    """``api.request("POST", ...)`` with the ``Idempotency-Key`` header."""
    return api.request("POST", path, content=body, headers={IDEMPOTENCY_KEY: key})


def retire(run_dir: RunDir) -> None:
    """A log the server has all of: removed, but for the predictions it refused (the directory
    then keeps only ``rejected.jsonl``, and no process adopts it again)."""
    if not run_dir.rejected_path.exists():
        run_dir.remove()
        return
    sending = _sending_path(run_dir)
    for path in (
        run_dir.meta_path,
        run_dir.wal_path,
        run_dir.acked_path,
        run_dir.lock_path,
        sending,
    ):
        with contextlib.suppress(OSError):
            path.unlink()


def _refused_index(exc: ApiError, size: int) -> int | None:
    """The batch index a 422 names (``loc``: ``["body", "predictions", i, ...]``)."""
    for item in exc.problem.get("errors") or []:
        loc = item.get("loc") if isinstance(item, dict) else None
        if isinstance(loc, list) and len(loc) >= 3 and loc[1] == "predictions":
            with contextlib.suppress(TypeError, ValueError):
                index = int(loc[2])
                if 0 <= index < size:
                    return index
    return None


_logs: dict[tuple[str, str | None, str], PredictionLog] = {}
_logs_lock = threading.Lock()


def _log_for(url: str | None, api_key: str | None) -> PredictionLog:
    settings = Settings.load(url=url, api_key=api_key, mode="online")
    key = (settings.url, settings.api_key, str(settings.home))
    with _logs_lock:
        found = _logs.get(key)
        if found is None:
            found = _logs[key] = PredictionLog(settings)
        return found


def log_predictions(
    name: str,
    version: int,
    predictions: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    url: str | None = None,
    api_key: str | None = None,
) -> int:
    """Log one prediction (a mapping) or many of version ``version`` of the model ``name``:
    ``{"input": ..., "output": ..., "confidence": 0.93, "latency_ms": 4.2, "error": None,
    "time": datetime}`` (``input`` and ``latency_ms`` required; ``time`` defaults to now).
    Returns how many were logged once they are on local disk; the background sender does the
    rest (``flush_predictions`` waits for it). ``ValueError`` for an invalid prediction: then
    none of the call's predictions is logged."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive whole number, got {version!r}")
    items = [predictions] if isinstance(predictions, Mapping) else list(predictions)
    now = datetime.now(timezone.utc)
    lines = []
    for index, item in enumerate(items):
        try:
            lines.append(encode_prediction(item, now))
        except ValueError as exc:
            raise ValueError(f"prediction {index}: {exc}") from None
    if lines:
        _log_for(url, api_key).append(name, version, lines)
    return len(lines)


def flush_predictions(
    timeout: float | None = None, *, url: str | None = None, api_key: str | None = None
) -> bool:
    """Wait until the server has every prediction logged so far by this process (and those left
    by processes that died), at most ``timeout`` seconds (default ``RUNYARD_FLUSH_TIMEOUT``).
    True when it has."""
    log = _log_for(url, api_key)
    return log.flush(log.settings.flush_timeout if timeout is None else timeout)


def _at_exit() -> None:
    with _logs_lock:
        logs = list(_logs.values())
        _logs.clear()
    for log in logs:
        log.close(log.settings.flush_timeout)


atexit.register(_at_exit)
