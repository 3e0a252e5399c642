"""An agent step's attempts are its model requests' (issue 17): a retried
model request is the step's next attempt in the run's status query and in
the hot-loop alert, and a step whose request fails on every attempt says in
``step.failed`` the attempt it failed at.

A worker in this process runs an agent whose model fails its first
``FAILURES`` requests (a retryable error, as a dropped connection is), on
the real stack (Temporal, Kafka, Redis).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from tests.conftest import StackHandle
from tests.orchestration.harness import (
    Harness,
    assert_well_formed,
    fixture_registry,
    logical,
    run_events,
    running_worker,
    settings_for,
)
from tidings.errors import ActivityErrorType
from tidings.events import EventType
from tidings.runs import STATUS_QUERY, RunStatus
from workflows.agent import MODEL_ATTEMPTS, build_agent
from workflows.spec import load_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AGENT = "flaky"
ANSWER = "Resume tokens live in Redis."


class FlakyModel:
    """A streaming model whose n-th request does ``script[n]``: ``fail`` (a
    retryable error, as a dropped connection), ``plane`` (ends as an attempt
    the event plane kept waiting all its time, activities/plane_deadline.py)
    or answers (anything else, and once the script is done)."""

    def __init__(self) -> None:
        self.script: list[str] = []
        self.calls = 0

    async def stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        self.calls += 1
        todo = self.script[self.calls - 1] if self.calls <= len(self.script) else "ok"
        yield "partial "
        if todo == "fail":
            raise ConnectionError("the model server went away")
        if todo == "plane":
            raise ApplicationError(
                "the event plane (Kafka) was unavailable for the rest of the attempt's time",
                {"attempt": self.calls},
                type=ActivityErrorType.EVENT_PLANE_UNAVAILABLE,
                non_retryable=True,
            )
        yield ANSWER

    def reset(self, *script: str) -> None:
        self.calls, self.script = 0, list(script)

    def model(self) -> FunctionModel:
        def respond(messages: list[ModelMessage], info: AgentInfo) -> Any:
            raise AssertionError("the agent workflow always streams")

        return FunctionModel(respond, stream_function=self.stream, model_name="flaky")


def _spec(name: str) -> Any:
    return load_spec(
        {
            "name": name,
            "input": {"question": {"type": "string"}},
            # Two retries in a minute are a hot loop here.
            "hot_loop": {"max_retries": 1, "window_seconds": 60},
            "steps": [
                {
                    "name": "answer",
                    "kind": "agent",
                    "input": {"question": "$input.question", "agent": AGENT, "tools": []},
                }
            ],
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def flaky(stack: StackHandle) -> AsyncIterator[tuple[Harness, FlakyModel, str]]:
    settings = settings_for(stack.settings(), f"agent-attempts-{uuid.uuid4().hex[:12]}")
    client = await Client.connect(stack.endpoints.temporal_address)
    model = FlakyModel()
    pipeline = f"flaky-{uuid.uuid4().hex[:8]}"
    registry = fixture_registry()
    registry.register(_spec(pipeline))

    def extra(emitter: Any) -> list[object]:
        return [build_agent(model.model(), {}, emitter, provider="test", name=AGENT)]

    async with running_worker(settings, client, registry, extra=extra) as harness:
        yield harness, model, pipeline


async def test_a_retried_model_request_is_the_steps_next_attempt(
    flaky: tuple[Harness, FlakyModel, str],
) -> None:
    harness, model, pipeline = flaky
    model.reset(*["fail"] * (MODEL_ATTEMPTS - 1))
    run_id, _ = await harness.start(pipeline, {"question": "How do resume tokens work?"})
    result = await harness.result(run_id)
    assert result.output["answer"] == f"partial {ANSWER}"

    handle = harness.client.get_workflow_handle(run_id)
    status = await handle.query(STATUS_QUERY, result_type=RunStatus)
    assert status.attempts == {"answer": MODEL_ATTEMPTS}

    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    answer = [e for e in logical(events) if e.step == "answer"]
    assert [e.attempt for e in answer if e.type == EventType.STEP_RETRYING] == [1, 2]
    assert answer[-1].type == EventType.STEP_COMPLETED and answer[-1].attempt == MODEL_ATTEMPTS
    alerts = [e for e in answer if e.type == EventType.ALERT_HOT_LOOP]
    assert len(alerts) == 1 and alerts[0].data["retries"] == 2, alerts


async def test_a_step_failing_on_every_attempt_names_its_last(
    flaky: tuple[Harness, FlakyModel, str],
) -> None:
    harness, model, pipeline = flaky
    model.reset(*["fail"] * MODEL_ATTEMPTS)
    run_id, _ = await harness.start(pipeline, {"question": "How do resume tokens work?"})
    with pytest.raises(WorkflowFailureError):
        await harness.result(run_id)

    handle = harness.client.get_workflow_handle(run_id)
    status = await handle.query(STATUS_QUERY, result_type=RunStatus)
    assert status.attempts == {"answer": MODEL_ATTEMPTS}

    events = await run_events(harness.settings, run_id)
    failed = [e for e in logical(events) if e.type == EventType.STEP_FAILED]
    assert [(e.step, e.attempt) for e in failed] == [("answer", MODEL_ATTEMPTS)]
    assert events[-1].type == EventType.RUN_FAILED


async def test_a_model_request_the_event_plane_ended_is_not_counted(
    flaky: tuple[Harness, FlakyModel, str],
) -> None:
    """Fails, is ended by the event plane, fails, answers: four attempts of a
    request allowed three, which completes only if the second is not counted."""
    harness, model, pipeline = flaky
    model.reset("fail", "plane", "fail")
    run_id, _ = await harness.start(pipeline, {"question": "How do resume tokens work?"})
    result = await harness.result(run_id)
    assert result.output["answer"] == f"partial {ANSWER}"
    assert model.calls == 4

    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    answer = [e for e in logical(events) if e.step == "answer"]
    assert [e.attempt for e in answer if e.type == EventType.STEP_RETRYING] == [1, 2, 3]
    assert answer[-1].type == EventType.STEP_COMPLETED and answer[-1].attempt == 4
    assert EventType.STEP_FAILED not in {e.type for e in answer}

    # Recorded for the replay test (tests/agents/test_agent_replay.py) with
    # TIDINGS_TEST_RECORD_AGENT_HISTORY=tests/agents/histories.
    folder = os.environ.get("TIDINGS_TEST_RECORD_AGENT_HISTORY")
    if folder:
        history = await harness.client.get_workflow_handle(f"{run_id}/answer").fetch_history()
        path = Path(folder) / "flaky-plane.answer.json"
        path.write_text(history.to_json(), encoding="utf-8")
