"""Checks a run's input against its pipeline's declared input fields."""

from __future__ import annotations

from typing import Any

from tidings.errors import BadRequest, ErrorCode
from workflows.spec import InputField, PipelineSpec

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def validate_input(spec: PipelineSpec, data: Any) -> dict[str, Any]:
    """The input with defaults filled in, or :class:`BadRequest` naming the field."""
    if not isinstance(data, dict):
        raise _bad("input", "must be a JSON object")
    unknown = sorted(set(data) - set(spec.input))
    if unknown:
        raise _bad(f"input.{unknown[0]}", f"is not a field of pipeline {spec.name!r}")
    out: dict[str, Any] = {}
    for name, field in spec.input.items():
        where = f"input.{name}"
        if name not in data or data[name] is None:
            if field.required and field.default is None:
                raise _bad(where, "is required")
            if field.default is not None:
                out[name] = field.default
            continue
        out[name] = _check(where, field, data[name])
    return out


def _check(where: str, field: InputField, value: Any) -> Any:
    # bool is an int in Python; a JSON true is not a number here.
    if not isinstance(value, _TYPES[field.type]) or (
        field.type in ("integer", "number") and isinstance(value, bool)
    ):
        raise _bad(where, f"must be of type {field.type}")
    if isinstance(value, str | list):
        size = len(value.strip()) if isinstance(value, str) else len(value)
        unit = "characters" if isinstance(value, str) else "items"
        if field.min_length is not None and size < field.min_length:
            if isinstance(value, str) and field.min_length == 1:
                raise _bad(where, "must not be empty")
            raise _bad(where, f"must have at least {field.min_length} {unit}")
        if field.max_length is not None and len(value) > field.max_length:
            raise _bad(where, f"must have at most {field.max_length} {unit}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if field.minimum is not None and value < field.minimum:
            raise _bad(where, f"must be at least {field.minimum:g}")
        if field.maximum is not None and value > field.maximum:
            raise _bad(where, f"must be at most {field.maximum:g}")
    return value


def _bad(where: str, message: str) -> BadRequest:
    return BadRequest(f"{where} {message}", code=ErrorCode.VALIDATION)
