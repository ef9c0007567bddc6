"""The stock MLflow client in a virtualenv of its own, for the MLflow compatibility tests
(``tests/mlflow``) and the MLflow benchmark (``bench/mlflow_compare.py``).

MLflow never enters the workspace: it pins its own versions of many of the workspace's packages.
So it lives in a separate virtualenv (by default under the repository's ``.data/``), made with
``uv venv`` + ``uv pip install``, and its Python runs the client scripts as child processes.
The venv is reused when it already holds the pinned MLflow and the extra packages asked for;
``RUNYARD_MLFLOW_VENV`` points at another one (a developer's, a CI cache) instead.

The version is pinned so that the compatibility suite always drives the same client: 3.18.0 is
on PyPI but its ``mlflow-tracing==3.18.0`` dependency is not installable from the index we use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MLFLOW_VERSION = "3.17.2"
MLFLOW_REQUIREMENT = f"mlflow=={MLFLOW_VERSION}"
#: overrides the venv path a caller passes (the venv is still checked and completed)
VENV_ENV = "RUNYARD_MLFLOW_VENV"

#: variables of the workspace's own venv that would make the child Python use the wrong packages
_WORKSPACE_VARIABLES = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT")

_INSTALLED = """
import importlib.metadata, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


class MlflowVenvError(RuntimeError):
    """The virtualenv could not be made or does not work; the message says which command."""


@dataclass(frozen=True)
class MlflowVenv:
    path: Path
    version: str

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def mlflow(self) -> Path:
        """The ``mlflow`` command (``mlflow server`` for the benchmark)."""
        return self.path / "bin" / "mlflow"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the venv's processes: without the workspace venv's variables and
    without the caller's own ``MLFLOW_*`` settings (a developer's tracking server must not
    receive the tests' runs), MLflow's telemetry off; then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _WORKSPACE_VARIABLES and not k.startswith("MLFLOW_")
    }
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def find_uv() -> str:
    """uv as ``make`` finds it: ``$UV`` (set by ``uv run``), on PATH, else where
    ``pip install --user uv`` puts it."""
    user_bin = Path(site.USER_BASE or Path.home() / ".local") / "bin"
    candidates = [os.environ.get("UV"), shutil.which("uv"), str(user_bin / "uv")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise MlflowVenvError("uv not found (not $UV, not on PATH, not in the user's bin directory)")


def requirement_name(requirement: str) -> str:
    """``scikit-learn>=1.5`` -> ``scikit-learn``."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if found is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return found[1]


def _run(command: list[str], *, timeout: float, what: str) -> str:
    try:
        done = subprocess.run(
            command, env=child_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise MlflowVenvError(
            f"{what}: no answer within {timeout:.0f} s: {shlex.join(command)}"
        ) from exc
    except OSError as exc:
        raise MlflowVenvError(f"{what}: {exc}: {shlex.join(command)}") from exc
    if done.returncode != 0:
        raise MlflowVenvError(
            f"{what} failed (exit {done.returncode}): {shlex.join(command)}\n"
            f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return done.stdout


def installed(python: Path, names: Sequence[str]) -> dict[str, str | None] | None:
    """The installed version of each distribution in the venv (None: missing); None when the
    venv's Python does not run at all."""
    try:
        out = _run([str(python), "-c", _INSTALLED, *names], timeout=120, what="python")
    except MlflowVenvError:
        return None
    found: dict[str, str | None] = json.loads(out)
    return found


def _satisfied(found: Mapping[str, str | None] | None, extras: Sequence[str]) -> bool:
    if found is None or found.get("mlflow") != MLFLOW_VERSION:
        return False
    # extras are checked for presence only: they are what MLflow's client needs beside itself
    return all(found.get(requirement_name(r)) for r in extras)


@contextlib.contextmanager
def _locked(venv: Path) -> Iterator[None]:
    """One process at a time makes the venv (a benchmark and a test run may start together)."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_mlflow_venv(
    venv: Path, *, extras: Sequence[str] = (), timeout: float = 900.0
) -> MlflowVenv:
    """A venv with ``mlflow==MLFLOW_VERSION`` and ``extras`` (``scikit-learn``,
    ``psycopg2-binary`` ...) at ``$RUNYARD_MLFLOW_VENV`` or else ``venv``: reused as it is when
    it has them, completed with ``uv pip install`` when not, made with ``uv venv`` when missing
    or broken."""
    venv = Path(os.environ.get(VENV_ENV) or venv).absolute()
    names = ["mlflow", *(requirement_name(r) for r in extras)]
    python = venv / "bin" / "python"
    with _locked(venv):
        found = installed(python, names) if python.exists() else None
        if _satisfied(found, extras):
            return MlflowVenv(venv, MLFLOW_VERSION)
        uv = find_uv()
        if found is None:
            if (venv / "pyvenv.cfg").exists():
                shutil.rmtree(venv)  # a broken venv (its Python moved or gone)
            elif venv.exists() and any(venv.iterdir()):
                raise MlflowVenvError(f"{venv} is not a virtualenv and not empty: not touching it")
            _run([uv, "venv", "--python", sys.executable, str(venv)], timeout=300, what="uv venv")
        _run(
            [uv, "pip", "install", "--python", str(python), MLFLOW_REQUIREMENT, *extras],
            timeout=timeout,
            what="installing MLflow",
        )
        found = installed(python, names)
        if not _satisfied(found, extras):
            raise MlflowVenvError(f"{venv} still lacks {names} after installing: {found}")
        return MlflowVenv(venv, MLFLOW_VERSION)
