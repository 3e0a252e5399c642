"""The pure parts of the durable agent's stream (activities/agent/durable.py,
workflows/agent.py): what a retried model request re-sends, and where the
workflow carries the stream on after each model response."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from activities.agent.durable import STAMP_KEY, AgentDeps, shown_by
from tidings.events import EventType
from workflows.agent import StreamPosition

pytestmark = pytest.mark.unit


def _deps() -> AgentDeps:
    return AgentDeps(tenant="t", run_id="r", pipeline="agent", step="answer")


def test_a_retry_resends_what_the_run_showed_in_order_with_results_cut() -> None:
    messages = [
        ModelRequest(parts=[UserPromptPart("q")]),
        ModelResponse(
            parts=[ThinkingPart("hmm"), ToolCallPart("search", '{"query": "q"}', "search-1")]
        ),
        ModelRequest(parts=[ToolReturnPart("search", "x" * 50, "search-1")]),
        ModelResponse(parts=[TextPart("done")]),
    ]
    shown = shown_by(messages, max_result_chars=10)
    assert [(m.type, m.data) for m in shown] == [
        (EventType.STEP_THINKING, {"text": "hmm"}),
        (
            EventType.STEP_TOOL_CALL,
            {"call_id": "search-1", "tool": "search", "args": {"query": "q"}},
        ),
        (
            EventType.STEP_TOOL_RESULT,
            {"call_id": "search-1", "tool": "search", "content": "x" * 10, "truncated": True},
        ),
        (EventType.STEP_TOKEN, {"text": "done"}),
    ]


class _Ctx:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps


def _after(deps: AgentDeps, response: ModelResponse) -> None:
    ctx: Any = _Ctx(deps)
    asyncio.run(StreamPosition().after_model_request(ctx, request_context=Any, response=response))


def test_after_a_model_response_tool_events_and_the_next_request_take_their_own_seqs() -> None:
    deps = _deps()
    response = ModelResponse(
        parts=[ToolCallPart("search", "{}", "a"), ToolCallPart("fetch_document", "{}", "b")],
        metadata={STAMP_KEY: {"attempt": 2, "next_seq": 7}},
    )
    _after(deps, response)
    # The request ran as attempt 2 and used seqs up to 6; each call then takes
    # two seqs (call, result), an approval request one, the next request the rest.
    assert (deps.attempt, deps.tool_seq, deps.calls, deps.next_seq) == (2, 7, ["a", "b"], 12)


def test_a_response_without_a_stamp_moves_nothing() -> None:
    deps = _deps()
    _after(deps, ModelResponse(parts=[TextPart("hi")]))
    assert (deps.attempt, deps.next_seq, deps.calls) == (1, 1, [])
