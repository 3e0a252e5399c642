"""examples/langgraph end to end: its one command starts the graph worker and
a Tidings worker, runs the `library` pipeline over REST and watches it over a
WebSocket (`tidings run --watch`): the graph's tool call, the tool's result
and the streamed answer arrive live, each node a sub-step, and the run
completes."""

from __future__ import annotations

import pytest

from tests.agents.conftest import Deployment
from tests.examples_frameworks.command import run_example

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_the_langgraph_example_streams_its_graph_through_tidings(
    deployment: Deployment,
) -> None:
    code, text, err = await run_example("langgraph", "Who wrote Dune?", deployment.env)
    assert code == 0, f"{text}\n{err[-2000:]}"
    lines = text.splitlines()
    expected = [
        '  step find.agent-1 calls find_book({"title": "Dune"})',
        '  step find.tools-2 got find_book: {"title": "Dune", "author": "Frank Herbert", '
        '"year": 1965, "shelf": "SF-12"}',
        "    find.agent-3 | Dune was written by Frank Herbert in 1965. "
        "You will find it on shelf SF-12.",
        "run completed [1/1 steps]",
    ]
    # In this order: the call, the tool's result, then the text that uses it.
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions), text
