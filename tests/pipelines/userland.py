"""A user's own pipeline as workflows/PIPELINES.md tells them to write one: a
module of step activities and a folder with its spec, outside the repo."""

from __future__ import annotations

from pathlib import Path

STEPS_MODULE = """
import os

from activities.steps import StepActivities, StepContext, StepOutput, step


class GreetSteps(StepActivities):
    @step("greet.hello")
    async def hello(self, ctx: StepContext, data: dict) -> StepOutput:
        await ctx.token("hello ")
        await ctx.token(data["name"])
        # Which process ran it: the test checks only the custom worker does.
        return {"greeting": "hello " + data["name"], "pid": os.getpid()}


def activities(clients, settings):
    return GreetSteps(clients.emitter)
"""

GREET_SPEC = """\
name: greet
description: Says hello.
input:
  name: {type: string, min_length: 1, max_length: 100, description: who to greet}
steps:
  - name: hello
    activity: greet.hello
    input: {name: $input.name}
    start_to_close_seconds: 30
"""

BAD_SPEC = """\
name: broken
steps:
  - name: a
    activity: greet.hello
    retry: {max_attempts: 0}
"""


def write_userland(root: Path) -> tuple[Path, Path]:
    """``root/mysteps.py`` and ``root/pipelines/greet.yaml``; returns (root, pipelines)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mysteps.py").write_text(STEPS_MODULE)
    pipelines = root / "pipelines"
    pipelines.mkdir()
    (pipelines / "greet.yaml").write_text(GREET_SPEC)
    return root, pipelines
