"""``tidings watch <run_id>``: a run's live progress in the terminal; resumes on drop.

One line per step change with its state and attempt; a step's streamed
tokens print inline as they arrive. The stream replays the run's history
first, so a late watcher still sees every step's state; the tokens of that
history are only printed with ``--from-start``. ``--json`` prints one
envelope per line instead (the same selection).

Exit status: 0 when the run completed, 1 when it failed or was cancelled (or
the gateway could not be reached), 2 for a bad key, another tenant's or an
unknown run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, TextIO

from tidings.client import StreamError, subscribe
from tidings.errors import CloseCode
from tidings.events import Event, EventType
from tidings.runs import RunState

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
DEFAULT_API_KEY = "dev-key-demo"  # the local stack's demo tenant (DESIGN.md)
_USAGE_CODES = frozenset(
    {CloseCode.BAD_FRAME, CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.UNKNOWN_RUN}
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run's id (as `tidings run` printed it)")
    parser.add_argument(
        "--gateway",
        default=os.environ.get("TIDINGS_GATEWAY_URL", DEFAULT_GATEWAY),
        help=f"gateway URL (default: $TIDINGS_GATEWAY_URL or {DEFAULT_GATEWAY})",
    )
    parser.add_argument(
        "--api-key", default=None, help="API key (default: $TIDINGS_API_KEY, else the dev key)"
    )
    parser.add_argument("--json", action="store_true", help="print one envelope per line")
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="also print the tokens of steps that streamed before you started watching",
    )


def main(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("TIDINGS_API_KEY") or DEFAULT_API_KEY
    try:
        status = asyncio.run(_watch(args, key, sys.stdout))
    except StreamError as exc:
        print(f"\ntidings watch: {exc.message}", file=sys.stderr)
        return 2 if exc.close_code in _USAGE_CODES else 1
    if status is None:
        print("\ntidings watch: the stream ended before the run did", file=sys.stderr)
        return 1
    return 0 if status == RunState.COMPLETED else 1


async def _watch(args: argparse.Namespace, key: str, out: TextIO) -> str | None:
    printer = Printer(out, as_json=args.json)
    async with subscribe(args.gateway, args.run_id, key) as sub:
        async for event in sub:
            history = not sub.caught_up
            if history and event.type == EventType.STEP_TOKEN and not args.from_start:
                continue
            printer.show(event)
        printer.finish(sub.status)
        return sub.status


class Printer:
    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self._out = out
        self._json = as_json
        self._inline: str | None = None  # the step whose tokens are mid-line

    def show(self, event: Event) -> None:
        if self._json:
            self._write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            return
        if event.type == EventType.STEP_TOKEN:
            text = str(event.data.get("text", ""))
            if self._inline != event.step:
                self._newline()
                self._write(f"  {event.step} | ")
                self._inline = event.step
            self._write(text)
            return
        self._newline()
        self._write(_line(event) + "\n")

    def finish(self, status: str | None) -> None:
        if not self._json:
            self._newline()
            self._write(f"run {status.lower() if status else 'stream ended'}\n")

    def _newline(self) -> None:
        if self._inline is not None:
            self._write("\n")
            self._inline = None

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


_STEP_STATES = {
    EventType.STEP_STARTED: "started",
    EventType.STEP_COMPLETED: "completed",
    EventType.STEP_RETRYING: "retrying",
    EventType.STEP_FAILED: "failed",
    EventType.STEP_REQUESTED: "handed to an agent service",
    EventType.STEP_PROGRESS: "progress",
}


def _line(event: Event) -> str:
    data: dict[str, Any] = event.data
    if event.step is not None and event.type in _STEP_STATES:
        state = _STEP_STATES[event.type]
        detail = data.get("error") or data.get("message") or ""
        suffix = f": {detail}" if detail else ""
        return f"step {event.step} {state} (attempt {event.attempt}){suffix}"
    if event.type == EventType.RUN_WAITING:
        return f"run waiting for {data.get('signal') or data.get('waiting_for') or 'a signal'}"
    if event.type in (EventType.RUN_FAILED, EventType.RUN_CANCELLED):
        detail = data.get("error") or data.get("reason") or ""
        return f"{event.type}{': ' + str(detail) if detail else ''}"
    return event.type if not event.step else f"{event.type} {event.step}"
