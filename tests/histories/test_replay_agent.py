"""The agent workflow's recorded histories (one per agent step, recorded by
``python -m tests.histories.record agent-durable agent-durable-approval``)
replay against the current agent workflow and the worker's offline agent.

Pydantic AI's agent loop is workflow code there: a change to it, to the
tools or to the hooks that keep the stream's position must keep these
replaying (or be guarded with ``workflow.patched``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic_ai.durable_exec.temporal import PydanticAIPayloadConverter
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from activities.agent.model import build_agent_model
from activities.agent.steps import agent_tools
from activities.emitter import Emitter
from activities.search_index import SearchIndex
from tidings.settings import KafkaSettings, ModelSettings
from workflows.agent import agent_workflow, build_agent

pytestmark = pytest.mark.unit

HISTORIES = sorted((Path(__file__).parent / "agent_workflow").glob("*.json"))


def test_both_agent_steps_have_recorded_histories() -> None:
    assert {path.stem.split(".")[-1] for path in HISTORIES} == {"answer", "final"}


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
def test_agent_history_replays(path: Path) -> None:
    failure = asyncio.run(_replay(path))
    assert failure is None, failure


async def _replay(path: Path) -> Exception | None:
    settings = ModelSettings()
    # Never started: replay runs no activity, so nothing is emitted.
    emitter = Emitter(KafkaSettings())
    tools = agent_tools(SearchIndex.bundled())
    agent = build_agent(build_agent_model(settings), tools, emitter, provider=settings.provider)
    workflow = agent_workflow([agent], max_result_chars=settings.tool_result_max_chars)
    replayer = Replayer(
        workflows=[workflow],
        data_converter=DataConverter(payload_converter_class=PydanticAIPayloadConverter),
    )
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    try:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    finally:
        await emitter.stop()  # its producer was made, never started
    return result.replay_failure
