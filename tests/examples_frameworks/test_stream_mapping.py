"""How each framework example maps what its framework streams to Tidings
events (pure logic: a recording stand-in for the step's context)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(example: str, module: str) -> ModuleType:
    # The examples are folders of scripts, not packages: load by path, under
    # a name of their own, with the folder importable for their siblings.
    folder = str(EXAMPLES / example)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"{example}_{module}", f"{folder}/{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


class Recorder:
    """Stands in for a StepContext: keeps what the step would emit."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def token(self, text: str) -> None:
        self.events.append(("step.token", {"text": text}))

    async def emit(self, type_: str, data: dict[str, Any], *, wait: bool = True) -> None:
        self.events.append((type_, data))

    async def progress(self, **data: Any) -> None:
        self.events.append(("step.progress", data))


async def test_openai_agents_stream_maps_reasoning_calls_results_and_text() -> None:
    streaming = _load("openai_agents", "streaming")
    offline = streaming.OfflineWeatherModel(0)
    model = streaming.TidingsModel(offline, emitter=None, max_result_chars=20)

    first = Recorder()
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    stream = offline.stream_response(None, question)
    response = await model._publish_stream(first, stream)
    assert first.events == [
        ("step.thinking", {"text": "The user asks about Oslo: look its weather up first."}),
        (
            "step.tool_call",
            {"call_id": "get_weather-1", "tool": "get_weather", "args": {"city": "Oslo"}},
        ),
    ]
    assert [item.type for item in response.output] == ["reasoning", "function_call"]

    # The next request carries the tool's output: published first, cut.
    returned = '{"city": "Oslo", "sky": "snowing", "celsius": "-3", "wind": "a cold north wind"}'
    history = [
        *question,
        {
            "type": "function_call",
            "call_id": "get_weather-1",
            "name": "get_weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "get_weather-1", "output": returned},
    ]
    second = Recorder()
    await model._publish_tool_outputs(second, history)
    response = await model._publish_stream(second, offline.stream_response(None, history))
    (kind, result), *tokens = second.events
    assert kind == "step.tool_result"
    assert result == {
        "call_id": "get_weather-1",
        "tool": "get_weather",
        "content": returned[:20],
        "truncated": True,
    }
    text = "".join(data["text"] for kind, data in tokens if kind == "step.token")
    assert (
        text == "In Oslo it is -3 °C and snowing, with a cold north wind. "
        "Dress for it and enjoy the day. "
    )
    assert {kind for kind, _ in tokens} == {"step.token"}
    assert response.output[0].content[0].text == text.strip()

    # A later request does not publish that output again.
    third = Recorder()
    later = [
        *history,
        {"type": "message", "role": "assistant", "content": "…"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    await model._publish_tool_outputs(third, later)
    assert third.events == []


async def test_a_stream_without_a_response_fails_the_request() -> None:
    streaming = _load("openai_agents", "streaming")
    model = streaming.TidingsModel(None, emitter=None, max_result_chars=20)

    async def nothing() -> Any:
        return
        yield

    with pytest.raises(Exception, match="ended without a response"):
        await model._publish_stream(Recorder(), nothing())


async def test_langgraph_writer_maps_custom_chunks() -> None:
    nodes = _load("langgraph", "nodes")
    ctx = Recorder()
    writer = nodes._Writer(ctx, max_result_chars=10)
    writer({"token": "Dune "})
    writer({"thinking": "look it up"})
    writer({"tool_call": {"call_id": "c1", "tool": "find_book", "args": '{"title": "Dune"}'}})
    writer({"tool_result": {"call_id": "c1", "tool": "find_book", "content": {"year": 1965}}})
    writer({"stage": "ranking"})
    writer("plain text")
    await writer.close()
    assert ctx.events == [
        ("step.token", {"text": "Dune "}),
        ("step.thinking", {"text": "look it up"}),
        ("step.tool_call", {"call_id": "c1", "tool": "find_book", "args": {"title": "Dune"}}),
        (
            "step.tool_result",
            {"call_id": "c1", "tool": "find_book", "content": '{"year": 1', "truncated": True},
        ),
        ("step.progress", {"stage": "ranking"}),
        ("step.progress", {"chunk": "plain text"}),
    ]
