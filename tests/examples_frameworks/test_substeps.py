"""A delegated step's identity in its workflow id, and how `tidings watch`
counts a run whose step reports sub-steps (pure logic)."""

from __future__ import annotations

import pytest

from activities.delegate import StepRef, tool_call, tool_result
from cli.watch import Progress
from tidings.events import Event

pytestmark = pytest.mark.unit


def test_the_workflow_id_names_the_step_and_parses_back() -> None:
    ref = StepRef("acme", "acme-idem:key:with:colons", "ask[2]")
    assert ref.workflow_id() == "tidings-step:acme:ask[2]:acme-idem:key:with:colons"
    assert StepRef.parse(ref.workflow_id()) == ref
    for foreign in ("my-workflow", "tidings-step:acme:ask", "other:acme:ask:run"):
        with pytest.raises(ValueError, match="not started by a Tidings step"):
            StepRef.parse(foreign)


def test_tool_events_decode_arguments_and_cut_results() -> None:
    assert tool_call("c1", "get", '{"city": "Oslo"}')["args"] == {"city": "Oslo"}
    assert tool_call("c1", "get", "{not json")["args"] == "{not json"
    assert tool_call("c1", "get", "")["args"] == {}
    short = tool_result("c1", "get", {"a": 1}, 100)
    assert short == {"call_id": "c1", "tool": "get", "content": '{"a": 1}', "truncated": False}
    cut = tool_result("c1", "get", "x" * 50, 10)
    assert cut["content"] == "x" * 10 and cut["truncated"] is True


def test_watch_counts_only_the_plans_steps() -> None:
    def ev(type_: str, step: str | None = None, seq: int = 0, **data: object) -> Event:
        return Event(type_, "t", "run", step, 1, seq, dict(data))

    progress = Progress()
    for event in [
        ev("run.started", steps=["ask"], stages=[["ask"]]),
        ev("step.started", "ask"),
        ev("step.started", "ask.model-1"),
        ev("step.completed", "ask.model-1", 1),
        ev("step.started", "ask.model-3"),
        ev("step.completed", "ask.model-3", 1),
    ]:
        progress.update(event)
    assert progress.count() == "0/1"
    progress.update(ev("step.completed", "ask", 2))
    assert progress.count() == "1/1"
