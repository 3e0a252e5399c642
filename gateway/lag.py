"""The gateway side of the lag contract (``tidings.lag``): measure how far a
live tail is behind its tenant's topic end, and publish it for the producers.

The stream plane's live tail calls :func:`measure` and :func:`publish` (or
just :class:`LagPublisher`) about once a second per tenant; REST admission
reads the result back through :class:`tidings.lag.LagReader`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

from aiokafka import TopicPartition

from tidings.lag import KEY_TTL_MS, encode, lag_key, now_ms


class PositionSource(Protocol):
    """What :func:`measure` needs of an ``AIOKafkaConsumer``."""

    def end_offsets(
        self, partitions: list[TopicPartition]
    ) -> Awaitable[dict[TopicPartition, int]]: ...

    def position(self, partition: TopicPartition) -> Awaitable[int]: ...


class HashWriter(Protocol):
    def pipeline(self, transaction: bool = ...) -> Any: ...


def gateway_id(port: int) -> str:
    """This replica's field in the lag hash: unique per host and port."""
    return f"{socket.gethostname()}:{port}"


async def measure(consumer: PositionSource, partitions: Iterable[TopicPartition]) -> int:
    """Records between the consumer's positions and the partitions' log ends.

    ``end_offsets`` asks the broker (ListOffsets), so this stays true for a
    partition the tail has paused, whose fetch high-water mark no longer moves.
    """
    tps = list(partitions)
    if not tps:
        return 0
    ends = await consumer.end_offsets(tps)
    behind = 0
    for tp in tps:
        behind += max(0, ends.get(tp, 0) - await consumer.position(tp))
    return behind


async def publish(redis: HashWriter, prefix: str, tenant: str, gateway: str, records: int) -> None:
    """Write this gateway's lag for ``tenant`` and refresh the key's TTL, in one round trip."""
    key = lag_key(prefix, tenant)
    pipe = redis.pipeline(transaction=False)
    pipe.hset(key, gateway, encode(records, now_ms()))
    pipe.pexpire(key, KEY_TTL_MS)
    await pipe.execute()


async def withdraw(redis: HashWriter, prefix: str, tenant: str, gateway: str) -> None:
    """Remove this gateway's field (its tail stopped: it no longer lags)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hdel(lag_key(prefix, tenant), gateway)
    await pipe.execute()


class LagPublisher:
    """Rate-limits :func:`measure` + :func:`publish` for one tenant's tail: call
    :meth:`tick` from the tail's loop as often as it likes."""

    def __init__(
        self,
        redis: HashWriter,
        prefix: str,
        tenant: str,
        gateway: str,
        *,
        interval_seconds: float = 1.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._tenant = tenant
        self._gateway = gateway
        self._interval = interval_seconds
        self._last = float("-inf")
        self.last_records = 0

    async def tick(
        self,
        consumer: PositionSource,
        partitions: Iterable[TopicPartition],
        *,
        now_due: bool = False,
    ) -> None:
        """Measure and publish if a second has passed since the last time, or
        at once with ``now_due`` (the tail has just paused: admission should
        not wait up to a second to see a tenant fall behind)."""
        now = time.monotonic()
        if not now_due and now - self._last < self._interval:
            return
        self._last = now
        self.last_records = await measure(consumer, partitions)
        await publish(self._redis, self._prefix, self._tenant, self._gateway, self.last_records)

    async def close(self) -> None:
        await withdraw(self._redis, self._prefix, self._tenant, self._gateway)
