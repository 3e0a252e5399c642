"""The pure parts of the durable agent's stream (activities/agent/durable.py,
workflows/agent.py): what a retried model request re-sends, and where the
workflow carries the stream on after each model response."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    PartStartEvent,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agent.durable import STAMP_KEY, AgentDeps, Stamps, shown_by, stream_handler
from tests.unit.test_emit_outage import Plane, emitter_on
from tidings.errors import ActivityErrorType
from tidings.events import Event, EventType
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


async def _answer() -> AsyncIterator[Any]:
    yield PartStartEvent(index=0, part=TextPart("hi"))


def _model_request_env(attempt: int, seconds: float) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        activity_type="agent__tidings__model_request_stream",
        attempt=attempt,
        started_time=datetime.now(UTC),
        start_to_close_timeout=timedelta(seconds=seconds),
        heartbeat_timeout=None,
    )
    return env


async def test_a_model_request_out_of_time_on_the_event_plane_ends_uncounted() -> None:
    plane = Plane()
    handler = stream_handler(emitter_on(plane), Stamps())
    # The request's 2nd attempt of its 2nd schedule (one attempt ended by
    # the event plane before): the step's attempt 3.
    deps = AgentDeps(tenant="t", run_id="r", pipeline="agent", step="answer", base=1)
    plane.hold = True
    ctx: Any = _Ctx(deps)
    with pytest.raises(ApplicationError) as raised:
        await asyncio.wait_for(_model_request_env(2, 3).run(handler, ctx, _answer()), 5)
    assert raised.value.type == ActivityErrorType.EVENT_PLANE_UNAVAILABLE
    assert raised.value.non_retryable and raised.value.details == ({"attempt": 3},)
    # It was announcing the attempts it replaces, oldest first.
    plane.release()
    first = Event.from_bytes(plane.written[0])
    assert (first.type, first.attempt) == (EventType.STEP_RETRYING, 1)


async def test_a_model_request_past_its_counted_attempts_is_refused() -> None:
    plane = Plane()
    handler = stream_handler(emitter_on(plane), Stamps())
    # One attempt failed before an outage ended the next; the 3rd attempt of
    # the new schedule would be the request's 4th counted one of 3.
    deps = AgentDeps(
        tenant="t", run_id="r", pipeline="agent", step="answer", base=2, spent=1, max_attempts=3
    )
    ctx: Any = _Ctx(deps)
    with pytest.raises(ApplicationError) as raised:
        await _model_request_env(3, 60).run(handler, ctx, _answer())
    assert raised.value.non_retryable and raised.value.details == ({"attempt": 4},)
    assert plane.written == []
