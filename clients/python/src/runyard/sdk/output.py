"""What the SDK tells the person running the script: one line each, on stderr, prefixed."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from typing import Any

_said: set[str] = set()


def warn(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed stderr at interpreter exit
        print(f"runyard: {message}", file=sys.stderr, flush=True)


def warn_once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        warn(f"{message} (reported once)")


def sync_command(local_id: str) -> str:
    """The exact command that uploads the run (naming RUNYARD_DIR when it is not the default)."""
    prefix = ""
    if os.environ.get("RUNYARD_DIR"):
        prefix = f"RUNYARD_DIR={shlex.quote(os.environ['RUNYARD_DIR'])} "
    return f"{prefix}runyard sync {local_id}"


def unsent(run: Any, epochs: int, reason: str | None) -> None:
    """At the end of a run the server does not have whole: how much and how to send it."""
    if run.settings.mode == "offline":
        head = f'offline run "{run.name}" ({epochs} epochs) is saved in {run.path}'
    else:
        why = f" ({reason})" if reason else ""
        what = f'{epochs} epochs of "{run.name}" are' if epochs else f'the end of "{run.name}" is'
        head = f"{what} not on the server yet{why}; saved in {run.path}"

    warn(f"{head}. Upload with:\n    {sync_command(run.local_id)}")
