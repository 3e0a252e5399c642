"""An `agent` step run durably by Pydantic AI's Temporal support.

The pipeline workflow starts one ``tidings.agent`` child workflow per agent
step (workflows/pipeline.py, behind a patch). Its agent loop is workflow
code: every model request is an activity (streaming its text and thinking
live, activities/agent/durable.py), every tool call is an activity, and a
retried activity repeats only itself. The workflow keeps the stream's
position in the run's deps, so each event's id is fixed by the history.

Built per worker (:func:`agent_workflow`), since the agent's model and tools
are the worker's; not sandboxed, as Pydantic AI's agent graph runs in it
(its own code is replay-safe under Temporal: its clock, ids and sleeps go
through the workflow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar

from pydantic_ai import (
    Agent,
    DeferredToolRequests,
    DeferredToolResults,
    ModelMessagesTypeAdapter,
    RunContext,
    Tool,
)
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    RetryModelRequest,
    UserError,
)
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models import Model, ModelRequestContext
from pydantic_ai.tools import ToolDefinition
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.workflow import ActivityConfig

# The house rule for workflows (docs/design.md), though this one is not sandboxed.
with workflow.unsafe.imports_passed_through():
    from activities.agent.durable import (
        STAMP_KEY,
        AgentDeps,
        Stamps,
        shown_by,
        stream_handler,
    )
    from activities.agent.offline import SEARCH_TOOL
    from activities.agent.steps import INSTRUCTIONS, ToolFunction, review_decisions
    from activities.emitter import Emitter
    from activities.plane_deadline import event_plane_attempt
    from activities.types import (
        AGENT_RESUME,
        AGENT_WORKFLOW,
        EMIT_RUN_EVENT,
        AgentStepInput,
        RunEventInput,
    )
    from tidings.errors import ActivityErrorType
    from tidings.events import EventType

AGENT_NAME = "tidings"

# Since this patch a model request the event plane ended (its emits waited for
# Kafka for the rest of its time: EVENT_PLANE_UNAVAILABLE) is scheduled again,
# its attempts numbered on and not counted, as a pipeline step's are.
MODEL_REQUEST_PLANE_PATCH = "agent-model-request-outage-uncounted"
MODEL_ATTEMPTS = 3

# Each model request: one activity of up to 5 minutes, heartbeating (a dead
# worker's request moves to another after 10 s), retried up to 3 times.
MODEL_ACTIVITY = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=5),
    heartbeat_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(
        maximum_attempts=MODEL_ATTEMPTS, maximum_interval=timedelta(seconds=10)
    ),
)
# Each tool call: one activity of up to a minute, retried up to 3 times.
TOOL_ACTIVITY = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=1),
    retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10)),
)
# Each tool event's publication: as the pipeline's own emits, retried until
# Kafka answers (an event-plane outage must not fail the agent).
EVENT_ACTIVITY = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
_EMIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


class StreamPosition(AbstractCapability[AgentDeps]):
    """Workflow-side hooks: the run's tools, and the stream's position in its deps."""

    async def prepare_tools(
        self, ctx: RunContext[AgentDeps], tool_defs: list[ToolDefinition]
    ) -> list[ToolDefinition]:
        deps = ctx.deps
        offered = [d for d in tool_defs if d.name in deps.tools or d.name in deps.approval_tools]
        # A gated tool's call ends the run with it pending (Pydantic AI's deferred tools).
        return [
            replace(d, kind="unapproved") if deps.gated and d.name in deps.approval_tools else d
            for d in offered
        ]

    async def before_model_request(
        self, ctx: RunContext[AgentDeps], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        deps = ctx.deps
        deps.shown = shown_by(ctx.messages[deps.history :], deps.max_result_chars)
        return request_context

    async def after_model_request(
        self,
        ctx: RunContext[AgentDeps],
        *,
        request_context: ModelRequestContext,
        response: ModelResponse,
    ) -> ModelResponse:
        stamp = (response.metadata or {}).get(STAMP_KEY)
        if isinstance(stamp, dict):
            deps = ctx.deps
            deps.attempt = int(stamp["attempt"])
            deps.tool_seq = int(stamp["next_seq"])
            deps.calls = [p.tool_call_id for p in response.parts if isinstance(p, ToolCallPart)]
            # Each call: its call and its result; then an approval request, if any.
            deps.next_seq = deps.tool_seq + 2 * len(deps.calls) + 1
            deps.base = deps.spent = 0
        return response

    async def on_model_request_error(
        self,
        ctx: RunContext[AgentDeps],
        *,
        request_context: ModelRequestContext,
        error: Exception,
    ) -> ModelResponse:
        ended = event_plane_attempt(error)
        if ended is None or not workflow.patched(MODEL_REQUEST_PLANE_PATCH):
            raise error
        # Kafka was away for the request's whole time: not the request's
        # failure. Run it again, its attempts numbered on (the next one
        # announces step.retrying for the one the outage ended).
        deps = ctx.deps
        earlier = deps.base
        deps.base = ended - deps.attempt + 1
        deps.spent += deps.base - earlier - 1
        await workflow.sleep(timedelta(seconds=1))
        raise RetryModelRequest()


class StampedDurability(TemporalDurability[AgentDeps]):
    """Pydantic AI's Temporal durability, leaving on each model response where
    its stream ended (inside the model-request activity, before it returns)."""

    def __init__(self, stamps: Stamps, **options: Any) -> None:
        super().__init__(**options)
        self._stamps = stamps

    def _stamp_response(self, response: ModelResponse, messages: list[Any]) -> None:
        super()._stamp_response(response, messages)
        self._stamps.stamp(response)


@dataclass(frozen=True)
class DurableAgent:
    """An agent the agent workflow runs, built by :func:`build_agent`; a worker
    registers it (workers/build.py) and a step names it (``input.agent``)."""

    agent: Agent[AgentDeps, Any]
    # The output's `provider`; an offline model also takes the step's `pace_ms`.
    provider: str
    instructions: str

    @property
    def name(self) -> str:
        return self.agent.name or AGENT_NAME

    @property
    def activities(self) -> list[Callable[..., Any]]:
        durability = TemporalDurability.from_agent(self.agent)
        assert durability is not None
        return durability.temporal_activities


def build_agent(
    model: Model,
    tools: dict[str, ToolFunction],
    emitter: Emitter,
    *,
    provider: str,
    name: str = AGENT_NAME,
    instructions: str = INSTRUCTIONS,
) -> DurableAgent:
    """A durable agent named ``name`` with all of ``tools``; a run offers the
    ones its step lists (``StreamPosition.prepare_tools``). Its activities are
    named after it (``agent__<name>__model_request_stream``, ...)."""
    stamps = Stamps()
    handler = stream_handler(emitter, stamps)
    durability = StampedDurability(
        stamps,
        name=name,
        event_stream_handler=handler,
        activity_config=TOOL_ACTIVITY,
        model_activity_config=MODEL_ACTIVITY,
        event_stream_handler_activity_config=EVENT_ACTIVITY,
    )
    agent: Agent[AgentDeps, Any] = Agent(
        model,
        deps_type=AgentDeps,
        tools=[Tool(function, name=tool) for tool, function in tools.items()],
        output_type=[str, DeferredToolRequests],
        name=name,
        capabilities=[durability, StreamPosition()],
    )

    @agent.instructions
    def run_instructions(ctx: RunContext[AgentDeps]) -> str:
        return ctx.deps.instructions

    return DurableAgent(agent, provider, instructions)


@workflow.defn(name=AGENT_WORKFLOW, sandboxed=False)
class AgentWorkflow:
    """Runs one agent step with the agent it names (:func:`agent_workflow` binds them)."""

    # Temporal builds workflows with no arguments: the worker's agents are
    # bound to the class once, at the worker's start.
    agents: ClassVar[dict[str, DurableAgent]] = {}
    max_result_chars: ClassVar[int] = 2000

    @workflow.run
    async def run(self, data: AgentStepInput) -> dict[str, Any]:
        name = data.input.get("agent", AGENT_NAME)
        durable = type(self).agents.get(name) if isinstance(name, str) else None
        if durable is None:
            raise _invalid(f"unknown agent {name!r}; this worker has {sorted(type(self).agents)}")
        known = set(durable.agent._function_toolset.tools)  # the names only
        deps = _deps(data, known, type(self).max_result_chars, durable.instructions)
        await _emit(data, EventType.STEP_STARTED, {}, attempt=1, seq=0)
        first = data.input.get("answer") if data.activity == AGENT_RESUME else None
        if isinstance(first, dict) and not first.get("pending"):
            output = {k: v for k, v in first.items() if k != "messages"}
        else:
            output = await _answer(durable.agent, data, deps, first, durable.provider)
        await _emit(data, EventType.STEP_COMPLETED, {"output": output}, deps.attempt, deps.next_seq)
        return output


def agent_workflow(agents: list[DurableAgent], *, max_result_chars: int) -> type[AgentWorkflow]:
    """The ``tidings.agent`` workflow, running ``agents`` (by name)."""
    AgentWorkflow.agents = {durable.name: durable for durable in agents}
    AgentWorkflow.max_result_chars = max_result_chars
    return AgentWorkflow


async def _answer(
    agent: Agent[AgentDeps, Any],
    data: AgentStepInput,
    deps: AgentDeps,
    first: Any,
    provider: str,
) -> dict[str, Any]:
    pace = float(data.input.get("pace_ms", 0)) if provider == "offline" else 0.0
    settings: Any = {"tidings_pace_ms": pace} if pace else None
    history = None
    results = None
    earlier_calls = 0
    if data.activity == AGENT_RESUME:
        if not isinstance(first, dict):
            raise _invalid("answer must be the output of the agent step")
        decisions = review_decisions(first["pending"], data.input.get("review"))
        history = ModelMessagesTypeAdapter.validate_python(first.get("messages"))
        results = DeferredToolResults(approvals=decisions)
        deps.history = len(history)
        earlier_calls = int(first.get("tool_calls", 0))
    question = str(first.get("question", "")) if isinstance(first, dict) else _question(data)
    try:
        result = await agent.run(
            None if history is not None else question,
            deps=deps,
            message_history=history,
            deferred_tool_results=results,
            model_settings=settings,
        )
    except (ActivityError, ModelAPIError, AgentRunError, UserError) as exc:
        raise _failure(exc, _failed_attempt(exc, deps)) from None
    messages = result.new_messages()
    calls = sum(isinstance(p, ToolCallPart) for m in messages for p in getattr(m, "parts", []))
    output: dict[str, Any] = {
        "question": question,
        "answer": None,
        "pending": [],
        "tool_calls": calls - len(_pending(result.output)) + earlier_calls,
        "provider": provider,
    }
    if isinstance(result.output, DeferredToolRequests):
        output["pending"] = _pending(result.output)
        # The history travels in the step's output to the step that resumes it.
        messages_json = ModelMessagesTypeAdapter.dump_python(result.all_messages(), mode="json")
        output["messages"] = messages_json
    else:
        output["answer"] = str(result.output)
    return output


def _pending(output: Any) -> list[dict[str, Any]]:
    if not isinstance(output, DeferredToolRequests):
        return []
    return [
        {"call_id": call.tool_call_id, "tool": call.tool_name, "args": call.args_as_dict()}
        for call in output.approvals
    ]


def _deps(
    data: AgentStepInput, known: set[str], max_result_chars: int, instructions: str
) -> AgentDeps:
    # The built-in agent searches by default; another agent offers all its tools.
    default = [SEARCH_TOOL] if SEARCH_TOOL in known else sorted(known)
    tools = _names(data.input.get("tools", default), known)
    approval = _names(data.input.get("approval_tools", []), known)
    gated = data.activity == AGENT_RESUME or bool(data.input.get("require_approval"))
    return AgentDeps(
        tenant=data.tenant,
        run_id=data.run_id,
        pipeline=data.pipeline,
        step=data.step,
        tools=tools,
        approval_tools=approval,
        gated=gated and bool(approval),
        instructions=str(data.input.get("instructions") or instructions),
        max_result_chars=max_result_chars,
        max_attempts=MODEL_ATTEMPTS,
        parent_id=parent.workflow_id if (parent := workflow.info().parent) else "",
        hot_loop=data.hot_loop,
        started=workflow.now().timestamp(),
    )


def _names(names: Any, known: set[str]) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _invalid("tools must be a list of tool names")
    unknown = sorted(set(names) - known)
    if unknown:
        raise _invalid(f"unknown tools {unknown}; the agent has {sorted(known)}")
    return list(names)


def _question(data: AgentStepInput) -> str:
    question = data.input.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _invalid("question must be a non-empty string")
    return question


def _failed_attempt(exc: Exception, deps: AgentDeps) -> int:
    """The step's attempt ``exc`` ended (step.failed names it)."""
    cause = exc.cause if isinstance(exc, ActivityError) else None
    details = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else None
    attempt = details.get("attempt") if isinstance(details, dict) else None
    if isinstance(attempt, int):
        return attempt
    if isinstance(exc, ActivityError) and exc.activity_type.endswith("model_request_stream"):
        first = deps.attempt + deps.base
        # Only a policy that gave up says how many attempts ran: all of them.
        if exc.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
            return first + MODEL_ATTEMPTS - 1
        return first
    return deps.attempt


def _failure(exc: Exception, attempt: int) -> ApplicationError:
    cause = exc.cause if isinstance(exc, ActivityError) and exc.cause is not None else exc
    ended = {"attempt": attempt}
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, ended, type=cause.type, non_retryable=True)
    if isinstance(cause, UserError):
        return _invalid(f"agent misconfigured: {cause}", ended)
    if isinstance(cause, ModelAPIError):
        # Only the class: the SDK's message may quote the server's reply.
        return ApplicationError(
            f"model server failed: {type(cause).__name__}",
            ended,
            type=ActivityErrorType.PROVIDER_UNAVAILABLE,
            non_retryable=True,
        )
    return ApplicationError(str(cause) or type(cause).__name__, ended, type=type(cause).__name__)


def _invalid(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(
        message, *details, type=ActivityErrorType.INVALID_INPUT, non_retryable=True
    )


async def _emit(
    data: AgentStepInput, type_: str, payload: dict[str, Any], attempt: int, seq: int
) -> None:
    event = RunEventInput(
        tenant=data.tenant,
        run_id=data.run_id,
        type=type_,
        seq=seq,
        data=payload,
        step=data.step,
        attempt=attempt,
    )
    await workflow.execute_activity(
        EMIT_RUN_EVENT,
        event,
        summary=f"emit {type_} of {data.step}",
        start_to_close_timeout=timedelta(hours=1),
        heartbeat_timeout=timedelta(seconds=10),
        retry_policy=_EMIT_RETRY,
    )
