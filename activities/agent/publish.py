"""Run any Pydantic AI agent inside a step, its stream published as Tidings events.

The built-in ``agent.run`` step uses it, and so can a user's own step
(examples/pydantic_ai): build the agent, then
``outcome = await run_agent(ctx, agent, prompt, max_result_chars=...)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from pydantic_ai import Agent, DeferredToolResults, RunContext
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    ModelQuotaExceededError,
    ModelRequestRejectedError,
    UserError,
)
from pydantic_ai.messages import AgentStreamEvent, ModelMessage
from temporalio.exceptions import ApplicationError

from activities.agent.events import map_event
from activities.steps import StepContext
from tidings.errors import ActivityErrorType
from tidings.events import EventType


@dataclass(frozen=True)
class Outcome:
    """What an agent run ended with: its output (text, or the tool calls awaiting
    approval), how many tools it called, and its whole message history."""

    output: Any
    tool_calls: int
    messages: list[ModelMessage]


async def run_agent(
    ctx: StepContext,
    agent: Agent[None, Any],
    prompt: str | None,
    *,
    max_result_chars: int,
    message_history: list[ModelMessage] | None = None,
    deferred_tool_results: DeferredToolResults | None = None,
) -> Outcome:
    """Run ``agent`` on ``prompt`` (or carry on ``message_history`` with
    ``deferred_tool_results``), publishing its stream as the step's events.

    Errors become the step's: a misconfigured agent fails for good, a model
    server's failure is retried by the step's policy."""
    calls = 0

    async def publish(_: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        nonlocal calls
        async for event in events:
            mapped = map_event(event, max_result_chars)
            if mapped is None:
                continue
            if mapped.type == EventType.STEP_TOKEN:
                # The coalescing path: under lag, tokens travel several to a record.
                await ctx.token(mapped.data["text"])
            elif mapped.type == EventType.STEP_THINKING:
                await ctx.emit(mapped.type, mapped.data, wait=False)
            else:
                calls += mapped.type == EventType.STEP_TOOL_CALL
                await ctx.emit(mapped.type, mapped.data)

    try:
        result = await agent.run(
            prompt,
            message_history=message_history,
            deferred_tool_results=deferred_tool_results,
            event_stream_handler=publish,
        )
    except asyncio.CancelledError:
        raise
    except UserError as exc:
        raise ApplicationError(
            f"agent misconfigured: {exc}", type=ActivityErrorType.INVALID_INPUT, non_retryable=True
        ) from None
    except ModelAPIError as exc:
        # Only the class: the SDK's message may quote the server's reply. A
        # rejected request (bad key, unknown model) or a spent quota fails the
        # same way again: no retry.
        raise ApplicationError(
            f"model server failed: {type(exc).__name__}",
            type=ActivityErrorType.PROVIDER_UNAVAILABLE,
            non_retryable=isinstance(exc, ModelRequestRejectedError | ModelQuotaExceededError),
        ) from None
    except AgentRunError as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__) from None
    return Outcome(result.output, calls, result.all_messages())
