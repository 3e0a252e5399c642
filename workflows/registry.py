"""The pipelines a deployment knows: the built-ins plus files in ``pipelines_dir``,
and (on a gateway) what workers announced (:mod:`workers.announce`).

The gateway uses it to list pipelines, to refuse a bad input before a run
starts and to pick the run's task queue; the worker uses it to refuse, at
start, a pipeline whose steps name an activity nobody registered.

Task queues: built-ins run on the deployment's queue
(``TIDINGS_TEMPORAL_TASK_QUEUE``), which every worker serves with the
built-in activities. A pipeline from a folder runs on a queue of its own,
:func:`dedicated_queue`, served only by workers that loaded it and so
registered its activities: a worker without them never picks its tasks up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tidings.errors import BadRequest, ErrorCode
from workflows.builtin import BUILTIN
from workflows.inputs import validate_input
from workflows.spec import PipelineSpec, SpecError, load_spec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def dedicated_queue(base: str, pipeline: str) -> str:
    """The task queue of a pipeline that is not built in, on deployment queue ``base``."""
    return f"{base}.pipeline.{pipeline}"


class PipelineRegistry:
    def __init__(self, specs: Iterable[PipelineSpec] = ()) -> None:
        self._specs: dict[str, PipelineSpec] = {}
        # Pipelines on a queue of their own: a name -> its queue, or None for
        # dedicated_queue(base, name) on whatever base the caller runs on.
        self._queues: dict[str, str | None] = {}
        for spec in specs:
            self.register(spec)

    def register(
        self,
        spec: PipelineSpec,
        *,
        dedicated: bool = False,
        task_queue: str | None = None,
        replace: bool = False,
    ) -> None:
        """Add ``spec``; ``dedicated`` gives it its own queue, ``task_queue`` names
        that queue outright (an announcement's), ``replace`` lets it win over an
        earlier spec of the same name."""
        if spec.name in self._specs and not replace:
            raise SpecError(f"pipeline {spec.name!r} is declared twice")
        self._specs[spec.name] = spec
        self._queues.pop(spec.name, None)
        if dedicated or task_queue is not None:
            self._queues[spec.name] = task_queue

    def copy(self) -> PipelineRegistry:
        clone = PipelineRegistry()
        clone._specs = dict(self._specs)
        clone._queues = dict(self._queues)
        return clone

    def specs(self) -> list[PipelineSpec]:
        return [self._specs[name] for name in self.names()]

    def task_queue(self, name: str, base: str) -> str:
        """The queue a run of ``name`` and its activities go to, on deployment queue ``base``."""
        if name not in self._queues:
            return base
        return self._queues[name] or dedicated_queue(base, name)

    def task_queues(self, base: str) -> dict[str, list[str]]:
        """Each queue on ``base`` -> the pipelines that run on it."""
        queues: dict[str, list[str]] = {base: []}
        for name in self.names():
            queues.setdefault(self.task_queue(name, base), []).append(name)
        return queues

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> PipelineSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(self.names()) or "none"
            raise BadRequest(
                f"unknown pipeline {name!r} (known: {known})", code=ErrorCode.UNKNOWN_PIPELINE
            )
        return spec

    def validate_input(self, name: str, data: Any) -> dict[str, Any]:
        """The validated input (defaults filled in); :class:`BadRequest` names the bad field."""
        return validate_input(self.get(name), data)

    def check_activities(self, available: Iterable[str]) -> None:
        registered = set(available)
        for spec in self._specs.values():
            for index, step in enumerate(spec.steps):
                for field in ("activity", "fallback"):
                    name = getattr(step, field)
                    if name is not None and name not in registered:
                        raise SpecError(
                            f"pipeline {spec.name!r}: steps[{index}].{field}: no activity "
                            f"named {name!r} is registered with this worker"
                        )

    @classmethod
    def with_builtins(cls, pipelines_dir: Path | None = None) -> PipelineRegistry:
        registry = cls(BUILTIN)
        if pipelines_dir is not None:
            for spec in load_dir(pipelines_dir):
                registry.register(spec, dedicated=True)
        return registry


def load_file(path: Path) -> PipelineSpec:
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read pipeline spec: {exc}") from None
    return load_spec(raw, source=str(path))


PIPELINES_DIR_VARIABLE = "TIDINGS_WORKER_PIPELINES_DIR"


def load_dir(path: Path) -> list[PipelineSpec]:
    """Every spec file in ``path``; a bad one is a :class:`SpecError` that names
    the variable, the file and the field."""
    if not path.is_dir():
        raise SpecError(f"{PIPELINES_DIR_VARIABLE}: {path} is not a directory")
    specs = []
    for file in sorted(path.iterdir()):
        if file.suffix not in SPEC_SUFFIXES:
            continue
        try:
            specs.append(load_file(file))
        except SpecError as exc:
            raise SpecError(f"{PIPELINES_DIR_VARIABLE}: {exc.message}") from None
    return specs


@lru_cache(maxsize=8)
def default_registry(pipelines_dir: Path | None) -> PipelineRegistry:
    """The registry for a settings' ``pipelines_dir``, loaded once per process."""
    return PipelineRegistry.with_builtins(pipelines_dir)
