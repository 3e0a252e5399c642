"""Pydantic AI stream events -> Tidings event types and data (pure, no I/O).

Text deltas become ``step.token`` (the caller sends them through the
coalescing token path), reasoning ``step.thinking``, a tool call
``step.tool_call`` and its return ``step.tool_result``; calls that wait for
approval, ``step.progress`` ``{"awaiting_approval": [...]}``. Everything else the
agent streams (part ends, final-result markers, history deltas) is
bookkeeping a user interface has no use for, and maps to nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic_ai.messages import (
    DeferredToolRequestsEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
)

from tidings.events import EventType


@dataclass(frozen=True)
class Mapped:
    """One Tidings event to emit: ``type`` is ``step.token`` for text."""

    type: str
    data: dict[str, Any]


def map_event(event: object, max_result_chars: int) -> Mapped | None:
    """The Tidings event for one agent stream event, or ``None`` to send nothing."""
    if isinstance(event, PartStartEvent):
        part = event.part
        if isinstance(part, TextPart) and part.content:
            return Mapped(EventType.STEP_TOKEN, {"text": part.content})
        if isinstance(part, ThinkingPart) and part.content:
            return Mapped(EventType.STEP_THINKING, {"text": part.content})
        return None
    if isinstance(event, PartDeltaEvent):
        delta = event.delta
        if isinstance(delta, TextPartDelta) and delta.content_delta:
            return Mapped(EventType.STEP_TOKEN, {"text": delta.content_delta})
        if isinstance(delta, ThinkingPartDelta) and delta.content_delta:
            return Mapped(EventType.STEP_THINKING, {"text": delta.content_delta})
        return None
    if isinstance(event, FunctionToolCallEvent):
        call = event.part
        return Mapped(
            EventType.STEP_TOOL_CALL,
            {"call_id": call.tool_call_id, "tool": call.tool_name, "args": _args(call.args)},
        )
    if isinstance(event, DeferredToolRequestsEvent):
        waiting = [
            {"call_id": call.tool_call_id, "tool": call.tool_name, "args": _args(call.args)}
            for call in event.requests.approvals
        ]
        return Mapped(EventType.STEP_PROGRESS, {"awaiting_approval": waiting}) if waiting else None
    if isinstance(event, FunctionToolResultEvent):
        result = event.part
        content, truncated = cut(result.content, max_result_chars)
        return Mapped(
            EventType.STEP_TOOL_RESULT,
            {
                "call_id": result.tool_call_id,
                "tool": result.tool_name,
                "content": content,
                "truncated": truncated,
            },
        )
    return None


def cut(content: object, max_chars: int) -> tuple[str, bool]:
    """``content`` as text of at most ``max_chars`` characters, and whether it was cut.

    A tool may return megabytes (a page, a table); the event carries a preview,
    the model still gets the whole return."""
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    if len(text) <= max_chars:
        return text, False
    return text[:max_chars], True


def _args(args: str | dict[str, Any] | None) -> Any:
    # Models send arguments as a JSON string or an object; clients get an object
    # when the string parses, the raw string otherwise (a model's malformed call).
    if args is None:
        return {}
    if isinstance(args, dict):
        return args
    try:
        return json.loads(args) if args else {}
    except json.JSONDecodeError:
        return args
