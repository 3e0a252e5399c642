"""examples/openai_agents end to end: its one command starts the agent worker
and a Tidings worker, runs the `weather` pipeline over REST and watches it
over a WebSocket (`tidings run --watch`): the agent's reasoning, its tool
call, the tool's result and the streamed answer arrive live, and the run
completes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.agents.conftest import Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents"


async def test_the_openai_agents_example_streams_its_agent_through_tidings(
    deployment: Deployment,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE / "run.py"),
        "What is the weather in Kyoto?",
        env=deployment.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = out.decode()
    assert process.returncode == 0, f"{text}\n{err.decode()[-2000:]}"
    lines = text.splitlines()
    expected = [
        "  ask.model-1 (thinking) | The user asks about Kyoto: look its weather up first.",
        'step ask.model-1 calls get_weather({"city": "Kyoto"})',
        'step ask.model-3 got get_weather: {"city": "Kyoto", "sky": "cloudy", '
        '"celsius": "14", "wind": "no wind"}',
        "  ask.model-3 | In Kyoto it is 14 °C and cloudy, with no wind. "
        "Dress for it and enjoy the day. ",
        "run completed [1/1 steps]",
    ]
    # In this order: the call, the tool's result, then the text that uses it.
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions), text
