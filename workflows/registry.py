"""The pipelines a deployment knows: the built-ins plus files in ``pipelines_dir``.

The gateway uses it to list pipelines and to refuse a bad input before a run
starts; the worker uses it to refuse, at start, a pipeline whose steps name an
activity nobody registered.
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


class PipelineRegistry:
    def __init__(self, specs: Iterable[PipelineSpec] = ()) -> None:
        self._specs: dict[str, PipelineSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: PipelineSpec) -> None:
        if spec.name in self._specs:
            raise SpecError(f"pipeline {spec.name!r} is declared twice")
        self._specs[spec.name] = spec

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
                registry.register(spec)
        return registry


def load_file(path: Path) -> PipelineSpec:
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read pipeline spec: {exc}") from None
    return load_spec(raw, source=str(path))


def load_dir(path: Path) -> list[PipelineSpec]:
    if not path.is_dir():
        raise SpecError(f"TIDINGS_WORKER_PIPELINES_DIR: {path} is not a directory")
    return [load_file(file) for file in sorted(path.iterdir()) if file.suffix in SPEC_SUFFIXES]


@lru_cache(maxsize=8)
def default_registry(pipelines_dir: Path | None) -> PipelineRegistry:
    """The registry for a settings' ``pipelines_dir``, loaded once per process."""
    return PipelineRegistry.with_builtins(pipelines_dir)
