"""``PipelineWorkflow``: one generic, deterministic workflow that runs any pipeline spec.

The spec travels in the input, so a run never depends on files the worker
reads later. Every event leaves through an activity; this module does no I/O,
reads no clock and no settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    RetryState,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from activities.plane_deadline import event_plane_attempt
    from activities.types import (
        AGENT_RESUME,
        AGENT_RUN,
        AGENT_WORKFLOW,
        CLOSING_SEQ,
        EMIT_RUN_EVENT,
        RECORD_STEP_FAILURE,
        REQUEST_EXTERNAL,
        STEP_ATTEMPT_SIGNAL,
        TERMINAL_SEQ,
        AgentStepInput,
        ExternalRequestInput,
        HotLoopPolicy,
        RunEventInput,
        StepFailureInput,
        StepInput,
    )
    from tidings.errors import ActivityErrorType
    from tidings.events import EventType
    from tidings.runs import (
        APPROVE_SIGNAL,
        PIPELINE_ATTRIBUTE,
        PIPELINE_WORKFLOW,
        REJECT_SIGNAL,
        STATUS_QUERY,
        TENANT_ATTRIBUTE,
        PipelineInput,
        PipelineResult,
        RunState,
        RunStatus,
    )
    from workflows import refs
    from workflows.spec import PipelineSpec, StepSpec

T = TypeVar("T")

# Internal signal: the completion consumer delivers external-step results with it.
COMPLETE_EXTERNAL_SIGNAL = "complete_external"

# Behind this patch an activity step ended by an event-plane outage
# (ActivityErrorType.EVENT_PLANE_UNAVAILABLE) is scheduled again without
# counting that attempt against the step's retries.
EVENT_PLANE_PATCH = "event-plane-outage-uncounted"

# Since this patch a step of kind `agent` running the built-in agent runs as a
# child workflow (workflows/agent.py): Pydantic AI's Temporal support makes each
# model request and each tool call an activity. Never rename: it is recorded in histories.
AGENT_WORKFLOW_PATCH = "agent-as-child-workflow"
# Since this patch a failed agent step's step.failed (and the run's status)
# names the attempt the child workflow says it failed at, not 1.
AGENT_ATTEMPTS_PATCH = "agent-step-failed-attempt"

TENANT_KEY = SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE)
PIPELINE_KEY = SearchAttributeKey.for_keyword(PIPELINE_ATTRIBUTE)

# Since this patch a run writes its terminal event whenever it closes itself,
# cancelled mid-step included, with TERMINAL_SEQ, and a cancellation cannot
# interrupt that write. Never rename: it is recorded in histories.
TERMINAL_EVENT_PATCH = "terminal-event-at-every-close"

# Emits must not be lost: retry them until Kafka answers. An emit waits out
# an event-plane outage inside one attempt, heartbeating (activities.emitter):
# a new attempt, perhaps on another worker, would send the record a second
# time while the first worker still holds it. A dead worker's emit is retried
# after one heartbeat timeout. (Timeouts are not part of replayed commands.)
_EMIT_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(hours=1),
    "heartbeat_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}


class StepFailed(Exception):
    """A step that cannot complete; ends the run as failed."""

    def __init__(self, step: str, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.error_type = error_type


@dataclass
class _Decision:
    approved: bool
    payload: dict[str, Any]
    timed_out: bool = False


@workflow.defn(name=PIPELINE_WORKFLOW)
class PipelineWorkflow:
    def __init__(self) -> None:
        self._state = RunState.RUNNING
        self._pipeline = ""
        self._running: list[str] = []
        self._completed: list[str] = []
        self._waiting_for: str | None = None
        self._decision: _Decision | None = None
        self._completions: dict[str, dict[str, Any]] = {}
        self._attempts: dict[str, int] = {}
        # The stage in progress, for run.cancelled (the running list unwinds first).
        self._stage: list[str] = []
        self._skipped: list[str] = []  # steps whose `when` was falsy (for the UI's details)

    # -- queries and signals -------------------------------------------------

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RunStatus:
        return RunStatus(
            state=self._state,
            pipeline=self._pipeline,
            current_step=", ".join(self._running) or None,
            completed_steps=list(self._completed),
            waiting_for=self._waiting_for,
            attempts=dict(self._attempts),
        )

    @workflow.signal(name=STEP_ATTEMPT_SIGNAL)
    def step_attempt(self, payload: dict[str, Any]) -> None:
        """An agent step's model request started a retry: the step's attempt."""
        step, attempt = payload.get("step"), payload.get("attempt")
        if isinstance(step, str) and isinstance(attempt, int):
            self._attempts[step] = max(attempt, self._attempts.get(step, 0))

    @workflow.signal(name=APPROVE_SIGNAL)
    def approve(self, payload: dict[str, Any] | None = None) -> None:
        self._decide(True, payload)

    @workflow.signal(name=REJECT_SIGNAL)
    def reject(self, payload: dict[str, Any] | None = None) -> None:
        self._decide(False, payload)

    def _decide(self, approved: bool, payload: dict[str, Any] | None) -> None:
        # A decision only means something while a step waits for one.
        if self._waiting_for is None or self._decision is not None:
            workflow.logger.info(
                "ignoring %s: no step is waiting", "approve" if approved else "reject"
            )
            return
        self._decision = _Decision(approved, dict(payload or {}))

    @workflow.signal(name=COMPLETE_EXTERNAL_SIGNAL)
    def complete_external(self, completion: dict[str, Any]) -> None:
        key = completion.get("idempotency_key")
        if not isinstance(key, str) or key in self._completions:
            # The consumer may redeliver, and services may answer twice: the first wins.
            return
        self._completions[key] = completion

    # -- the run -------------------------------------------------------------

    @workflow.run
    async def run(self, data: PipelineInput) -> PipelineResult:
        spec = _spec_of(data)
        self._data = data
        self._spec = spec
        self._pipeline = spec.name
        self._run_id = data.run_id or workflow.info().workflow_id
        self._seq = data.seq
        self._outputs: dict[str, Any] = dict(data.carried.get("outputs", {}))
        self._completed = list(data.carried.get("completed", []))
        self._upsert_search_attributes()
        stages = spec.stages()
        self._show_details()
        try:
            if data.resume_from_step == 0:
                # `steps` and `stages` (added fields) let a watcher show progress
                # as steps done out of the total before any step has run.
                await self._emit_run(
                    EventType.RUN_STARTED,
                    {
                        "pipeline": spec.name,
                        "input": data.input,
                        "steps": [step.name for step in spec.steps],
                        "stages": [[step.name for step in stage] for stage in stages],
                    },
                )
            for index in range(data.resume_from_step, len(stages)):
                if index > data.resume_from_step and self._should_continue(
                    index - data.resume_from_step
                ):
                    await self._continue_as_new(index)
                await self._run_stage(stages[index])
            output = self._result_output()
            self._state = RunState.COMPLETED
            self._show_details()
            await self._emit_terminal(EventType.RUN_COMPLETED, {"output": output})
            return PipelineResult(status=RunState.COMPLETED, output=output)
        except StepFailed as failure:
            self._state = RunState.FAILED
            self._show_details(f"step {failure.step} failed: {failure.message}")
            await self._emit_terminal(
                EventType.RUN_FAILED,
                {"step": failure.step, "error": failure.message, "error_type": failure.error_type},
            )
            raise ApplicationError(
                f"step {failure.step} failed: {failure.message}",
                type=failure.error_type or ActivityErrorType.STEP_FAILED,
                non_retryable=True,
            ) from None
        except asyncio.CancelledError:
            # Cancellation is delivered once; the cleanup emit below runs normally.
            await self._emit_cancelled()
            raise
        except ActivityError as err:
            # Cancelled while an activity ran, the run sees the activity's
            # cancellation, not CancelledError: before the patch it closed
            # without run.cancelled and every open socket waited forever.
            if is_cancelled_exception(err) and workflow.patched(TERMINAL_EVENT_PATCH):
                await self._emit_cancelled()
            raise

    def _should_continue(self, stages_done: int) -> bool:
        return (
            stages_done >= self._spec.max_stages_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _continue_as_new(self, index: int) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._emit_run(EventType.RUN_CONTINUED, {"next_stage": index})
        workflow.continue_as_new(
            PipelineInput(
                tenant=self._data.tenant,
                pipeline=self._data.pipeline,
                input=self._data.input,
                run_id=self._run_id,
                resume_from_step=index,
                carried={"outputs": self._outputs, "completed": self._completed},
                spec=self._data.spec,
                seq=self._seq,
            )
        )

    def _upsert_search_attributes(self) -> None:
        present = workflow.info().typed_search_attributes
        if present.get(TENANT_KEY) is None or present.get(PIPELINE_KEY) is None:
            workflow.upsert_search_attributes(
                [TENANT_KEY.value_set(self._data.tenant), PIPELINE_KEY.value_set(self._spec.name)]
            )

    def _show_details(self, note: str | None = None) -> None:
        """The run's current step, as the Temporal UI shows it (workflow
        metadata, not a command: replays are unaffected)."""
        total = len(self._spec.steps)
        done = f"{len(self._completed) + len(self._skipped)}/{total} steps done"
        lines = [f"**{self._spec.name}** · {self._state.lower()} · {done}"]
        if self._running:
            lines.append(f"running: {', '.join(self._running)}")
        if self._waiting_for is not None:
            lines.append(f"waiting for approve/reject of `{self._waiting_for}`")
        if note:
            lines.append(note[:500])
        workflow.set_current_details("\n\n".join(lines))

    def _scope(self, **extra: Any) -> dict[str, Any]:
        return {"input": self._data.input, "steps": self._outputs, **extra}

    def _result_output(self) -> dict[str, Any]:
        reference = self._spec.output or f"$steps.{self._spec.steps[-1].name}"
        value = refs.lookup(reference, self._scope())
        return value if isinstance(value, dict) else {"result": value}

    async def _run_stage(self, stage: list[StepSpec]) -> None:
        self._stage = [step.name for step in stage]
        await _all_or_nothing([self._run_step(step) for step in stage])

    async def _run_step(self, step: StepSpec) -> None:
        if step.when is not None and not refs.lookup(step.when, self._scope()):
            self._outputs[step.name] = None
            self._skipped.append(step.name)
            return
        self._running.append(step.name)
        self._show_details()
        try:
            if step.kind == "approval":
                output: Any = await self._approval(step)
            elif step.kind == "external":
                output = await self._external(step)
            elif step.for_each is not None:
                output = await self._fan_out(step)
            elif (
                step.kind == "agent"
                and step.activity in (AGENT_RUN, AGENT_RESUME)
                and workflow.patched(AGENT_WORKFLOW_PATCH)
            ):
                output = await self._agent(step, refs.resolve(step.input, self._scope()))
            else:
                output = await self._activity(
                    step, step.name, refs.resolve(step.input, self._scope())
                )
        finally:
            self._running.remove(step.name)
        self._outputs[step.name] = output
        self._completed.append(step.name)
        self._show_details()

    # -- activity steps ------------------------------------------------------

    async def _fan_out(self, step: StepSpec) -> list[Any]:
        items = refs.lookup(step.for_each or "", self._scope())
        if not isinstance(items, list):
            raise StepFailed(step.name, f"for_each {step.for_each} is not a list")
        branches = (
            self._activity(
                step,
                step.name,
                refs.resolve(step.input, self._scope(item=item, index=index)),
                branch=index,
            )
            for index, item in enumerate(items)
        )
        return await _all_or_nothing(list(branches))

    async def _activity(
        self, step: StepSpec, base: str, input_: Any, branch: int | None = None
    ) -> Any:
        """Run one activity step (or one fan-out branch) named ``base`` in the stream."""
        payload = input_ if isinstance(input_, dict) else {"value": input_}
        label = base if branch is None else f"{base}[{branch}]"
        # Attempts before this schedule of the step, and how many of them were
        # the step's own failures (attempts ended by the event plane are not).
        earlier = spent = 0
        while True:
            budget = step.retry.max_attempts - spent
            try:
                return await self._execute(step, base, payload, branch, earlier, budget)
            except ActivityError as err:
                if isinstance(err.cause, CancelledError):
                    raise
                ended = event_plane_attempt(err)
                if ended is not None and workflow.patched(EVENT_PLANE_PATCH):
                    # Kafka was away for the attempt's whole time: not the
                    # step's failure. Schedule it again, attempts numbered on.
                    spent += ended - earlier - 1
                    earlier = ended
                    await workflow.sleep(timedelta(seconds=step.retry.initial_interval_seconds))
                    continue
                attempt, message, error_type = _failure_of(err, budget, earlier)
                self._attempts[label] = attempt
                await self._record_failure(label, attempt, payload, message, error_type)
                if step.fallback is None:
                    raise StepFailed(label, message, error_type) from None
                break
        # The fallback is a step of its own in the stream, so its events never
        # mix with the attempts of the step it replaces.
        fallback = step.model_copy(update={"activity": step.fallback, "fallback": None})
        return await self._activity(fallback, f"{base}.fallback", payload, branch)

    async def _execute(
        self,
        step: StepSpec,
        base: str,
        payload: dict[str, Any],
        branch: int | None,
        earlier: int = 0,
        budget: int | None = None,
    ) -> Any:
        hot_loop = self._spec.hot_loop
        label = base if branch is None else f"{base}[{branch}]"
        heartbeat = f", heartbeat {step.heartbeat_seconds:g}s" if step.heartbeat_seconds else ""
        return await workflow.execute_activity(
            step.activity or "",
            StepInput(
                tenant=self._data.tenant,
                run_id=self._run_id,
                pipeline=self._spec.name,
                step=base,
                input=payload,
                hot_loop=HotLoopPolicy(hot_loop.max_retries, hot_loop.window_seconds),
                branch=branch,
                attempt_base=earlier,
            ),
            start_to_close_timeout=step.start_to_close(),
            heartbeat_timeout=step.heartbeat(),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=step.retry.initial_interval_seconds),
                backoff_coefficient=step.retry.backoff,
                maximum_interval=timedelta(seconds=step.retry.max_interval_seconds),
                maximum_attempts=step.retry.max_attempts if budget is None else budget,
                non_retryable_error_types=[
                    ActivityErrorType.INVALID_INPUT,
                    *step.retry.non_retryable,
                ],
            ),
            # Metadata for the Temporal UI only: it changes no command.
            summary=(
                f"{label}: {step.activity} (up to {step.retry.max_attempts} attempts, "
                f"{step.start_to_close_seconds:g}s each{heartbeat})"
            ),
        )

    # -- agent steps ---------------------------------------------------------

    async def _agent(self, step: StepSpec, input_: Any) -> Any:
        payload = input_ if isinstance(input_, dict) else {"value": input_}
        try:
            return await workflow.execute_child_workflow(
                AGENT_WORKFLOW,
                AgentStepInput(
                    tenant=self._data.tenant,
                    run_id=self._run_id,
                    pipeline=self._spec.name,
                    step=step.name,
                    activity=step.activity or AGENT_RUN,
                    input=payload,
                    hot_loop=HotLoopPolicy(
                        self._spec.hot_loop.max_retries, self._spec.hot_loop.window_seconds
                    ),
                ),
                # The run's id, not this execution's: a replay loads the history
                # under another workflow id.
                id=f"{self._run_id}/{step.name}",
                # Metadata for the Temporal UI only: it changes no command.
                static_summary=f"{step.name}: agent (model requests and tool calls as activities)",
            )
        except ChildWorkflowError as err:
            if is_cancelled_exception(err):
                # The run was cancelled and its child with it: the run's
                # cancellation path writes run.cancelled.
                raise asyncio.CancelledError from None
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            error_type = cause.type if isinstance(cause, ApplicationError) else None
            attempt = 1
            if workflow.patched(AGENT_ATTEMPTS_PATCH):
                # The attempt the child says it failed at (its model requests'
                # retries are the step's attempts).
                attempt = _failed_attempt(cause) or 1
                self._attempts[step.name] = attempt
            await self._record_failure(step.name, attempt, payload, message, error_type)
            raise StepFailed(step.name, message, error_type) from None

    # -- approval and external steps -----------------------------------------

    async def _approval(self, step: StepSpec) -> dict[str, Any]:
        self._decision = None
        self._waiting_for = step.name
        self._state = RunState.WAITING
        self._show_details()
        await self._emit_step(step.name, 1, EventType.STEP_STARTED, 0, {"kind": "approval"})
        await self._emit_run(
            EventType.RUN_WAITING,
            {
                "step": step.name,
                "signals": [APPROVE_SIGNAL, REJECT_SIGNAL],
                "timeout_seconds": step.timeout_seconds,
            },
        )
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None,
                timeout=timedelta(seconds=step.timeout_seconds),
            )
        except TimeoutError:
            self._decision = _Decision(step.on_timeout == "approve", {}, timed_out=True)
        decision = self._decision
        assert decision is not None
        self._waiting_for = None
        self._state = RunState.RUNNING
        self._show_details()
        # The reviewer's payload cannot override the decision itself.
        output = {
            **decision.payload,
            "approved": decision.approved,
            "timed_out": decision.timed_out,
        }
        if not decision.approved:
            reason = "approval timed out" if decision.timed_out else "rejected by reviewer"
            await self._emit_step(
                step.name, 1, EventType.STEP_FAILED, CLOSING_SEQ + 1, {"error": reason, **output}
            )
            raise StepFailed(step.name, reason, "TidingsRejected")
        await self._emit_step(step.name, 1, EventType.STEP_COMPLETED, 1, {"output": output})
        return output

    async def _external(self, step: StepSpec) -> dict[str, Any]:
        key = f"{self._run_id}/{step.name}"
        input_ = refs.resolve(step.input, self._scope())
        for attempt in range(1, step.retry.max_attempts + 1):
            self._attempts[step.name] = attempt
            if attempt > 1:
                await self._emit_step(
                    step.name,
                    attempt - 1,
                    EventType.STEP_RETRYING,
                    CLOSING_SEQ,
                    {"discard_attempt": attempt - 1, "next_attempt": attempt, "reason": "timeout"},
                )
            if key not in self._completions:
                await workflow.execute_activity(
                    REQUEST_EXTERNAL,
                    ExternalRequestInput(
                        tenant=self._data.tenant,
                        run_id=self._run_id,
                        pipeline=self._spec.name,
                        step=step.name,
                        attempt=attempt,
                        idempotency_key=key,
                        input=input_,
                        timeout_seconds=step.timeout_seconds,
                    ),
                    summary=f"{step.name}: request attempt {attempt} from an agent service",
                    **_EMIT_OPTIONS,
                )
            try:
                await workflow.wait_condition(
                    lambda: key in self._completions,
                    timeout=timedelta(seconds=step.timeout_seconds),
                )
            except TimeoutError:
                continue
            return await self._finish_external(step, attempt, input_, self._completions[key])
        message = (
            f"no completion after {step.retry.max_attempts} request(s) of {step.timeout_seconds:g}s"
        )
        await self._record_failure(
            step.name, step.retry.max_attempts, input_, message, ActivityErrorType.EXTERNAL_TIMEOUT
        )
        raise StepFailed(step.name, message, ActivityErrorType.EXTERNAL_TIMEOUT)

    async def _finish_external(
        self, step: StepSpec, attempt: int, input_: dict[str, Any], completion: dict[str, Any]
    ) -> dict[str, Any]:
        error = completion.get("error")
        if error:
            await self._record_failure(
                step.name, attempt, input_, str(error), ActivityErrorType.STEP_FAILED
            )
            raise StepFailed(step.name, str(error), ActivityErrorType.STEP_FAILED)
        output = completion.get("output")
        output = output if isinstance(output, dict) else {"result": output}
        await self._emit_step(step.name, attempt, EventType.STEP_COMPLETED, 1, {"output": output})
        return output

    async def _record_failure(
        self, step: str, attempt: int, input_: dict[str, Any], error: str, error_type: str | None
    ) -> None:
        await workflow.execute_activity(
            RECORD_STEP_FAILURE,
            StepFailureInput(
                tenant=self._data.tenant,
                run_id=self._run_id,
                pipeline=self._spec.name,
                step=step,
                attempt=attempt,
                input=input_,
                error=error,
                error_type=error_type,
            ),
            summary=f"{step}: record the failure of attempt {attempt} (step.failed + DLQ)",
            **_EMIT_OPTIONS,
        )

    # -- events --------------------------------------------------------------

    async def _emit_cancelled(self) -> None:
        self._state = RunState.CANCELLED
        await self._emit_terminal(EventType.RUN_CANCELLED, {"steps": self._stage})

    async def _emit_terminal(self, type_: str, data: dict[str, Any]) -> None:
        if not workflow.patched(TERMINAL_EVENT_PATCH):
            await self._emit_run(type_, data)
            return
        # Shielded: a cancellation arriving while the terminal event is written
        # must neither cancel the write nor add a second terminal event; the
        # run then closes as the event it wrote says.
        emit = asyncio.create_task(self._emit_run(type_, data, seq=TERMINAL_SEQ))
        try:
            await asyncio.shield(emit)
        except asyncio.CancelledError:
            await emit

    async def _emit_run(self, type_: str, data: dict[str, Any], seq: int | None = None) -> None:
        if seq is None:
            seq = self._seq
            self._seq += 1
        await workflow.execute_activity(
            EMIT_RUN_EVENT,
            RunEventInput(
                tenant=self._data.tenant, run_id=self._run_id, type=type_, seq=seq, data=data
            ),
            summary=f"emit {type_}",
            **_EMIT_OPTIONS,
        )

    async def _emit_step(
        self, step: str, attempt: int, type_: str, seq: int, data: dict[str, Any]
    ) -> None:
        await workflow.execute_activity(
            EMIT_RUN_EVENT,
            RunEventInput(
                tenant=self._data.tenant,
                run_id=self._run_id,
                type=type_,
                seq=seq,
                data=data,
                step=step,
                attempt=attempt,
            ),
            summary=f"emit {type_} of {step}",
            **_EMIT_OPTIONS,
        )


def _spec_of(data: PipelineInput) -> PipelineSpec:
    # A start that bypassed start_run would otherwise fail the workflow task
    # forever; fail the run once, saying why.
    if not data.spec:
        raise ApplicationError(
            "PipelineInput.spec is empty: start runs with workflows.start.start_run",
            type=ActivityErrorType.INVALID_INPUT,
            non_retryable=True,
        )
    try:
        return PipelineSpec.model_validate(data.spec)
    except ValueError as exc:
        raise ApplicationError(
            f"invalid pipeline spec in input: {exc}",
            type=ActivityErrorType.INVALID_INPUT,
            non_retryable=True,
        ) from None


async def _all_or_nothing(work: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Like gather, but the first failure cancels the siblings, so nothing of a
    failed stage is still running (and emitting) after the run's terminal event."""
    tasks = [asyncio.create_task(item) for item in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _failed_attempt(cause: BaseException | None) -> int | None:
    """The attempt in a failure's details ({"attempt": n}), else ``None``."""
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    details = cause.details[0]
    attempt = details.get("attempt") if isinstance(details, dict) else None
    return attempt if isinstance(attempt, int) else None


def _failure_of(
    err: ActivityError, max_attempts: int, earlier: int = 0
) -> tuple[int, str, str | None]:
    """(last attempt, message, error type) of an activity that gave up after
    ``earlier`` attempts of earlier schedules and up to ``max_attempts`` of its own."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else None
        attempt = details.get("attempt") if isinstance(details, dict) else None
        if isinstance(attempt, int):
            return attempt, cause.message, cause.type
        return earlier + max_attempts, cause.message, cause.type
    # A timeout (e.g. the worker died on every attempt): only the policy knows the count.
    attempt = earlier + (
        max_attempts if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED else 1
    )
    message = str(cause) if cause is not None else str(err)
    return attempt, message or type(cause).__name__, type(cause).__name__ if cause else None
