"""The agent's stream as Tidings events when Pydantic AI's Temporal support runs it:
each model request and each tool call is an activity of its own (workflows/agent.py).

The handler runs in two places: inside each model-request activity (text and
thinking, live) and inside the per-event activity Pydantic AI schedules for
each tool event (calls, results, approvals). Both read where they are in the
step from the run's deps, which the workflow keeps up to date between model
requests (:class:`AgentDeps`), so every event's (step, attempt, seq), hence
its id, is fixed by the workflow's history: a redelivered emit is the same
event.

A retried model request gets the step's next attempt number: its
``step.retrying`` makes clients drop everything of the attempt it replaces
(docs/protocol.md), so it first re-sends what that attempt had already
shown and the workflow kept (the earlier requests' thinking, tool calls and
results, ``AgentDeps.shown``), then streams its own answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable

from pydantic import BaseModel, Field
from pydantic_ai import RunContext
from pydantic_ai.messages import (
    AgentStreamEvent,
    DeferredToolRequestsEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
)
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.agent.events import Mapped, cut, map_event
from activities.emitter import Emitter
from activities.plane_deadline import until_event_plane_gives_up
from activities.steps import StepContext, alert_hot_loop, discard_data
from activities.types import CLOSING_SEQ, STEP_ATTEMPT_SIGNAL, HotLoopPolicy, StepInput
from tidings.errors import ActivityErrorType
from tidings.events import EventType

# Where a model request's handler leaves (attempt, next seq) on the response,
# for the workflow to carry on from (ModelResponse.metadata never reaches a model).
STAMP_KEY = "tidings"

log = logging.getLogger(__name__)


class AgentDeps(BaseModel):
    """The run's deps: which step of which run, and where its stream stands.

    Set by the workflow (workflows/agent.py) before each model request and
    each tool event; read by the handler inside the activities."""

    tenant: str
    run_id: str
    pipeline: str
    step: str
    tools: list[str] = Field(default_factory=list)
    approval_tools: list[str] = Field(default_factory=list)
    gated: bool = False
    instructions: str = ""
    max_result_chars: int = 2000
    # Messages before this agent run's own (a resumed run's earlier history).
    history: int = 0
    # The step's attempt the next events belong to, and the seq they start at.
    attempt: int = 1
    next_seq: int = 1
    # Attempts of the running model request before its current schedule: a
    # schedule the event plane ended (uncounted) is followed by another whose
    # activity attempts number on from these (workflows/agent.py).
    base: int = 0
    # Of those, the ones that failed for the request's own reasons, and how
    # many a model request may spend in all (0: only its retry policy's).
    spent: int = 0
    max_attempts: int = 0
    # For the step's retries as they happen: the run's workflow (told each
    # attempt a retry starts) and the hot-loop alert's policy, counted from
    # when the step started (epoch seconds, the workflow's clock).
    parent_id: str = ""
    hot_loop: HotLoopPolicy = Field(default_factory=HotLoopPolicy)
    started: float = 0.0
    # The tool events after the latest model response: the i-th call's
    # events take tool_seq + 2i (call) and + 2i + 1 (result).
    tool_seq: int = 1
    calls: list[str] = Field(default_factory=list)
    # What this agent run has shown so far, re-sent by a retried request.
    shown: list[Mapped] = Field(default_factory=list)


StreamHandler = Callable[[RunContext[AgentDeps], AsyncIterable[AgentStreamEvent]], Awaitable[None]]


class Stamps:
    """Where each running model request's stream ended, until its response is stamped.

    The handler sees the stream, not the response the activity returns; the
    durability capability stamps that response (``stamp``) once the handler is done."""

    def __init__(self) -> None:
        self._ends: dict[tuple[str, str, int], dict[str, int]] = {}

    @staticmethod
    def _key() -> tuple[str, str, int]:
        info = activity.info()
        return info.workflow_run_id or "", info.activity_id, info.attempt

    def put(self, attempt: int, next_seq: int) -> None:
        self._ends[self._key()] = {"attempt": attempt, "next_seq": next_seq}

    def stamp(self, response: ModelResponse) -> None:
        end = self._ends.pop(self._key(), None)
        if end is not None:
            response.metadata = {**(response.metadata or {}), STAMP_KEY: end}


def stream_handler(emitter: Emitter, stamps: Stamps) -> StreamHandler:
    """The agent's ``event_stream_handler``, publishing through ``emitter``."""

    async def publish(ctx: RunContext[AgentDeps], events: AsyncIterable[AgentStreamEvent]) -> None:
        deps = ctx.deps
        info = activity.info()
        if info.activity_type.endswith("model_request_stream"):
            attempt = deps.attempt + deps.base + info.attempt - 1
            if deps.max_attempts and deps.spent + info.attempt > deps.max_attempts:
                # A schedule after an outage has the retry policy's attempts
                # again; those its earlier schedules spent are gone.
                raise ApplicationError(
                    f"the model request failed on all its {deps.max_attempts} attempts",
                    {"attempt": attempt - 1},
                    type=ActivityErrorType.STEP_FAILED,
                    non_retryable=True,
                )
            # Pydantic AI heartbeats the activity meanwhile, so a request whose
            # emits wait out an event-plane outage is alive; as a pipeline
            # step's attempt (activities/steps.py), one the outage outlasts
            # ends uncounted rather than timing out.
            work = _model_request(emitter, deps, events)
            stamps.put(*await until_event_plane_gives_up(emitter, info, attempt, work))
        else:
            async for event in events:
                await _tool_event(emitter, deps, event)

    return publish


def _context(emitter: Emitter, deps: AgentDeps, attempt: int, seq: int) -> StepContext:
    data = StepInput(
        tenant=deps.tenant,
        run_id=deps.run_id,
        pipeline=deps.pipeline,
        step=deps.step,
        input={},
        hot_loop=HotLoopPolicy(),
    )
    return StepContext(emitter, data, attempt, seq=seq)


async def _model_request(
    emitter: Emitter, deps: AgentDeps, events: AsyncIterable[AgentStreamEvent]
) -> tuple[int, int]:
    """Publish one model request's stream; returns (attempt, next seq) where it ended."""
    retries = deps.base + activity.info().attempt - 1
    attempt = deps.attempt + retries
    ctx = _context(emitter, deps, attempt, 0 if retries else deps.next_seq)
    if retries:
        # Every attempt this one replaces, oldest first (the same ids each time).
        for earlier in range(deps.attempt, attempt):
            discard = ctx.event(
                EventType.STEP_RETRYING, discard_data(earlier), seq=CLOSING_SEQ, attempt=earlier
            )
            await ctx.send(discard)
        await _announce_attempt(ctx, deps, attempt)
        for shown in deps.shown:
            await _send(ctx, shown)
    async for event in events:
        mapped = map_event(event, deps.max_result_chars)
        if mapped is not None:
            await _send(ctx, mapped)
    await ctx.flush_tokens()
    await emitter.flush()
    return attempt, ctx.seq


async def _announce_attempt(ctx: StepContext, deps: AgentDeps, attempt: int) -> None:
    """Tell the run's workflow the step's attempt (its status), and alert a hot
    loop as a pipeline step's retries do (activities/steps.py), counting the
    step's retries across its model requests."""
    if deps.parent_id:
        try:
            handle = activity.client().get_workflow_handle(deps.parent_id)
            await handle.signal(STEP_ATTEMPT_SIGNAL, {"step": deps.step, "attempt": attempt})
        except (RuntimeError, RPCError) as exc:
            # The status only lags; the events and the retry go on.
            log.warning("attempt %d of %s not signalled: %s", attempt, deps.step, exc)
    window = time.time() - deps.started
    await alert_hot_loop(ctx, deps.hot_loop, deps.tenant, deps.run_id, attempt - 1, window)


async def _tool_event(emitter: Emitter, deps: AgentDeps, event: AgentStreamEvent) -> None:
    mapped = map_event(event, deps.max_result_chars)
    if mapped is None:
        return
    seq = deps.tool_seq + 2 * len(deps.calls)  # an approval request: after every call
    if isinstance(event, FunctionToolCallEvent | FunctionToolResultEvent):
        call_id = event.part.tool_call_id
        index = deps.calls.index(call_id) if call_id in deps.calls else len(deps.calls)
        seq = deps.tool_seq + 2 * index + isinstance(event, FunctionToolResultEvent)
    elif not isinstance(event, DeferredToolRequestsEvent):
        return
    ctx = _context(emitter, deps, deps.attempt, seq)
    await ctx.emit(mapped.type, mapped.data)


async def _send(ctx: StepContext, mapped: Mapped) -> None:
    if mapped.type == EventType.STEP_TOKEN:
        await ctx.token(mapped.data["text"])
    elif mapped.type == EventType.STEP_THINKING:
        await ctx.emit(mapped.type, mapped.data, wait=False)
    else:
        await ctx.emit(mapped.type, mapped.data)


def shown_by(messages: list[ModelMessage], max_result_chars: int) -> list[Mapped]:
    """The events an agent run's ``messages`` showed: thinking, text, tool calls
    and their results, in order (what a retried request re-sends)."""
    shown: list[Mapped] = []
    for message in messages:
        if isinstance(message, ModelResponse):
            for part in message.parts:
                if isinstance(part, ThinkingPart) and part.content:
                    shown.append(Mapped(EventType.STEP_THINKING, {"text": part.content}))
                elif isinstance(part, TextPart) and part.content:
                    shown.append(Mapped(EventType.STEP_TOKEN, {"text": part.content}))
                elif isinstance(part, ToolCallPart):
                    shown.append(
                        Mapped(
                            EventType.STEP_TOOL_CALL,
                            {
                                "call_id": part.tool_call_id,
                                "tool": part.tool_name,
                                "args": part.args_as_dict(),
                            },
                        )
                    )
        elif isinstance(message, ModelRequest):
            for request_part in message.parts:
                if isinstance(request_part, ToolReturnPart):
                    content, truncated = cut(request_part.content, max_result_chars)
                    shown.append(
                        Mapped(
                            EventType.STEP_TOOL_RESULT,
                            {
                                "call_id": request_part.tool_call_id,
                                "tool": request_part.tool_name,
                                "content": content,
                                "truncated": truncated,
                            },
                        )
                    )
    return shown
