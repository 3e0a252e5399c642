"""Step activities and pipelines used only by the observability tests."""

from __future__ import annotations

import asyncio
from typing import Any

from activities.steps import StepActivities, StepContext, StepOutput, step
from workflows.spec import PipelineSpec, load_spec


def token_text(i: int) -> str:
    return f"t{i} "


class ObsSteps(StepActivities):
    @step("obs.speak")
    async def speak(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        count, pace = int(data.get("count", 10)), float(data.get("pace_ms", 0)) / 1000
        for i in range(count):
            await ctx.token(token_text(i))
            if pace:
                await asyncio.sleep(pace)  # a model's pace, not a synchronisation
        return {"count": count}

    @step("obs.fail")
    async def fail(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        raise RuntimeError(f"always fails (attempt {ctx.attempt})")


def _spec(raw: dict[str, Any]) -> PipelineSpec:
    return load_spec(raw, source="tests/observability/steps.py")


SPEAK = _spec(
    {
        "name": "obs-speak",
        "input": {
            "count": {"type": "integer"},
            "pace_ms": {"type": "integer", "required": False, "default": 0},
        },
        "steps": [
            {
                "name": "speak",
                "activity": "obs.speak",
                "input": {"count": "$input.count", "pace_ms": "$input.pace_ms"},
            }
        ],
    }
)

FAILS = _spec(
    {
        "name": "obs-fails",
        "hot_loop": {"max_retries": 1, "window_seconds": 60},
        "steps": [
            {
                "name": "explode",
                "activity": "obs.fail",
                "retry": {
                    "max_attempts": 3,
                    "initial_interval_seconds": 0.1,
                    "max_interval_seconds": 0.2,
                },
            }
        ],
    }
)
