"""A deliberately non-deterministic *code* change, for the replay tests.

Registered under the production workflow name, it runs the same steps but
emits ``run.started`` after the first stage instead of before it: the first
command it issues (``research.plan``) differs from what every recorded
history scheduled first (``tidings.emit_run_event``). Exactly the kind of
edit that must go behind ``workflow.patched(...)``.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from tidings.events import EventType
from tidings.runs import PIPELINE_WORKFLOW, PipelineInput, PipelineResult
from workflows.pipeline import PipelineWorkflow
from workflows.spec import StepSpec


@workflow.defn(name=PIPELINE_WORKFLOW)
class ReorderedPipeline(PipelineWorkflow):
    def __init__(self) -> None:
        super().__init__()
        self._held: dict[str, Any] | None = None

    @workflow.run
    async def run(self, data: PipelineInput) -> PipelineResult:
        return await super().run(data)

    async def _emit_run(self, type_: str, data: dict[str, Any]) -> None:
        if type_ == EventType.RUN_STARTED:
            self._held = data  # "later": after the first stage
            return
        await super()._emit_run(type_, data)

    async def _run_stage(self, stage: list[StepSpec]) -> None:
        await super()._run_stage(stage)
        if self._held is not None:
            held, self._held = self._held, None
            await super()._emit_run(EventType.RUN_STARTED, held)
