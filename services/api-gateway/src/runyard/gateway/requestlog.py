"""Request logs and the audit trail, written in batches off the request path.

``RequestLogMiddleware`` measures every ``/api/v1`` and MLflow request (status, sizes, latency,
the first bytes of both bodies) and hands a ``RequestRecord`` to ``RequestLogWriter.submit``,
which never waits: the bounded queue either takes it or the record is dropped and counted
(``runyard_gateway_request_logs_dropped_total``). One background task drains the queue and writes,
per batch and in one transaction: the ``api_request_logs`` rows, a ``system_logs`` row per
state-changing request of an identified caller (both with ``COPY``), and an ``api_key.used``
outbox event per API-key request. A slow or locked database slows only that task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.gateway.mlflow import MLFLOW_PATHS, MLFLOW_PREFIXES
from runyard.gateway.models import api_request_logs, system_logs
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.events import CloudEvent, make_event
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_events, session_source
from runyard.shared.redaction import redact as redact_secrets
from runyard.shared.redaction import redact_text

if TYPE_CHECKING:
    from runyard.gateway.context import GatewayRuntime

log = get_logger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Runyard's API and MLflow's (mlflow.py): paths under these prefixes, and ``MLFLOW_PATHS``
LOGGED_PATHS = ("/api/v1/", *MLFLOW_PREFIXES)

LOGS_WRITTEN = Counter("runyard_gateway_request_logs_written", "Request log rows written")
LOGS_DROPPED = Counter(
    "runyard_gateway_request_logs_dropped",
    "Request log entries dropped: queue full (database too slow) or write failed",
    ["reason"],
)
QUEUE_DEPTH = Gauge("runyard_gateway_request_log_queue", "Request log entries waiting")

_ID_SEGMENT = re.compile(
    r"^(?:[0-9]+|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{24,})$"
)


@functools.lru_cache(maxsize=4096)
def route_of(path: str) -> str:
    """``/api/v1/experiments/<uuid>/runs`` -> ``/api/v1/experiments/{id}/runs``."""
    return "/".join("{id}" if _ID_SEGMENT.match(s) else s for s in path.split("/"))[:512]


def redact(value: Any) -> Any:
    """Secrets removed by key and by value (``runyard.shared.redaction``); NUL characters (which
    PostgreSQL text and jsonb refuse, and which would fail the whole batch) removed."""
    return redact_secrets(_nul_free(value))


def _nul_free(value: Any) -> Any:
    if isinstance(value, dict):
        return {_text_safe(str(k)): _nul_free(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nul_free(v) for v in value]
    if isinstance(value, str):
        return _text_safe(value)
    return value


def _clean(value: str) -> str:
    """One text column: no NUL, no secret."""
    return redact_text(_text_safe(value))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} cannot be stored in jsonb")


def _text_safe(value: str) -> str:
    return value.replace("\x00", "")


def payload_sample(raw: bytes, total: int, content_type: str) -> Any:
    """The body as redacted JSON when it was JSON and fully captured; else a short description."""
    if total == 0:
        return None
    if "json" in content_type and len(raw) == total:
        with contextlib.suppress(ValueError):
            value = json.loads(raw, parse_constant=_refuse_constant)
            if b"\\u0000" not in raw and b"\x00" not in raw:
                # UTF-8 JSON can only hold a NUL as the escape "\u0000" (a raw control
                # character is refused by json.loads): nothing for _nul_free to remove
                return redact_secrets(value)
            return redact(value)
    return {"content_type": content_type or None, "size": total, "sampled": False}


@dataclass
class RequestRecord:
    request_id: str
    request_time: datetime
    method: str
    path: str
    status: int
    latency_ms: float
    request_size: int
    response_size: int
    ip_address: str | None
    user_agent: str | None
    service: str | None
    principal: Principal | None
    request_sample: bytes
    request_content_type: str
    response_sample: bytes
    response_content_type: str


class RequestLogWriter:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        queue_size: int,
        batch_size: int,
        flush_interval_s: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._queue: asyncio.Queue[RequestRecord] = asyncio.Queue(maxsize=max(queue_size, 1))
        self._batch_size = max(batch_size, 1)
        self._interval = flush_interval_s
        self._task: asyncio.Task[None] | None = None
        #: taken from the queue by the writer, waiting for its batch to gather (not yet being
        #: written): written by ``stop`` if the writer is stopped meanwhile
        self._gathering: list[RequestRecord] = []

    def submit(self, record: RequestRecord) -> bool:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            LOGS_DROPPED.labels("queue_full").inc()
            return False
        QUEUE_DEPTH.set(self._queue.qsize())
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, *, drain_timeout_s: float = 5.0) -> None:
        """Stop taking new batches, write what is queued (bounded wait), then end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), timeout=drain_timeout_s)
        left = self._queue.qsize() + len(self._gathering)
        if left:
            LOGS_DROPPED.labels("shutdown").inc(left)

    async def _drain(self) -> None:
        while self._gathering or not self._queue.empty():
            held = self._gathering
            await self.flush([*held, *self._take_batch(self._batch_size - len(held))])
            self._gathering = []

    def _take_batch(self, size: int | None = None) -> list[RequestRecord]:
        batch: list[RequestRecord] = []
        size = self._batch_size if size is None else size
        while len(batch) < size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        QUEUE_DEPTH.set(self._queue.qsize())
        return batch

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            self._gathering = [first]
            if self._queue.qsize() < self._batch_size - 1:
                await asyncio.sleep(self._interval)  # let a batch gather
            batch = [first, *self._take_batch(self._batch_size - 1)]
            self._gathering = []
            try:
                await self.flush(batch)
            except asyncio.CancelledError:
                LOGS_DROPPED.labels("shutdown").inc(len(batch))
                raise
            except Exception as exc:
                log.warning("gateway.request_log.write_failed", error=repr(exc), rows=len(batch))
                await self._write_one_by_one(batch)

    async def _write_one_by_one(self, batch: list[RequestRecord]) -> None:
        """After a failed batch: one entry that the database refuses must not take the others
        with it (while the database is down, every entry fails and is counted)."""
        for record in batch:
            try:
                await self.flush([record])
            except asyncio.CancelledError:
                raise
            except Exception:
                LOGS_DROPPED.labels("write_failed").inc()
                await asyncio.sleep(self._interval / 10)

    async def flush(self, batch: list[RequestRecord]) -> None:
        if not batch:
            return
        texts = [Texts.of(r) for r in batch]
        logs = [log_row(r, t) for r, t in zip(batch, texts, strict=True)]
        audits = [audit_row(r, t) for r, t in zip(batch, texts, strict=True) if is_audited(r)]
        async with self._sessionmaker() as session, session.begin():
            connection = await (await session.connection()).get_raw_connection()
            await copy_rows(connection.driver_connection, api_request_logs, logs)
            if audits:
                await copy_rows(connection.driver_connection, system_logs, audits)
            # Built here, not with outbox.emit: each event carries its request's time.
            source = session_source(session)
            events = [
                e
                for r, t in zip(batch, texts, strict=True)
                if (e := api_key_used_event(r, source, t)) is not None
            ]
            await add_events(session, events)
        LOGS_WRITTEN.inc(len(logs))


async def copy_rows(driver: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """``rows`` (all with the same keys) into ``table`` with ``COPY``, on the asyncpg connection
    of the session's transaction: half the CPU of a many-row ``INSERT`` for the gateway and for
    PostgreSQL (``docs/performance.md``). Each ``jsonb`` value goes as JSON text, which the
    connection's codec (SQLAlchemy's) sends as is; the others as asyncpg encodes them."""
    columns = list(rows[0])
    jsonb = {c.name for c in table.columns if isinstance(c.type, JSONB)}
    records = [
        tuple(json.dumps(row[c]) if c in jsonb and row[c] is not None else row[c] for c in columns)
        for row in rows
    ]
    await driver.copy_records_to_table(
        table.name, schema_name=table.schema, columns=columns, records=records
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def error_message(record: RequestRecord) -> str | None:
    if record.status < 400:
        return None
    sample = payload_sample(
        record.response_sample, record.response_size, record.response_content_type
    )
    return _error_from(record.status, sample)


def _error_from(status: int, response_sample: Any) -> str | None:
    if status < 400:
        return None
    if isinstance(response_sample, dict) and (
        "detail" in response_sample or "title" in response_sample
    ):
        detail = response_sample.get("detail") or response_sample.get("title")
        return _clean(str(detail))[:2000]
    return f"HTTP {status}"


@dataclass(frozen=True)
class Texts:
    """What the log row, the audit row and the ``api_key.used`` event of one request share,
    cleaned once."""

    request_id: str
    path: str
    route: str
    response_sample: Any
    error_message: str | None

    @classmethod
    def of(cls, r: RequestRecord) -> Texts:
        response_sample = payload_sample(
            r.response_sample, r.response_size, r.response_content_type
        )
        return cls(
            request_id=_clean(r.request_id),
            path=_clean(r.path),
            route=_clean(route_of(r.path)),
            response_sample=response_sample,
            error_message=_error_from(r.status, response_sample),
        )


def log_row(r: RequestRecord, texts: Texts | None = None) -> dict[str, Any]:
    t = texts or Texts.of(r)
    p = r.principal
    return {
        "request_id": t.request_id[:128],
        "request_time": r.request_time,
        "method": r.method[:10],
        "endpoint": t.path[:2048],
        "route": t.route,
        "service": r.service,
        "status_code": r.status,
        "response_time_ms": round(r.latency_ms, 3),
        "request_size_bytes": r.request_size,
        "response_size_bytes": r.response_size,
        "ip_address": (r.ip_address or None) and r.ip_address[:45],
        "user_agent": _clean(r.user_agent)[:1000] if r.user_agent else None,
        "user_id": p.user_id if p else None,
        "api_key_id": _uuid(p.api_key_id) if p and p.api_key_id else None,
        "auth_method": p.auth_method if p else None,
        "error_message": t.error_message,
        "request_payload_sample": payload_sample(
            r.request_sample, r.request_size, r.request_content_type
        ),
        "response_payload_sample": t.response_sample,
    }


def is_audited(r: RequestRecord) -> bool:
    return r.principal is not None and r.method in STATE_CHANGING


def audit_row(r: RequestRecord, texts: Texts | None = None) -> dict[str, Any]:
    t = texts or Texts.of(r)
    p = r.principal
    assert p is not None
    return {
        "user_id": p.user_id,
        "username": p.username[:150] or None,
        "action": _clean(f"{r.method} {route_of(r.path)}")[:600],
        "status": "success" if r.status < 400 else "failure",
        "status_code": r.status,
        "details": {
            "request_id": t.request_id,
            "path": t.path,
            "service": r.service,
            "auth_method": p.auth_method,
            "api_key_id": p.api_key_id or None,
            "session_id": p.session_id or None,
            "ip_address": r.ip_address,
            "latency_ms": round(r.latency_ms, 3),
        },
        "error_message": t.error_message,
    }


def api_key_used_event(
    r: RequestRecord, source: str, texts: Texts | None = None
) -> CloudEvent | None:
    """``api_key.used`` of an API-key request (``source``: the gateway's), else None."""
    p = r.principal
    key_id = _uuid(p.api_key_id) if p and p.api_key_id else None
    if p is None or key_id is None:
        return None
    payload = ApiKeyUsed(
        key_id=key_id,
        user_id=p.user_id,
        method=r.method,
        route=(texts.path if texts is not None else _clean(r.path))[:500],
        status=r.status,
        latency_ms=round(r.latency_ms, 3),
        ip_address=r.ip_address,
    )
    return make_event(payload, source=source, subject=key_id, time=r.request_time)


class RequestLogMiddleware:
    """Measures each ``/api/v1`` and MLflow request and submits it to the writer of the gateway's
    context (none when request logging is off, or once the context is closed)."""

    def __init__(self, app: ASGIApp, *, sample_bytes: int) -> None:
        self.app = app
        self.sample_bytes = sample_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (
            scope["path"].startswith(LOGGED_PATHS) or scope["path"] in MLFLOW_PATHS
        ):
            await self.app(scope, receive, send)
            return
        runtime: GatewayRuntime = scope["app"].state.runtime
        writer = runtime.context.log_writer
        if writer is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_time = datetime.now(UTC)
        limit = self.sample_bytes
        seen = {"in": 0, "out": 0, "status": 500}
        samples: dict[str, bytearray] = {"in": bytearray(), "out": bytearray()}
        response_type = {"value": ""}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen["in"] += len(chunk)
                if len(samples["in"]) < limit:
                    samples["in"] += chunk[: limit - len(samples["in"])]
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"content-type":
                        response_type["value"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                seen["out"] += len(chunk)
                if len(samples["out"]) < limit:
                    samples["out"] += chunk[: limit - len(samples["out"])]
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            state = scope.get("state", {})
            headers = {k: v for k, v in scope.get("headers", []) if k in _WANTED}
            client = scope.get("client")
            writer.submit(
                RequestRecord(
                    request_id=str(state.get("request_id") or ""),
                    request_time=request_time,
                    method=scope["method"],
                    path=scope["path"],
                    status=seen["status"],
                    latency_ms=(time.perf_counter() - started) * 1000,
                    request_size=seen["in"],
                    response_size=seen["out"],
                    ip_address=state.get("client_ip") or (client[0] if client else None),
                    user_agent=_text(headers.get(b"user-agent")),
                    service=state.get("service"),
                    principal=state.get("principal"),
                    request_sample=bytes(samples["in"]),
                    request_content_type=_text(headers.get(b"content-type")) or "",
                    response_sample=bytes(samples["out"]),
                    response_content_type=response_type["value"],
                )
            )


_WANTED = (b"user-agent", b"content-type")


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
