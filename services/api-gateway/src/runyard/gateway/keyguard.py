"""Guessing API keys from one address is stopped at the gateway, before auth is asked.

Each client IP has an allowance of failed API-key lookups (an ``X-API-Key`` or a
``Bearer ry_...`` that auth does not know, or that expired):
``GATEWAY_RATE_LIMIT_FAILED_API_KEYS_PER_IP_PER_MINUTE``, refilled over a minute. Once it is
spent, every request of that IP that carries an API key is answered 429 without a lookup, until
the allowance refills. Keys that work spend nothing, so a client with a
valid key is never slowed down by its own traffic. In memory, per gateway instance, like the
other buckets (``ratelimit.py``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from fastapi import Request

from runyard.gateway.auth import presented_api_key
from runyard.gateway.errors import TooManyInvalidApiKeys
from runyard.gateway.ratelimit import RATE_LIMITED


def sends_api_key(request: Request) -> bool:
    """The request will be identified by an API key (``auth.presented_api_key``)."""
    return presented_api_key(request) is not None


class FailedKeyLookups:
    def __init__(self, *, per_minute: int = 30, max_clients: int = 100_000) -> None:
        self._capacity = float(max(per_minute, 1))
        self._rate = self._capacity / 60.0
        self._max = max_clients
        #: ip -> (allowance left, when it was computed)
        self._left: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _allowance(self, ip: str, now: float) -> float:
        left, updated = self._left.get(ip, (self._capacity, now))
        return min(self._capacity, left + (now - updated) * self._rate)

    def check(self, ip: str, *, now: float | None = None) -> None:
        """429 (``TooManyInvalidApiKeys``) when ``ip`` has no failed lookup left."""
        now = time.monotonic() if now is None else now
        left = self._allowance(ip, now)
        if left < 1.0:
            RATE_LIMITED.labels("failed_api_key").inc()
            raise TooManyInvalidApiKeys(
                limit=int(self._capacity),
                retry_after_s=max(1, math.ceil((1.0 - left) / self._rate)),
            )

    def failed(self, ip: str, *, now: float | None = None) -> None:
        """Spend one of ``ip``'s failed lookups."""
        now = time.monotonic() if now is None else now
        left = self._allowance(ip, now)
        self._left.pop(ip, None)
        self._left[ip] = (max(left - 1.0, 0.0), now)
        if len(self._left) > self._max:  # least recently failing first
            self._left.popitem(last=False)
