"""The `openai` provider through the agent workflow, end to end (issue 17): a
worker with TIDINGS_MODEL_PROVIDER=openai and TIDINGS_MODEL_BASE_URL at a
stub OpenAI-compatible server (tests/agents/openai_stub.py) runs the
built-in `agent` pipeline; a WebSocket client sees the tool call, its
result and the streamed answer, and the run completes. The API key reaches
the server in its Authorization header and nowhere else: not the events,
the run's detail, the child workflow's history, nor the worker's and
gateway's logs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from websockets.asyncio.client import connect

from tests.agents.conftest import Deployment, deploy
from tests.agents.openai_stub import StubOpenAI, serving
from tests.conftest import StackHandle
from tests.services import finished_run
from tidings.run_state import RunState, reduce_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEY = "sk-e2e-secret-5b1f0c9d2e"
ANSWER = "Order is per partition."


@pytest_asyncio.fixture(loop_scope="session")
async def openai_deployment(
    stack: StackHandle, tmp_path: Path
) -> AsyncIterator[tuple[Deployment, StubOpenAI, Path]]:
    stub = StubOpenAI()
    async with (
        serving(stub) as url,
        deploy(
            stack,
            tmp_path,
            TIDINGS_MODEL_PROVIDER="openai",
            TIDINGS_MODEL_BASE_URL=url,
            TIDINGS_MODEL_NAME="stub",
            TIDINGS_MODEL_API_KEY=KEY,
        ) as deployed,
    ):
        yield deployed, stub, tmp_path


async def _stream(deployment: Deployment, run_id: str, token: str) -> list[dict[str, Any]]:
    url = deployment.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
    events: list[dict[str, Any]] = []
    async with connect(f"{url}?access_token={token}", open_timeout=10) as socket:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = json.loads(await socket.recv(decode=True))
            if frame["kind"] == "event":
                events.append(frame["event"])
            elif frame["kind"] == "end":
                assert frame["status"] == "COMPLETED", (frame, events[-5:])
                return events
    pytest.fail("the stream did not end within 60 s")


async def test_an_openai_compatible_server_through_the_agent_workflow(
    openai_deployment: tuple[Deployment, StubOpenAI, Path],
) -> None:
    deployment, stub, logs = openai_deployment
    async with deployment.http() as http:
        created = await http.post(
            "/v1/runs", json={"pipeline": "agent", "input": {"question": "Why order?"}}
        )
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    events = await _stream(deployment, run_id, created.json()["stream_token"])

    answer = [e for e in events if e["step"] == "answer"]
    types = [e["type"] for e in answer]
    assert types.index("step.tool_call") < types.index("step.tool_result")
    assert types.index("step.tool_result") < types.index("step.token")
    call = next(e for e in answer if e["type"] == "step.tool_call")
    assert call["data"] == {"call_id": "call_1", "tool": "search", "args": {"query": "kafka"}}
    assert sum(t == "step.token" for t in types) >= 2  # streamed, not one block
    state: RunState | None = None
    for event in events:
        state = reduce_run(state, event)
    assert state is not None
    assert state["steps"]["answer"]["text"] == ANSWER
    detail = await finished_run(deployment.url, deployment.key, run_id, within=30)
    assert detail["status"] == "COMPLETED" and detail["result"]["answer"] == ANSWER

    # Both model requests streamed, the second with the tool's result; the key
    # only in the Authorization header.
    assert [r["body"]["stream"] for r in stub.requests] == [True, True]
    assert stub.requests[1]["body"]["messages"][-1]["role"] == "tool"
    assert {r["headers"]["authorization"] for r in stub.requests} == {f"Bearer {KEY}"}

    temporal = await Client.connect(deployment.env["TIDINGS_TEMPORAL_ADDRESS"])
    history = await temporal.get_workflow_handle(f"{run_id}/answer").fetch_history()
    seen = {
        "events": json.dumps(events),
        "run detail": json.dumps(detail),
        "child workflow history": history.to_json(),
        **{path.name: path.read_text(errors="replace") for path in logs.glob("*.log")},
    }
    assert {where for where, text in seen.items() if KEY in text} == set()
    assert {"w.log", "gw.log"} <= set(seen)
