"""Activities the workflow schedules for itself: run-level events, the failure
record of a step, and requests to external services.

Workflow code never touches Kafka; it hands a deterministic (seq, attempt) to
these activities, so a retried emit re-sends the same event id.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.emitter import Emitter
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


class RunActivities:
    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter

    @activity.defn(name=EMIT_RUN_EVENT)
    async def emit_run_event(self, data: RunEventInput) -> str:
        bind_log_context(run_id=data.run_id, tenant=data.tenant)
        event = Event(
            type=data.type,
            tenant=data.tenant,
            run_id=data.run_id,
            step=data.step,
            attempt=data.attempt,
            seq=data.seq,
            data=data.data,
        )
        await self._emitter.emit(event)
        return event.id

    @activity.defn(name=RECORD_STEP_FAILURE)
    async def record_step_failure(self, data: StepFailureInput) -> str:
        bind_log_context(run_id=data.run_id, tenant=data.tenant)
        failed = Event(
            type=EventType.STEP_FAILED,
            tenant=data.tenant,
            run_id=data.run_id,
            step=data.step,
            attempt=data.attempt,
            # After the attempt's own events and after its step.retrying marker.
            seq=CLOSING_SEQ + 1,
            data={"error": data.error, "error_type": data.error_type},
        )
        await self._emitter.emit(failed)
        record: dict[str, Any] = {
            "kind": "step_failed",
            # Same id as the step.failed event: a retried record is recognisable.
            "id": failed.id,
            "tenant": data.tenant,
            "run_id": data.run_id,
            "pipeline": data.pipeline,
            "step": data.step,
            "attempt": data.attempt,
            "input": data.input,
            "error": data.error,
            "error_type": data.error_type,
            "ts": utc_now_iso(),
        }
        await self._emitter.publish(dlq_topic(self._emitter.topic_prefix), data.run_id, record)
        return failed.id

    @activity.defn(name=REQUEST_EXTERNAL)
    async def request_external(self, data: ExternalRequestInput) -> str:
        prefix = self._emitter.topic_prefix
        request_id = event_id(data.run_id, data.step, data.attempt, "request", 0)
        await self._emitter.publish(
            requests_topic(prefix),
            data.run_id,
            {
                "id": request_id,
                "idempotency_key": data.idempotency_key,
                "tenant": data.tenant,
                "run_id": data.run_id,
                "pipeline": data.pipeline,
                "step": data.step,
                "attempt": data.attempt,
                "input": data.input,
                "reply_topic": completions_topic(prefix),
                "timeout_seconds": data.timeout_seconds,
            },
        )
        await self._emitter.emit(
            Event(
                type=EventType.STEP_REQUESTED,
                tenant=data.tenant,
                run_id=data.run_id,
                step=data.step,
                attempt=data.attempt,
                seq=0,
                data={"idempotency_key": data.idempotency_key, "input": data.input},
            )
        )
        return request_id
