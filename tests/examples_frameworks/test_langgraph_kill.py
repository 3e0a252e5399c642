"""examples/langgraph under a worker SIGKILL mid-answer (issue 17): the graph
node that was streaming (`agent`, the answer) is retried on another graph
worker, its killed attempt's tokens are discarded by `step.retrying`, the
nodes before it (the model's tool call, the tool) are kept and not re-run,
and the answer is the same as in a clean run.

The plugin runs each node as one activity, so the unit retried is the whole
node (here: the model's one streamed request in it). The graph worker runs
the workflow too: the second worker also takes the graph's workflow over
(how the run is started, watched and killed: killing.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents.conftest import Deployment
from tests.examples_frameworks import killing

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.timeout(180)]

# The graph's nodes as they run: the model asks for the tool, the tool, the answer.
NODES = ["find.agent-1", "find.tools-2", "find.agent-3"]
# As a clean run answers (tests/examples_frameworks/test_langgraph.py).
ANSWER = "Dune was written by Frank Herbert in 1965. You will find it on shelf SF-12."
LIBRARY = killing.Example("langgraph", "library", "Who wrote Dune?", ANSWER)


async def test_a_killed_graph_worker_retries_only_the_node_it_was_streaming(
    deployment: Deployment, tmp_path: Path
) -> None:
    run_id, watched = await killing.run_killed(LIBRARY, deployment, tmp_path)

    by_step = watched.by_step()
    assert [s for s in by_step if s.startswith("find.")] == NODES
    killing.assert_killed_attempt_discarded(by_step["find.agent-3"], ANSWER)
    # The nodes before it ran once each, on the killed worker, and were kept.
    for node in NODES[:2]:
        events = by_step[node]
        assert all(e["attempt"] == 1 for e in events), events
        assert [e["type"] for e in events].count("step.started") == 1
        assert "step.retrying" not in [e["type"] for e in events]
    calls = [e["data"] for e in by_step["find.agent-1"] if e["type"] == "step.tool_call"]
    assert calls == [{"call_id": "find_book-1", "tool": "find_book", "args": {"title": "Dune"}}]
    results = [e["data"] for e in by_step["find.tools-2"] if e["type"] == "step.tool_result"]
    assert [r["call_id"] for r in results] == ["find_book-1"]

    killing.token_latency(watched, by_step["find.agent-3"], 2, "langgraph-token-latency.json")
    await killing.assert_answer(deployment, run_id, LIBRARY)
