"""examples/openai_agents end to end: its one command starts the agent worker
and a Tidings worker, runs the `weather` pipeline over REST and watches it
over a WebSocket (`tidings run --watch`): the agent's reasoning, its tool
call, the tool's result and the streamed answer arrive live, and the run
completes."""

from __future__ import annotations

import pytest

from tests.agents.conftest import Deployment
from tests.examples_frameworks.command import run_example

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_the_openai_agents_example_streams_its_agent_through_tidings(
    deployment: Deployment,
) -> None:
    code, text, err = await run_example(
        "openai_agents", "What is the weather in Kyoto?", deployment.env
    )
    assert code == 0, f"{text}\n{err[-2000:]}"
    lines = text.splitlines()
    expected = [
        "    ask.model-1 (thinking) | The user asks about Kyoto: look its weather up first.",
        '  step ask.model-1 calls get_weather({"city": "Kyoto"})',
        '  step ask.model-3 got get_weather: {"city": "Kyoto", "sky": "cloudy", '
        '"celsius": "14", "wind": "no wind"}',
        "    ask.model-3 | In Kyoto it is 14 °C and cloudy, with no wind. "
        "Dress for it and enjoy the day. ",
        "run completed [1/1 steps]",
    ]
    # In this order: the call, the tool's result, then the text that uses it.
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions), text
