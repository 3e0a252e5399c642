"""How a pipeline step is written: a method that gets a :class:`StepContext`.

A user adds a step by subclassing :class:`StepActivities`, decorating a method
with :func:`step`, and registering an instance with the worker. The decorator
does everything every step must do the same way: attempt-tagged
``step.started`` / ``step.completed``, ``step.retrying`` for every attempt a
retry replaces, the hot-loop alert, heartbeats, and error details the
workflow reads to know which attempt failed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.coalesce import TokenBuffer
from activities.defn import activity_name, defn
from activities.emitter import Emitter
from activities.heartbeat import heartbeating
from activities.metrics import WorkerMetrics
from activities.plane_deadline import until_event_plane_gives_up
from activities.types import CLOSING_SEQ, HotLoopPolicy, StepInput
from tidings.events import Event, EventType
from tidings.observability import bind_log_context

log = logging.getLogger(__name__)

StepOutput = dict[str, Any]


class StepContext:
    """Emits one attempt's events with a seq counter private to (run, step, attempt)."""

    def __init__(self, emitter: Emitter, data: StepInput, attempt: int, *, seq: int = 0) -> None:
        self._emitter = emitter
        self._data = data
        self.attempt = attempt
        # Not 0 when the attempt's events are split over several activities
        # (an agent's model requests, activities/agent/durable.py).
        self._seq = seq
        self.name = data.step if data.branch is None else f"{data.step}[{data.branch}]"
        # One emit at a time: a seq is taken and its record enqueued together,
        # so records leave in seq order even when a coalescing timer flushes
        # concurrently with the step.
        self._lock = asyncio.Lock()
        policy = emitter.coalesce_policy
        self._tokens: TokenBuffer | None = TokenBuffer(policy) if policy is not None else None
        self._timer: asyncio.Task[None] | None = None

    @property
    def seq(self) -> int:
        """The seq the next event takes."""
        return self._seq

    @property
    def run_id(self) -> str:
        return self._data.run_id

    @property
    def tenant(self) -> str:
        return self._data.tenant

    @property
    def emitter_metrics(self) -> WorkerMetrics:
        return self._emitter.metrics

    async def emit(self, type_: str, data: dict[str, Any], *, wait: bool = True) -> Event:
        async with self._lock:
            # Buffered tokens were produced before this event: they go first.
            await self._send_buffered()
            return await self._emit_locked(type_, data, wait=wait)

    async def _emit_locked(self, type_: str, data: dict[str, Any], *, wait: bool) -> Event:
        event = self.event(type_, data, seq=self._seq)
        self._seq += 1
        await self._emitter.emit(event, wait=wait)
        return event

    def event(self, type_: str, data: dict[str, Any], *, seq: int, attempt: int = 0) -> Event:
        return Event(
            type=type_,
            tenant=self._data.tenant,
            run_id=self._data.run_id,
            step=self.name,
            attempt=attempt or self.attempt,
            seq=seq,
            data=data,
        )

    async def send(self, event: Event) -> None:
        """Send an event built with :meth:`event` (for seqs outside the counter)."""
        await self._emitter.emit(event)

    async def token(self, text: str) -> None:
        """Stream one token. Not awaited per record: the step flushes before it completes.

        While the tenant's lag is high the token is buffered and sent with its
        neighbours as one coalesced record (``activities.coalesce``)."""
        buffer = self._tokens
        if buffer is not None and await self._emitter.coalescing(self._data.tenant):
            async with self._lock:
                buffer.add(text)
                if buffer.full:
                    await self._send_buffered()
            if buffer.parts and self._timer is None:
                self._timer = asyncio.create_task(self._flush_later(buffer.remaining_seconds()))
        else:
            async with self._lock:
                # Lag fell: what was buffered goes first, so text stays in order.
                await self._send_buffered()
                await self._emit_locked(EventType.STEP_TOKEN, {"text": text}, wait=False)
        activity.heartbeat(self._seq)

    async def flush_tokens(self) -> None:
        """Send any buffered tokens now (the step is ending)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        async with self._lock:
            await self._send_buffered()

    async def _flush_later(self, delay: float) -> None:
        # Tokens may stop arriving (a slow model): the oldest buffered token
        # still leaves within max_ms. Shielded: a cancel that lands while the
        # record is being enqueued must not lose it (its seq is already taken).
        try:
            await asyncio.sleep(delay)
            await asyncio.shield(self._send_buffered_locked())
        finally:
            if self._timer is asyncio.current_task():
                self._timer = None

    async def _send_buffered_locked(self) -> None:
        async with self._lock:
            await self._send_buffered()

    async def _send_buffered(self) -> None:
        buffer = self._tokens
        if buffer is None or not buffer.parts:
            return
        text, count = buffer.take()
        if count == 1:
            await self._emit_locked(EventType.STEP_TOKEN, {"text": text}, wait=False)
            return
        await self._emit_locked(EventType.STEP_TOKEN, {"text": text, "tokens": count}, wait=False)
        metrics = self._emitter.metrics
        metrics.coalesced_tokens.labels(self._data.tenant).inc(count)
        metrics.coalesced_records.labels(self._data.tenant).inc()

    async def progress(self, **data: Any) -> None:
        await self.emit(EventType.STEP_PROGRESS, data)


class StepActivities:
    """Base of a class of step activities; it receives its clients in the constructor."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter


S = TypeVar("S", bound=StepActivities)
StepBody = Callable[[S, StepContext, dict[str, Any]], Awaitable[StepOutput]]
StepActivity = Callable[[S, StepInput], Awaitable[StepOutput]]


def step(name: str) -> Callable[[StepBody[S]], StepActivity[S]]:
    """Declare a step activity named ``name`` (the name pipeline specs refer to)."""

    def decorate(body: StepBody[S]) -> StepActivity[S]:
        # No functools.wraps: Temporal reads the signature to decode the
        # argument, and it must see StepInput, not the body's parameters.
        async def run(self: S, data: StepInput) -> StepOutput:
            return await run_step(self.emitter, data, lambda ctx: body(self, ctx, data.input))

        run.__name__ = body.__name__
        run.__qualname__ = body.__qualname__
        run.__doc__ = body.__doc__
        # Resolved types, not strings: Temporal decodes the argument by these.
        run.__annotations__ = {"data": StepInput, "return": dict[str, Any]}
        return defn(name)(run)

    return decorate


async def run_step(
    emitter: Emitter, data: StepInput, body: Callable[[StepContext], Awaitable[StepOutput]]
) -> StepOutput:
    info = activity.info()
    bind_log_context(run_id=data.run_id, tenant=data.tenant)
    # Attempt numbers carry on across schedules of the step (attempt_base),
    # so event ids never repeat between them.
    attempt = data.attempt_base + info.attempt
    ctx = StepContext(emitter, data, attempt)
    # From the first emit to the last: any of them may wait out an event-plane
    # outage, and a silent attempt would be timed out by heartbeat (a retry
    # spent on the outage). A step without a heartbeat timeout is bounded by
    # its start-to-close timeout alone.
    async with heartbeating(info.heartbeat_timeout):
        return await until_event_plane_gives_up(
            emitter, info, attempt, _attempt(emitter, ctx, data, info, body)
        )


async def _attempt(
    emitter: Emitter,
    ctx: StepContext,
    data: StepInput,
    info: activity.Info,
    body: Callable[[StepContext], Awaitable[StepOutput]],
) -> StepOutput:
    if ctx.attempt > 1:
        await _announce_retry(ctx, data, info)
    await ctx.emit(
        EventType.STEP_STARTED, {"branch": data.branch} if data.branch is not None else {}
    )
    try:
        output = await body(ctx)
    except asyncio.CancelledError:
        # Cancelled (the run, or out of time while the event plane is away):
        # what was handed over still leaves; waiting for it here would only
        # hold the cancel up.
        raise
    except ApplicationError as exc:
        await _flush(ctx, emitter)
        raise ApplicationError(
            exc.message,
            {"attempt": ctx.attempt},
            type=exc.type,
            non_retryable=exc.non_retryable,
        ) from exc
    except Exception as exc:
        await _flush(ctx, emitter)
        # The exception's class becomes the error type, which retry policies
        # can name in non_retryable.
        raise ApplicationError(
            str(exc) or type(exc).__name__, {"attempt": ctx.attempt}, type=type(exc).__name__
        ) from exc
    await _flush(ctx, emitter)
    await ctx.emit(EventType.STEP_COMPLETED, {"output": output})
    return output


async def _flush(ctx: StepContext, emitter: Emitter) -> None:
    await ctx.flush_tokens()
    await emitter.flush()


async def _announce_retry(ctx: StepContext, data: StepInput, info: activity.Info) -> None:
    # Every earlier attempt, not only the previous one: an attempt that died
    # before its first emit never announced its own predecessor. Each event is
    # tagged with the attempt it discards (clients drop that attempt's output),
    # and its id and data depend on that attempt only, so a later attempt's
    # repeat is the same event and clients drop it by id. Oldest first: the
    # last one names the attempt that runs now.
    for earlier in range(1, ctx.attempt):
        await ctx.send(
            ctx.event(
                EventType.STEP_RETRYING, discard_data(earlier), seq=CLOSING_SEQ, attempt=earlier
            )
        )
    window = (info.current_attempt_scheduled_time - info.scheduled_time).total_seconds()
    await alert_hot_loop(ctx, data.hot_loop, data.tenant, data.run_id, info.attempt - 1, window)


async def alert_hot_loop(
    ctx: StepContext,
    policy: HotLoopPolicy,
    tenant: str,
    run_id: str,
    retries: int,
    window: float,
) -> None:
    """``alert.hot_loop`` once a step has been retried past ``policy`` within
    its window (``window``: seconds since the step was first scheduled)."""
    # Retries only grow, so the count is crossed once, at its tightest window.
    if retries == policy.max_retries + 1 and window <= policy.window_seconds:
        log.warning(
            "hot loop: run %s step %s retried %d times in %.1fs",
            run_id,
            ctx.name,
            retries,
            window,
        )
        ctx.emitter_metrics.hot_loops.labels(tenant).inc()
        await ctx.emit(
            EventType.ALERT_HOT_LOOP,
            {
                "retries": retries,
                "window_seconds": policy.window_seconds,
                "elapsed_seconds": round(window, 3),
            },
        )


def discard_data(discarded: int) -> dict[str, Any]:
    """The data of the ``step.retrying`` that discards attempt ``discarded`` (seq
    CLOSING_SEQ). One definition: every writer of it writes the same event."""
    return {"discard_attempt": discarded, "next_attempt": discarded + 1}


def activities_of(*objects: object) -> list[Callable[..., Any]]:
    """The Temporal activities defined on ``objects``, bound, for ``Worker(activities=...)``."""
    found: list[Callable[..., Any]] = []
    for obj in objects:
        for attr in dir(type(obj)):
            member = getattr(type(obj), attr, None)
            if activity_name(member) is not None:
                found.append(getattr(obj, attr))
    return found
