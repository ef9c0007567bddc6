"""The local stack: PostgreSQL, a Kafka-protocol broker, an SMTP sink and the Runyard services.

``Stack`` is used by ``make up`` (``python -m runyard.devstack up``) and by end-to-end tests::

    with Stack.isolated(tmp_path, services=["experiments"]) as stack:
        httpx.get(stack.service_urls["experiments"] + "/ready")

Each dependency is used from the environment when configured (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``SMTP_URL``) and otherwise started here: embedded PostgreSQL (data
kept in ``<data>/postgres``), Tansu, and ``runyard.devstack.mailsink``. ``stop()`` stops exactly
what this stack started.

Once started, every process the stack started is supervised (``runyard.devstack.supervision``):
one that dies is started again, with a backoff, unless it crash-loops. ``kill()`` and
``stop_broker()`` are deliberate stops the supervisor leaves alone; a ``kill -9`` from outside
is not.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from runyard.devstack import control, orphans, provisioning, replicas, topics
from runyard.devstack.dependencies import (
    HOST,
    STOP_GRACE_S,
    EmbeddedPostgres,
    MailSink,
    StackError,
    Tansu,
    become_subreaper,
    free_port,
)
from runyard.devstack.paths import default_data_dir
from runyard.devstack.service_processes import ServiceProcesses
from runyard.devstack.services import SERVICES, ServiceDef, select
from runyard.devstack.supervision import RestartPolicy, Supervisor, unit_of
from runyard.devstack.supervisor import ManagedProcess, TerminalEcho

__all__ = ["HOST", "Stack", "StackError", "free_port"]

DATABASE = "runyard"
READY_TIMEOUT_S = 60.0


class Stack(ServiceProcesses):
    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        services: Iterable[str] | None = None,
        ports: Mapping[str, int] | None = None,
        database_url: str | None = None,
        kafka_bootstrap: str | None = None,
        kafka_port: int = 9092,
        smtp_url: str | None = None,
        smtp_port: int = 2525,
        database: str = DATABASE,
        extra_env: Mapping[str, str] | None = None,
        echo: bool = False,
        ready_timeout: float = READY_TIMEOUT_S,
        replica_counts: Mapping[str, int] | None = None,
        topic_partitions: int = topics.DEFAULT_PARTITIONS,
        supervise: bool = True,
        restart_policy: RestartPolicy | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir or default_data_dir()).resolve()
        self.logs_dir = self.data_dir / "logs"
        self.services: tuple[ServiceDef, ...] = select(services)
        self.replica_counts = dict(replica_counts or {})
        replicas.check_replicas(self.replica_counts)
        #: every process to run: replica 1 is named after its service, then ``<name>-2`` ...
        self.instances = {i.name: i for i in replicas.expand(self.services, self.replica_counts)}
        known = [i.name for i in replicas.expand(SERVICES, self.replica_counts)]
        self.ports = replicas.assign_ports(self.instances.values(), ports or {}, known)
        if topic_partitions < 1:
            raise ValueError(f"topic partitions must be at least 1, got {topic_partitions}")
        self.topic_partitions = topic_partitions
        #: partitions of each catalog topic, as found (or created) at start
        self.topic_partition_counts: dict[str, int] = {}
        self.database = database
        self.extra_env = dict(extra_env or {})
        self.echo = echo
        self.ready_timeout = ready_timeout

        self._external_database_url = database_url
        self.admin_server_url = ""  # admin URL of the server (its default database)
        self.admin_database_url = ""  # admin URL of the ``runyard`` database (SQLAlchemy form)

        self._external_kafka = kafka_bootstrap
        self.kafka_port = kafka_port
        self.kafka_bootstrap = kafka_bootstrap or f"{HOST}:{kafka_port}"

        self._external_smtp = smtp_url
        if smtp_url:
            parts = urlsplit(smtp_url)
            self.smtp_host = parts.hostname or HOST
            self.smtp_port = parts.port or 25
            self.smtp_url = smtp_url
            self.mail_dir: Path | None = None
        else:
            self.smtp_host = HOST
            self.smtp_port = smtp_port
            self.smtp_url = f"smtp://{HOST}:{smtp_port}"
            self.mail_dir = self.data_dir / "mail"

        self.jwt_key_file = self.data_dir / "keys" / "jwt-ed25519.pem"
        self.secrets_file = self.data_dir / "secrets.json"
        self.service_database_urls: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.started_at = time.time()
        self.phase = "stopped"  # "starting", "running"

        self._terminal = TerminalEcho([*self.instances, "mail", "stack"]) if echo else None
        self._procs: dict[str, ManagedProcess] = {}
        pgdata = self.data_dir / "postgres"
        self._postgres = None if database_url else EmbeddedPostgres(pgdata, self._say)
        tansu = Tansu(kafka_port, self.log_path("kafka"), self._say)
        self._tansu = None if kafka_bootstrap else tansu
        mail, mail_log = self.mail_dir, self.log_path("mailsink")
        self._sink = MailSink(smtp_port, mail, mail_log, self._terminal) if mail else None
        #: servers given by the environment, neither started nor supervised here
        self.external_servers: dict[str, str] = {}
        if database_url:
            self.external_servers["postgres"] = urlsplit(database_url).hostname or "DATABASE_URL"
        if kafka_bootstrap:
            self.external_servers["kafka"] = kafka_bootstrap
        if smtp_url:
            self.external_servers["mail"] = smtp_url
        self._lock_file: IO[str] | None = None
        self.supervise = supervise
        self._notify = notify
        self.supervisor = Supervisor(
            restart_policy,
            notify=self._report,
            on_change=self._changed,
            requests=lambda: control.take_requests(self.data_dir),
        )

    # ----------------------------------------------------------------------------- factories
    @classmethod
    def from_env(
        cls,
        data_dir: Path | str | None = None,
        *,
        environ: Mapping[str, str] = os.environ,
        **kwargs: Any,
    ) -> Stack:
        """What ``make up`` runs: ``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``SMTP_URL`` and
        ``GATEWAY_PORT`` from the environment override the built-in defaults, and the
        ``RUNYARD_RESTART_*`` / ``RUNYARD_CRASH_LOOP_*`` variables the restart policy."""
        ports = dict(kwargs.pop("ports", None) or {})
        if environ.get("GATEWAY_PORT"):
            ports.setdefault("gateway", int(environ["GATEWAY_PORT"]))
        kwargs.setdefault("database_url", environ.get("DATABASE_URL") or None)
        kwargs.setdefault("kafka_bootstrap", environ.get("KAFKA_BOOTSTRAP_SERVERS") or None)
        kwargs.setdefault("smtp_url", environ.get("SMTP_URL") or None)
        if "replica_counts" not in kwargs:
            kwargs["replica_counts"] = replicas.replicas_from_env(environ)
        if "topic_partitions" not in kwargs and environ.get("RUNYARD_TOPIC_PARTITIONS"):
            kwargs["topic_partitions"] = int(environ["RUNYARD_TOPIC_PARTITIONS"])
        if "restart_policy" not in kwargs:
            kwargs["restart_policy"] = RestartPolicy.from_env(environ)
        return cls(data_dir, ports=ports, **kwargs)

    @classmethod
    def isolated(
        cls, data_dir: Path | str, *, services: Iterable[str] | None = None, **kwargs: Any
    ) -> Stack:
        """For tests: free ports for everything; embedded Postgres, own Tansu and mail sink
        unless ``database_url`` / ``kafka_bootstrap`` / ``smtp_url`` are passed."""
        counts = kwargs.get("replica_counts") or {}
        instances = replicas.expand(SERVICES, counts)
        kwargs.setdefault("ports", {i.name: free_port() for i in instances})
        kwargs.setdefault("kafka_port", free_port())
        kwargs.setdefault("smtp_port", free_port())
        return cls(data_dir, services=services, **kwargs)

    # ------------------------------------------------------------------------------- URLs
    @property
    def gateway_url(self) -> str:
        return self.url_of("gateway")

    @property
    def service_urls(self) -> dict[str, str]:
        """One URL per service: its first replica's (the one the gateway forwards to)."""
        return {s.name: self.url_of(s.name) for s in self.services}

    @property
    def instance_urls(self) -> dict[str, str]:
        """Every process's URL, replicas included (``webhooks-2`` ...)."""
        return {name: self.url_of(name) for name in self.instances}

    @property
    def admin_dsn(self) -> str:
        """``admin_database_url`` in the form ``asyncpg.connect()`` takes."""
        return self.admin_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    # ----------------------------------------------------------------------------- start
    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start (or reuse) every dependency, provision and migrate, start the services and wait
        until each answers ``GET /ready``; then supervise them all. On any failure everything
        started is stopped again."""
        begin = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self._acquire_lock()
        atexit.register(self.stop)  # a caller that forgets stop() leaves nothing running
        self.started_at, self.phase = time.time(), "starting"
        try:
            become_subreaper()
            orphans.reap(self._record_path, self._say)
            control.take_requests(self.data_dir)  # meant for a stack that is gone
            if self._sink is not None:
                self._sink.spawn()  # boots while PostgreSQL and the broker start
                self._record()
            self._timed("postgres", self._start_postgres)
            self._timed("kafka", self._start_kafka)
            self._timed("topics", self._ensure_topics)
            self._timed("smtp", self._wait_smtp)
            self._timed("provision", self._provision)
            provisioning.ensure_jwt_key(self.jwt_key_file)
            for stage in sorted({s.stage for s in self.services}):
                names = [n for n, i in self.instances.items() if i.service.stage == stage]
                for name in names:
                    self.start_service(name)
                self._timed(f"services[{stage}]", functools.partial(self.wait_ready, *names))
        except BaseException:
            self.stop()
            raise
        self.phase = "running"
        if self.supervise:
            self.supervisor.run_in_background()
        self._changed()
        self.timings["total"] = time.monotonic() - begin
        return self

    def _timed(self, name: str, fn: Callable[[], None]) -> None:
        began = time.monotonic()
        fn()
        self.timings[name] = time.monotonic() - began

    def _say(self, message: str) -> None:
        if self._terminal is not None:
            self._terminal("stack", message.encode())

    def _report(self, message: str) -> None:
        """What the supervisor did: to ``notify`` (``make up`` prints it) or the terminal, and
        always to ``<logs>/stack.log``."""
        with contextlib.suppress(OSError):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            with (self.logs_dir / "stack.log").open("a") as log:
                log.write(f"{stamp} {message}\n")
        if self._notify is not None:
            self._notify(message)
        else:
            for line in message.splitlines():
                self._say(line)

    def _acquire_lock(self) -> None:
        if self._lock_file is None:
            self._lock_file = orphans.lock(self.data_dir / "stack.lock")

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- PostgreSQL, the broker, the mail sink
    def _start_postgres(self) -> None:
        if self._postgres is None:
            assert self._external_database_url is not None
            self.admin_server_url = provisioning.sqlalchemy_url(self._external_database_url)
        else:
            postgres = self._postgres
            self.admin_server_url = provisioning.sqlalchemy_url(postgres.start())

            def start_again() -> None:
                postgres.start()

            address = str(postgres.socket_path or postgres.pgdata)
            unit = unit_of(postgres, "postgres", start=start_again, address=address, probe="unix")
            self.supervisor.watch(unit)
        self.admin_database_url = provisioning.with_database(self.admin_server_url, self.database)

    def _start_kafka(self) -> None:
        tansu = self._tansu
        if tansu is None:
            return
        tansu.start()
        self._record()

        def start_again() -> None:
            tansu.start()
            self._ensure_topics()  # the restarted broker remembers none

        address = self.kafka_bootstrap
        self.supervisor.watch(
            unit_of(tansu, "kafka", start=start_again, address=address, probe="tcp")
        )

    def _ensure_topics(self) -> None:
        """The catalog's topics with ``topic_partitions`` partitions (missing ones only)."""
        created, counts = topics.ensure_topics_blocking(
            self.kafka_bootstrap, topics.catalog_topics(), partitions=self.topic_partitions
        )
        self.topic_partition_counts = counts
        if created:
            self._say(f"created {len(created)} topics with {self.topic_partitions} partitions")
        fewest = min(counts.values(), default=self.topic_partitions)
        selected = {s.name for s in self.services}
        for name, count in self.replica_counts.items():
            if name in selected and count > fewest:
                self._say(
                    f"warning: {count} replicas of {name} but some topics have {fewest} "
                    f"partitions; {count - fewest} replica(s) may get no partition"
                )

    def _wait_smtp(self) -> None:
        sink = self._sink
        if sink is None:
            return
        sink.wait()
        address = f"{HOST}:{self.smtp_port}"
        self.supervisor.watch(unit_of(sink, "mail", start=sink.start, address=address, probe="tcp"))

    # --- database roles, schemas, migrations
    def _provision(self) -> None:
        with_database = [s for s in self.services if s.database]
        schemas = [s.schema for s in with_database]
        passwords = provisioning.load_passwords(self.secrets_file, schemas)
        logins = provisioning.logins_from_passwords(
            self.admin_server_url, with_database, passwords, self.database
        )
        self.service_database_urls = {login.service.name: login.url for login in logins}
        self._say(f"provisioning and migrating {', '.join(schemas)}")
        # Alembic's env runs its own event loop: keep it off any loop the caller may be running.
        provisioning.provision_off_loop(self.admin_server_url, logins)

    # ------------------------------------------------ dependencies, for fault injection
    def restart_postgres(self, *, mode: str = "fast") -> None:
        """Stop the embedded PostgreSQL (``pg_ctl stop -m <mode>``: ``fast`` rolls back open
        transactions and closes every connection, ``immediate`` is a crash that the next start
        recovers from) and start it again on the same data directory. The services are left
        alone: they must reconnect by themselves."""
        if self._postgres is None:
            raise StackError("PostgreSQL was not started by this stack (DATABASE_URL is set)")
        if mode not in ("fast", "immediate", "smart"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        self._say(f"restarting PostgreSQL ({mode})")
        with self.supervisor.holding("postgres"):
            self._postgres.stop(mode=mode)
            self._postgres.start()

    def stop_broker(self) -> None:
        """Stop the broker this stack started (SIGTERM, SIGKILL after a grace), on purpose: it
        stays stopped until ``start_broker``. Tansu keeps everything in memory: topics, records
        and committed offsets are gone with it."""
        if self._tansu is None:
            raise StackError("the broker was not started by this stack (KAFKA_BOOTSTRAP_SERVERS)")
        self._say("stopping the broker")
        with self.supervisor.lock:
            self.supervisor.hold("kafka")
            self._tansu.stop()

    def start_broker(self) -> None:
        """Start the broker again on the same port and create the catalog topics (missing
        ones only: a client may already have auto-created some)."""
        if self._tansu is None:
            raise StackError("the broker was not started by this stack (KAFKA_BOOTSTRAP_SERVERS)")
        if not self.broker_running:
            self.supervisor.resume("kafka")

    @property
    def broker_running(self) -> bool:
        return self._tansu is not None and self._tansu.pid is not None

    @property
    def pids(self) -> dict[str, int]:
        """Live processes this stack started (services, ``mail``, ``kafka``, ``postgres``)."""
        found = {n: p.pid for n, p in self._procs.items() if p.running and p.pid}
        for name, dependency in (
            ("mail", self._sink),
            ("kafka", self._tansu),
            ("postgres", self._postgres),
        ):
            pid = dependency.pid if dependency is not None else None
            if pid is not None:
                found[name] = pid
        return found

    # ------------------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop supervising, then stop the services (SIGTERM, SIGKILL after a grace), the mail
        sink, the broker and PostgreSQL — only those this stack started. Safe to call twice."""
        self.supervisor.stop()
        for stage in sorted({s.stage for s in SERVICES}, reverse=True):
            procs = [
                p
                for n, p in self._procs.items()
                if self.instances[n].service.stage == stage and p.running
            ]
            for proc in procs:
                proc.send(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in procs:
                if proc.wait(max(0.0, deadline - time.monotonic())) is None:
                    proc.send(signal.SIGKILL)
                    proc.wait(10)
        for dependency in (self._sink, self._tansu, self._postgres):
            if dependency is not None:
                dependency.stop()
        self.phase = "stopped"
        if self._lock_file is not None:
            self._record_path.unlink(missing_ok=True)
            (self.data_dir / control.STATE_FILE).unlink(missing_ok=True)
        self._release_lock()
        atexit.unregister(self.stop)

    # ------------------------------------------- what a separate process can see of it
    @property
    def _record_path(self) -> Path:
        return self.data_dir / "processes.json"

    def _record(self) -> None:
        """Remember what we started, so a later stack can clean up after a crashed one."""
        if self._lock_file is not None:
            orphans.record(self._record_path, self.pids)

    def _changed(self) -> None:
        if self._lock_file is None or self.phase == "stopped":
            return
        with self.supervisor.lock, contextlib.suppress(OSError):
            self._record()
            control.write_state(self.data_dir, control.describe(self))
