"""The offline agent model: Pydantic AI's FunctionModel scripted to act like a
small tool-using model, so the ``agent`` pipeline runs with no network.

First turn: it thinks aloud, then calls ``search`` with the question. Next
turn: it streams an extractive answer from what the tool returned, word by
word. Deterministic (call ids included), so a retried run ends with the same
answer as a clean one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import (
    AgentInfo,
    DeltaThinkingCalls,
    DeltaThinkingPart,
    DeltaToolCall,
    DeltaToolCalls,
    FunctionModel,
)

from activities.models.offline import OfflineProvider
from activities.models.provider import Passage

SEARCH_TOOL = "search"
CALL_ID = f"{SEARCH_TOOL}-1"


def offline_model(pace_seconds: float = 0.0) -> FunctionModel:
    """The scripted model; ``pace_seconds`` between text tokens lets demos and tests watch."""
    summariser = OfflineProvider()

    def next_turn(messages: list[ModelMessage], info: AgentInfo) -> tuple[str, list[str]]:
        """("search", [thought, args]) to call the tool, or ("answer", tokens)."""
        question = _question(messages)
        returns = [
            part
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        if not returns and any(tool.name == SEARCH_TOOL for tool in info.function_tools):
            thought = f"I will search the corpus for: {question}"
            return "search", [thought, json.dumps({"query": question})]
        passages = [p for part in returns for p in _passages(part.content)]
        return "answer", summariser.tokens(question, passages)

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls | DeltaThinkingCalls]:
        action, parts = next_turn(messages, info)
        if action == "search":
            yield {0: DeltaThinkingPart(content=parts[0])}
            yield {1: DeltaToolCall(name=SEARCH_TOOL, json_args=parts[1], tool_call_id=CALL_ID)}
            return
        for token in parts:
            yield token
            if pace_seconds:
                await asyncio.sleep(pace_seconds)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # The same script without streaming (Agent.run with no stream handler).
        action, parts = next_turn(messages, info)
        if action == "search":
            return ModelResponse(
                parts=[
                    ThinkingPart(content=parts[0]),
                    ToolCallPart(SEARCH_TOOL, parts[1], tool_call_id=CALL_ID),
                ]
            )
        return ModelResponse(parts=[TextPart(content="".join(parts))])

    return FunctionModel(respond, stream_function=stream, model_name="offline")


def _question(messages: list[ModelMessage]) -> str:
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _passages(content: Any) -> list[Passage]:
    if not isinstance(content, list):
        return []
    return [
        Passage(
            doc=str(item.get("doc", "")),
            title=str(item.get("title", "")),
            text=str(item.get("text", "")),
            score=float(item.get("score", 0.0)),
        )
        for item in content
        if isinstance(item, dict)
    ]
