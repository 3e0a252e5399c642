"""``tidings status``: one line per service: address, PID, health."""

from __future__ import annotations

import argparse

from infra.commands.common import stack_settings
from infra.stack import Stack


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Show each local service. Exit code 0 only if all are healthy."


def main(args: argparse.Namespace) -> int:
    stack = Stack(stack_settings())
    rows = stack.status()
    print(f"{'SERVICE':<16}{'ADDRESS':<32}{'PID':<9}{'RSS':<9}HEALTH")
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        rss = f"{row.rss // 2**20}M" if row.rss is not None else "-"
        print(f"{row.service:<16}{row.address:<32}{pid:<9}{rss:<9}{row.health}")
    return 0 if all(row.health == "healthy" for row in rows) else 1
