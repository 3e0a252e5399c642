"""Pipelines declared as data.

A pipeline is a list of steps; consecutive steps sharing a ``parallel_group``
run concurrently, and a step with ``for_each`` fans out over a list. The
models refuse a bad spec at load time with a message that names the field
(``steps[2].retry.max_attempts: ...``), never at run time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from activities.types import AGENT_RUN
from tidings.errors import ConfigError
from workflows import refs

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,47}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class SpecError(ConfigError, ValueError):
    """A pipeline spec that cannot be loaded; the message names the bad field.

    A :class:`ConfigError`, so ``tidings worker`` prints it and exits 2 instead
    of dumping a traceback.
    """


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_Model):
    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    max_interval_seconds: float = Field(default=30.0, gt=0, le=86400)
    non_retryable: list[str] = Field(default_factory=list)


class HotLoopSpec(_Model):
    """Alert when one step is retried more than ``max_retries`` times within ``window_seconds``."""

    max_retries: int = Field(default=3, ge=0)
    window_seconds: float = Field(default=60.0, gt=0)


class InputField(_Model):
    type: Literal["string", "integer", "number", "boolean", "object", "array"] = "string"
    required: bool = True
    default: Any = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


class StepSpec(_Model):
    name: Name
    # `agent`: an activity step whose activity runs an agent and streams its
    # thinking, tool calls and results besides tokens (activities/agent).
    kind: Literal["activity", "approval", "external", "agent"] = "activity"
    activity: str | None = Field(default=None, min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict)
    for_each: str | None = None
    parallel_group: Name | None = None
    when: str | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    start_to_close_seconds: float = Field(default=60.0, gt=0, le=7 * 86400)
    heartbeat_seconds: float | None = Field(default=None, gt=0, le=86400)
    # Approval and external steps: how long to wait for the signal / completion.
    timeout_seconds: float = Field(default=3600.0, gt=0, le=30 * 86400)
    on_timeout: Literal["fail", "approve", "reject"] = "fail"
    fallback: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _agent_activity(cls, raw: Any) -> Any:
        # Written into the spec, so a run's frozen spec names the activity and
        # the workflow runs an agent step as it runs any activity step.
        if isinstance(raw, dict) and raw.get("kind") == "agent" and raw.get("activity") is None:
            return {**raw, "activity": AGENT_RUN}
        return raw

    @model_validator(mode="after")
    def _kind_fields(self) -> StepSpec:
        if self.kind == "activity" and self.activity is None:
            raise ValueError("activity is required when kind is 'activity'")
        if self.kind in ("approval", "external") and (
            self.activity or self.for_each or self.fallback
        ):
            raise ValueError(f"a {self.kind} step takes no activity, for_each or fallback")
        if self.kind != "approval" and self.on_timeout == "approve":
            raise ValueError("on_timeout 'approve' only applies to approval steps")
        for field in ("for_each", "when"):
            value = getattr(self, field)
            if value is not None and not refs.is_reference(value):
                raise ValueError(f"{field} must be a reference such as $steps.plan.items")
        return self

    def start_to_close(self) -> timedelta:
        return timedelta(seconds=self.start_to_close_seconds)

    def heartbeat(self) -> timedelta | None:
        return None if self.heartbeat_seconds is None else timedelta(seconds=self.heartbeat_seconds)


class PipelineSpec(_Model):
    name: Name
    description: str = ""
    input: dict[str, InputField] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1, max_length=500)
    output: str | None = None
    hot_loop: HotLoopSpec = Field(default_factory=HotLoopSpec)
    # Stages per workflow run before it continues as new, keeping histories small.
    max_stages_per_run: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _check_graph(self) -> PipelineSpec:
        seen: set[str] = set()
        stage_names: set[str] = set()
        groups_done: set[str] = set()
        previous_group: str | None = None
        for index, step in enumerate(self.steps):
            where = f"steps[{index}]"
            if step.name in seen:
                raise ValueError(f"{where}.name: duplicate step name {step.name!r}")
            group = step.parallel_group
            if group is None or group != previous_group:
                if previous_group is not None and group != previous_group:
                    groups_done.add(previous_group)
                stage_names = set()
            if group is not None and group in groups_done:
                raise ValueError(
                    f"{where}.parallel_group: steps of group {group!r} must be consecutive"
                )
            if group is not None and step.kind == "approval":
                raise ValueError(f"{where}.parallel_group: an approval step runs alone")
            for field, template in (
                ("input", step.input),
                ("for_each", step.for_each),
                ("when", step.when),
            ):
                for reference in refs.references(template):
                    _check_reference(f"{where}.{field}", reference, seen, stage_names)
            seen.add(step.name)
            stage_names.add(step.name)
            previous_group = group
        if self.output is not None:
            if not refs.is_reference(self.output):
                raise ValueError("output must be a reference such as $steps.final")
            _check_reference("output", self.output, seen, set())
        return self

    def stages(self) -> list[list[StepSpec]]:
        stages: list[list[StepSpec]] = []
        for step in self.steps:
            if (
                stages
                and step.parallel_group
                and stages[-1][0].parallel_group == step.parallel_group
            ):
                stages[-1].append(step)
            else:
                stages.append([step])
        return stages

    def activities(self) -> set[str]:
        names = {step.activity for step in self.steps if step.activity}
        return names | {step.fallback for step in self.steps if step.fallback}


def _check_reference(where: str, reference: str, earlier: set[str], same_stage: set[str]) -> None:
    try:
        parts = refs.parse(reference)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if parts[0] == "steps":
        if len(parts) < 2 or parts[1] not in earlier:
            raise ValueError(f"{where}: {reference!r} names no earlier step")
        if parts[1] in same_stage:
            raise ValueError(f"{where}: {reference!r} runs in the same parallel group")


def load_spec(raw: Any, source: str = "pipeline") -> PipelineSpec:
    """Validate a spec from Python, YAML or JSON; :class:`SpecError` names the field."""
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location = _location(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{location}: {message}" if location else message)
        raise SpecError(f"{source}: invalid pipeline spec: " + "; ".join(problems)) from None


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
