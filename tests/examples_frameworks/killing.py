"""What the framework examples' kill tests share: their worker processes,
a run started over REST and watched over a WebSocket whose framework worker
is SIGKILLed after a few tokens while a second one is started, and the
checks every such run passes (the discard rule, the answer, live tokens).
Real Temporal, Kafka, Redis, gateway and worker processes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.agents.conftest import Deployment
from tests.examples_frameworks.command import EXAMPLES
from tests.processes import ChildProcess
from tests.services import finished_run

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Killed after this many tokens of the answer: mid-answer, whatever the pace.
KILL_AFTER_TOKENS = 3
# The offline models' pace: slow enough for the kill to land mid-answer
# (18 and 29 chunks, 1.8 s and 2.9 s), quick enough for a lean test.
PACE_MS = "100"


def ready(child: ChildProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return "ready on task queue" in child.log.read_text(errors="replace")

    return check


def steps_worker(example: Path, deployment: Deployment, log: Path) -> ChildProcess:
    """The Tidings worker with the example's step and pipelines."""
    env = {**deployment.env, "TIDINGS_WORKER_PIPELINES_DIR": str(example / "pipelines")}
    argv = [sys.executable, "-m", "cli", "worker", "--activities", "steps:activities"]
    return ChildProcess("tidings worker", argv, env, log, cwd=example)


def framework_worker(
    example: Path, deployment: Deployment, log: Path, pace_ms: str
) -> ChildProcess:
    """The example's own worker (worker.py), its offline model paced."""
    argv = [sys.executable, "worker.py", "--pace-ms", pace_ms]
    return ChildProcess("framework worker", argv, deployment.env, log, cwd=example)


@dataclass(frozen=True)
class Example:
    name: str  # examples/<name>
    pipeline: str
    question: str
    # The text a clean run streams; its result's answer is the same, stripped.
    answer: str


@dataclass
class Watched:
    events: list[dict[str, Any]] = field(default_factory=list)
    # Event id -> wall-clock arrival at the client.
    arrivals: dict[str, float] = field(default_factory=dict)

    def by_step(self) -> dict[str, list[dict[str, Any]]]:
        steps: dict[str, list[dict[str, Any]]] = {}
        for event in self.events:
            steps.setdefault(event["step"] or "", []).append(event)
        return steps


async def start_run(deployment: Deployment, pipeline: str, question: str) -> tuple[str, str]:
    """The run's id and stream token, started over REST."""
    async with deployment.http() as http:
        created = await http.post(
            "/v1/runs", json={"pipeline": pipeline, "input": {"question": question}}
        )
    assert created.status_code == 201, created.text
    return created.json()["run_id"], created.json()["stream_token"]


async def watch_killing(
    deployment: Deployment, run_id: str, token: str, first: ChildProcess, second: ChildProcess
) -> Watched:
    """Watches the run to its end; after KILL_AFTER_TOKENS tokens, SIGKILLs
    ``first`` and starts ``second`` to take its work over."""
    watched = Watched()
    killed = False
    url = deployment.url.replace("http://", "ws://")
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
            watched.events.append(event)
            watched.arrivals[event["id"]] = time.time()
            tokens = [e for e in watched.events if e["type"] == "step.token"]
            if not killed and len(tokens) == KILL_AFTER_TOKENS:
                # Mid-answer: what is streaming now dies with its worker.
                first.kill()
                killed = True
                await second.start(ready(second), 60)
        else:
            pytest.fail("the stream did not end within 90 s")
    assert killed
    return watched


async def run_killed(example: Example, deployment: Deployment, logs: Path) -> tuple[str, Watched]:
    """The example's workers started, its pipeline run and watched to its end
    through one kill, the workers stopped: the run's id and what was seen."""
    where = EXAMPLES / example.name
    steps = steps_worker(where, deployment, logs / "steps.log")
    first = framework_worker(where, deployment, logs / "framework-1.log", PACE_MS)
    second = framework_worker(where, deployment, logs / "framework-2.log", PACE_MS)
    try:
        await steps.start(ready(steps), 60)
        await first.start(ready(first), 60)
        run_id, token = await start_run(deployment, example.pipeline, example.question)
        return run_id, await watch_killing(deployment, run_id, token, first, second)
    finally:
        for child in (second, first, steps):
            child.stop()


def assert_killed_attempt_discarded(events: list[dict[str, Any]], answer: str) -> None:
    """``events`` (one sub-step's) retried once: attempt 1 had streamed part of
    ``answer`` and is discarded by `step.retrying`; what is kept is all of it."""
    retrying = [e for e in events if e["type"] == "step.retrying"]
    assert [e["data"] for e in retrying] == [{"discard_attempt": 1, "next_attempt": 2}]
    assert retrying[0]["attempt"] == 1
    killed_text = text(events, lambda attempt: attempt == 1)
    assert killed_text and answer.startswith(killed_text) and killed_text != answer
    discarded = {r["attempt"] for r in retrying}
    assert text(events, lambda attempt: attempt not in discarded) == answer


async def assert_answer(deployment: Deployment, run_id: str, example: Example) -> None:
    """The run completed with a clean run's answer."""
    detail = await finished_run(deployment.url, deployment.key, run_id, within=30)
    assert detail["status"] == "COMPLETED"
    assert detail["result"]["answer"] == example.answer.strip()


def text(events: list[dict[str, Any]], attempts: Callable[[int], bool]) -> str:
    """The tokens' text of the attempts ``attempts`` accepts."""
    return "".join(
        e["data"]["text"] for e in events if e["type"] == "step.token" and attempts(e["attempt"])
    )


def token_latency(
    watched: Watched, events: list[dict[str, Any]], attempt: int, artifact: str
) -> dict[str, float]:
    """Model token -> WebSocket client over ``attempt``'s tokens: `ts` is
    stamped as the worker gets the delta, the arrival read on the same host's
    clock; written to tests/artifacts/``artifact`` (docs/agents.md quotes it)."""
    delays = sorted(
        watched.arrivals[e["id"]]
        - datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
        for e in events
        if e["type"] == "step.token" and e["attempt"] == attempt
    )
    figures = {
        "tokens": len(delays),
        "p50_ms": round(1000 * delays[len(delays) // 2], 1),
        "p99_ms": round(1000 * delays[int(len(delays) * 0.99)], 1),
        "max_ms": round(1000 * delays[-1], 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / artifact).write_text(json.dumps(figures) + "\n")
    # Generous: a loaded 2-core CI host; the point is "live", not a benchmark.
    assert figures["p50_ms"] < 1000, figures
    return figures
