"""What the stack commands share: their settings and how they talk to the terminal."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import ValidationError

from infra.settings import StackSettings
from tidings.errors import ConfigError
from tidings.settings import load


def stack_settings(**options: Any) -> StackSettings:
    """``TIDINGS_STACK_*`` from the environment, then command-line options on top."""
    settings = load(StackSettings)
    given = {key: value for key, value in options.items() if value is not None}
    if not given:
        return settings
    try:
        return StackSettings(**{**settings.model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(str(error["msg"]) for error in exc.errors())
        flags = ", ".join(f"--{key.replace('_', '-')}" for key in given)
        raise ConfigError(f"invalid {flags}: {problems}") from None


def say(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the result a script may parse."""
    print(f"tidings: {message}", file=sys.stderr, flush=True)
