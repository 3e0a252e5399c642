"""The demo pipeline end to end on the real stack."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.types import TERMINAL_SEQ
from cli.main import main as cli_main
from tests.orchestration.harness import (
    TENANT,
    Harness,
    assert_well_formed,
    logical,
    run_events,
    types_of,
)
from tidings.events import EventType
from tidings.runs import PipelineResult, RunState, RunStatus
from workflows.start import PIPELINE_KEY, TENANT_KEY, start_run

pytestmark = pytest.mark.integration

QUESTION = "How do idempotent producers avoid duplicates, and how do resume tokens work?"


async def test_research_run_emits_its_whole_story_in_order(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, created = await start_run(
        harness.client, harness.settings, TENANT, "research", {"question": QUESTION}, None
    )
    assert created
    handle = harness.client.get_workflow_handle(run_id, result_type=PipelineResult)
    result = await handle.result()
    assert result.status == RunState.COMPLETED
    assert "offline mode" in result.output["answer"]
    assert "idempotent-producer" in result.output["sources"]

    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    assert len({e.id for e in events}) == len(events), "a first run never re-sends an event"
    kinds = types_of(events)
    assert kinds[0] == EventType.RUN_STARTED and kinds[-1] == EventType.RUN_COMPLETED
    assert types_of(events, "plan") == ["step.started", "step.progress", "step.completed"]
    searches = sorted({e.step for e in events if e.step and e.step.startswith("search[")})
    assert len(searches) >= 2
    draft = types_of(events, "draft")
    assert draft[0] == "step.started" and draft[-1] == "step.completed"
    tokens = "".join(e.data["text"] for e in events if e.type == EventType.STEP_TOKEN)
    assert tokens == result.output["answer"]
    order = [e.step for e in logical(events) if e.type == EventType.STEP_STARTED]
    assert order.index("plan") < order.index("search[0]") < order.index("draft")
    assert order.index("draft") < order.index("final")
    assert all(e.attempt == 1 for e in events)

    status = await handle.query("status", result_type=RunStatus)
    assert status.state == RunState.COMPLETED
    assert status.completed_steps == ["plan", "search", "draft", "final"]
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert description.typed_search_attributes.get(TENANT_KEY) == TENANT
    assert description.typed_search_attributes.get(PIPELINE_KEY) == "research"

    # `tidings replay <run_id>` fetches the history and replays it against this code.
    monkeypatch.setenv("TIDINGS_TEMPORAL_ADDRESS", harness.settings.temporal.address)
    assert await asyncio.to_thread(cli_main, ["replay", run_id]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {run_id} replays cleanly")


async def test_parallel_group_and_continue_as_new_keep_one_stream(harness: Harness) -> None:
    run_id, _ = await harness.start("long", {"n": 7})
    result = await harness.result(run_id)
    assert result.output == {"i": 4, "n": 7}
    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    run_level = [e for e in events if e.step is None]
    # Run events count on across continue-as-new; the terminal one has the
    # fixed TERMINAL_SEQ, so whoever writes it gives it the same id.
    assert [e.seq for e in run_level[:-1]] == list(range(len(run_level) - 1))
    assert (run_level[-1].type, run_level[-1].seq) == (EventType.RUN_COMPLETED, TERMINAL_SEQ)
    assert types_of(run_level).count(EventType.RUN_STARTED) == 1
    assert types_of(run_level).count(EventType.RUN_CONTINUED) == 2
    assert [e.step for e in events if e.type == EventType.STEP_COMPLETED] == [
        f"s{i}" for i in range(5)
    ]

    run_id, _ = await harness.start("parallel", {})
    result = await harness.result(run_id)
    assert result.output == {"a": {"x": 1}, "b": {"x": 2}}
