"""A tiny stand-in ``PipelineWorkflow`` with the real contract (PipelineInput
in, PipelineResult out, ``status`` query, ``approve``/``reject`` signals).

Kept apart from the starter: workflow modules import nothing that touches
the filesystem or environment, so Temporal's sandbox accepts them.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from tidings.runs import (
        APPROVE_SIGNAL,
        PIPELINE_WORKFLOW,
        REJECT_SIGNAL,
        STATUS_QUERY,
        PipelineInput,
        PipelineResult,
        RunState,
        RunStatus,
    )


@workflow.defn(name=PIPELINE_WORKFLOW)
class StubPipeline:
    def __init__(self) -> None:
        self._status = RunStatus(state=RunState.RUNNING, pipeline="")
        self._decision: dict[str, Any] | None = None

    @workflow.run
    async def run(self, params: PipelineInput) -> PipelineResult:
        self._status.pipeline = params.pipeline
        if params.pipeline == "fail":
            raise ApplicationError("the stub failed on purpose", non_retryable=True)
        if params.pipeline == "approval":
            self._status.state = RunState.WAITING
            self._status.current_step = "review"
            self._status.waiting_for = APPROVE_SIGNAL
            await workflow.wait_condition(lambda: self._decision is not None)
            self._status.completed_steps.append("review")
        self._status.state = RunState.COMPLETED
        return PipelineResult(
            status=RunState.COMPLETED, output={"echo": params.input, "decision": self._decision}
        )

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RunStatus:
        return self._status

    @workflow.signal(name=APPROVE_SIGNAL)
    def approve(self, payload: dict[str, Any] | None = None) -> None:
        self._decision = {"approved": True, **(payload or {})}

    @workflow.signal(name=REJECT_SIGNAL)
    def reject(self, payload: dict[str, Any] | None = None) -> None:
        self._decision = {"approved": False, **(payload or {})}
