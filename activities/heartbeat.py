"""Heartbeats for the whole life of an activity attempt.

An attempt that waits on the event plane (an emit during a Kafka outage) is
alive and must say so, or Temporal times it out by heartbeat and spends one of
the step's retries on an outage that is not the step's fault. So the heartbeat
covers everything the attempt does: announcements, ``step.started``, the body,
the final flush and ``step.completed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(heartbeat_timeout: timedelta | None) -> AsyncIterator[None]:
    """Heartbeat every third of the timeout while the block runs (nothing if ``None``)."""
    if heartbeat_timeout is None:
        yield
        return
    interval = max(heartbeat_timeout.total_seconds() / 3, 0.1)

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
