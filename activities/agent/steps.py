"""The ``agent.run`` step: one Pydantic AI agent run, its stream published live.

The whole run is one attempt of one step: a retried attempt starts the agent
again, and clients drop the dead attempt's tokens, thinking, tool calls and
results on its ``step.retrying`` (the discard rule every step follows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from pydantic_ai import (
    Agent,
    DeferredToolRequests,
    DeferredToolResults,
    ModelMessagesTypeAdapter,
    ToolDenied,
)
from pydantic_ai.tools import DeferredToolApprovalResult, Tool
from temporalio.exceptions import ApplicationError

from activities.agent.model import build_agent_model
from activities.agent.offline import FETCH_TOOL, SEARCH_TOOL
from activities.agent.publish import Outcome, run_agent
from activities.emitter import Emitter
from activities.search_index import SearchIndex
from activities.steps import StepActivities, StepContext, StepOutput, step
from activities.types import AGENT_RESUME, AGENT_RUN
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


def fetch_tool(index: SearchIndex) -> ToolFunction:
    def fetch_document(doc: str) -> dict[str, Any]:
        """The whole of one corpus document, by its doc id."""
        found = index.document(doc)
        return asdict(found) if found is not None else {"error": f"no document {doc!r}"}

    return fetch_document


def agent_tools(index: SearchIndex) -> dict[str, ToolFunction]:
    """The demo's tools, by the names specs list."""
    return {SEARCH_TOOL: search_tool(index), FETCH_TOOL: fetch_tool(index)}


class AgentSteps(StepActivities):
    """``tools`` maps each name a spec may list to its function; ``search`` and
    ``fetch_document`` are the demo's.

    ``agent.run`` runs the agent. Tools a spec lists under ``approval_tools``
    need a reviewer's approval when the input's ``require_approval`` is true:
    the run then ends with those calls pending (``pending``, with the
    message history), an approval step asks for ``approve``/``reject``, and
    ``agent.resume`` carries the run on with the decision (a call listed in
    the approval's ``deny`` gets a denial the model reads: the review's
    ``comment``, if any). Without pending calls, ``agent.resume`` passes the
    answer through.
    """

    def __init__(
        self,
        emitter: Emitter,
        settings: ModelSettings,
        index: SearchIndex,
        tools: dict[str, ToolFunction] | None = None,
    ) -> None:
        super().__init__(emitter)
        self._settings = settings
        self._tools: dict[str, ToolFunction] = {**agent_tools(index), **(tools or {})}

    @step(AGENT_RUN)
    async def run(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        question = _question(data)
        gated = bool(data.get("require_approval")) and bool(data.get("approval_tools"))
        outcome = await run_agent(
            ctx,
            self._agent(data, gated),
            question,
            max_result_chars=self._settings.tool_result_max_chars,
        )
        return self._output(question, outcome)

    @step(AGENT_RESUME)
    async def resume(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        first = data.get("answer")
        if not isinstance(first, dict):
            raise _invalid("answer must be the output of the agent step")
        if not first.get("pending"):
            return {k: v for k, v in first.items() if k != "messages"}
        decisions = review_decisions(first["pending"], data.get("review"))
        outcome = await run_agent(
            ctx,
            self._agent(data, gated=True),
            None,
            max_result_chars=self._settings.tool_result_max_chars,
            message_history=ModelMessagesTypeAdapter.validate_python(first.get("messages")),
            deferred_tool_results=DeferredToolResults(approvals=decisions),
        )
        output = self._output(str(first.get("question", "")), outcome)
        # The first run's calls count too: the answer used them.
        output["tool_calls"] += int(first.get("tool_calls", 0))
        return output

    def _agent(self, data: dict[str, Any], gated: bool) -> Agent[None, Any]:
        tools = self._selected(data.get("tools", [SEARCH_TOOL]), approval=False)
        tools += self._selected(data.get("approval_tools", []), approval=gated)
        output_type: Any = [str, DeferredToolRequests] if gated else str
        return Agent(
            build_agent_model(self._settings, float(data.get("pace_ms", 0)) / 1000),
            instructions=data.get("instructions") or INSTRUCTIONS,
            tools=tools,
            output_type=output_type,
            name="tidings",
        )

    def _output(self, question: str, outcome: Outcome) -> StepOutput:
        output: StepOutput = {
            "question": question,
            "answer": None,
            "pending": [],
            "tool_calls": outcome.tool_calls,
            "provider": self._settings.provider,
        }
        if isinstance(outcome.output, DeferredToolRequests):
            output["pending"] = [
                {"call_id": call.tool_call_id, "tool": call.tool_name, "args": call.args_as_dict()}
                for call in outcome.output.approvals
            ]
            # The history travels in the step's output to the step that resumes it.
            output["messages"] = ModelMessagesTypeAdapter.dump_python(outcome.messages, mode="json")
        else:
            output["answer"] = str(outcome.output)
        return output

    def _selected(self, names: Any, *, approval: bool) -> list[Tool[None]]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _invalid("tools must be a list of tool names")
        unknown = sorted(set(names) - self._tools.keys())
        if unknown:
            raise _invalid(f"unknown tools {unknown}; this worker has {sorted(self._tools)}")
        return [Tool(self._tools[n], name=n, requires_approval=approval) for n in names]


def _question(data: dict[str, Any]) -> str:
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _invalid("question must be a non-empty string")
    return question


def review_decisions(
    pending: list[dict[str, Any]], review: dict[str, Any] | None
) -> dict[str, bool | DeferredToolApprovalResult]:
    """The reviewer's answer to the gated calls ``pending``, as Pydantic AI's
    deferred approvals: each call approved unless the review denies it."""
    review = review or {}
    if not review.get("approved"):
        raise _invalid("pending tool calls need an approved review")
    denied = set(review.get("deny") or [])
    reason = str(review.get("comment") or "The reviewer denied this call.")
    return {
        call["call_id"]: ToolDenied(reason) if call["call_id"] in denied else True
        for call in pending
    }


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=ActivityErrorType.INVALID_INPUT, non_retryable=True)
