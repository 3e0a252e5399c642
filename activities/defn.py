"""Declaring Temporal activities so that their names can be read back.

temporalio has no public reader of the name an activity is registered under
(only the private ``activity._Definition``), and the worker needs the names to
refuse a pipeline spec that names an activity it does not have. So every
activity of ours is declared with :func:`defn`, which records the name on the
function beside temporalio's own definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

F = TypeVar("F", bound=Callable[..., Any])

_NAME = "__tidings_activity_name__"


def defn(name: str) -> Callable[[F], F]:
    """``temporalio.activity.defn(name=name)``, remembering ``name``."""

    def declare(fn: F) -> F:
        setattr(fn, _NAME, name)
        return activity.defn(name=name)(fn)

    return declare


def activity_name(fn: object) -> str | None:
    """The name ``fn`` (a function or a bound method) was declared under with
    :func:`defn`, or ``None``."""
    name = getattr(fn, _NAME, None)
    return name if isinstance(name, str) else None
