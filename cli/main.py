"""The ``tidings`` console entry point.

Each subcommand lives in the plane that owns it and is imported only when
called, so ``tidings status`` does not pay for importing the gateway. A command
module exposes ``configure(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from tidings.errors import TidingsError


class Command(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace) -> int: ...


# Each loader imports its module when called: explicit imports, still paid
# for only by the command that runs.
def _up() -> Command:
    from infra.commands import up

    return up


def _down() -> Command:
    from infra.commands import down

    return down


def _status() -> Command:
    from infra.commands import status

    return status


def _deps() -> Command:
    from infra.commands import deps

    return deps


def _worker() -> Command:
    from workers import command

    return command


def _gateway() -> Command:
    from gateway.server import command

    return command


def _run() -> Command:
    from cli import run

    return run


def _watch() -> Command:
    from cli import watch

    return watch


def _events() -> Command:
    from cli import events

    return events


def _pipelines() -> Command:
    from cli import pipelines

    return pipelines


def _control() -> Command:
    from cli import control

    return control


def _replay() -> Command:
    from workers import replay_command

    return replay_command


COMMANDS: dict[str, tuple[Callable[[], Command], str]] = {
    "up": (_up, "start the local stack, a worker and gateways; run a demo"),
    "down": (_down, "stop what `up` started"),
    "status": (_status, "show each local service, port, PID and health"),
    "deps": (_deps, "install what the local stack needs (apt, Maven)"),
    "worker": (_worker, "run a Temporal worker for the pipelines"),
    "gateway": (_gateway, "run a gateway (REST + WebSocket)"),
    "run": (_run, "start a run of a pipeline"),
    "watch": (_watch, "live progress of a run; resumes on drop"),
    "events": (_events, "print a run's stored events"),
    "pipelines": (_pipelines, "list the pipelines a deployment offers"),
    "approve": (_control, "approve a run waiting at an approval step"),
    "reject": (_control, "reject a run waiting at an approval step"),
    "cancel": (_control, "cancel a running run"),
    "replay": (_replay, "replay a run's history against the current code"),
}


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, Command | None]:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    module = None
    for name, (load, help_) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_)
        if name == chosen:
            module = load()
            module.configure(command_parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, module = _build_parser(args_list)
        args = parser.parse_args(args_list)
        assert module is not None
        return module.main(args)
    except TidingsError as exc:
        print(f"tidings: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
