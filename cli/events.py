"""``tidings events <run_id> [--after CURSOR] [--json] [--follow]``: a run's stored events.

Pages through ``GET /v1/runs/{id}/events`` until the stored log is exhausted.
Text output is one line per event, its cursor first; ``--json`` prints JSON
Lines, one ``{"cursor", "event"}`` object per event. The cursor to continue
from later (``--after``) is printed last (on stderr, so pipes stay clean).
``--follow`` then keeps printing the run's new events live, over the stream
(``from=<cursor>``), until the run ends. Exit codes: see
:mod:`cli.common` (0, 2 refused, 3 unavailable; with
``--follow``, 1 when the run did not complete).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import quote

from cli.common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    CommandError,
    add_gateway_options,
    api_key,
    call,
    client,
    run_command,
)
from tidings.runs import RunState

PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000  # the gateway's own bound


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run's id (as `tidings run` printed it)")
    parser.add_argument("--after", help="start after this cursor (from an earlier listing)")
    parser.add_argument(
        "--limit", type=int, default=None, help="stop after this many events (default: all)"
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=PAGE_SIZE,
        help=f"events per request (default {PAGE_SIZE}, at most {MAX_PAGE_SIZE})",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="after the stored events, print new ones live until the run ends",
    )
    add_gateway_options(parser)
    parser.add_argument("--json", action="store_true", help='one {"cursor", "event"} per line')


def main(args: argparse.Namespace) -> int:
    return run_command("tidings events", args, _events)


def _events(args: argparse.Namespace) -> int:
    if not 1 <= args.page_size <= MAX_PAGE_SIZE:
        raise CommandError(f"--page-size must be 1 to {MAX_PAGE_SIZE}")
    if args.limit is not None and args.limit < 1:
        raise CommandError("--limit must be at least 1")
    path = f"/v1/runs/{quote(args.run_id, safe='')}/events"
    cursor: str | None = args.after
    printed = 0
    with client(args) as http:
        while args.limit is None or printed < args.limit:
            want = (
                args.page_size if args.limit is None else min(args.page_size, args.limit - printed)
            )
            params: dict[str, Any] = {"limit": want}
            if cursor is not None:
                params["after"] = cursor
            page = call(http, "GET", path, params=params).json()
            for item in page["events"]:
                _print(args, item)
                printed += 1
            # next_cursor is past every record scanned, not just those printed,
            # so a later --after does not rescan other runs' records.
            cursor = page["next_cursor"] or cursor
            if not page["more"]:
                break
    if not args.follow:
        where = f"; resume with --after {cursor}" if cursor else ""
        print(f"{printed} event(s){where}", file=sys.stderr)
        return EXIT_OK
    return asyncio.run(_follow(args, cursor))


async def _follow(args: argparse.Namespace, cursor: str | None) -> int:
    from cli.stream import follow, stream_exit_code
    from tidings.client import StreamError

    try:
        async with follow(args.gateway, args.run_id, api_key(args), cursor) as sub:
            async for event in sub:
                _print(args, {"cursor": sub.cursor, "event": event.to_dict()})
                cursor = sub.cursor
    except StreamError as exc:
        where = f"; resume with --after {cursor}" if cursor else ""
        raise CommandError(f"{exc.message}{where}", stream_exit_code(exc)) from None
    status = sub.status or "?"
    print(f"run {status.lower()}; last cursor {cursor}", file=sys.stderr)
    return EXIT_OK if status == RunState.COMPLETED else EXIT_RUN_FAILED


def _print(args: argparse.Namespace, item: dict[str, Any]) -> None:
    print(json.dumps(item, ensure_ascii=False) if args.json else _line(item), flush=True)


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
