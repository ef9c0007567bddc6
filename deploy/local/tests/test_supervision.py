"""The supervisor's rules, on stand-in processes and a clock the test moves: the backoff, its
reset, the crash loop, deliberate stops and restarts asked for by hand. (On real processes:
``tests/faults/test_supervision.py`` and the fault suite.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.devstack import control
from runyard.devstack.supervision import (
    BACKOFF,
    CRASH_LOOP,
    RUNNING,
    STOPPED,
    RestartPolicy,
    Supervisor,
    Unit,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Process:
    """A stand-in: ``crash()`` ends it; with ``broken`` set every start fails at once."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.alive = False
        self.broken = False
        self.refused = False
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        if self.refused:
            raise RuntimeError("port 8101 is already in use")
        self.alive = not self.broken

    def crash(self) -> None:
        self.alive = False

    def unit(self) -> Unit:
        return Unit(
            self.name,
            "service",
            start=self.start,
            stop=self.crash,
            pid=lambda: 4000 + self.starts if self.alive else None,
            exit_status=lambda: "exited with code 3",
            ready=lambda: self.alive,
            log_path=self.log_path,
            address="http://127.0.0.1:1",
            probe="http",
        )


class Rig:
    def __init__(self, tmp_path: Path, policy: RestartPolicy, *names: str) -> None:
        self.clock = Clock()
        self.messages: list[str] = []
        self.asked: list[str] = []
        self.supervisor = Supervisor(
            policy,
            notify=self.messages.append,
            requests=self._take,
            clock=self.clock,
        )
        self.processes = {}
        for name in names:
            process = Process(name, tmp_path / f"{name}.log")
            process.log_path.write_text(f"{name} line 1\n{name} boom\n")
            process.start()
            self.supervisor.watch(process.unit())
            self.processes[name] = process

    def _take(self) -> list[str]:
        taken, self.asked = self.asked, []
        return taken

    def state(self, name: str) -> str:
        return self.supervisor.state(name)

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.supervisor.tick()

    def backoff_of_next_restart(self, name: str, step: float = 0.25) -> float:
        """Ticks in ``step`` increments until the process was started again."""
        before, waited = self.processes[name].starts, 0.0
        while self.processes[name].starts == before:
            self.advance(step)
            waited += step
            assert waited < 3600, "never started again"
        return waited


def test_an_exited_process_is_started_again_after_a_backoff_doubling_to_its_maximum(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, RestartPolicy(backoff_s=1, backoff_max_s=8, crash_loop_restarts=99), "a")
    backoffs = []
    for _ in range(6):
        rig.processes["a"].crash()
        rig.advance(0)
        assert rig.state("a") == BACKOFF
        backoffs.append(rig.backoff_of_next_restart("a"))
        rig.advance(0)
        assert rig.state("a") == RUNNING

    assert backoffs == [1, 2, 4, 8, 8, 8]
    entry = rig.supervisor.snapshot()[0]
    assert (entry["restarts"], entry["last_exit"]) == (6, "exited with code 3")
    assert "a exited with code 3; starting it again in 1s (restart 1)" in rig.messages[0]
    assert "a boom" in rig.messages[0]  # the tail of its log
    assert str(tmp_path / "a.log") in rig.messages[0]


def test_the_backoff_starts_over_once_the_process_stayed_ready_long_enough(
    tmp_path: Path,
) -> None:
    policy = RestartPolicy(backoff_s=1, reset_after_s=60, crash_loop_restarts=99)
    rig = Rig(tmp_path, policy, "a")
    for _ in range(3):
        rig.processes["a"].crash()
        rig.advance(0)
        rig.backoff_of_next_restart("a")
    rig.advance(0)  # ready now

    rig.advance(30)  # not long enough
    rig.processes["a"].crash()
    rig.advance(0)
    assert rig.backoff_of_next_restart("a") == 8
    rig.advance(0)
    rig.advance(60)
    rig.processes["a"].crash()
    rig.advance(0)

    assert rig.backoff_of_next_restart("a") == 1


def test_a_process_exiting_at_once_on_every_start_is_left_stopped_as_crash_looping(
    tmp_path: Path,
) -> None:
    policy = RestartPolicy(backoff_s=1, crash_loop_restarts=3, crash_loop_window_s=120)
    rig = Rig(tmp_path, policy, "a", "b")
    rig.processes["a"].broken = True
    rig.processes["a"].crash()

    for _ in range(200):
        rig.advance(1)

    assert rig.state("a") == CRASH_LOOP
    assert rig.processes["a"].starts == 1 + 3  # the first start, then three restarts
    assert rig.state("b") == RUNNING and rig.processes["b"].starts == 1
    [given_up] = [m for m in rig.messages if "crash-looping" in m]
    assert given_up.startswith("a is crash-looping: it exited with code 3 again after 3 restarts")
    assert str(tmp_path / "a.log") in given_up
    assert "make restart SERVICE=a" in given_up
    assert rig.supervisor.snapshot()[0]["pid"] is None


def test_a_start_that_fails_counts_as_an_exit_of_its_own(tmp_path: Path) -> None:
    policy = RestartPolicy(backoff_s=1, crash_loop_restarts=2, crash_loop_window_s=120)
    rig = Rig(tmp_path, policy, "a")
    rig.processes["a"].refused = True
    rig.processes["a"].crash()

    for _ in range(100):
        rig.advance(1)

    assert rig.state("a") == CRASH_LOOP
    assert rig.processes["a"].starts == 1 + 2
    assert rig.supervisor.snapshot()[0]["last_exit"] == (
        "could not be started: port 8101 is already in use"
    )


def test_restarts_further_apart_than_the_window_are_no_crash_loop(tmp_path: Path) -> None:
    policy = RestartPolicy(backoff_s=1, crash_loop_restarts=2, crash_loop_window_s=120)
    rig = Rig(tmp_path, policy, "a")

    for _ in range(5):
        rig.processes["a"].crash()
        rig.advance(0)
        rig.backoff_of_next_restart("a")
        rig.advance(121)

    assert rig.state("a") == RUNNING
    assert rig.processes["a"].starts == 6


def test_a_process_stopped_on_purpose_stays_stopped_until_resumed(tmp_path: Path) -> None:
    rig = Rig(tmp_path, RestartPolicy(), "a")

    rig.supervisor.hold("a")
    rig.processes["a"].crash()
    for _ in range(100):
        rig.advance(5)

    assert rig.state("a") == STOPPED and rig.processes["a"].starts == 1
    rig.supervisor.resume("a")
    assert rig.state("a") == RUNNING and rig.processes["a"].alive
    assert rig.supervisor.snapshot()[0]["restarts"] == 0  # not an automatic restart


def test_a_restart_asked_for_starts_a_crash_looping_process_again_with_a_clean_slate(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, RestartPolicy(backoff_s=1, crash_loop_restarts=1), "a")
    rig.processes["a"].broken = True
    rig.processes["a"].crash()
    for _ in range(10):
        rig.advance(1)
    assert rig.state("a") == CRASH_LOOP

    rig.processes["a"].broken = False  # the cause is fixed
    rig.asked.append("a")
    rig.advance(0)

    assert rig.state("a") == RUNNING and rig.processes["a"].alive
    rig.processes["a"].crash()
    rig.advance(0)
    assert rig.state("a") == BACKOFF  # its earlier restarts no longer count
    assert rig.backoff_of_next_restart("a") == 1


def test_restart_requests_written_by_the_cli_are_taken_once_in_order(tmp_path: Path) -> None:
    control.request_restart(tmp_path, "webhooks-2")
    control.request_restart(tmp_path, "gateway")

    assert control.take_requests(tmp_path) == ["webhooks-2", "gateway"]
    assert control.take_requests(tmp_path) == []


def test_the_restart_policy_comes_from_the_environment() -> None:
    policy = RestartPolicy.from_env(
        {"RUNYARD_RESTART_BACKOFF_S": "0.5", "RUNYARD_CRASH_LOOP_RESTARTS": "2"}
    )

    assert (policy.backoff_s, policy.crash_loop_restarts) == (0.5, 2)
    assert policy.backoff_max_s == RestartPolicy().backoff_max_s
    with pytest.raises(ValueError, match="RUNYARD_CRASH_LOOP_RESTARTS"):
        RestartPolicy.from_env({"RUNYARD_CRASH_LOOP_RESTARTS": "many"})
