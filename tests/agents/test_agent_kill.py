"""A worker SIGKILLed mid-answer (issue 17): only the model request it was
streaming is retried, as the next attempt of the step; clients drop the dead
attempt's partial answer by the discard rule, keep the tool calls and results
the retry re-sends, and end with the same answer as a clean run."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from temporalio.client import Client
from websockets.asyncio.client import connect

from tests.agents.conftest import Deployment
from tests.services import finished_run
from tidings.run_state import RunState, reduce_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

QUESTION = "How does a client resume a stream after a gateway restart?"
MODEL_REQUEST = "agent__tidings__model_request_stream"


def _reduce(events: list[dict[str, Any]]) -> RunState:
    state: RunState | None = None
    for event in events:
        state = reduce_run(state, event)
    assert state is not None
    return state


async def _start(deployment: Deployment) -> tuple[str, str]:
    async with deployment.http() as http:
        created = await http.post(
            "/v1/runs", json={"pipeline": "agent", "input": {"question": QUESTION}}
        )
    assert created.status_code == 201, created.text
    return created.json()["run_id"], created.json()["stream_token"]


async def _events(
    deployment: Deployment, run_id: str, token: str, *, kill_at_first_token: bool = False
) -> list[dict[str, Any]]:
    """The run's events until `end`; with ``kill_at_first_token`` the worker is
    SIGKILLed as the answer's first token arrives, and a new one started."""
    url = deployment.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
    events: list[dict[str, Any]] = []
    killed = False
    async with connect(f"{url}?access_token={token}", open_timeout=10) as socket:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            frame = json.loads(await socket.recv(decode=True))
            if frame["kind"] == "event":
                events.append(frame["event"])
                if kill_at_first_token and not killed and frame["event"]["type"] == "step.token":
                    deployment.worker.kill()
                    killed = True
                    await deployment.restart_worker()
            elif frame["kind"] == "end":
                assert frame["status"] == "COMPLETED", frame
                return events
    pytest.fail("the stream did not end within 90 s")


async def test_a_worker_killed_mid_answer_retries_only_that_model_request(
    deployment: Deployment,
) -> None:
    clean_id, clean_token = await _start(deployment)
    clean = _reduce(await _events(deployment, clean_id, clean_token))["steps"]["answer"]

    run_id, token = await _start(deployment)
    try:
        events = await _events(deployment, run_id, token, kill_at_first_token=True)
    finally:
        if not deployment.worker.process or deployment.worker.process.poll() is not None:
            await deployment.restart_worker()
    answer = [e for e in events if e["step"] == "answer"]

    # The killed attempt streamed part of the answer, then was discarded.
    assert any(e["type"] == "step.token" and e["attempt"] == 1 for e in answer)
    retrying = [e for e in answer if e["type"] == "step.retrying"]
    assert retrying and retrying[0]["data"] == {"discard_attempt": 1, "next_attempt": 2}
    assert answer[-1]["type"] == "step.completed" and answer[-1]["attempt"] == 2

    # What a client shows is the clean run's: the answer once, and the tool
    # calls and results the retry re-sent.
    state = _reduce(events)["steps"]["answer"]
    assert state["status"] == "completed" and state["attempt"] == 2
    assert state["text"] == clean["text"]
    assert state["thinking"] == clean["thinking"]
    assert [(t["tool"], t["content"]) for t in state["tools"]] == [
        (t["tool"], t["content"]) for t in clean["tools"]
    ]
    detail = await finished_run(deployment.url, deployment.key, run_id, within=30)
    assert detail["result"]["answer"] == state["text"]

    # Durable where: the search and the read were not run again; only the
    # answer's model request had a second attempt.
    temporal = await Client.connect(deployment.env["TIDINGS_TEMPORAL_ADDRESS"])
    history = await temporal.get_workflow_handle(f"{run_id}/answer").fetch_history()
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    attempts = {
        scheduled[e.activity_task_started_event_attributes.scheduled_event_id]: e
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    }
    retried = {
        name
        for name, started in attempts.items()
        if started.activity_task_started_event_attributes.attempt > 1
    }
    assert retried == {MODEL_REQUEST}, retried
    assert sum(name.endswith("__call_tool") for name in scheduled.values()) == 2


async def test_a_run_cancelled_mid_answer_ends_cancelled(deployment: Deployment) -> None:
    """Cancelling the run cancels its agent step's child workflow; the run
    ends `run.cancelled`, not failed."""
    run_id, token = await _start(deployment)
    url = deployment.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
    events: list[dict[str, Any]] = []
    async with connect(f"{url}?access_token={token}", open_timeout=10) as socket:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = json.loads(await socket.recv(decode=True))
            if frame["kind"] == "event":
                events.append(frame["event"])
                asked = any(e["type"] == "asked" for e in events)
                if frame["event"]["type"] == "step.token" and not asked:
                    async with deployment.http() as http:
                        asked = await http.post(f"/v1/runs/{run_id}/cancel")
                    assert asked.status_code == 202, asked.text
                    events.append({"type": "asked", "step": None})
            elif frame["kind"] == "end":
                assert frame["status"] == "CANCELLED", (frame, events[-5:])
                break
    assert events[-1]["type"] == "run.cancelled"
    assert not [e for e in events if e["type"] in ("step.failed", "run.failed")]
    temporal = await Client.connect(deployment.env["TIDINGS_TEMPORAL_ADDRESS"])
    child = await temporal.get_workflow_handle(f"{run_id}/answer").describe()
    assert child.status is not None and child.status.name == "CANCELED"
