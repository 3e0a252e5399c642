"""SIGKILL the worker while the agent streams its answer (issue 17): the model
request is retried on another worker as the step's next attempt, the dead
attempt's thinking, tool call, result and tokens are discarded by
`step.retrying` (the retry re-sends the calls and results it keeps), and the
answer equals a clean run's."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from tests.orchestration.harness import TENANT, assert_well_formed, logical, run_events
from tests.orchestration.test_worker_kill import _tokens_seen, worker_process
from tidings.events import Event, EventType
from tidings.runs import PipelineResult
from tidings.settings import Settings
from workflows.builtin import AGENT
from workflows.registry import PipelineRegistry
from workflows.start import start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = {"question": "How does continue-as-new keep a long workflow's history small?"}


def _write_slow_agent(folder: Path) -> None:
    raw = AGENT.model_dump(mode="json", exclude_defaults=True)
    raw["name"] = "agent-slow"
    step = raw["steps"][0]
    assert step["name"] == "answer"
    # Slow enough to be killed mid-answer. The model request's heartbeat
    # timeout (10 s, workflows/agent.py) decides when the retry comes; these
    # apply to runs started before the agent workflow.
    step["input"]["pace_ms"] = 40
    step["heartbeat_seconds"] = 1
    step["retry"] = {"initial_interval_seconds": 0.2}
    (folder / "agent-slow.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")


def _kept(events: list[Event]) -> list[Event]:
    """What a client keeps: dedup by id, then drop the attempts `step.retrying` discarded."""
    discarded = {(e.step, e.attempt) for e in logical(events) if e.type == EventType.STEP_RETRYING}
    return [e for e in logical(events) if (e.step, e.attempt) not in discarded]


async def _result(client: Client, run_id: str) -> PipelineResult:
    handle = client.get_workflow_handle(run_id, result_type=PipelineResult)
    return await asyncio.wait_for(handle.result(), timeout=60)


async def test_a_killed_agent_is_retried_and_answers_as_a_clean_run(
    orch_settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    _write_slow_agent(tmp_path)
    registry = PipelineRegistry.with_builtins(tmp_path)

    async def start() -> str:
        run_id, _ = await start_run(
            temporal_client, orch_settings, TENANT, "agent-slow", QUESTION, None, registry=registry
        )
        return run_id

    async with worker_process(orch_settings, tmp_path) as first:
        killed = await start()
        await run_events(orch_settings, killed, until=_tokens_seen(1, 5), timeout=30)
        first.send_signal(signal.SIGKILL)
        await first.wait()

    async with worker_process(orch_settings, tmp_path) as second:
        result = await _result(temporal_client, killed)
        clean = await _result(temporal_client, await start())
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), timeout=20) == 0

    assert result.output["answer"] == clean.output["answer"]
    assert result.output["tool_calls"] == 2

    events = await run_events(orch_settings, killed)
    assert_well_formed(events)
    answer = [e for e in events if e.step == "answer"]
    retrying = [e for e in answer if e.type == EventType.STEP_RETRYING]
    assert [e.attempt for e in retrying] == [1]
    assert retrying[0].data == {"discard_attempt": 1, "next_attempt": 2}
    # The dead attempt had got as far as its answer: it called the tool first.
    dead = {e.type for e in answer if e.attempt == 1}
    assert {EventType.STEP_TOOL_CALL, EventType.STEP_TOOL_RESULT, EventType.STEP_TOKEN} <= dead

    kept = _kept(events)
    text = "".join(e.data["text"] for e in kept if e.type == EventType.STEP_TOKEN)
    assert text == result.output["answer"]
    calls = [e for e in kept if e.type == EventType.STEP_TOOL_CALL]
    assert [(e.attempt, e.data["call_id"]) for e in calls] == [
        (2, "search-1"),
        (2, "fetch_document-1"),
    ]
    completed = [e for e in kept if e.type == EventType.STEP_COMPLETED]
    assert [(e.step, e.attempt) for e in completed] == [("answer", 2), ("final", 1)]
