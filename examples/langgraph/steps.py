"""The Tidings step: `tidings worker --activities steps:activities` registers
`library.find`, which hands the question to the graph's workflow
(library.py) and waits for its answer; pipelines/library.yaml runs it.

The graph's nodes stream into this step as sub-steps (`find.agent-1`,
`find.tools-2`, …; activities/delegate.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from library import WORKFLOW, graph_task_queue

from activities.delegate import run_delegated
from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.settings import Settings
from workers.build import Clients


class LibrarySteps(StepActivities):
    def __init__(self, clients: Clients, settings: Settings) -> None:
        super().__init__(clients.emitter)
        self._temporal = clients.temporal
        self._queue = graph_task_queue(settings.temporal.task_queue)

    @step("library.find")
    async def find(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        question = str(data["question"])
        answer = await run_delegated(
            ctx,
            self._temporal,
            WORKFLOW,
            question,
            task_queue=self._queue,
            execution_timeout=timedelta(minutes=10),
        )
        return {"question": question, "answer": answer}


def activities(clients: Clients, settings: Settings) -> LibrarySteps:
    return LibrarySteps(clients, settings)
