"""SIGKILL the worker mid-stream: another worker finishes the run, and the stream
says which attempt's output to discard, with no logical event duplicated."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from tests.orchestration.harness import TENANT, assert_well_formed, logical, run_events
from tests.services import service_env
from tidings.events import Event, EventType
from tidings.runs import PipelineResult
from tidings.settings import Settings
from workflows.builtin import RESEARCH
from workflows.registry import PipelineRegistry
from workflows.start import start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _write_slow_research(folder: Path) -> None:
    raw = RESEARCH.model_dump(mode="json", exclude_defaults=True)
    raw["name"] = "research-slow"
    for step in raw["steps"]:
        if step["name"] == "draft":
            # Slow enough to be killed mid-stream; a short heartbeat so the retry comes soon.
            step["input"]["pace_ms"] = 40
            step["heartbeat_seconds"] = 1
            step["retry"] = {"initial_interval_seconds": 0.2}
    (folder / "research-slow.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")


@asynccontextmanager
async def worker_process(
    settings: Settings, pipelines: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    # Every plane the worker uses, Redis included (its step-result cache and
    # pipelines announcer): without it the worker logs connection errors all run.
    env = service_env(
        settings,
        {"worker-kill-key": TENANT},
        8000,  # a gateway setting; workers never bind it
        TIDINGS_WORKER_PIPELINES_DIR=str(pipelines),
        TIDINGS_WORKER_SHUTDOWN_GRACE_SECONDS="1",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "worker", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert b"ready" in line, line
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _tokens_seen(attempt: int, count: int) -> Callable[[list[Event]], bool]:
    def check(events: list[Event]) -> bool:
        tokens = [e for e in events if e.type == EventType.STEP_TOKEN and e.attempt == attempt]
        return len(tokens) >= count

    return check


async def test_run_survives_a_killed_worker(
    orch_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    _write_slow_research(tmp_path)
    registry = PipelineRegistry.with_builtins(tmp_path)
    client = temporal_client
    question = {"question": "How does continue-as-new keep a long workflow's history small?"}

    async with worker_process(orch_settings, tmp_path) as first:
        run_id, _ = await start_run(
            client, orch_settings, TENANT, "research-slow", question, None, registry=registry
        )
        await run_events(orch_settings, run_id, until=_tokens_seen(1, 5), timeout=30)
        first.send_signal(signal.SIGKILL)
        await first.wait()

    async with worker_process(orch_settings, tmp_path) as second:
        handle = client.get_workflow_handle(run_id, result_type=PipelineResult)
        result = await asyncio.wait_for(handle.result(), timeout=60)
        # SIGTERM is a graceful stop: the worker drains and exits 0.
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), timeout=20) == 0

    events = await run_events(orch_settings, run_id)
    assert_well_formed(events)
    draft = [e for e in events if e.step == "draft"]
    retrying = [e for e in draft if e.type == EventType.STEP_RETRYING]
    assert [e.attempt for e in retrying] == [1]
    assert retrying[0].data == {"discard_attempt": 1, "next_attempt": 2}

    # What a client keeps: dedup by id, then drop attempts that a step.retrying discarded.
    discarded = {(e.step, e.attempt) for e in logical(events) if e.type == EventType.STEP_RETRYING}
    kept = [e for e in logical(events) if (e.step, e.attempt) not in discarded]
    text = "".join(e.data["text"] for e in kept if e.type == EventType.STEP_TOKEN)
    assert text == result.output["answer"]
    for step in ("plan", "draft", "final"):
        completed = [e for e in kept if e.step == step and e.type == EventType.STEP_COMPLETED]
        assert len(completed) == 1, step
    run_level = [e.type for e in logical(events) if e.step is None]
    assert run_level.count(EventType.RUN_STARTED) == 1
    assert run_level.count(EventType.RUN_COMPLETED) == 1
