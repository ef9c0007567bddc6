"""The services' processes of the local stack: one uvicorn per service instance, supervised.

``ServiceProcesses`` is the part of ``Stack`` that starts, waits for, kills and restarts them;
``Stack`` sets the attributes declared here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from runyard.devstack import provisioning
from runyard.devstack.dependencies import (
    HOST,
    STOP_GRACE_S,
    StackError,
    describe_exit,
    port_open,
)
from runyard.devstack.replicas import Instance
from runyard.devstack.services import SERVICES, ServiceDef
from runyard.devstack.supervision import BACKOFF, RUNNING, Supervisor, Unit
from runyard.devstack.supervisor import ManagedProcess, TerminalEcho

#: seconds uvicorn keeps an idle HTTP/1.1 connection open (uvicorn's default: 5)
KEEP_ALIVE_S = 75


def serve_argv(service: ServiceDef, port: int) -> list[str]:
    """The command line of one service instance: uvicorn with a once-a-second housekeeping tick
    (``runyard.devstack.serve``)."""
    argv = [sys.executable, "-m", "runyard.devstack.serve", service.app, "--host", HOST]
    argv += ["--port", str(port), "--timeout-graceful-shutdown", "5"]
    # Idle connections stay open longer than any client pool keeps them (the gateway's 4 s,
    # httpx's 5 s, aiohttp's 15 s), so the client always closes first: a request never goes
    # out on a connection the server is closing at that moment (a spurious 502 or reset).
    argv += ["--timeout-keep-alive", str(KEEP_ALIVE_S)]
    if service.name == "gateway":  # it resolves X-Forwarded-For itself
        argv.append("--no-proxy-headers")
    return argv


class ServiceProcesses:
    instances: dict[str, Instance]
    ports: dict[str, int]
    data_dir: Path
    logs_dir: Path
    smtp_url: str
    kafka_bootstrap: str
    jwt_key_file: Path
    secrets_file: Path
    service_database_urls: dict[str, str]
    extra_env: dict[str, str]
    ready_timeout: float
    supervisor: Supervisor
    _terminal: TerminalEcho | None
    _procs: dict[str, ManagedProcess]

    def url_of(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def service_env(self, service: ServiceDef) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for upstream in SERVICES:
            if upstream.upstream:
                env[upstream.gateway_url_env] = self.url_of(upstream.name)
        env["NOTIFICATIONS_SMTP_URL"] = self.smtp_url
        # webhooks to a receiver on this machine: loopback only, never link-local or metadata
        env["WEBHOOKS_ALLOW_PRIVATE_TARGETS"] = "true"
        # the gateway's /metrics listener: any free port (each gateway replica its own)
        env["GATEWAY_METRICS_PORT"] = "0"
        # generated and imported signal files; every experiments replica shares the directory
        env["EXPERIMENTS_DATA_DIR"] = str(self.data_dir / "experiments")
        # unsubscribe links in emails point at this stack's gateway
        env["NOTIFICATIONS_PUBLIC_URL"] = self.url_of("gateway")
        env["AUTH_JWT_PRIVATE_KEY_FILE"] = str(self.jwt_key_file)
        env[f"{service.prefix}IDENTITY_SECRET"] = provisioning.load_identity_secret(
            self.secrets_file
        )
        if service.database:
            env[f"{service.prefix}DATABASE_URL"] = self.service_database_urls[service.name]
        # the console is a client of this stack's gateway, like the SDK
        env["CONSOLE_API_URL"] = self.url_of("gateway")
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

    def _spawn(self, name: str) -> None:
        """Start the process of one service instance (it must not be running)."""
        service = self._service(name)
        port = self.ports[name]
        if port_open(port):
            raise StackError(f"port {port} for {name} is already in use")
        argv = serve_argv(service, port)
        proc = ManagedProcess(
            name,
            argv,
            log_path=self.log_path(name),
            env={**self.service_env(service), f"{service.prefix}INSTANCE_ID": name},
            echo=self._terminal,
        )
        proc.start()
        self._procs[name] = proc

    def _service_unit(self, name: str) -> Unit:
        def pid() -> int | None:
            proc = self._procs.get(name)
            return proc.pid if proc is not None and proc.running else None

        def exit_status() -> str:
            proc = self._procs.get(name)
            return describe_exit(proc.returncode if proc is not None else None)

        def stop() -> None:
            proc = self._procs.get(name)
            if proc is not None:
                proc.stop(STOP_GRACE_S)

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                url = f"{self.url_of(name)}/ready"
                return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
            return False

        return Unit(
            name,
            "service",
            start=lambda: self._spawn(name),
            stop=stop,
            pid=pid,
            exit_status=exit_status,
            ready=ready,
            log_path=self.log_path(name),
            address=self.url_of(name),
            probe="http",
        )

    def start_service(self, name: str) -> None:
        """Start one service's process, or one replica's (``webhooks-2``), without waiting
        (see ``wait_ready``); supervised from then on. No-op if it runs."""
        self._service(name)
        with self.supervisor.lock:
            if name in self.supervisor:
                self.supervisor.resume(name)
            else:
                self._spawn(name)
                self.supervisor.watch(self._service_unit(name))

    def wait_ready(self, *names: str, timeout: float | None = None) -> None:
        """Wait until each named process (default: all, replicas included) answers
        ``GET /ready`` with 200. One that exited fails the wait, unless the supervisor is
        about to start it again."""
        pending = list(names or self.instances)
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                for name in list(pending):
                    proc = self._procs.get(name)
                    if proc is None:
                        raise StackError(f"{name} was not started")
                    if not proc.running and not self._restarting(name):
                        raise StackError(
                            f"{name} {describe_exit(proc.returncode)} before it was ready; "
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

    def _restarting(self, name: str) -> bool:
        """The supervisor runs and will start (or has just started) ``name`` again."""
        return (
            self.supervisor.running
            and name in self.supervisor
            and self.supervisor.state(name) in (RUNNING, BACKOFF)
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to a service's process group. SIGKILL, SIGTERM and SIGINT stop it on
        purpose: wait until it exited and return its exit code; the supervisor leaves it
        stopped until ``start_service``. (A ``kill -9`` from outside is restarted.)"""
        proc = self._procs.get(name)
        if proc is None:
            raise KeyError(f"service {name!r} was not started")
        if sig not in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            proc.send(sig)
            return None
        with self.supervisor.lock:
            if name in self.supervisor:
                self.supervisor.hold(name)
            proc.send(sig)
            return proc.wait(STOP_GRACE_S * 3)

    def restart_service(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.kill(name, sig)
        self.start_service(name)
        self.wait_ready(name)

    def process(self, name: str) -> ManagedProcess | None:
        return self._procs.get(name)

    def supervision(self) -> dict[str, dict[str, Any]]:
        """What the supervisor knows of each process: state, pid, restarts, last exit ..."""
        return {entry["name"]: entry for entry in self.supervisor.snapshot()}
