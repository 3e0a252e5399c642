"""Step activities and pipelines used only by the orchestration tests."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.errors import ActivityErrorType
from workflows.spec import PipelineSpec, load_spec

FAST_RETRY = {"max_attempts": 3, "initial_interval_seconds": 0.1, "max_interval_seconds": 0.2}


class FixtureSteps(StepActivities):
    @step("test.echo")
    async def echo(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        await ctx.progress(seen=sorted(data))
        return dict(data)

    @step("test.always_fails")
    async def always_fails(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        await ctx.token("partial ")
        raise RuntimeError(f"boom on attempt {ctx.attempt}")

    @step("test.rescue")
    async def rescue(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        return {"rescued": True, "value": data.get("value")}

    @step("test.slow_or_bad")
    async def slow_or_bad(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        if data.get("value") == "bad":
            raise ApplicationError("bad item", type="BadItem", non_retryable=True)
        # Long enough that only a cancellation ends it within the test.
        await asyncio.sleep(60)
        return {"value": data.get("value")}

    @step("test.slow")
    async def slow(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        await ctx.token("thinking ")
        await ctx.flush_tokens()
        # Until cancelled (it heartbeats, so a cancellation reaches it), or done.
        await asyncio.sleep(float(data.get("seconds", 60)))
        if data.get("fail"):
            raise ApplicationError("gave up", type="SlowFailed", non_retryable=True)
        return {"slept": True}

    @step("test.fails_then_plane_away")
    async def fails_then_plane_away(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        # Attempt 1 fails on its own; attempt 2 ends as activities.steps ends an
        # attempt the event plane kept waiting for its whole time; attempt 3 works.
        await ctx.token(f"attempt {ctx.attempt} ")
        if ctx.attempt == 1:
            raise RuntimeError("boom on attempt 1")
        if ctx.attempt == 2:
            raise ApplicationError(
                "the event plane (Kafka) was unavailable for the rest of the attempt's time",
                type=ActivityErrorType.EVENT_PLANE_UNAVAILABLE,
                non_retryable=True,
            )
        return {"attempt": ctx.attempt}

    @step("test.invalid")
    async def invalid(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        raise ApplicationError("bad input", type="TidingsInvalidInput", non_retryable=True)


def _spec(raw: dict[str, Any]) -> PipelineSpec:
    return load_spec(raw, source="tests/orchestration/steps.py")


def research_variant(name: str, **review: Any) -> PipelineSpec:
    """The built-in research pipeline with quick timeouts for tests."""
    from workflows.builtin import RESEARCH

    raw = RESEARCH.model_dump(mode="json")
    raw["name"] = name
    for step_raw in raw["steps"]:
        if step_raw["name"] == "review":
            step_raw.update(review)
        if step_raw["name"] == "draft":
            step_raw["input"]["pace_ms"] = 0
    return _spec(raw)


ALWAYS_FAILS = _spec(
    {
        "name": "always-fails",
        "input": {"value": {"type": "integer"}},
        "hot_loop": {"max_retries": 2, "window_seconds": 60},
        "steps": [
            {"name": "prepare", "activity": "test.echo", "input": {"value": "$input.value"}},
            {
                "name": "explode",
                "activity": "test.always_fails",
                "input": {"value": "$input.value"},
                "retry": {**FAST_RETRY, "max_attempts": 4},
            },
        ],
    }
)

WITH_FALLBACK = _spec(
    {
        "name": "with-fallback",
        "input": {"value": {"type": "integer"}},
        "steps": [
            {
                "name": "explode",
                "activity": "test.always_fails",
                "fallback": "test.rescue",
                "input": {"value": "$input.value"},
                "retry": {**FAST_RETRY, "max_attempts": 2},
            },
        ],
    }
)

EXTERNAL = _spec(
    {
        "name": "external",
        "input": {"text": {"type": "string"}},
        "steps": [
            {
                "name": "ask",
                "kind": "external",
                "input": {"text": "$input.text"},
                "timeout_seconds": 1.5,
                "retry": {"max_attempts": 2},
            },
            {"name": "after", "activity": "test.echo", "input": {"answer": "$steps.ask"}},
        ],
    }
)

LONG = _spec(
    {
        "name": "long",
        "input": {"n": {"type": "integer", "required": False, "default": 0}},
        "max_stages_per_run": 2,
        "steps": [
            {"name": f"s{i}", "activity": "test.echo", "input": {"i": i, "n": "$input.n"}}
            for i in range(5)
        ],
        "output": "$steps.s4",
    }
)

PARALLEL = _spec(
    {
        "name": "parallel",
        "steps": [
            {"name": "a", "activity": "test.echo", "input": {"x": 1}, "parallel_group": "g"},
            {"name": "b", "activity": "test.echo", "input": {"x": 2}, "parallel_group": "g"},
            {"name": "c", "activity": "test.echo", "input": {"a": "$steps.a", "b": "$steps.b"}},
        ],
    }
)

FAN_OUT_FAILS = _spec(
    {
        "name": "fan-out-fails",
        "steps": [
            {"name": "items", "activity": "test.echo", "input": {"list": ["slow", "bad"]}},
            {
                "name": "each",
                "activity": "test.slow_or_bad",
                "for_each": "$steps.items.list",
                "input": {"value": "$item"},
                "heartbeat_seconds": 1,
            },
        ],
    }
)

# One step that runs until cancelled: a run cancelled or closed mid-step.
SLOW_STEP = _spec(
    {
        "name": "slow-step",
        "input": {
            "seconds": {"type": "number", "required": False, "default": 60},
            "fail": {"type": "boolean", "required": False, "default": False},
        },
        "steps": [
            {
                "name": "wait",
                "activity": "test.slow",
                "input": {"seconds": "$input.seconds", "fail": "$input.fail"},
                "heartbeat_seconds": 1,
                "retry": FAST_RETRY,
            },
        ],
    }
)

# Two attempts allowed; the second is ended by the event plane, so a third runs.
PLANE_AWAY = _spec(
    {
        "name": "plane-away",
        "input": {},
        "steps": [
            {
                "name": "flaky",
                "activity": "test.fails_then_plane_away",
                "retry": {**FAST_RETRY, "max_attempts": 2},
            },
        ],
    }
)

# An agent step its child workflow fails (a tool the agent does not have):
# step.failed names the attempt the child reports (patch agent-step-failed-attempt).
AGENT_FAILS = _spec(
    {
        "name": "agent-fails",
        "input": {},
        "steps": [
            {
                "name": "answer",
                "kind": "agent",
                "input": {"question": "Which tool?", "tools": ["no-such-tool"]},
            },
        ],
    }
)

TEST_PIPELINES: tuple[PipelineSpec, ...] = (
    research_variant("research-approval", timeout_seconds=60),
    research_variant("research-approval-timeout", timeout_seconds=1),
    ALWAYS_FAILS,
    WITH_FALLBACK,
    EXTERNAL,
    LONG,
    PARALLEL,
    FAN_OUT_FAILS,
    SLOW_STEP,
    PLANE_AWAY,
    AGENT_FAILS,
)
