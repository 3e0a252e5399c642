"""A worker's announcements: the pipelines it serves, written to the registry
in Redis (:mod:`workers.announce`) at start and refreshed until it stops."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import redis.asyncio as aioredis

from workers.announce import TTL_PERIODS, Announcement, announce
from workflows.registry import PipelineRegistry

log = logging.getLogger("tidings.worker")

RETRY_SECONDS = 2.0


def announcements_of(registry: PipelineRegistry, base_queue: str) -> list[Announcement]:
    identity = f"{os.getpid()}@{socket.gethostname()}"
    return [
        Announcement(spec, registry.task_queue(spec.name, base_queue), identity)
        for spec in registry.specs()
    ]


class Announcer:
    """Announces ``registry`` every ``period`` seconds; a Redis outage is logged
    and retried (the worker keeps running what it was given)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        base_queue: str,
        registry: PipelineRegistry,
        period: float,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._base = base_queue
        self._items = announcements_of(registry, base_queue)
        self._period = period
        self._ttl = max(1, int(period * TTL_PERIODS))

    async def announce_once(self) -> bool:
        try:
            await announce(self._redis, self._namespace, self._base, self._items, self._ttl)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("cannot announce pipelines to Redis (%s); retrying", type(exc).__name__)
            return False
        return True

    async def run(self, announced: bool = True) -> None:
        """Refresh until cancelled; ``announced``: whether the last attempt worked."""
        while True:
            # After a failure, sooner: the announcements may be about to expire.
            await asyncio.sleep(self._period if announced else min(self._period, RETRY_SECONDS))
            announced = await self.announce_once()
