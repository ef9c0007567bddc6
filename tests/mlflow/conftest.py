"""One stack for the package, one MLflow virtualenv for the session, one account per test.

The client scripts (``clients/*.py``) run with the venv's Python, with ``MLFLOW_TRACKING_URI``
at the gateway and the credentials the test picks; each prints one JSON line of what it saw.
They are children forked from one process of the venv that imported MLflow once
(``clients/_forkserver.py``): a fresh interpreter per script spent most of the suite's time
importing MLflow.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.devstack import Stack
from runyard.shared.testing.mlflow_venv import MlflowVenv, child_env, ensure_mlflow_venv

from .helpers import Account, Receiver, serving_receiver, sign_up

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIENTS = HERE / "clients"
#: scikit-learn for the autolog proof; MLflow brings pandas, numpy and matplotlib itself
EXTRAS = ("scikit-learn",)


@pytest.fixture(scope="session")
def mlflow_venv() -> MlflowVenv:
    return ensure_mlflow_venv(ROOT / ".data" / "mlflow-venv", extras=EXTRAS)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(tmp_path_factory.mktemp("mlflow-stack")) as running:
        yield running


@pytest.fixture
def account(stack: Stack) -> Account:
    return sign_up(stack.gateway_url, prefix="mlf")


@pytest.fixture
def runyard(account: Account) -> Iterator[httpx.Client]:
    """Runyard's own API as the account's owner sees it (access token)."""
    with account.client() as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving_receiver() as box:
        yield box


class ForkServer:
    """``clients/_forkserver.py`` in the venv: MLflow imported once, a forked child per script."""

    def __init__(self, venv: MlflowVenv, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [str(venv.python), str(CLIENTS / "_forkserver.py")],
            cwd=workdir,
            env=child_env({"TMPDIR": str(workdir)}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, request: dict[str, Any]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            pytest.fail(f"the MLflow fork server exited ({self.proc.poll()})", pytrace=False)
        returncode: int = json.loads(answer)["returncode"]
        return returncode

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def fork_server(
    mlflow_venv: MlflowVenv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ForkServer]:
    server = ForkServer(mlflow_venv, tmp_path_factory.mktemp("mlflow-fork-server"))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class MlflowScripts:
    """Runs ``clients/<script>.py`` in a child of the fork server against the stack's gateway."""

    server: ForkServer
    tracking_uri: str
    workdir: Path

    def run(self, script: str, auth: Mapping[str, str], /, **arguments: Any) -> dict[str, Any]:
        env = child_env(
            {
                "MLFLOW_TRACKING_URI": self.tracking_uri,
                # a refused request fails the script at once instead of after minutes of retries
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
                "NO_PROXY": "127.0.0.1,localhost",
                "HOME": str(self.workdir),
                "TMPDIR": str(self.workdir),
                **auth,
            }
        )
        stdout, stderr = self.workdir / f"{script}.stdout", self.workdir / f"{script}.stderr"
        returncode = self.server.run(
            {
                "script": str(CLIENTS / f"{script}.py"),
                "arguments": json.dumps(arguments),
                "env": env,
                "cwd": str(self.workdir),
                "stdout": str(stdout),
                "stderr": str(stderr),
                "timeout": 300,
            }
        )
        lines = stdout.read_text().strip().splitlines()
        if returncode != 0 or not lines:
            pytest.fail(
                f"clients/{script}.py exited {returncode}:\n{stderr.read_text()[-6000:]}",
                pytrace=False,
            )
        result: dict[str, Any] = json.loads(lines[-1])
        return result


@pytest.fixture
def mlflow(fork_server: ForkServer, stack: Stack, tmp_path: Path) -> MlflowScripts:
    return MlflowScripts(fork_server, stack.gateway_url, tmp_path)


@pytest.fixture
def other_account(stack: Stack) -> Account:
    return sign_up(stack.gateway_url, prefix="mlo")
