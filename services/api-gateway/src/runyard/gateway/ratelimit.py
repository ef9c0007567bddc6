"""Token buckets, in memory, one set per gateway instance.

A bucket holds ``limit`` tokens (one minute's allowance) and refills at ``limit / 60`` per
second; a request takes one token. With N gateway instances behind a load balancer each keeps
its own buckets, so a client spread over all of them gets up to N times the limit (see
docs/operations.md, gateway).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter

from runyard.gateway.errors import RateLimited
from runyard.shared.identity import client_network

RATE_LIMITED = Counter(
    "runyard_gateway_rate_limited", "Requests refused with 429, by bucket kind", ["kind"]
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    #: seconds until the bucket is full again
    reset_s: int
    #: seconds until one token is available (0 when allowed)
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """``headers()`` as ASGI response headers."""
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_s).encode()),
        ]


class TokenBuckets:
    def __init__(self, *, max_buckets: int = 100_000) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, updated
        self._max = max_buckets

    def take(self, key: str, limit: int, *, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        capacity = float(max(limit, 1))
        rate = capacity / 60.0
        tokens, updated = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - updated) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max:  # least recently used first; mostly refilled ones
            self._buckets.popitem(last=False)
        return Decision(
            allowed=allowed,
            limit=int(capacity),
            remaining=int(tokens),
            reset_s=math.ceil((capacity - tokens) / rate),
            retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        )


def check(buckets: TokenBuckets, kind: str, key: str, limit: int) -> Decision:
    """Take a token or raise 429 problem+json with ``Retry-After`` and ``RateLimit-*``.

    ``ip`` buckets are per client network: an IPv6 client's whole /64 shares one."""
    if kind == "ip":
        key = client_network(key)
    decision = buckets.take(f"{kind}:{key}", limit)
    if not decision.allowed:
        RATE_LIMITED.labels(kind).inc()
        raise RateLimited(
            limit=decision.limit,
            retry_after_s=decision.retry_after_s,
            headers=decision.headers(),
        )
    return decision
