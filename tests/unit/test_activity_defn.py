"""The worker reads back the names its activities are registered under (to
refuse a spec naming one it lacks) without temporalio's private definition."""

from __future__ import annotations

from typing import Any, cast

import pytest

from activities.defn import activity_name, defn
from activities.emitter import Emitter
from activities.run_events import RunActivities
from activities.steps import StepActivities, StepContext, StepOutput, activities_of, step
from activities.types import EMIT_RUN_EVENT, RECORD_STEP_FAILURE, REQUEST_EXTERNAL
from workers.build import activity_names

pytestmark = pytest.mark.unit

NO_EMITTER = cast(Emitter, None)


class Steps(StepActivities):
    @step("triage.classify")
    async def classify(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        return {}

    @defn("triage.plain")
    async def plain(self, data: str) -> str:
        return data

    async def helper(self) -> None:
        """Not an activity: no name, not collected."""


def test_activity_names_are_the_declared_ones() -> None:
    names = activity_names([Steps(NO_EMITTER), RunActivities(NO_EMITTER)])
    assert names == {
        "triage.classify",
        "triage.plain",
        EMIT_RUN_EVENT,
        RECORD_STEP_FAILURE,
        REQUEST_EXTERNAL,
    }


def test_activities_of_binds_only_declared_methods() -> None:
    steps = Steps(NO_EMITTER)
    found = activities_of(steps)
    assert sorted(activity_name(fn) or "" for fn in found) == ["triage.classify", "triage.plain"]
    assert all(getattr(fn, "__self__", None) is steps for fn in found)
    assert activity_name(steps.helper) is None
