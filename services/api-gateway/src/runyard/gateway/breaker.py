"""One circuit breaker per upstream service.

closed -> (``threshold`` consecutive connection failures or timeouts) -> open: every request
gets 503 at once, nothing is sent -> after ``open_s`` half-open: one trial request goes
through; success closes the circuit, failure opens it again.
"""

from __future__ import annotations

import math
import time
from enum import IntEnum

from prometheus_client import Gauge

from runyard.gateway.errors import UpstreamUnavailable
from runyard.shared.logging import get_logger

log = get_logger(__name__)

CIRCUIT_STATE = Gauge(
    "runyard_gateway_circuit_state",
    "Circuit of each upstream: 0 closed, 1 open, 2 half-open",
    ["upstream"],
)


class State(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    def __init__(self, name: str, *, threshold: int, open_s: float) -> None:
        self.name = name
        self.threshold = max(threshold, 1)
        self.open_s = open_s
        self.state = State.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        CIRCUIT_STATE.labels(name).set(self.state)

    def _set(self, state: State) -> None:
        if state == self.state:
            return  # the gauge shows it already (set at start and at every change)
        log.warning("gateway.circuit.changed", upstream=self.name, state=state.name.lower())
        self.state = state
        CIRCUIT_STATE.labels(self.name).set(state)

    def before_call(self) -> None:
        """Let the request through, or raise 503 while the circuit is open."""
        if self.state == State.CLOSED:
            return
        now = time.monotonic()
        if self.state == State.OPEN and now - self._opened_at >= self.open_s:
            self._set(State.HALF_OPEN)
        if self.state == State.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        retry = max(1, math.ceil(self.open_s - (now - self._opened_at)))
        raise UpstreamUnavailable(self.name, retry_after_s=retry)

    def record_success(self) -> None:
        self.failures = 0
        self._trial_in_flight = False
        if self.state != State.CLOSED:
            self._set(State.CLOSED)

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.state == State.HALF_OPEN or self.failures >= self.threshold:
            self._opened_at = time.monotonic()
            self._set(State.OPEN)

    def release(self) -> None:
        """The call ended without telling anything about the upstream (client went away)."""
        self._trial_in_flight = False
