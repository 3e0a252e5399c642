"""examples/openai_agents under a worker SIGKILL mid-answer (issue 17): the
model request that was streaming is retried on another agent worker, its
killed attempt's tokens are discarded by `step.retrying`, the requests before
it are kept (not re-run), and the answer is the same as in a clean run.

A run started over REST, watched over a WebSocket; real Temporal, Kafka,
Redis, gateway and worker processes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.agents.conftest import Deployment
from tests.processes import ChildProcess
from tests.services import finished_run

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ANSWER = "In Kyoto it is 14 °C and cloudy, with no wind. Dress for it and enjoy the day. "
# Slow enough to be killed mid-answer (18 words, 1.8 s).
PACE_MS = "100"


def _agent_worker(deployment: Deployment, log: Path) -> ChildProcess:
    argv = [sys.executable, "worker.py", "--pace-ms", PACE_MS]
    return ChildProcess("agent worker", argv, deployment.env, log, cwd=EXAMPLE)


def _ready(child: ChildProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return "ready on task queue" in child.log.read_text(errors="replace")

    return check


async def test_a_killed_agent_worker_retries_only_the_request_it_was_streaming(
    deployment: Deployment, tmp_path: Path
) -> None:
    env = {**deployment.env, "TIDINGS_WORKER_PIPELINES_DIR": str(EXAMPLE / "pipelines")}
    steps = ChildProcess(
        "tidings worker",
        [sys.executable, "-m", "cli", "worker", "--activities", "steps:activities"],
        env,
        tmp_path / "steps.log",
        cwd=EXAMPLE,
    )
    first = _agent_worker(deployment, tmp_path / "agent-1.log")
    second = _agent_worker(deployment, tmp_path / "agent-2.log")

    try:
        await steps.start(_ready(steps), 60)
        await first.start(_ready(first), 60)
        async with deployment.http() as http:
            created = await http.post(
                "/v1/runs",
                json={"pipeline": "weather", "input": {"question": "Weather in Kyoto?"}},
            )
        assert created.status_code == 201, created.text
        run_id, token = created.json()["run_id"], created.json()["stream_token"]

        url = deployment.url.replace("http://", "ws://")
        events: list[dict[str, Any]] = []
        arrivals: dict[str, float] = {}
        killed = False
        async with connect(
            f"{url}/v1/runs/{run_id}/stream?access_token={token}", open_timeout=10
        ) as socket:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                frame = json.loads(await socket.recv(decode=True))
                if frame["kind"] == "end":
                    assert frame["status"] == "COMPLETED", frame
                    break
                if frame["kind"] != "event":
                    continue
                event = frame["event"]
                events.append(event)
                arrivals[event["id"]] = time.time()
                tokens = [e for e in events if e["type"] == "step.token"]
                if not killed and len(tokens) == 3:
                    # Mid-answer: the request streaming now dies with its worker.
                    first.kill()
                    killed = True
                    await second.start(_ready(second), 60)
            else:
                pytest.fail("the stream did not end within 90 s")
        assert killed

        by_step: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_step.setdefault(event["step"] or "", []).append(event)
        answering = [s for s, evs in by_step.items() if any(e["type"] == "step.token" for e in evs)]
        assert len(answering) == 1, by_step.keys()
        request = answering[0]
        assert request.startswith("ask.model-")
        retrying = [e for e in by_step[request] if e["type"] == "step.retrying"]
        assert [e["data"] for e in retrying] == [{"discard_attempt": 1, "next_attempt": 2}]
        assert retrying[0]["attempt"] == 1
        # Attempt 1 had streamed part of the answer; the discard rule drops it.
        killed_text = "".join(
            e["data"]["text"]
            for e in by_step[request]
            if e["type"] == "step.token" and e["attempt"] == 1
        )
        assert killed_text and ANSWER.startswith(killed_text) and killed_text != ANSWER
        kept = "".join(
            e["data"]["text"]
            for e in by_step[request]
            if e["type"] == "step.token" and e["attempt"] not in {r["attempt"] for r in retrying}
        )
        assert kept == ANSWER
        # The request before it (the tool call) ran once and was not discarded.
        first_request = by_step["ask.model-1"]
        assert [e["type"] for e in first_request if e["type"] == "step.tool_call"] == [
            "step.tool_call"
        ]
        assert all(e["attempt"] == 1 for e in first_request)
        results = [e for e in by_step[request] if e["type"] == "step.tool_result"]
        assert {e["data"]["call_id"] for e in results} == {"get_weather-1"}

        # Model token -> WebSocket client, for the attempt that was kept: `ts`
        # is stamped as the model activity gets the delta, the arrival read on
        # the same host's clock (docs/agents.md quotes these figures).
        delays = sorted(
            arrivals[e["id"]] - datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
            for e in by_step[request]
            if e["type"] == "step.token" and e["attempt"] == 2
        )
        figures = {
            "tokens": len(delays),
            "p50_ms": round(1000 * delays[len(delays) // 2], 1),
            "p99_ms": round(1000 * delays[int(len(delays) * 0.99)], 1),
            "max_ms": round(1000 * delays[-1], 1),
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "openai-agents-token-latency.json").write_text(json.dumps(figures) + "\n")
        # Generous: a loaded 2-core CI host; the point is "live", not a benchmark.
        assert figures["p50_ms"] < 1000, figures

        detail = await finished_run(deployment.url, deployment.key, run_id, within=30)
        assert detail["status"] == "COMPLETED"
        assert detail["result"]["answer"] == ANSWER.strip()
    finally:
        for child in (second, first, steps):
            child.stop()
