"""The offline agent model: Pydantic AI's FunctionModel scripted to act like a
small tool-using model, so the ``agent`` pipeline runs with no network.

First turn: it thinks aloud, then calls ``search`` with the question. If
``fetch_document`` is offered, it then asks to read the best hit in full.
Last turn: it streams an extractive answer from what search returned, word
by word, saying whether the document was read. Deterministic (call ids
included), so a retried run ends with the same answer as a clean one.
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
# Reads a whole document; the built-in pipeline gates it behind an approval.
FETCH_TOOL = "fetch_document"


def offline_model(pace_seconds: float = 0.0) -> FunctionModel:
    """The scripted model; ``pace_seconds`` between text tokens lets demos and tests watch."""
    summariser = OfflineProvider()

    def next_turn(messages: list[ModelMessage], info: AgentInfo) -> tuple[str, list[str]]:
        """(tool, [thought, args]) to call a tool, or ("answer", tokens)."""
        question = _question(messages)
        returns = {
            part.tool_name: part.content
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        }
        offered = {tool.name for tool in info.function_tools}
        if SEARCH_TOOL not in returns and SEARCH_TOOL in offered:
            thought = f"I will search the corpus for: {question}"
            return SEARCH_TOOL, [thought, json.dumps({"query": question})]
        passages = _passages(returns.get(SEARCH_TOOL))
        if passages and FETCH_TOOL in offered and FETCH_TOOL not in returns:
            thought = f"I will read [{passages[0].doc}] in full."
            return FETCH_TOOL, [thought, json.dumps({"doc": passages[0].doc})]
        tokens = summariser.tokens(question, passages)
        if FETCH_TOOL in returns:
            fetched = returns[FETCH_TOOL]
            # A dict is the document; a denied call returns the reviewer's message.
            note = (
                f" I read [{fetched.get('doc')}] in full."
                if isinstance(fetched, dict)
                else f" Reading a whole document was not approved: {fetched}"
            )
            tokens[-1] += " " if tokens else ""
            tokens.extend(word + " " for word in note.split())
            tokens[-1] = tokens[-1].rstrip()
        return "answer", tokens

    async def stream(
        messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls | DeltaThinkingCalls]:
        action, parts = next_turn(messages, info)
        # A durable run sets the pace per step through its model settings.
        given: Any = (info.model_settings or {}).get("tidings_pace_ms", 0)
        pace = float(given) / 1000 or pace_seconds
        if action != "answer":
            yield {0: DeltaThinkingPart(content=parts[0])}
            yield {1: DeltaToolCall(name=action, json_args=parts[1], tool_call_id=f"{action}-1")}
            return
        for token in parts:
            yield token
            if pace:
                await asyncio.sleep(pace)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # The same script without streaming (Agent.run with no stream handler).
        action, parts = next_turn(messages, info)
        if action != "answer":
            return ModelResponse(
                parts=[
                    ThinkingPart(content=parts[0]),
                    ToolCallPart(action, parts[1], tool_call_id=f"{action}-1"),
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
