"""An attempt out of time while the event plane is away ends uncounted.

A step attempt whose emits wait for Kafka would otherwise run into its own
start-to-close timeout, and Temporal counts a timeout against the step's
retries. Just before that, if the worker's oldest unacknowledged record has
been waiting too, the attempt ends with ``EVENT_PLANE_UNAVAILABLE`` instead:
non-retryable for Temporal, and the workflow schedules the step again without
counting it (``workflows/pipeline.py``). See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ActivityError, ApplicationError

from activities.emitter import Emitter
from tidings.errors import ActivityErrorType

log = logging.getLogger(__name__)

# How long the oldest record must have waited for the broker before the event
# plane counts as away (a busy broker acknowledges well within it).
_STALLED_SECONDS = 2.0

T = TypeVar("T")


async def until_event_plane_gives_up(
    emitter: Emitter, info: activity.Info, attempt: int, work: Awaitable[T]
) -> T:
    """Run the attempt; if it is still waiting on the event plane just before its
    start-to-close timeout, end it with EVENT_PLANE_UNAVAILABLE instead.

    A timeout would count against the step's retries; this error is not
    retried by Temporal (non-retryable) and the workflow schedules the step
    again without counting it (workflows/pipeline.py). An attempt that is slow
    for its own reasons (the event plane flowing) is left to time out."""
    timeout = info.start_to_close_timeout
    task = asyncio.ensure_future(work)
    if timeout is None or not timeout.total_seconds():
        return await task
    # Room for the failure to reach Temporal before the timeout fires.
    margin = min(max(timeout.total_seconds() * 0.1, 0.5), 10.0)
    deadline = info.started_time + timeout - timedelta(seconds=margin)
    remaining = (deadline - datetime.now(UTC)).total_seconds()
    try:
        done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.0))
        if task in done or emitter.stalled_for() < max(margin, _STALLED_SECONDS):
            return await task
    except asyncio.CancelledError:
        task.cancel()
        raise
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.warning(
        "attempt %d ends unfinished: the event plane has not taken its events for %.0fs",
        attempt,
        emitter.stalled_for(),
    )
    raise ApplicationError(
        "the event plane (Kafka) was unavailable for the rest of the attempt's time",
        {"attempt": attempt},
        type=ActivityErrorType.EVENT_PLANE_UNAVAILABLE,
        non_retryable=True,
    )


def event_plane_attempt(error: BaseException) -> int | None:
    """The attempt an :func:`until_event_plane_gives_up` ending names, if
    ``error`` is one (as a workflow sees it: an activity's failure); else None."""
    cause = error.cause if isinstance(error, ActivityError) else None
    if not isinstance(cause, ApplicationError):
        return None
    if cause.type != ActivityErrorType.EVENT_PLANE_UNAVAILABLE:
        return None
    details = cause.details[0] if cause.details else None
    attempt = details.get("attempt") if isinstance(details, dict) else None
    return attempt if isinstance(attempt, int) else None
