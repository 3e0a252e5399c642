"""The run-close watcher's pure parts: which runs it lists, and the id of
the terminal event it writes (the one the workflow would write)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.types import TERMINAL_SEQ, RunEventInput
from gateway.stream.frames import event_frame
from tidings.events import Event, EventType
from workers.run_close import ClosedRun, close_query, terminal_event

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)


def _run(status: WorkflowExecutionStatus) -> ClosedRun:
    return ClosedRun("acme-k1", "exec-1", status, AT, AT)


def test_the_watchers_event_has_the_workflows_id() -> None:
    written = terminal_event(_run(WorkflowExecutionStatus.CANCELED), "acme", {"steps": []})
    # What the workflow's emit activity builds from its RunEventInput.
    emitted = RunEventInput(
        tenant="acme", run_id="acme-k1", type=EventType.RUN_CANCELLED, seq=TERMINAL_SEQ
    )
    workflows = Event(
        type=emitted.type,
        tenant=emitted.tenant,
        run_id=emitted.run_id,
        step=emitted.step,
        attempt=emitted.attempt,
        seq=emitted.seq,
        data={"steps": ["draft"]},
    )
    assert written.type == EventType.RUN_CANCELLED
    assert written.id == workflows.id


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (WorkflowExecutionStatus.TERMINATED, EventType.RUN_TERMINATED),
        (WorkflowExecutionStatus.TIMED_OUT, EventType.RUN_TIMED_OUT),
        (WorkflowExecutionStatus.FAILED, EventType.RUN_FAILED),
    ],
)
def test_each_close_has_its_terminal_type(status: WorkflowExecutionStatus, type_: str) -> None:
    event = terminal_event(_run(status), "acme", {})
    assert event.type == type_ and event.is_terminal
    assert (event.step, event.seq) == (None, TERMINAL_SEQ)


def test_close_query_lists_closes_of_its_task_queue_but_completions() -> None:
    query = close_query(["tidings", "tidings.greet"], AT)
    assert "(TaskQueue = 'tidings' OR TaskQueue = 'tidings.greet')" in query
    assert "CloseTime >= '2026-12-06T22:00:00.000000Z'" in query
    for status in ("Failed", "Canceled", "Terminated", "TimedOut"):
        assert f"ExecutionStatus = '{status}'" in query
    assert "Completed" not in query and "ContinuedAsNew" not in query


@pytest.mark.parametrize(
    ("type_", "status"),
    [(EventType.RUN_TERMINATED, "TERMINATED"), (EventType.RUN_TIMED_OUT, "TIMED_OUT")],
)
def test_the_gateway_ends_the_stream_after_the_new_terminal_types(type_: str, status: str) -> None:
    event = Event(type_, "acme", "acme-k1", None, 1, TERMINAL_SEQ)
    frame = event_frame(0, 7, event.to_bytes(), "acme-k1")
    assert frame.end_status == status
