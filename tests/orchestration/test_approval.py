"""Human approval: approve, reject, and the timeout policy."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from tests.orchestration.harness import Harness, assert_well_formed, run_events, types_of
from tests.support import wait_for
from tidings.events import Event, EventType
from tidings.runs import APPROVE_SIGNAL, REJECT_SIGNAL, STATUS_QUERY, RunState, RunStatus

pytestmark = pytest.mark.integration

INPUT = {"question": "What is a dead-letter queue for?", "require_approval": True}


def _waiting(events: list[Event]) -> bool:
    return any(e.type == EventType.RUN_WAITING for e in events)


async def _status(harness: Harness, run_id: str) -> RunStatus:
    handle = harness.client.get_workflow_handle(run_id)
    status: RunStatus = await handle.query(STATUS_QUERY, result_type=RunStatus)
    return status


async def test_approve_signal_releases_the_review_step(harness: Harness) -> None:
    run_id, _ = await harness.start("research-approval", INPUT)
    waiting = await run_events(harness.settings, run_id, until=_waiting)
    assert waiting[-1].data["step"] == "review"

    async def is_waiting() -> bool:
        return (await _status(harness, run_id)).waiting_for == "review"

    await wait_for(is_waiting, 10, "run waits for review")
    status = await _status(harness, run_id)
    assert status.state == RunState.WAITING and "draft" in status.completed_steps

    await harness.client.get_workflow_handle(run_id).signal(
        APPROVE_SIGNAL, {"by": "alice", "comment": "ship it"}
    )
    result = await harness.result(run_id)
    assert result.output["reviewed"] is True
    assert result.output["review"] == {
        "approved": True,
        "timed_out": False,
        "by": "alice",
        "comment": "ship it",
    }
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    assert types_of(events, "review") == [EventType.STEP_STARTED, EventType.STEP_COMPLETED]


async def test_reject_fails_the_run(harness: Harness) -> None:
    run_id, _ = await harness.start("research-approval", INPUT)
    await run_events(harness.settings, run_id, until=_waiting)
    await harness.client.get_workflow_handle(run_id).signal(REJECT_SIGNAL)
    with pytest.raises(WorkflowFailureError):
        await harness.result(run_id)
    events = await run_events(harness.settings, run_id)
    assert events[-1].type == EventType.RUN_FAILED
    assert events[-1].data["error"] == "rejected by reviewer"


async def test_approval_times_out_per_policy(harness: Harness) -> None:
    run_id, _ = await harness.start("research-approval-timeout", INPUT)
    with pytest.raises(WorkflowFailureError) as failure:
        await harness.result(run_id)
    assert "approval timed out" in str(failure.value.cause)
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    (failed,) = [e for e in events if e.type == EventType.STEP_FAILED]
    assert failed.step == "review" and failed.data["timed_out"] is True
    assert events[-1].type == EventType.RUN_FAILED


async def test_without_approval_the_review_step_is_skipped(harness: Harness) -> None:
    run_id, _ = await harness.start(
        "research-approval", {"question": INPUT["question"], "require_approval": False}
    )
    result = await harness.result(run_id)
    assert result.output["reviewed"] is False
    # A signal to a finished run changes nothing and raises nothing in the worker.
    events = await run_events(harness.settings, run_id)
    assert "review" not in {e.step for e in events}


async def test_cancel_while_waiting_emits_run_cancelled(harness: Harness) -> None:
    run_id, _ = await harness.start("research-approval", INPUT)
    await run_events(harness.settings, run_id, until=_waiting)
    handle = harness.client.get_workflow_handle(run_id)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await harness.result(run_id)
    assert isinstance(failure.value.cause, CancelledError)
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    assert events[-1].type == EventType.RUN_CANCELLED
    assert events[-1].data == {"steps": ["review"]}
    assert (await _status(harness, run_id)).state == RunState.CANCELLED
