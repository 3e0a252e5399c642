"""The ``agent.run`` step: one Pydantic AI agent run, its stream published live.

The whole run is one attempt of one step: a retried attempt starts the agent
again, and clients drop the dead attempt's tokens, thinking, tool calls and
results on its ``step.retrying`` (the discard rule every step follows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.tools import Tool
from temporalio.exceptions import ApplicationError

from activities.agent.model import build_agent_model
from activities.agent.offline import SEARCH_TOOL
from activities.agent.publish import run_agent
from activities.emitter import Emitter
from activities.search_index import SearchIndex
from activities.steps import StepActivities, StepContext, StepOutput, step
from activities.types import AGENT_RUN
from tidings.errors import ActivityErrorType
from tidings.settings import ModelSettings

INSTRUCTIONS = (
    "Answer the question. Use the search tool to find passages in the corpus, "
    "cite them as [doc], and say so when the corpus does not answer it."
)

ToolFunction = Callable[..., Any]


def search_tool(index: SearchIndex) -> ToolFunction:
    def search(query: str, limit: int = 3) -> list[dict[str, Any]]:
        """Search the bundled corpus; returns the best passages with their doc ids."""
        return [asdict(p) for p in index.search(query, limit=max(1, min(limit, 10)))]

    return search


class AgentSteps(StepActivities):
    """``tools`` maps each name a spec may list to its function; ``search`` is the demo's."""

    def __init__(
        self,
        emitter: Emitter,
        settings: ModelSettings,
        index: SearchIndex,
        tools: dict[str, ToolFunction] | None = None,
    ) -> None:
        super().__init__(emitter)
        self._settings = settings
        self._tools: dict[str, ToolFunction] = {SEARCH_TOOL: search_tool(index), **(tools or {})}

    @step(AGENT_RUN)
    async def run(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise _invalid("question must be a non-empty string")
        agent = Agent(
            build_agent_model(self._settings, float(data.get("pace_ms", 0)) / 1000),
            instructions=data.get("instructions") or INSTRUCTIONS,
            tools=self._selected(data.get("tools", [SEARCH_TOOL])),
            name="tidings",
        )
        answer, calls = await run_agent(
            ctx, agent, question, max_result_chars=self._settings.tool_result_max_chars
        )
        return {
            "question": question,
            "answer": answer,
            "tool_calls": calls,
            "provider": self._settings.provider,
        }

    def _selected(self, names: Any) -> list[Tool[None]]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _invalid("tools must be a list of tool names")
        unknown = sorted(set(names) - self._tools.keys())
        if unknown:
            raise _invalid(f"unknown tools {unknown}; this worker has {sorted(self._tools)}")
        return [Tool(self._tools[name], name=name) for name in names]


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=ActivityErrorType.INVALID_INPUT, non_retryable=True)
