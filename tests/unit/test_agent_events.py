"""Agent stream events -> Tidings events, the offline model's script, and the
`agent` step kind (pure logic; the real run is tests/agents)."""

from __future__ import annotations

import pytest
from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.messages import (
    DeferredToolRequestsEvent,
    FinalResultEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    ToolReturnPart,
)

from activities.agent.events import Mapped, cut, map_event
from activities.agent.offline import offline_model
from activities.agent.steps import search_tool
from activities.search_index import SearchIndex
from activities.types import AGENT_RUN
from workflows.spec import SpecError, load_spec

pytestmark = pytest.mark.unit


def test_text_and_thinking_deltas_become_tokens_and_thinking() -> None:
    assert map_event(PartStartEvent(index=0, part=TextPart("Hel")), 10) == Mapped(
        "step.token", {"text": "Hel"}
    )
    delta = PartDeltaEvent(index=0, delta=TextPartDelta("lo"))
    assert map_event(delta, 10) == Mapped("step.token", {"text": "lo"})
    think = PartDeltaEvent(index=1, delta=ThinkingPartDelta(content_delta="hmm"))
    assert map_event(think, 10) == Mapped("step.thinking", {"text": "hmm"})
    start = PartStartEvent(index=1, part=ThinkingPart("so"))
    assert map_event(start, 10) == Mapped("step.thinking", {"text": "so"})
    # Empty parts and bookkeeping events send nothing.
    assert map_event(PartStartEvent(index=0, part=TextPart("")), 10) is None
    assert map_event(FinalResultEvent(tool_name=None, tool_call_id=None), 10) is None


def test_a_tool_call_and_its_cut_return() -> None:
    call = ToolCallPart("search", '{"query": "kafka"}', tool_call_id="c1")
    assert map_event(FunctionToolCallEvent(call), 10) == Mapped(
        "step.tool_call", {"call_id": "c1", "tool": "search", "args": {"query": "kafka"}}
    )
    malformed = ToolCallPart("search", "{not json", tool_call_id="c2")
    assert map_event(FunctionToolCallEvent(malformed), 10).data["args"] == "{not json"  # type: ignore[union-attr]
    returned = ToolReturnPart("search", [{"doc": "a", "text": "x" * 50}], tool_call_id="c1")
    mapped = map_event(FunctionToolResultEvent(returned), 16)
    assert mapped is not None and mapped.type == "step.tool_result"
    assert mapped.data == {
        "call_id": "c1",
        "tool": "search",
        "content": '[{"doc": "a", "t',
        "truncated": True,
    }
    assert cut("short", 16) == ("short", False)


async def test_the_offline_model_searches_then_answers_from_what_it_found() -> None:
    agent = Agent(offline_model(), tools=[search_tool(SearchIndex.bundled())])
    result = await agent.run("How do idempotent producers avoid duplicates?")
    assert "offline mode" in result.output
    assert "[idempotent-producer]" in result.output
    calls = [
        part
        for message in result.all_messages()
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolCallPart)
    ]
    assert [(c.tool_name, c.tool_call_id) for c in calls] == [("search", "search-1")]
    # Deterministic: a retried attempt ends with the same answer.
    again = await agent.run("How do idempotent producers avoid duplicates?")
    assert again.output == result.output


def test_an_agent_step_runs_the_agent_activity_unless_it_names_one() -> None:
    spec = load_spec({"name": "a", "steps": [{"name": "s", "kind": "agent"}]})
    assert spec.steps[0].activity == AGENT_RUN
    assert spec.activities() == {AGENT_RUN}
    own = load_spec(
        {"name": "a", "steps": [{"name": "s", "kind": "agent", "activity": "my.agent"}]}
    )
    assert own.steps[0].activity == "my.agent"
    # The frozen copy a run carries loads back the same.
    assert load_spec(spec.model_dump(mode="json")) == spec
    with pytest.raises(SpecError, match="approval step takes no activity"):
        load_spec({"name": "a", "steps": [{"name": "s", "kind": "approval", "activity": "x"}]})


def test_calls_awaiting_approval_become_progress() -> None:
    call = ToolCallPart("fetch_document", '{"doc": "a"}', tool_call_id="f1")
    event = DeferredToolRequestsEvent(requests=DeferredToolRequests(approvals=[call]))
    assert map_event(event, 10) == Mapped(
        "step.progress",
        {"awaiting_approval": [{"call_id": "f1", "tool": "fetch_document", "args": {"doc": "a"}}]},
    )
    assert map_event(DeferredToolRequestsEvent(requests=DeferredToolRequests()), 10) is None
