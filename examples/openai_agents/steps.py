"""The Tidings step: `tidings worker --activities steps:activities` registers
`weather.ask`, which hands the question to the agent's workflow (weather.py)
and waits for its answer; pipelines/weather.yaml runs it.

The agent's model requests stream into this step as sub-steps
(`ask.model-1`, `ask.model-3`, …; activities/delegate.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from weather import WORKFLOW, agent_task_queue

from activities.delegate import run_delegated
from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.settings import Settings
from workers.build import Clients


class WeatherSteps(StepActivities):
    def __init__(self, clients: Clients, settings: Settings) -> None:
        super().__init__(clients.emitter)
        self._temporal = clients.temporal
        self._queue = agent_task_queue(settings.temporal.task_queue)

    @step("weather.ask")
    async def ask(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
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


def activities(clients: Clients, settings: Settings) -> WeatherSteps:
    return WeatherSteps(clients, settings)
