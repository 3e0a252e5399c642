"""The agent step's `openai` provider: Pydantic AI's OpenAI model against a local
server speaking the streaming chat-completions format, tool calls included.
The stub answers the first request with a streamed `search` call and the
second with streamed text; the mapping turns them into Tidings events."""

from __future__ import annotations

from collections.abc import AsyncIterable

import pytest
from pydantic import SecretStr
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import AgentStreamEvent

from activities.agent.events import Mapped, map_event
from activities.agent.model import build_agent_model
from activities.agent.steps import search_tool
from activities.search_index import SearchIndex
from tests.agents.openai_stub import StubOpenAI, serving
from tidings.settings import ModelSettings

pytestmark = pytest.mark.unit

KEY = "sk-agent-secret-0123456789"


def _agent(base_url: str) -> Agent[None, str]:
    settings = ModelSettings(
        provider="openai", base_url=base_url, name="stub", api_key=SecretStr(KEY)
    )
    return Agent(build_agent_model(settings), tools=[search_tool(SearchIndex.bundled())])


async def test_tool_calls_results_and_text_from_an_openai_compatible_server() -> None:
    stub = StubOpenAI()
    seen: list[Mapped] = []

    async def collect(_: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for event in events:
            mapped = map_event(event, 100)
            if mapped is not None:
                seen.append(mapped)

    async with serving(stub) as url:
        result = await _agent(url).run("Why order?", event_stream_handler=collect)

    assert result.output == "Order is per partition."
    kinds = [m.type for m in seen]
    assert kinds[:2] == ["step.tool_call", "step.tool_result"]
    assert seen[0].data == {"call_id": "call_1", "tool": "search", "args": {"query": "kafka"}}
    assert seen[1].data["call_id"] == "call_1" and len(seen[1].data["content"]) <= 100
    assert "".join(m.data["text"] for m in seen if m.type == "step.token") == result.output
    # Streamed, with the key only in the Authorization header.
    assert [r["body"]["stream"] for r in stub.requests] == [True, True]
    assert stub.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert stub.requests[1]["body"]["messages"][-1]["role"] == "tool"


async def test_a_refusing_server_fails_without_showing_the_key() -> None:
    stub = StubOpenAI(status=401)
    async with serving(stub) as url:
        with pytest.raises(ModelHTTPError) as failure:
            await _agent(url).run("Why order?")
    assert failure.value.status_code == 401
    assert KEY not in str(failure.value)
