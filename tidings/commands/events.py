"""``tidings events <run_id> [--after CURSOR] [--json]``: print a run's stored events.

Pages through ``GET /v1/runs/{id}/events`` until the stored log is exhausted.
Text output is one line per event; ``--json`` prints JSON Lines, one
``{"cursor", "event"}`` object per event. The cursor to resume from later
(``--after``) is printed last (on stderr in text mode, so pipes stay clean).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from tidings.commands.run import add_gateway_options, call, client, run_command

PAGE_SIZE = 500


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run's id (as `tidings run` printed it)")
    parser.add_argument("--after", help="start after this cursor (from an earlier listing)")
    parser.add_argument(
        "--limit", type=int, default=None, help="stop after this many events (default: all)"
    )
    add_gateway_options(parser)


def main(args: argparse.Namespace) -> int:
    return run_command("tidings events", args, _events)


def _events(args: argparse.Namespace) -> int:
    path = f"/v1/runs/{quote(args.run_id, safe='')}/events"
    cursor: str | None = args.after
    printed = 0
    with client(args) as http:
        while args.limit is None or printed < args.limit:
            want = PAGE_SIZE if args.limit is None else min(PAGE_SIZE, args.limit - printed)
            params: dict[str, Any] = {"limit": want}
            if cursor is not None:
                params["after"] = cursor
            page = call(http, "GET", path, params=params).json()
            for item in page["events"]:
                print(json.dumps(item) if args.json else _line(item), flush=True)
                printed += 1
            # next_cursor is past every record scanned, not just those printed,
            # so a later --after does not rescan other runs' records.
            cursor = page["next_cursor"] or cursor
            if not page["more"]:
                break
    if not args.json:
        where = f"; resume with --after {cursor}" if cursor else ""
        print(f"{printed} event(s){where}", file=sys.stderr)
    return 0


def _line(item: dict[str, Any]) -> str:
    event = item["event"]
    step = event.get("step") or "-"
    data = json.dumps(event.get("data") or {}, ensure_ascii=False, separators=(",", ":"))
    if len(data) > 120:
        data = data[:117] + "..."
    return (
        f"{item['cursor']:>12}  {event.get('ts', '')}  {event.get('type', '?'):<16} "
        f"{step:<12} a{event.get('attempt', '?')} #{event.get('seq', '?')}  {data}"
    )
