"""Activities the workflow schedules for itself: run-level events, the failure
record of a step, and requests to external services.

Workflow code never touches Kafka; it hands a deterministic (seq, attempt) to
these activities, so a retried emit re-sends the same event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from temporalio import activity

from activities.defn import defn
from activities.emitter import Emitter
from activities.heartbeat import heartbeating
from activities.steps import discard_data
from activities.types import (
    CLOSING_SEQ,
    EMIT_RUN_EVENT,
    RECORD_STEP_FAILURE,
    REQUEST_EXTERNAL,
    ExternalRequestInput,
    RunEventInput,
    StepFailureInput,
)
from tidings.events import Event, EventType, event_id, utc_now_iso
from tidings.observability import bind_log_context
from tidings.topics import completions_topic, dlq_topic, requests_topic


class _OfAttempt(Protocol):
    """What names one attempt of a step (or, with no step, the run)."""

    @property
    def tenant(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def step(self) -> str | None: ...
    @property
    def attempt(self) -> int: ...


class _OfStep(_OfAttempt, Protocol):
    """An attempt of a step together with the pipeline and input it ran with."""

    @property
    def pipeline(self) -> str: ...
    @property
    def input(self) -> dict[str, Any]: ...


class RunActivities:
    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter

    @defn(EMIT_RUN_EVENT)
    async def emit_run_event(self, data: RunEventInput) -> str:
        bind_log_context(run_id=data.run_id, tenant=data.tenant)
        async with heartbeating(activity.info().heartbeat_timeout):
            return await self._emit(data, data.type, data.seq, data.data)

    @defn(RECORD_STEP_FAILURE)
    async def record_step_failure(self, data: StepFailureInput) -> str:
        bind_log_context(run_id=data.run_id, tenant=data.tenant)
        async with heartbeating(activity.info().heartbeat_timeout):
            return await self._record_step_failure(data)

    async def _record_step_failure(self, data: StepFailureInput) -> str:
        # Every earlier attempt's output is discarded before the step is
        # declared failed: a later attempt may have died before it could
        # announce them (a worker killed, an attempt timed out while the event
        # plane was away), and a client must not keep an earlier attempt's
        # partial text next to step.failed. Same ids as the attempts' own
        # announcements (activities.steps), so a repeat is the same event.
        for earlier in range(1, data.attempt):
            await self._emit(
                _attempt_of(data, earlier),
                EventType.STEP_RETRYING,
                CLOSING_SEQ,
                discard_data(earlier),
            )
        # After the attempt's own events and after its step.retrying marker.
        seq = CLOSING_SEQ + 1
        error = {"error": data.error, "error_type": data.error_type}
        failed_id = await self._emit(data, EventType.STEP_FAILED, seq, error)
        record: dict[str, Any] = {
            "kind": "step_failed",
            # Same id as the step.failed event: a retried record is recognisable.
            "id": failed_id,
            **_step_fields(data),
            **error,
            "ts": utc_now_iso(),
        }
        await self._emitter.publish(
            dlq_topic(self._emitter.topic_prefix), data.run_id, record, record_id=failed_id
        )
        return failed_id

    @defn(REQUEST_EXTERNAL)
    async def request_external(self, data: ExternalRequestInput) -> str:
        async with heartbeating(activity.info().heartbeat_timeout):
            return await self._request_external(data)

    async def _request_external(self, data: ExternalRequestInput) -> str:
        prefix = self._emitter.topic_prefix
        request_id = event_id(data.run_id, data.step, data.attempt, "request", 0)
        await self._emitter.publish(
            requests_topic(prefix),
            data.run_id,
            {
                "id": request_id,
                "idempotency_key": data.idempotency_key,
                **_step_fields(data),
                "reply_topic": completions_topic(prefix),
                "timeout_seconds": data.timeout_seconds,
            },
            record_id=request_id,
        )
        requested = {"idempotency_key": data.idempotency_key, "input": data.input}
        await self._emit(data, EventType.STEP_REQUESTED, 0, requested)
        return request_id

    async def _emit(self, of: _OfAttempt, type: str, seq: int, data: dict[str, Any]) -> str:
        """Emit an event of ``of``'s attempt; returns its (deterministic) id."""
        event = Event(
            type=type,
            tenant=of.tenant,
            run_id=of.run_id,
            step=of.step,
            attempt=of.attempt,
            seq=seq,
            data=data,
        )
        await self._emitter.emit(event)
        return event.id


@dataclass(frozen=True)
class _Attempt:
    tenant: str
    run_id: str
    step: str | None
    attempt: int


def _attempt_of(of: _OfAttempt, attempt: int) -> _Attempt:
    return _Attempt(of.tenant, of.run_id, of.step, attempt)


def _step_fields(of: _OfStep) -> dict[str, Any]:
    """The attempt as a record on a topic names it: who, which run, step and input."""
    return {
        "tenant": of.tenant,
        "run_id": of.run_id,
        "pipeline": of.pipeline,
        "step": of.step,
        "attempt": of.attempt,
        "input": of.input,
    }
