"""A step that always fails: retries, step.failed, run.failed, a DLQ record, a hot-loop alert."""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from tests.orchestration.harness import (
    Harness,
    assert_well_formed,
    logical,
    run_events,
    types_of,
)
from tests.topics import records_until
from tidings.events import EventType
from tidings.topics import dlq_topic

pytestmark = pytest.mark.integration


async def test_exhausted_step_fails_the_run_with_a_dlq_record_and_a_hot_loop_alert(
    harness: Harness,
) -> None:
    run_id, _ = await harness.start("always-fails", {"value": 42})
    with pytest.raises(WorkflowFailureError) as failure:
        await harness.result(run_id)
    assert "step explode failed" in str(failure.value.cause)
    handle = harness.client.get_workflow_handle(run_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED

    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    explode = [e for e in events if e.step == "explode"]
    started = [e.attempt for e in explode if e.type == EventType.STEP_STARTED]
    assert started == [1, 2, 3, 4]
    retrying = [e.attempt for e in explode if e.type == EventType.STEP_RETRYING]
    # Each attempt re-announces every earlier one (oldest first), and step.failed
    # is preceded by them too, so one that died before its first emit still gets
    # its predecessor discarded; a repeat is the same event (assert_well_formed:
    # same id, same content). Here one worker process ran every attempt, and its
    # emitter does not send an id the broker already acknowledged: each once.
    assert retrying == [1, 2, 3], "each attempt a retry replaced is discarded once"
    unique = [e for e in logical(explode) if e.type == EventType.STEP_RETRYING]
    assert [(e.attempt, e.data) for e in unique] == [
        (k, {"discard_attempt": k, "next_attempt": k + 1}) for k in (1, 2, 3)
    ]
    (failed,) = [e for e in explode if e.type == EventType.STEP_FAILED]
    assert failed.attempt == 4 and "boom on attempt 4" in failed.data["error"]
    (alert,) = [e for e in explode if e.type == EventType.ALERT_HOT_LOOP]
    assert alert.data["retries"] == 3 and alert.attempt == 4
    run_failed = events[-1]
    assert run_failed.type == EventType.RUN_FAILED and run_failed.data["step"] == "explode"
    assert EventType.RUN_COMPLETED not in types_of(events)

    records = await records_until(
        harness.settings.kafka.bootstrap_servers,
        dlq_topic(harness.settings.kafka.topic_prefix),
        key=run_id,
        until=lambda records: len(records) >= 1,
        timeout=10,
    )
    record = json.loads(records[0].value or b"")
    assert record["kind"] == "step_failed" and record["step"] == "explode"
    assert record["input"] == {"value": 42}
    assert record["attempt"] == 4 and "boom" in record["error"]
    assert record["id"] == failed.id


async def test_fallback_replaces_a_failed_step(harness: Harness) -> None:
    run_id, _ = await harness.start("with-fallback", {"value": 7})
    result = await harness.result(run_id)
    assert result.output == {"rescued": True, "value": 7}
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    assert EventType.STEP_FAILED in types_of(events, "explode")
    assert types_of(events, "explode.fallback")[-1] == EventType.STEP_COMPLETED
    assert events[-1].type == EventType.RUN_COMPLETED


async def test_a_failed_branch_cancels_its_siblings(harness: Harness) -> None:
    run_id, _ = await harness.start("fan-out-fails", {})
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(harness.result(run_id), timeout=20)
    assert "step each[1] failed: bad item" in str(failure.value.cause)
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    assert types_of(events, "each[1]")[-1] == EventType.STEP_FAILED
    assert EventType.STEP_COMPLETED not in types_of(events, "each[0]")
    assert events[-1].type == EventType.RUN_FAILED
