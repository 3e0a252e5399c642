"""The finished-step interceptor's logic, with a dict standing in for Redis."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from temporalio.converter import DataConverter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from workers.finished_steps import FinishedSteps

pytestmark = pytest.mark.unit


class FakeRedis:
    def __init__(self, *, broken: bool = False) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}
        self.broken = broken

    async def get(self, key: str) -> bytes | None:
        if self.broken:
            raise RedisConnectionError("down")
        return self.values.get(key)

    async def set(self, key: str, value: bytes, ex: int) -> None:
        if self.broken:
            raise RedisConnectionError("down")
        self.values[key] = value
        self.ttls[key] = ex


class Step(ActivityInboundInterceptor):
    """The step itself: counts its runs and returns what the attempt computed."""

    def __init__(self) -> None:
        self.runs = 0

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self.runs += 1
        return {"text": f"run {self.runs}"}


def _input() -> ExecuteActivityInput:
    return ExecuteActivityInput(fn=lambda: None, args=(), executor=None, headers={})


async def _attempt(interceptor: FinishedSteps, step: Step, attempt: int, activity_id: str) -> Any:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, activity_id=activity_id)
    inbound = interceptor.intercept_activity(step)
    return await env.run(inbound.execute_activity, _input())


def _interceptor(redis: FakeRedis) -> FinishedSteps:
    return FinishedSteps(redis, DataConverter.default.payload_converter, 900)  # type: ignore[arg-type]


async def test_a_later_attempt_returns_the_finished_result_without_running() -> None:
    redis, step = FakeRedis(), Step()
    finished = _interceptor(redis)
    assert await _attempt(finished, step, 1, "7") == {"text": "run 1"}
    assert list(redis.ttls.values()) == [900]
    assert await _attempt(finished, step, 2, "7") == {"text": "run 1"}
    assert step.runs == 1
    assert finished.reused == 1


async def test_another_activity_or_a_first_attempt_runs() -> None:
    redis, step = FakeRedis(), Step()
    finished = _interceptor(redis)
    await _attempt(finished, step, 1, "7")
    # Another scheduled activity of the run has its own key.
    assert await _attempt(finished, step, 2, "8") == {"text": "run 2"}
    assert step.runs == 2
    assert finished.reused == 0


async def test_redis_errors_fall_back_to_running_the_step() -> None:
    step = Step()
    finished = _interceptor(FakeRedis(broken=True))
    assert await _attempt(finished, step, 1, "7") == {"text": "run 1"}
    assert await _attempt(finished, step, 2, "7") == {"text": "run 2"}
    assert step.runs == 2
