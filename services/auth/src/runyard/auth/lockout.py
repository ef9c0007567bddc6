"""Keycloak's temporary lockout ("brute force detection", non-permanent), as a pure function.

Per account: every failure increments a counter, unless the previous failure is older than
``reset_after`` (Keycloak's ``maxDeltaTimeSeconds``), in which case counting starts again at 1.
Once the counter reaches ``failure_factor`` the account is locked for
``wait_increment * (failures // failure_factor)``, at most ``max_wait``: with the defaults
5 failures lock for 60 s, 10 for 120 s, ... up to 15 minutes. While locked, attempts are refused
without checking the password and do not count. A successful login clears the counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from runyard.auth.config import Settings


@dataclass(frozen=True)
class LockoutPolicy:
    failure_factor: int = 5
    wait_increment: timedelta = timedelta(seconds=60)
    max_wait: timedelta = timedelta(minutes=15)
    reset_after: timedelta = timedelta(hours=12)

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        return cls(
            failure_factor=settings.lockout_failure_factor,
            wait_increment=timedelta(seconds=settings.lockout_wait_increment_seconds),
            max_wait=timedelta(seconds=settings.lockout_max_wait_seconds),
            reset_after=timedelta(seconds=settings.lockout_failure_reset_seconds),
        )


@dataclass(frozen=True)
class FailureState:
    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until the lock ends (at least 1 while locked), for ``Retry-After``."""
        if self.locked_until is None or self.locked_until <= now:
            return 0
        return max(1, math.ceil((self.locked_until - now).total_seconds()))


def after_failure(policy: LockoutPolicy, state: FailureState, now: datetime) -> FailureState:
    failures = state.failures
    if state.last_failure_at is None or now - state.last_failure_at > policy.reset_after:
        failures = 0
    failures += 1
    wait = min(policy.wait_increment * (failures // policy.failure_factor), policy.max_wait)
    locked_until = now + wait if wait > timedelta(0) else None
    return FailureState(failures=failures, last_failure_at=now, locked_until=locked_until)
