"""Input mappings: how a step's input is built from the run input and earlier outputs.

A string starting with ``$`` is a reference: ``$input.question``,
``$steps.plan.sub_questions``, ``$item`` / ``$index`` (inside a fan-out);
``$$`` escapes a literal ``$``. Everything else is a literal. Pure functions:
the workflow calls them, so they must stay deterministic.
"""

from __future__ import annotations

from typing import Any

ROOTS = frozenset({"input", "steps", "item", "index"})


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def parse(reference: str) -> list[str]:
    """``"$steps.plan.sub_questions"`` -> ``["steps", "plan", "sub_questions"]``."""
    parts = reference[1:].split(".")
    if not parts or parts[0] not in ROOTS or any(not part for part in parts):
        raise ValueError(
            f"bad reference {reference!r}: use $input.<field>, $steps.<step>[.<field>], "
            "$item or $index"
        )
    return parts


def lookup(reference: str, scope: dict[str, Any]) -> Any:
    """The referenced value, or ``None`` where the path runs out (e.g. a skipped step)."""
    value: Any = scope
    for part in parse(reference):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def resolve(template: Any, scope: dict[str, Any]) -> Any:
    if is_reference(template):
        return lookup(template, scope)
    if isinstance(template, str) and template.startswith("$$"):
        return template[1:]
    if isinstance(template, dict):
        return {key: resolve(value, scope) for key, value in template.items()}
    if isinstance(template, list):
        return [resolve(value, scope) for value in template]
    return template


def references(template: Any) -> list[str]:
    """Every reference inside a mapping, for load-time checks."""
    if is_reference(template):
        return [template]
    if isinstance(template, dict):
        return [ref for value in template.values() for ref in references(value)]
    if isinstance(template, list):
        return [ref for value in template for ref in references(value)]
    return []
