"""The SDK against the whole stack: one stack for the package, one user with an API key.

Training scripts run as real processes (``train.py``: a numpy model logging with the SDK) with
their own ``RUNYARD_DIR`` and config directory, so nothing touches the tester's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.devstack import Stack

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train.py"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(tmp_path_factory.mktemp("sdk-stack")) as running:
        yield running


@dataclass
class Account:
    url: str
    username: str
    token: str
    api_key: str

    def client(self) -> httpx.Client:
        """The tests' own view of the server (bearer token, not the SDK)."""
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
            trust_env=False,
        )


def sign_up(gateway_url: str, *, prefix: str, key_name: str) -> Account:
    """A new user on the stack at ``gateway_url``: registered, logged in, with an API key that
    reads and writes experiments."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    with httpx.Client(base_url=f"{gateway_url}/api/v1", timeout=30.0) as api:
        registered = api.post(
            "/auth/register",
            json={"username": name, "email": f"{name}@example.test", "password": password},
        )
        assert registered.status_code == 201, registered.text
        login = api.post("/auth/login", json={"login": name, "password": password})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        key = api.post(
            "/auth/api-keys",
            json={
                "name": key_name,
                "scopes": ["experiments:read", "experiments:write"],
                "current_password": password,
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert key.status_code == 201, key.text
    return Account(gateway_url, name, token, key.json()["key"])


@pytest.fixture(scope="package")
def account(stack: Stack) -> Account:
    return sign_up(stack.gateway_url, prefix="sdk", key_name="sdk tests")


@pytest.fixture
def server(account: Account) -> Iterator[httpx.Client]:
    with account.client() as client:
        yield client


@pytest.fixture
def env(tmp_path: Path, account: Account) -> dict[str, str]:
    """The environment of a training script or CLI command: this stack, this key, and a
    RUNYARD_DIR and config directory of the test's own."""
    values = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RUNYARD_") and k not in ("XDG_CONFIG_HOME",)
    }
    values.update(
        RUNYARD_URL=account.url,
        RUNYARD_API_KEY=account.api_key,
        RUNYARD_DIR=str(tmp_path / "runyard"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return values


@pytest.fixture
def sdk_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The same environment for the SDK used in this process."""
    for key in [k for k in os.environ if k.startswith("RUNYARD_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("RUNYARD_") or key == "XDG_CONFIG_HOME":
            monkeypatch.setenv(key, value)
    return env


@dataclass
class Training:
    """A training script running in its own process (stdout and stderr go to files)."""

    proc: subprocess.Popen[bytes]
    progress: Path
    dir: Path

    def logged(self) -> list[dict[str, Any]]:
        """What the script logged, in order: one entry per ``log()`` that returned."""
        if not self.progress.exists():
            return []
        lines = self.progress.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def wait_for_epoch(self, epoch: int, timeout: float = 120.0) -> None:
        wait_until(
            lambda: any(e["epoch"] >= epoch for e in self.logged()),
            f"epoch {epoch} logged",
            timeout,
            self,
        )

    @property
    def stdout(self) -> str:
        return (self.dir / "stdout").read_text()

    @property
    def stderr(self) -> str:
        return (self.dir / "stderr").read_text()

    @property
    def experiment_id(self) -> str:
        """The id the script printed first (``experiment <id> local <local id>``)."""
        line = wait_until(lambda: self.stdout.partition("\n")[0], "the script's first line")
        return str(line.split()[1])

    def release(self, name: str) -> None:
        (self.dir / name).touch()

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.stdout, self.stderr


@pytest.fixture
def train(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Training]]:
    started: list[Training] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> Training:
        work = tmp_path / f"train-{len(started)}"
        work.mkdir()
        progress = work / "progress.jsonl"
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(TRAIN),
                    "--progress",
                    str(progress),
                    "--gates",
                    str(work),
                    *args,
                ],
                env={**env, **(extra_env or {})},
                stdout=out,
                stderr=err,
            )
        started.append(Training(proc, progress, work))
        return started[-1]

    yield start
    for training in started:
        if training.proc.poll() is None:
            training.proc.kill()
            training.proc.wait(timeout=30)


def wait_until(
    check: Callable[[], Any],
    what: str,
    timeout: float = 60.0,
    training: Training | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if training is not None and training.proc.poll() is not None:
            raise AssertionError(
                f"the script exited ({training.proc.returncode}) before {what}:\n"
                f"{training.stderr[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)


def runyard(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``runyard`` command, as a shell user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "runyard.sdk.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def epochs_on_server(server: httpx.Client, experiment_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = server.get(f"/experiments/{experiment_id}/runs", params=params)
        assert page.status_code == 200, page.text
        runs += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return runs


def values_of(run: dict[str, Any]) -> dict[str, float]:
    columns = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
    values = {k: run[k] for k in columns if run.get(k) is not None}
    values.update(run.get("metrics") or {})
    return values


def assert_exactly(server: httpx.Client, experiment_id: str, logged: list[dict[str, Any]]) -> None:
    """The server holds every logged epoch once, with the values logged last for it."""
    expected: dict[int, dict[str, float]] = {}
    for entry in logged:
        expected[entry["epoch"]] = entry["values"]
    runs = epochs_on_server(server, experiment_id)
    epochs = [r["epoch"] for r in runs]
    assert len(epochs) == len(set(epochs))
    assert sorted(epochs) == sorted(expected)
    for run in runs:
        assert values_of(run) == expected[run["epoch"]], run["epoch"]
    experiment = server.get(f"/experiments/{experiment_id}").json()
    assert experiment["total_epochs"] == len(expected)


def find_experiment(server: httpx.Client, name: str) -> dict[str, Any] | None:
    page = server.get("/experiments", params={"filter": f"name = '{name}'"})
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    return items[0] if items else None
