"""Where the client talks to and where it keeps its local data.

Every setting comes from the environment first, then from the file ``runyard login`` writes
(URL and API key only), then from the defaults below.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
MODES = ("online", "offline")


class ConfigError(ValueError):
    """A setting that cannot be used (the message names the variable)."""


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's config directory: ``$XDG_CONFIG_HOME/runyard`` (``~/.config/runyard``), or
    ``%APPDATA%\\runyard`` on Windows."""
    if sys.platform == "win32" and environ.get("APPDATA"):
        return Path(environ["APPDATA"]) / "runyard"
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "runyard"


def config_file(environ: Mapping[str, str] = os.environ) -> Path:
    return config_dir(environ) / "config.json"


def read_login(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """What ``runyard login`` stored (``url``, ``api_key``); empty when nothing was."""
    path = config_file(environ)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return {k: str(v) for k, v in data.items() if k in ("url", "api_key") and v}


def write_login(url: str, api_key: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Store the URL and key readable by the user only (directory 0700, file 0600)."""
    path = config_file(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32":
        os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".config.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if sys.platform != "win32":
            os.fchmod(fd, 0o600)
        os.write(fd, json.dumps({"url": url, "api_key": api_key}, indent=2).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    url: str = DEFAULT_URL
    api_key: str | None = None
    #: the local data: one directory per run under ``runs/``
    home: Path = Path.home() / ".runyard"
    mode: str = "online"
    #: how long leaving a run may wait for the server to take the unsent epochs
    flush_timeout: float = 30.0
    #: how old the oldest unsent epoch gets before a batch is sent
    batch_seconds: float = 1.0
    #: epochs per request (the server takes up to 1,000)
    batch_size: int = 1000
    #: a request's body stays under this (the gateway refuses 10 MiB)
    batch_bytes: int = 4 * 1024 * 1024
    heartbeat_seconds: float = 30.0
    #: one HTTP request's timeout
    timeout: float = 10.0

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        url: str | None = None,
        api_key: str | None = None,
        mode: str | None = None,
    ) -> Settings:
        """Arguments first, then ``RUNYARD_*`` variables, then the login file, then defaults."""
        stored = read_login(environ) if not (url and api_key) else {}
        chosen_mode = (mode or environ.get("RUNYARD_MODE") or "online").strip().lower()
        if chosen_mode not in MODES:
            raise ConfigError(f"RUNYARD_MODE must be online or offline, got {chosen_mode!r}")
        home = environ.get("RUNYARD_DIR", "").strip()
        settings = cls(
            url=(url or environ.get("RUNYARD_URL") or stored.get("url") or DEFAULT_URL).rstrip("/"),
            api_key=api_key or environ.get("RUNYARD_API_KEY") or stored.get("api_key") or None,
            home=Path(home).expanduser() if home else Path.home() / ".runyard",
            mode=chosen_mode,
            flush_timeout=_number(environ, "RUNYARD_FLUSH_TIMEOUT", 30.0, 0.0),
            batch_seconds=_number(environ, "RUNYARD_BATCH_SECONDS", 1.0, 0.01),
            heartbeat_seconds=_number(environ, "RUNYARD_HEARTBEAT_SECONDS", 30.0, 1.0),
            timeout=_number(environ, "RUNYARD_HTTP_TIMEOUT", 10.0, 0.1),
        )
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"
