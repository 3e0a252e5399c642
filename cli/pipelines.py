"""``tidings pipelines [--json]``: the pipelines a deployment offers.

Reads ``GET /v1/pipelines``: each pipeline's name, version, task queue, steps
(by stage; ``a | b`` run in parallel) and input fields. ``--json`` prints the
gateway's answer as is. Exit codes: see :mod:`cli.common`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import EXIT_OK, add_gateway_options, call, client, run_command


def configure(parser: argparse.ArgumentParser) -> None:
    add_gateway_options(parser)
    parser.add_argument("--json", action="store_true", help="print the gateway's JSON answer")


def main(args: argparse.Namespace) -> int:
    return run_command("tidings pipelines", args, _pipelines)


def _pipelines(args: argparse.Namespace) -> int:
    with client(args) as http:
        body = call(http, "GET", "/v1/pipelines").json()
    if args.json:
        print(json.dumps(body, indent=2))
        return EXIT_OK
    for pipeline in body.get("pipelines", []):
        print(render(pipeline))
    return EXIT_OK


def render(pipeline: dict[str, Any]) -> str:
    """A few lines for one pipeline: name and version, then steps and input."""
    lines = [
        f"{pipeline['name']}  (version {pipeline['version']}, task queue {pipeline['task_queue']})"
    ]
    if pipeline.get("description"):
        lines.append(f"  {pipeline['description']}")
    stages = [" | ".join(stage) for stage in pipeline.get("stages", [])]
    lines.append("  steps: " + " -> ".join(stages))
    fields = pipeline.get("input", {})
    if not fields:
        lines.append("  input: (none)")
    for name, field in fields.items():
        lines.append(f"  input.{name}: {_field(field)}")
    return "\n".join(lines)


def _field(field: dict[str, Any]) -> str:
    parts = [str(field.get("type", "string"))]
    parts.append("required" if field.get("required", True) else "optional")
    if field.get("default") is not None:
        parts.append(f"default {json.dumps(field['default'])}")
    for key, label in (
        ("min_length", "min length"),
        ("max_length", "max length"),
        ("minimum", "min"),
        ("maximum", "max"),
    ):
        if field.get(key) is not None:
            parts.append(
                f"{label} {field[key]:g}"
                if isinstance(field[key], float)
                else f"{label} {field[key]}"
            )
    text = ", ".join(parts)
    return f"{text}: {field['description']}" if field.get("description") else text
