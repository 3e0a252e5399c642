"""Consumer lag of a tenant's event topic: the contract between the gateways
that measure it and the producers (REST admission, the worker's emitter) that
slow down because of it.

What "lag" means here: for one gateway, the records its live tail of the
tenant's topic still has to read, summed over the topic's partitions —
``log end offset - tail position`` with the end offset from a ListOffsets
request (a paused partition's fetch high-water mark stops moving, so it would
hide exactly the lag that matters). A tenant's lag is the *largest* of its
gateways' (the slowest replica is the one whose clients wait). A tenant that
no gateway tails has lag 0: nobody is watching live, nothing to protect.

Redis contract (written by gateways, see ``gateway.lag``; read here):

- key ``tidings:lag:<events topic>`` (the topic names prefix and tenant, so
  stacks sharing one Redis never mix), a hash;
- field: the gateway's id (``host:port``, unique per replica);
- value: ``"<records> <unix ms>"``, rewritten at most every second or so;
- every write refreshes the key's TTL (:data:`KEY_TTL_MS`), and a reader
  ignores a field older than :data:`STALE_MS`, so a gateway that stopped
  tailing (or died) stops counting within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from tidings.topics import events_topic

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "tidings:lag:"
STALE_MS: Final = 10_000
KEY_TTL_MS: Final = 30_000
# How often a reader asks Redis again; lag older than this is good enough to
# decide on coalescing or shedding, and it bounds Redis load to one HGETALL
# per tenant per second per process.
REFRESH_SECONDS: Final = 1.0


def lag_key(prefix: str, tenant: str) -> str:
    return KEY_PREFIX + events_topic(prefix, tenant)


def encode(records: int, now_ms: int) -> str:
    return f"{max(0, int(records))} {int(now_ms)}"


def tenant_lag(fields: Mapping[Any, Any], now_ms: int, stale_ms: int = STALE_MS) -> int:
    """The largest fresh lag in a hash read from :func:`lag_key` (0 if none)."""
    worst = 0
    for raw in fields.values():
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            records_text, at_text = text.split(" ", 1)
            records, at = int(records_text), int(at_text)
        except ValueError:
            continue  # a malformed field is no evidence of lag
        if now_ms - at <= stale_ms:
            worst = max(worst, records)
    return worst


def now_ms() -> int:
    return int(time.time() * 1000)


class HashReader(Protocol):
    """The one Redis call the reader needs (``redis.asyncio.Redis`` has it)."""

    def hgetall(self, name: str) -> Awaitable[Any]: ...


class LagReader:
    """Each tenant's lag, cached per process and refreshed at most every
    :data:`REFRESH_SECONDS`, in the background, so the hot path (one call per
    token) never waits on Redis. Only a tenant's very first call waits, briefly,
    for a first value. Redis trouble reads as the last known lag (fail open:
    a dead Redis must not stop events)."""

    def __init__(
        self,
        redis: HashReader,
        topic_prefix: str,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        first_wait_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = topic_prefix
        self._refresh = refresh_seconds
        self._first_wait = first_wait_seconds
        self._clock = clock
        self._values: dict[str, tuple[float, int]] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}

    def cached(self, tenant: str) -> int:
        found = self._values.get(tenant)
        return found[1] if found else 0

    async def lag(self, tenant: str) -> int:
        found = self._values.get(tenant)
        if found is not None and self._clock() - found[0] < self._refresh:
            return found[1]
        task = self._pending.get(tenant)
        if task is None:
            task = asyncio.create_task(self._fetch(tenant), name=f"lag-{tenant}")
            self._pending[tenant] = task
            task.add_done_callback(lambda _: self._pending.pop(tenant, None))
        if found is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self._first_wait)
        return self.cached(tenant)

    async def _fetch(self, tenant: str) -> None:
        previous = self.cached(tenant)
        try:
            fields = await self._redis.hgetall(lag_key(self._prefix, tenant))
            value = tenant_lag(fields or {}, now_ms())
        except Exception as exc:  # any Redis failure: keep the last value
            log.warning(
                "cannot read lag of %s (%s); using %d", tenant, type(exc).__name__, previous
            )
            value = previous
        self._values[tenant] = (self._clock(), value)

    async def close(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
