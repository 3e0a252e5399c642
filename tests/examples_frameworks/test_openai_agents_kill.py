"""examples/openai_agents under a worker SIGKILL mid-answer (issue 17): the
model request that was streaming is retried on another agent worker, its
killed attempt's tokens are discarded by `step.retrying`, the requests before
it are kept (not re-run), and the answer is the same as in a clean run.
How the run is started, watched and killed: killing.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents.conftest import Deployment
from tests.examples_frameworks import killing

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.timeout(180)]

WEATHER = killing.Example(
    "openai_agents",
    "weather",
    "Weather in Kyoto?",
    "In Kyoto it is 14 °C and cloudy, with no wind. Dress for it and enjoy the day. ",
)


async def test_a_killed_agent_worker_retries_only_the_request_it_was_streaming(
    deployment: Deployment, tmp_path: Path
) -> None:
    run_id, watched = await killing.run_killed(WEATHER, deployment, tmp_path)

    by_step = watched.by_step()
    answering = [s for s, evs in by_step.items() if any(e["type"] == "step.token" for e in evs)]
    assert len(answering) == 1, by_step.keys()
    request = answering[0]
    assert request.startswith("ask.model-")
    killing.assert_killed_attempt_discarded(by_step[request], WEATHER.answer)
    # The request before it (the tool call) ran once and was not discarded.
    first_request = by_step["ask.model-1"]
    assert [e["type"] for e in first_request if e["type"] == "step.tool_call"] == ["step.tool_call"]
    assert all(e["attempt"] == 1 for e in first_request)
    results = [e for e in by_step[request] if e["type"] == "step.tool_result"]
    assert {e["data"]["call_id"] for e in results} == {"get_weather-1"}

    killing.token_latency(watched, by_step[request], 2, "openai-agents-token-latency.json")
    await killing.assert_answer(deployment, run_id, WEATHER)
