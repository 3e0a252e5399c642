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

from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
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


def offline_model(pace_seconds: float = 0.0) -> FunctionModel:
    """The scripted model; ``pace_seconds`` between text tokens lets demos and tests watch."""
    summariser = OfflineProvider()

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls | DeltaThinkingCalls]:
        question = _question(messages)
        returns = [
            part
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        ]
        offers_search = any(tool.name == SEARCH_TOOL for tool in info.function_tools)
        if not returns and offers_search:
            yield {0: DeltaThinkingPart(content=f"I will search the corpus for: {question}")}
            yield {
                1: DeltaToolCall(
                    name=SEARCH_TOOL,
                    json_args=json.dumps({"query": question}),
                    tool_call_id=f"{SEARCH_TOOL}-1",
                )
            }
            return
        passages = [p for part in returns for p in _passages(part.content)]
        for token in summariser.tokens(question, passages):
            yield token
            if pace_seconds:
                await asyncio.sleep(pace_seconds)

    return FunctionModel(stream_function=stream, model_name="offline")


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
