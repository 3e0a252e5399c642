"""The ``tidings`` console entry point.

Each subcommand lives in the plane that owns it and is imported only when
called, so ``tidings status`` does not pay for importing the gateway. A command
module exposes ``configure(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tidings.errors import TidingsError

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("infra.commands.up", "start the local stack, a worker and gateways; run a demo"),
    "down": ("infra.commands.down", "stop what `up` started"),
    "status": ("infra.commands.status", "show each local service, port, PID and health"),
    "deps": ("infra.commands.deps", "install what the local stack needs (apt, Maven)"),
    "worker": ("workers.command", "run a Temporal worker for the pipelines"),
    "gateway": ("gateway.server.command", "run a gateway (REST + WebSocket)"),
    "run": ("tidings.commands.run", "start a run of a pipeline"),
    "watch": ("tidings.commands.watch", "live progress of a run; resumes on drop"),
    "events": ("tidings.commands.events", "print a run's stored events"),
    "pipelines": ("tidings.commands.pipelines", "list the pipelines a deployment offers"),
    "approve": ("tidings.commands.control", "approve a run waiting at an approval step"),
    "reject": ("tidings.commands.control", "reject a run waiting at an approval step"),
    "cancel": ("tidings.commands.control", "cancel a running run"),
    "replay": ("workers.replay_command", "replay a run's history against the current code"),
}


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    module = None
    for name, (path, help_) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_)
        if name == chosen:
            module = importlib.import_module(path)
            module.configure(command_parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, module = _build_parser(args_list)
        args = parser.parse_args(args_list)
        assert module is not None
        result: int = module.main(args)  # type: ignore[attr-defined]
        return result
    except TidingsError as exc:
        print(f"tidings: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
