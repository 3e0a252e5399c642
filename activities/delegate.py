"""A step whose work runs as another durable workflow: an agent framework's own
Temporal integration (the OpenAI Agents SDK's, LangGraph's), reporting live into
the step.

The step's activity starts the framework's workflow (:func:`run_delegated`) and
waits for its result; the workflow's id names the Tidings step it works for,
so a retried step attaches to the same workflow instead of starting over, and
the framework's activities (a model request, a graph node) publish their
events as sub-steps of it (:func:`run_substep`): ``<step>.<label>-<activity
id>``, each with its own attempts. A retried model request thus discards only
its own partial output by the usual rule (``step.retrying`` of that sub-step's
attempt, docs/protocol.md), never what earlier requests said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.emitter import Emitter
from activities.steps import StepContext, StepOutput, run_step
from activities.types import StepInput

PREFIX = "tidings-step"


@dataclass(frozen=True)
class StepRef:
    """The Tidings step a delegated workflow works for, carried in its workflow id."""

    tenant: str
    run_id: str
    step: str

    def workflow_id(self) -> str:
        # The run id goes last: it is the one part that may hold any character.
        return f"{PREFIX}:{self.tenant}:{self.step}:{self.run_id}"

    @classmethod
    def parse(cls, workflow_id: str) -> StepRef:
        prefix, tenant, step, run_id = [*workflow_id.split(":", 3), "", "", ""][:4]
        if prefix != PREFIX or not (tenant and step and run_id):
            raise ValueError(f"workflow {workflow_id!r} was not started by a Tidings step")
        return cls(tenant, run_id, step)


async def run_delegated(
    ctx: StepContext,
    client: Client,
    workflow: str,
    arg: Any,
    *,
    task_queue: str,
    execution_timeout: timedelta,
) -> Any:
    """Start ``workflow`` for this step (or attach to the one an earlier attempt
    started) and return its result.

    The step's heartbeat keeps running while it waits, so a killed worker's
    attempt is retried elsewhere and attaches again; the delegated workflow
    goes on meanwhile, durably, its own activities retried on their own."""
    ref = StepRef(ctx.tenant, ctx.run_id, ctx.name)
    handle: WorkflowHandle[Any, Any]
    try:
        handle = await client.start_workflow(
            workflow,
            arg,
            id=ref.workflow_id(),
            task_queue=task_queue,
            execution_timeout=execution_timeout,
            # A running one is this step's, started by an earlier attempt; a
            # completed one already holds the answer; a failed one is redone.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(ref.workflow_id())
    await ctx.progress(workflow_id=handle.id, task_queue=task_queue)
    try:
        return await handle.result()
    except asyncio.CancelledError:
        # The run was cancelled: so is its delegate. A worker shutting down is
        # not a cancel of the run: the next attempt attaches to the workflow.
        if not activity.is_worker_shutdown():
            await asyncio.shield(handle.cancel())
        raise


async def run_substep(
    emitter: Emitter, label: str, body: Callable[[StepContext], Awaitable[StepOutput]]
) -> StepOutput:
    """Run ``body`` in the current activity of a delegated workflow as a sub-step
    of the Tidings step that workflow works for: ``step.started``, its events,
    ``step.completed``, and ``step.retrying`` for the attempts a retry replaces."""
    info = activity.info()
    ref = StepRef.parse(info.workflow_id or "")
    data = StepInput(
        tenant=ref.tenant,
        run_id=ref.run_id,
        pipeline="",
        step=f"{ref.step}.{label}-{info.activity_id}",
    )
    return await run_step(emitter, data, body)


def tool_result(call_id: str, tool: str, content: object, max_chars: int) -> dict[str, Any]:
    """The data of a ``step.tool_result``: the content as text, cut to ``max_chars``
    (a tool may return megabytes; the event carries a preview, the model all of it)."""
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    return {
        "call_id": call_id,
        "tool": tool,
        "content": text[:max_chars],
        "truncated": len(text) > max_chars,
    }


def tool_call(call_id: str, tool: str, args: Any) -> dict[str, Any]:
    """The data of a ``step.tool_call``; arguments given as a JSON string are decoded
    (a malformed string is passed on as it is)."""
    if isinstance(args, str):
        with contextlib.suppress(json.JSONDecodeError):
            args = json.loads(args) if args else {}
    return {"call_id": call_id, "tool": tool, "args": args}
