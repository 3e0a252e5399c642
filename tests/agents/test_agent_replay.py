"""The agent workflow's history of a model request the event plane ended
(recorded by test_agent_attempts.py's uncounted-ending test with
``TIDINGS_TEST_RECORD_AGENT_HISTORY=tests/agents/histories``: the request
fails, is ended by the event plane under the patch
``agent-model-request-outage-uncounted``, fails, answers) replays against
the current agent workflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_ai.durable_exec.temporal import PydanticAIPayloadConverter
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from activities.emitter import Emitter
from tests.agents.test_agent_attempts import AGENT, FlakyModel
from tidings.settings import KafkaSettings
from workflows.agent import agent_workflow, build_agent

pytestmark = pytest.mark.unit

HISTORY = Path(__file__).parent / "histories" / "flaky-plane.answer.json"


async def test_the_uncounted_model_request_replays() -> None:
    # Never started: replay runs no activity, so nothing is emitted.
    emitter = Emitter(KafkaSettings())
    agent = build_agent(FlakyModel().model(), {}, emitter, provider="test", name=AGENT)
    replayer = Replayer(
        workflows=[agent_workflow([agent], max_result_chars=2000)],
        data_converter=DataConverter(payload_converter_class=PydanticAIPayloadConverter),
    )
    history = WorkflowHistory.from_json(HISTORY.stem, HISTORY.read_text(encoding="utf-8"))
    try:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    finally:
        await emitter.stop()
    assert result.replay_failure is None, result.replay_failure
