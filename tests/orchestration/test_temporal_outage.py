"""A step that finishes while Temporal is down is not redone when the server is back.

The worker is assembled as ``tidings worker`` assembles it (its Temporal
client with the worker's retry settings, the finished-step interceptor), the
private stack's Temporal is stopped while the step runs, the step finishes
during the outage, and the server stays down longer than the SDK's default
retry budget (10 s) and many times the step's heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from activities.steps import StepActivities, StepContext, StepOutput, step
from tests.conftest import StackHandle
from tests.orchestration.harness import TENANT, logical, run_events
from tests.support import wait_for
from tidings.events import EventType
from tidings.runs import PipelineResult
from tidings.settings import Settings
from workers.build import build_worker, connect_temporal, default_activities, open_clients
from workers.finished_steps import FinishedSteps
from workflows.registry import PipelineRegistry
from workflows.spec import load_spec
from workflows.start import start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# How long Temporal stays down after the step finished (set 60 for the long
# case): 15 s already outlasts the SDK's default completion retries (10 s) and
# seven heartbeat timeouts, the ways a finished step could be run again.
OUTAGE_SECONDS = float(os.environ.get("TIDINGS_TEST_TEMPORAL_OUTAGE_SECONDS", "15"))

GATED = load_spec(
    {
        "name": "outage-gated",
        "steps": [
            {
                "name": "gate",
                "activity": "outage.gated",
                "heartbeat_seconds": 2,
                "start_to_close_seconds": 10,
                "retry": {"max_attempts": 3, "initial_interval_seconds": 0.2},
            },
            {"name": "after", "activity": "outage.gated", "input": {"open": True}},
        ],
    },
    source="tests/orchestration/test_temporal_outage.py",
)


class GatedSteps(StepActivities):
    """A step that streams a token, then waits until the test lets it finish."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.release = asyncio.Event()
        self.attempts: list[tuple[str, int]] = []

    @step("outage.gated")
    async def gated(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        self.attempts.append((ctx.name, ctx.attempt))
        await ctx.token("the answer")
        if not data.get("open"):
            await self.release.wait()
        return {"answer": "the answer", "attempt": ctx.attempt}


async def test_a_step_finished_during_an_outage_is_not_redone(
    stack: StackHandle, orch_settings: Settings
) -> None:
    if not stack.private:
        pytest.skip("stops Temporal: needs the private test stack")
    registry = PipelineRegistry.with_builtins()
    registry.register(GATED)
    settings = orch_settings
    temporal = await connect_temporal(settings)
    async with open_clients(settings, temporal) as clients:
        steps = GatedSteps(clients.emitter)
        worker = build_worker(
            clients, settings, [*default_activities(clients, settings), steps], registry
        )
        finished = next(
            (i for i in worker.config()["interceptors"] if isinstance(i, FinishedSteps)), None
        )
        async with worker:
            run_id, _ = await start_run(
                temporal, settings, TENANT, GATED.name, {}, None, registry=registry
            )
            await wait_for(lambda: steps.attempts == [("gate", 1)], 30, "the gate step runs")
            await asyncio.to_thread(stack.stop, "temporal")
            try:
                steps.release.set()
                # The step's events still reach Kafka: it finished during the outage.
                await run_events(
                    settings,
                    run_id,
                    until=lambda events: any(
                        e.type == EventType.STEP_COMPLETED and e.step == "gate" for e in events
                    ),
                    timeout=15,
                )
                # The fault's length, not a wait for a condition.
                await asyncio.sleep(OUTAGE_SECONDS)
            finally:
                await asyncio.to_thread(stack.start, "temporal")
            handle = temporal.get_workflow_handle(run_id, result_type=PipelineResult)
            result = await asyncio.wait_for(handle.result(), timeout=60)
            history = await handle.fetch_history()

    assert result.status == "COMPLETED", result
    # The step body ran once; the later step ran once too.
    assert steps.attempts == [("gate", 1), ("after", 1)], steps.attempts
    events = logical(await run_events(settings, run_id))
    gate = [(e.type, e.attempt) for e in events if e.step == "gate"]
    assert (EventType.STEP_RETRYING, 1) not in gate, gate
    assert [t for t in gate if t[0] != EventType.STEP_TOKEN] == [
        (EventType.STEP_STARTED, 1),
        (EventType.STEP_COMPLETED, 1),
    ], gate
    assert [t for t in gate if t[0] == EventType.STEP_TOKEN] == [(EventType.STEP_TOKEN, 1)]
    # Temporal timed attempt 1 out when it came back (its heartbeat and
    # start-to-close deadlines passed while it was down, and the worker's
    # completion gave up after the SDK's 10 s) and started attempt 2, which
    # returned attempt 1's kept result without running the step.
    gate_scheduled = next(
        e.event_id
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "outage.gated"
    )
    gate_attempt = next(
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.activity_task_started_event_attributes.scheduled_event_id == gate_scheduled
    )
    reused = finished.reused if finished is not None else 0
    print(f"gate step: last server-side attempt {gate_attempt}, answered from Redis {reused}")
    assert gate_attempt == 1 + reused
