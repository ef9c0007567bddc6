"""A small process supervisor: one process group per child, output to a log file and
(optionally) echoed to the terminal with a coloured name prefix."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

Echo = Callable[[str, bytes], None]

_COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_HIDDEN_KEYS = {"event", "level", "timestamp", "service", "logger"}


class TerminalEcho:
    """Prints ``name | line``; structlog JSON lines are shortened to ``level event k=v``."""

    def __init__(self, names: Sequence[str], stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.width = max((len(n) for n in names), default=8)
        self.colour = not os.environ.get("NO_COLOR") and self.stream.isatty()
        self._colours = {n: _COLOURS[i % len(_COLOURS)] for i, n in enumerate(names)}
        self._lock = threading.Lock()

    def __call__(self, name: str, line: bytes) -> None:
        text = self.render(line.decode("utf-8", "replace").rstrip("\r\n"))
        label = f"{name:<{self.width}} |"
        if self.colour:
            colour = self._colours.get(name) or _COLOURS[hash(name) % len(_COLOURS)]
            label = f"\x1b[{colour}m{label}\x1b[0m"
        with self._lock:
            print(f"{label} {text}", file=self.stream, flush=True)

    @staticmethod
    def render(text: str) -> str:
        if not text.startswith("{"):
            return text
        try:
            record = json.loads(text)
        except ValueError:
            return text
        if not isinstance(record, dict) or "event" not in record:
            return text
        extras = " ".join(f"{k}={v}" for k, v in record.items() if k not in _HIDDEN_KEYS)
        return f"{record.get('level', ''):<7} {record['event']} {extras}".rstrip()


class ManagedProcess:
    """A child in its own process group whose output goes to ``log_path`` (appended)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        echo: Echo | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C reaches only the supervisor
        )
        self._pump = threading.Thread(
            target=self._copy_output, args=(self.proc,), name=f"pump-{self.name}", daemon=True
        )
        self._pump.start()

    def _copy_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "ab") as log, proc.stdout:
            for line in iter(proc.stdout.readline, b""):
                log.write(line)
                log.flush()
                if self.echo is not None:
                    with contextlib.suppress(Exception):
                        self.echo(self.name, line)

    def send(self, sig: int) -> None:
        """Signal the whole process group (only while the leader is alive: no stray pids)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._pump is not None:
            self._pump.join(timeout=5)
        return code

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return None
        self.send(signal.SIGTERM)
        code = self.wait(grace)
        if code is None:
            self.send(signal.SIGKILL)
            code = self.wait(10)
        return code

    def tail(self, lines: int = 40) -> str:
        try:
            data = self.log_path.read_bytes()[-64 * 1024 :]
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
