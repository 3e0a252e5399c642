"""``tidings down``: stop what ``tidings up`` started, by the PIDs it recorded."""

from __future__ import annotations

import argparse

from infra.commands.common import say, stack_settings
from infra.stack import Stack


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Stop the processes `tidings up` started (SIGTERM, then SIGKILL after a grace period). "
        "A PID that no longer belongs to them is never signalled. Data is kept."
    )


def main(args: argparse.Namespace) -> int:
    stack = Stack(stack_settings())
    stack.down(say)
    return 0
