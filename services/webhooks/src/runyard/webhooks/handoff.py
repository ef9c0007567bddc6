"""Deliveries that fan-out hands to this process's delivery worker, so that a new delivery needs
no claim query.

When a delivery worker runs in the process, fan-out inserts up to ``capacity`` of a consumer
batch's new deliveries already leased (``next_attempt_at`` = now + the attempt lease, as a claim
would set it), and once that transaction has committed puts them on this queue; the worker
sends them as its slots free. The rest are inserted due at once and claimed as before.

Nothing is lost or sent twice by it: the rows are durable before anything is sent, and no
other worker claims them while the lease runs. A handed delivery that waited here longer than
``max_wait_s`` (half the lease's margin over the request timeout) is not sent from here: its
lease runs out and a claim picks it up, so an attempt never starts too late to finish inside
its lease. If the process dies, the leases run out and any worker claims the rows.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runyard.shared.logging import get_logger

if TYPE_CHECKING:
    from runyard.webhooks.attempts import ClaimedDelivery
    from runyard.webhooks.config import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class Handed:
    job: ClaimedDelivery
    #: ``time.monotonic()`` when its transaction committed
    at: float


class Handoff:
    @classmethod
    def from_settings(cls, settings: Settings) -> Handoff:
        return cls(
            capacity=settings.delivery_concurrency,
            lease_s=settings.delivery_timeout_s + settings.delivery_lease_margin_s,
            max_wait_s=settings.delivery_lease_margin_s / 2,
        )

    def __init__(self, *, capacity: int, lease_s: float, max_wait_s: float) -> None:
        self.capacity = capacity
        #: the lease a handed row is inserted with (the claim's: request timeout + margin)
        self.lease_s = lease_s
        self.max_wait_s = max_wait_s
        #: a delivery worker takes from this queue (else fan-out leases nothing)
        self.active = False
        self.queue: collections.deque[Handed] = collections.deque()
        #: leased rows of transactions not yet committed
        self.reserved = 0
        #: called when deliveries arrive (the worker's wake-up)
        self.on_arrival: Callable[[], None] = lambda: None

    def reserve(self, wanted: int) -> int:
        """How many of ``wanted`` new deliveries may be leased for this process's worker."""
        if not self.active:
            return 0
        granted = max(0, min(wanted, self.capacity - len(self.queue) - self.reserved))
        self.reserved += granted
        return granted

    def release(self, reserved: int) -> None:
        self.reserved = max(0, self.reserved - reserved)

    def deliver(self, reserved: int, jobs: list[ClaimedDelivery]) -> None:
        """After the commit: the leased deliveries that were inserted (fewer than reserved
        when some already existed)."""
        self.release(reserved)
        if not jobs:
            return
        now = time.monotonic()
        self.queue.extend(Handed(job, now) for job in jobs)
        self.on_arrival()

    def take(self) -> ClaimedDelivery | None:
        """The next handed delivery still young enough to be sent within its lease."""
        now = time.monotonic()
        while self.queue:
            handed = self.queue.popleft()
            if now - handed.at <= self.max_wait_s:
                return handed.job
            log.warning(
                "webhooks.handoff.expired",
                delivery_id=str(handed.job.delivery_id),
                waited_s=round(now - handed.at, 1),
            )
        return None

    def clear(self) -> None:
        """The worker stops: what is queued is left to its leases (claimed when they end)."""
        self.active = False
        self.queue.clear()
