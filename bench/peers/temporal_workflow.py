"""The workflow hosting a Temporal Workflow Stream (temporalio.contrib.workflow_streams).

Kept apart, with nothing but Temporal imports, so the workflow sandbox loads it cleanly.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStream


@workflow.defn(name="BenchStreamWorkflow")
class BenchStreamWorkflow:
    @workflow.init
    def __init__(self, _name: str) -> None:
        self.stream = WorkflowStream()
        self.done = False

    @workflow.run
    async def run(self, _name: str) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.signal
    def finish(self) -> None:
        self.done = True
