"""One process per service: HTTP (FastAPI), the outbox relay, consumers and workers.

``create_service_app(spec)`` returns the ASGI app; its lifespan builds the engine, sessionmaker and
Kafka producer, starts every background task under a supervisor (a crashed loop restarts with
backoff), and tears everything down on shutdown.

Workers that poll the database for due rows wait on ``runtime.work`` (a ``WorkSignal``) instead of
sleeping: every request transaction and every consumer batch this process commits wakes them, so
their idle poll can be slow without making new work wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from runyard.shared import contracts
from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from runyard.shared.events import EventPayload
from runyard.shared.heap import freeze_startup_heap, thaw_heap
from runyard.shared.http import (
    ReadinessCheck,
    RequestIdMiddleware,
    install_ops_routes,
    install_problem_handlers,
)
from runyard.shared.inbox import EventConsumer, Handler
from runyard.shared.logging import configure_logging, get_logger
from runyard.shared.outbox import OutboxRelay
from runyard.shared.routing import index_routers
from runyard.shared.settings import ServiceSettings

log = get_logger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
ContextT = TypeVar("ContextT")

Worker = Callable[["Runtime[SettingsT, ContextT]"], Awaitable[None]]


@dataclass
class ServiceSpec(Generic[SettingsT, ContextT]):
    """What a service is: its settings, routes, consumers, workers and events.

    ``open_context`` builds the service's own runtime objects (HTTP clients, caches, resolvers)
    once the engine and producer exist; they are ``runtime.context``, typed ``ContextT``, and
    ``close_context`` releases them at shutdown. A service without any uses ``ContextT = None``.
    """

    name: str
    schema: str
    settings: SettingsT
    routers: Sequence[APIRouter] = ()
    handlers: dict[str, Handler] = field(default_factory=dict)
    workers: dict[str, Worker[SettingsT, ContextT]] = field(default_factory=dict)
    publishes: Sequence[type[EventPayload]] = ()
    open_context: Callable[[Runtime[SettingsT, ContextT]], Awaitable[ContextT]] | None = None
    close_context: Callable[[ContextT], Awaitable[None]] | None = None
    #: extra ``/ready`` checks (upstreams ...), each raising when its dependency is not usable
    readiness_checks: dict[str, Callable[[Runtime[SettingsT, ContextT]], Awaitable[None]]] = field(
        default_factory=dict
    )
    #: False for the gateway, which serves a merged document of its own
    own_openapi: bool = True
    description: str = ""


_UNSET: Any = object()


class WorkSignal:
    """A pulse from this process's commits to its background workers.

    ``notify()`` is called after every request transaction and every consumer batch; a worker
    reads ``generation`` before it looks for due rows and, when it found too few, calls
    ``wait(seen, idle_s=...)``: it returns at once if anything was committed since (work may
    have become due while the worker looked), else at the next commit or after ``idle_s``, the
    worker's idle poll (which still finds what no commit of this process announced: retries
    coming due, another replica's rows). ``min_wait`` spaces the passes of a worker woken by a
    stream of commits, so that a busy process does not turn its workers into a busy loop.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        self.generation += 1
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, since: int, *, idle_s: float, min_wait: float = 0.1) -> bool:
        """Until a commit after generation ``since``, or ``idle_s``; True when woken."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        woken = self.generation != since
        if not woken:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, idle_s)
                woken = True
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(waiter)
        rest = min(min_wait, idle_s) - (loop.time() - started)
        if rest > 0:
            await asyncio.sleep(rest)
        return woken


@dataclass
class Runtime(Generic[SettingsT, ContextT]):
    spec: ServiceSpec[SettingsT, ContextT]
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: woken by every commit of this process (requests, consumer batches): see ``WorkSignal``
    work: WorkSignal = field(default_factory=WorkSignal)
    #: the event consumer while it runs (a new one after each restart of its loop)
    consumer: EventConsumer | None = None
    _context: ContextT = _UNSET

    @property
    def settings(self) -> SettingsT:
        return self.spec.settings

    @property
    def context(self) -> ContextT:
        """The service's context (``ServiceSpec.open_context``); None for a service without."""
        if self._context is _UNSET:
            if self.spec.open_context is not None:
                raise RuntimeError("the service's context is not open yet")
            return None  # type: ignore[return-value]
        return self._context

    @context.setter
    def context(self, value: ContextT) -> None:
        self._context = value


AnyRuntime = Runtime[Any, Any]


def new_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.kafka_client_options(),
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
        compression_type="gzip",
        max_request_size=4 * 1024 * 1024,
        client_id=f"runyard-{settings.service_name}-{settings.instance}",
    )


async def start_producer(settings: ServiceSettings, *, attempts: int = 30) -> AIOKafkaProducer:
    for attempt in range(1, attempts + 1):
        producer = new_producer(settings)
        try:
            await producer.start()
            return producer
        except Exception as exc:
            await producer.stop()
            if attempt == attempts:
                raise
            log.warning("kafka.producer.retry", attempt=attempt, error=repr(exc))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def supervise(name: str, make: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop forever; log and restart it (with backoff) if it crashes."""
    backoff = 0.5
    while True:
        try:
            await make()
            log.warning("task.exited", task=name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("task.crashed", task=name, error=repr(exc))
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 30.0)


def build_consumer(runtime: AnyRuntime) -> EventConsumer:
    s = runtime.settings
    return EventConsumer(
        sessionmaker=runtime.sessionmaker,
        producer=runtime.producer,
        bootstrap_servers=s.kafka_client_options()["bootstrap_servers"],
        client_options={
            **s.kafka_client_options(),
            "client_id": f"runyard-{runtime.spec.name}-{s.instance}",
        },
        group_id=runtime.spec.name,
        schema=runtime.spec.schema,
        service=runtime.spec.name,
        handlers=runtime.spec.handlers,
        max_attempts=s.consumer_max_attempts,
        retry_backoff_s=s.consumer_retry_backoff_s,
        max_record_bytes=s.consumer_max_record_bytes,
        fetch_max_wait_ms=s.consumer_fetch_max_wait_ms,
        idle_pause_after_s=s.consumer_idle_pause_after_s,
        idle_check_s=s.consumer_idle_check_s,
        wake_dsn=asyncpg_dsn(runtime.engine.url.render_as_string(hide_password=False)),
        on_commit=runtime.work.notify,
    )


def build_relay(runtime: AnyRuntime) -> OutboxRelay:
    s = runtime.settings
    return OutboxRelay(
        engine=runtime.engine,
        producer=runtime.producer,
        schema=runtime.spec.schema,
        service=runtime.spec.name,
        batch_size=s.outbox_batch_size,
        poll_interval_s=s.outbox_poll_interval_s,
        retention_hours=s.outbox_retention_hours,
        replay_window_s=s.outbox_replay_window_s,
    )


def asyncapi_document(spec: ServiceSpec[Any, Any]) -> dict[str, Any]:
    """AsyncAPI 3.0 description of what the service publishes and consumes."""
    registry = contracts.all_contracts()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    consumed = [c for (t, _v), c in registry.items() if t in spec.handlers]
    for action, models in (("send", spec.publishes), ("receive", consumed)):
        for model in models:
            key = model.event_type.replace(".", "_")
            channels[key] = {
                "address": model.event_type,
                "messages": {
                    key: {
                        "name": model.event_type,
                        "contentType": "application/cloudevents+json",
                        "payload": {
                            "type": "object",
                            "description": f"CloudEvents 1.0 envelope, dataschema "
                            f"{model.dataschema()}; `data` follows the schema below",
                            "properties": {"data": model.model_json_schema()},
                        },
                    }
                },
            }
            operations[f"{action}_{key}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{key}"},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"runyard {spec.name} events", "version": "1.0.0"},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
    }


def create_service_app(spec: ServiceSpec[Any, Any]) -> FastAPI:
    settings = spec.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            service=spec.name,
            level=settings.log_level,
            json=settings.log_json,
            instance=settings.instance,
        )
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            application_name=f"runyard-{spec.name}-{settings.instance}"[:63],
        )
        producer = await start_producer(settings)
        runtime: AnyRuntime = Runtime(
            spec=spec,
            engine=engine,
            sessionmaker=create_sessionmaker(
                engine, schema=spec.schema, source=f"/runyard/{spec.name}"
            ),
            producer=producer,
        )
        app.state.runtime = runtime
        try:
            if spec.open_context is not None:
                runtime.context = await spec.open_context(runtime)
            if settings.run_workers:
                relay = build_relay(runtime)
                runtime.tasks.append(asyncio.create_task(supervise("outbox", relay.run)))
                if spec.handlers:

                    def run_consumer() -> Awaitable[None]:
                        runtime.consumer = build_consumer(runtime)
                        return runtime.consumer.run()

                    runtime.tasks.append(asyncio.create_task(supervise("consumer", run_consumer)))
                for name, worker in spec.workers.items():
                    runtime.tasks.append(
                        asyncio.create_task(supervise(name, partial(worker, runtime)))
                    )
            freeze_startup_heap()
            log.info("service.started", workers=settings.run_workers)
            yield
        finally:
            thaw_heap()
            for task in runtime.tasks:
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            if spec.close_context is not None and runtime._context is not _UNSET:
                await spec.close_context(runtime.context)
            await producer.stop()
            await engine.dispose()
            log.info("service.stopped")

    app = FastAPI(
        title=f"Runyard {spec.name}",
        description=spec.description,
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if spec.own_openapi else None,
        docs_url="/docs" if spec.own_openapi else None,
        redoc_url="/redoc" if spec.own_openapi else None,
    )
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware, service=spec.name)

    async def check_db() -> None:
        async with app.state.runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def check_kafka() -> None:
        producer: AIOKafkaProducer = app.state.runtime.producer
        metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=3.0)
        if not metadata.brokers():
            raise ConnectionError("no Kafka broker reachable")

    checks: dict[str, ReadinessCheck] = {"postgres": check_db, "kafka": check_kafka}
    for name, check in spec.readiness_checks.items():
        checks[name] = partial(check_with_runtime, app, check)
    install_ops_routes(app, checks)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> dict[str, Any]:
        return asyncapi_document(spec)

    for router in spec.routers:
        app.include_router(router)
    index_routers(app)
    return app


async def check_with_runtime(app: FastAPI, check: Callable[[AnyRuntime], Awaitable[None]]) -> None:
    await check(app.state.runtime)


def get_runtime(request: Request) -> AnyRuntime:
    """The app's runtime. A service's own dependency narrows it to its types without a cast:
    ``async def runtime(request: Request) -> Runtime[Settings, Context]: return
    get_runtime(request)``. Dependencies are ``async def``: FastAPI runs a plain ``def``
    dependency in its thread pool, a thread hand-off for every request."""
    runtime: AnyRuntime = request.app.state.runtime
    return runtime


async def request_runtime(request: Request) -> AnyRuntime:
    """``get_runtime`` as a dependency (``RuntimeDep``)."""
    return get_runtime(request)


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: commits after the endpoint returns, before the response;
    then wakes the process's workers (``runtime.work``): the request may have made work due."""
    runtime = get_runtime(request)
    async with runtime.sessionmaker() as session, session.begin():
        yield session
    runtime.work.notify()


SessionDep = Annotated[AsyncSession, Depends(db_session, scope="function")]
RuntimeDep = Annotated[AnyRuntime, Depends(request_runtime)]
