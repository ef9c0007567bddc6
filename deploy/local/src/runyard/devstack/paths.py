"""Where the local stack keeps its data."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory holding ``uv.lock`` (the workspace root), else the start dir."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "uv.lock").exists():
            return candidate
    return here


def default_data_dir() -> Path:
    """``$RUNYARD_DATA_DIR``, else ``<repo root>/.data``."""
    configured = os.environ.get("RUNYARD_DATA_DIR")
    return Path(configured) if configured else repo_root() / ".data"
