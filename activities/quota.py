"""Per-tenant events/s quota of one worker process: a token bucket per tenant.

Over the rate an emit *waits* for its token; it is never dropped (a dropped
event would be a hole in a run's stream that no resume can fill). Each tenant
has its own bucket and its own FIFO lock, so one tenant's backlog delays only
that tenant's emits, in their original order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class _Bucket:
    __slots__ = ("last", "lock", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now
        self.lock = asyncio.Lock()


class TenantQuota:
    """``rate`` events/s per tenant, bursts up to ``burst`` (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    async def acquire(self, tenant: str) -> float:
        """Take one event's token for ``tenant``; returns the seconds waited."""
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(self.burst, self._clock())
        async with bucket.lock:
            self._refill(bucket)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            wait = (1 - bucket.tokens) / self.rate
            await asyncio.sleep(wait)
            self._refill(bucket)
            bucket.tokens = max(0.0, bucket.tokens - 1)
            return wait

    def _refill(self, bucket: _Bucket) -> None:
        now = self._clock()
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.last) * self.rate)
        bucket.last = now
