"""The built-in `agent` pipeline end to end (issue 17): a run started over REST,
watched over a WebSocket, with its thinking, tool calls, tool results and
tokens live. Real gateway and worker processes, real Temporal, Kafka, Redis."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.agents.conftest import MAX_RESULT_CHARS, Deployment
from tests.services import finished_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
QUESTION = "How do resume tokens let a client reconnect without losing events?"


async def _stream(url: str, run_id: str, token: str) -> list[tuple[float, dict[str, Any]]]:
    """Every event frame of the run until `end`, with the time it arrived."""
    ws_url = url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream?access_token={token}"
    frames: list[tuple[float, dict[str, Any]]] = []
    async with connect(ws_url, open_timeout=10) as socket:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = json.loads(await socket.recv(decode=True))
            if frame["kind"] == "event":
                frames.append((time.time(), frame["event"]))
            elif frame["kind"] == "end":
                assert frame["status"] == "COMPLETED", frame
                return frames
            elif frame["kind"] == "error":
                pytest.fail(f"stream error: {frame}")
    pytest.fail("the stream did not end within 60 s")


async def test_agent_run_streams_tool_calls_results_and_tokens(deployment: Deployment) -> None:
    async with deployment.http() as http:
        listed = (await http.get("/v1/pipelines")).json()["pipelines"]
        agent = next(p for p in listed if p["name"] == "agent")
        assert [step["name"] for step in agent["steps"]] == ["answer"]
        created = await http.post(
            "/v1/runs", json={"pipeline": "agent", "input": {"question": QUESTION}}
        )
    assert created.status_code == 201, created.text
    run_id, token = created.json()["run_id"], created.json()["stream_token"]

    frames = await _stream(deployment.url, run_id, token)
    events = [event for _, event in frames]
    answer = [e for e in events if e["step"] == "answer"]
    kinds = [e["type"] for e in answer]
    assert kinds[0] == "step.started" and kinds[-1] == "step.completed"
    # Thinking, then the call, then its result, then the text that uses it.
    first = {kind: kinds.index(kind) for kind in reversed(kinds)}
    assert (
        first["step.thinking"]
        < first["step.tool_call"]
        < first["step.tool_result"]
        < first["step.token"]
    )
    call = next(e["data"] for e in answer if e["type"] == "step.tool_call")
    assert call == {"call_id": "search-1", "tool": "search", "args": {"query": QUESTION}}
    result = next(e["data"] for e in answer if e["type"] == "step.tool_result")
    assert result["call_id"] == call["call_id"] and result["tool"] == "search"
    # Three passages are far longer than the setting: the event carries a preview.
    assert result["truncated"] is True
    assert len(result["content"]) == MAX_RESULT_CHARS
    assert "resume" in result["content"]

    detail = await finished_run(deployment.url, deployment.key, run_id, within=30)
    assert detail["status"] == "COMPLETED"
    text = "".join(e["data"]["text"] for e in answer if e["type"] == "step.token")
    assert text and text == detail["result"]["answer"]
    assert detail["result"]["tool_calls"] == 1
    assert "resume" in text.lower()
    assert all(e["attempt"] == 1 for e in answer)

    # Model token -> WebSocket client: an event's `ts` is stamped as the stream
    # handler gets the model's delta; the frame's arrival is read on the same
    # clock (docs/agents.md quotes these figures).
    delays = sorted(
        arrived - _epoch(event["ts"]) for arrived, event in frames if event["type"] == "step.token"
    )
    figures = {
        "tokens": len(delays),
        "p50_ms": round(1000 * delays[len(delays) // 2], 1),
        "p99_ms": round(1000 * delays[int(len(delays) * 0.99)], 1),
        "max_ms": round(1000 * delays[-1], 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "agent-token-latency.json").write_text(json.dumps(figures) + "\n")
    # Generous: a loaded 2-core CI host; the point is "live", not a benchmark.
    assert figures["p50_ms"] < 1000, figures


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


async def test_a_bad_agent_input_is_refused_before_the_run(deployment: Deployment) -> None:
    async with deployment.http() as http:
        response = await http.post("/v1/runs", json={"pipeline": "agent", "input": {}})
    assert response.status_code in (400, 422), response.text
    assert "question" in response.text
