"""The graph's nodes, which run as activities, and how they reach Tidings.

A node writes what it has to say to LangGraph's stream writer
(`runtime.stream_writer`), in custom stream mode: `{"token": text}`,
`{"thinking": text}`, `{"tool_call": {call_id, tool, args}}`,
`{"tool_result": {call_id, tool, content}}`; anything else is a
`step.progress`. `streams_into_tidings` gives each node a writer that
publishes those as the Tidings step's events, as a sub-step per node
activity (`find.agent-1`, `find.tools-2`, …; activities/delegate.py), so a
retried node's partial output is discarded by the usual rule.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.outputs import ChatGenerationChunk
from langgraph.runtime import Runtime

from activities.delegate import run_substep, tool_call, tool_result
from activities.emitter import Emitter
from activities.steps import StepContext, StepOutput
from tidings.events import EventType

Node = Callable[[dict[str, Any], Runtime[None]], Awaitable[dict[str, Any]]]

INSTRUCTIONS = "Answer questions about books. Look the book up with find_book first."
BOOKS = {
    "dune": {"title": "Dune", "author": "Frank Herbert", "year": 1965, "shelf": "SF-12"},
    "emma": {"title": "Emma", "author": "Jane Austen", "year": 1815, "shelf": "CL-03"},
    "ubik": {"title": "Ubik", "author": "Philip K. Dick", "year": 1969, "shelf": "SF-31"},
}


def find_book(title: str) -> dict[str, Any]:
    """Author, year and shelf of a book in the library."""
    return BOOKS.get(title.strip().lower(), {"title": title, "error": "not in the library"})


TOOLS: dict[str, Callable[..., Any]] = {"find_book": find_book}


class _Writer:
    """LangGraph's writer is a plain call; Tidings' emits are awaited: chunks
    queue here and leave in order, one at a time."""

    def __init__(self, ctx: StepContext, max_result_chars: int) -> None:
        self._ctx = ctx
        self._max = max_result_chars
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._drain())

    def __call__(self, chunk: Any) -> None:
        self._queue.put_nowait(chunk)

    async def close(self) -> None:
        self._queue.put_nowait(None)
        await self._task

    async def _drain(self) -> None:
        while (chunk := await self._queue.get()) is not None:
            await self._publish(chunk)

    async def _publish(self, chunk: Any) -> None:
        ctx = self._ctx
        if not isinstance(chunk, dict) or len(chunk) != 1:
            await ctx.progress(chunk=chunk)
            return
        ((kind, value),) = chunk.items()
        if kind == "token":
            await ctx.token(str(value))
        elif kind == "thinking":
            await ctx.emit(EventType.STEP_THINKING, {"text": str(value)}, wait=False)
        elif kind == "tool_call":
            data = tool_call(str(value["call_id"]), str(value["tool"]), value.get("args"))
            await ctx.emit(EventType.STEP_TOOL_CALL, data)
        elif kind == "tool_result":
            data = tool_result(
                str(value["call_id"]), str(value["tool"]), value.get("content"), self._max
            )
            await ctx.emit(EventType.STEP_TOOL_RESULT, data)
        else:
            await ctx.progress(**chunk)


def streams_into_tidings(emitter: Emitter, label: str, max_result_chars: int, node: Node) -> Node:
    """``node`` with a stream writer that publishes into the Tidings step its
    workflow works for, as the sub-step ``<step>.<label>-<activity id>``."""

    async def run(state: dict[str, Any], runtime: Runtime[None]) -> dict[str, Any]:
        update: dict[str, Any] = {}

        async def body(ctx: StepContext) -> StepOutput:
            writer = _Writer(ctx, max_result_chars)
            try:
                update.update(await node(state, runtime.override(stream_writer=writer)))
            finally:
                await writer.close()
            return {"wrote": sorted(update)}

        await run_substep(emitter, label, body)
        return update

    # The plugin keys its task cache by module and qualified name, and refuses
    # a closure's (`<locals>`): each label is one node of the graph.
    run.__name__ = run.__qualname__ = f"{label}_node"
    return run


def agent_node(model_for: Callable[[list[BaseMessage]], BaseChatModel]) -> Node:
    """Asks the model, streaming its text and announcing the tools it calls."""

    async def agent(state: dict[str, Any], runtime: Runtime[None]) -> dict[str, Any]:
        write = runtime.stream_writer
        stored = messages_from_dict(state["messages"])
        # The first turn opens the conversation: it is kept in the state too.
        opening: list[BaseMessage] = (
            [] if stored else [SystemMessage(INSTRUCTIONS), HumanMessage(state["question"])]
        )
        history = [*stored, *opening]
        reply = None
        async for chunk in model_for(history).astream(history):
            if isinstance(chunk.content, str) and chunk.content:
                write({"token": chunk.content})
            reply = chunk if reply is None else reply + chunk
        if reply is None:
            raise RuntimeError("the model streamed nothing")
        message = message_chunk_to_message(reply)
        assert isinstance(message, AIMessage)
        for call in message.tool_calls:
            write(
                {"tool_call": {"call_id": call["id"], "tool": call["name"], "args": call["args"]}}
            )
        update: dict[str, Any] = {"messages": messages_to_dict([*opening, message])}
        if not message.tool_calls:
            update["answer"] = message.text
        return update

    return agent


async def tools_node(state: dict[str, Any], runtime: Runtime[None]) -> dict[str, Any]:
    """Runs the tools the model's last message asked for."""
    write = runtime.stream_writer
    last = messages_from_dict(state["messages"][-1:])[0]
    assert isinstance(last, AIMessage)
    results: list[BaseMessage] = []
    for call in last.tool_calls:
        tool = TOOLS.get(call["name"])
        content = tool(**call["args"]) if tool else {"error": f"no tool {call['name']}"}
        write({"tool_result": {"call_id": call["id"], "tool": call["name"], "content": content}})
        results.append(ToolMessage(json.dumps(content), tool_call_id=str(call["id"])))
    return {"messages": messages_to_dict(results)}


class PacedFakeChatModel(GenericFakeChatModel):
    """LangChain's fake chat model, one token every ``pace_seconds``."""

    pace_seconds: float = 0.0

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks: Iterator[ChatGenerationChunk] = self._stream(messages, stop=stop, **kwargs)
        for chunk in chunks:
            yield chunk
            await asyncio.sleep(self.pace_seconds)


def offline_model(pace_seconds: float) -> Callable[[list[BaseMessage]], BaseChatModel]:
    """LangChain's fake chat models, scripted: a `find_book` call for the
    question's last word, then an answer streamed from what it returned; the
    same every time, call ids included."""

    def model_for(history: list[BaseMessage]) -> BaseChatModel:
        returned = [m for m in history if isinstance(m, ToolMessage)]
        if not returned:
            asked = next(m.text for m in history if isinstance(m, HumanMessage))
            title = asked.split()[-1].strip("?.!") if asked.split() else "?"
            call = {"name": "find_book", "args": {"title": title}, "id": "find_book-1"}
            return FakeMessagesListChatModel(responses=[AIMessage("", tool_calls=[call])])
        book = json.loads(returned[-1].text)
        if "error" in book:
            text = f"{book['title']} is not in the library."
        else:
            text = (
                f"{book['title']} was written by {book['author']} in {book['year']}. "
                f"You will find it on shelf {book['shelf']}."
            )
        return PacedFakeChatModel(messages=iter([text]), pace_seconds=pace_seconds)

    return model_for
