"""A finished step's result survives a Temporal outage: a later attempt returns it.

When the server is unreachable as a step finishes, the worker retries the
completion (``WorkerSettings.temporal_retry_seconds``), but the server, once
back, first fires the timers that ran out while it was down: the attempt's
heartbeat timeout (its last heartbeat is from before the outage) or its
start-to-close timeout. It then schedules a new attempt and refuses the old
attempt's completion (its task token names the old attempt). Without this, the
new attempt redoes the whole step: clients see ``step.retrying`` and the
output a second time, and a model call is paid twice.

So every successful result is written to Redis, keyed by the scheduled
activity (workflow id, workflow run id, activity id: unique per scheduled
activity; a reset or continue-as-new has a new run id), before the SDK reports
it; an attempt after the first looks there first and, if the earlier attempt
finished, returns its result without running the step again. Nothing is
emitted for it: the clients already saw that attempt's ``step.completed``.

Redis errors never fail a step: the result is then just not kept (or not
found), and the step runs again as it would without this.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadConverter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger(__name__)

KEY_PREFIX = "tidings:finished-step:"


def result_key(info: activity.Info) -> str | None:
    if not info.workflow_id or not info.workflow_run_id:
        return None
    return f"{KEY_PREFIX}{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"


class FinishedSteps(Interceptor):
    """Worker interceptor; ``ttl_seconds`` is how long a result is kept."""

    def __init__(
        self, redis: aioredis.Redis, converter: PayloadConverter, ttl_seconds: int
    ) -> None:
        self._redis = redis
        self._converter = converter
        self._ttl = ttl_seconds
        # Attempts answered from Redis (tests and logs read it).
        self.reused = 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)

    async def load(self, key: str) -> tuple[bool, Any]:
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            log.warning("finished-step lookup failed (%s); running the step", type(exc).__name__)
            return False, None
        if not isinstance(raw, bytes):  # None: no earlier attempt finished
            return False, None
        self.reused += 1
        return True, self._converter.from_payload(Payload.FromString(raw))

    async def store(self, key: str, result: Any) -> None:
        try:
            raw = self._converter.to_payload(result).SerializeToString()
            await self._redis.set(key, raw, ex=self._ttl)
        except (RedisError, OSError) as exc:
            log.warning("finished-step result not kept (%s)", type(exc).__name__)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: FinishedSteps) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        key = result_key(info)
        if key is None:
            return await super().execute_activity(input)
        if info.attempt > 1:
            found, result = await self._owner.load(key)
            if found:
                log.info(
                    "attempt %d of %s returns the result an earlier attempt finished "
                    "while Temporal could not take it",
                    info.attempt,
                    info.activity_type,
                )
                return result
        result = await super().execute_activity(input)
        await self._owner.store(key, result)
        return result
