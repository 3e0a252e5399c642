"""``tidings watch <run_id>``: a run's live progress in the terminal; resumes on drop.

One line per step change with its state and attempt, steps done out of the
total, and a step's streamed tokens inline as they arrive. On a terminal a
progress bar is redrawn under the lines; when stdout is not a terminal the
output is plain lines only (no escape codes), the count at the end of each
step line. The stream replays the run's history first, so a late watcher
still sees every step's state; the tokens of that history are printed only
with ``--from-start``, except those of a step still in flight when the replay
ends, printed then so its live tokens do not start mid-sentence. A delegated
step's sub-steps (``ask.model-1``, docs/protocol.md) print indented under it
and do not count as steps. ``--from
CURSOR`` re-watches from any position (the events after that cursor, tokens
included). ``--json`` prints one event
envelope per line instead (the same selection).

A dropped connection or a restarted gateway is resumed by the client library
with the stream's token; nothing is lost or repeated. Exit codes are those of
:mod:`cli.common`: 0 completed, 1 failed / cancelled /
terminated / timed out, 2 refused (bad key, unknown run, bad cursor), 3
unavailable, 130 interrupted (the line says how to pick up from there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

from cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_RUN_FAILED,
    EXIT_UNAVAILABLE,
    CommandError,
    add_gateway_options,
    api_key,
    call,
    client,
)
from cli.stream import follow, stream_exit_code
from tidings.client import StreamError
from tidings.events import Event, EventType
from tidings.run_state import parent_step
from tidings.runs import SIGNALS, RunState

PROG = "tidings watch"
_CURSOR = re.compile(r"^\d{1,6}:\d{1,19}$")
_BRANCH = re.compile(r"\[\d+\]$")
_TERMINAL = {
    EventType.RUN_COMPLETED: RunState.COMPLETED,
    EventType.RUN_FAILED: RunState.FAILED,
    EventType.RUN_CANCELLED: RunState.CANCELLED,
    EventType.RUN_TERMINATED: RunState.TERMINATED,
    EventType.RUN_TIMED_OUT: RunState.TIMED_OUT,
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run's id (as `tidings run` printed it)")
    add_gateway_options(parser)
    parser.add_argument("--json", action="store_true", help="print one event envelope per line")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--from-start",
        action="store_true",
        help="also print the tokens of steps that streamed before you started watching",
    )
    where.add_argument(
        "--from",
        dest="from_cursor",
        metavar="CURSOR",
        help="start after this cursor (from `tidings events` or an interrupted watch)",
    )


def main(args: argparse.Namespace) -> int:
    key = api_key(args)
    tty = not args.json and _is_terminal(sys.stdout)
    printer = Printer(sys.stdout, as_json=args.json, tty=tty, color=tty and _color_ok())
    watch = Watch(args, key, printer)
    try:
        watch.check()
        status = asyncio.run(watch.run())
    except CommandError as exc:
        printer.interrupt()
        # A refusal (a bad cursor, key or run) is not fixed by picking up again.
        hint = "" if exc.exit_code == EXIT_REFUSED else watch.resume_hint()
        print(f"{PROG}: {exc.message}{hint}", file=sys.stderr)
        return exc.exit_code
    except StreamError as exc:
        printer.interrupt()
        code = stream_exit_code(exc)
        # A refusal is not fixed by picking up again: no hint.
        hint = "" if code == EXIT_REFUSED else watch.resume_hint()
        print(f"{PROG}: {exc.message}{hint}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        printer.interrupt()
        print(f"{PROG}: interrupted{watch.resume_hint()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if status is None:
        print(f"{PROG}: the stream ended before the run did{watch.resume_hint()}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK if status == RunState.COMPLETED else EXIT_RUN_FAILED


class Watch:
    def __init__(self, args: argparse.Namespace, key: str, printer: Printer) -> None:
        self.args = args
        self.key = key
        self.printer = printer
        # Of the last event shown; a --from cursor counts once it is known to be one.
        self.cursor: str | None = None

    def check(self) -> None:
        """Fail fast, with the gateway's own words, on an unreachable gateway, a
        bad key or an unknown run, before opening the stream (which would retry
        an unreachable gateway with backoff)."""
        args = self.args
        if args.from_cursor is not None and not _CURSOR.match(args.from_cursor):
            raise CommandError(f"--from {args.from_cursor[:40]!r} is not a cursor (like 0:42)")
        self.cursor = args.from_cursor
        run = quote(args.run_id, safe="")
        with client(args) as http:
            try:
                call(http, "GET", f"/v1/runs/{run}")
            except CommandError as exc:
                # A gateway serving only the stream has no REST route (a 404
                # without our error body): let the stream itself answer.
                if not exc.message.startswith("HTTP 404"):
                    raise
                return
            if args.from_cursor is not None and not args.json:
                # Started mid-run: the run's first event names its steps (the total).
                self.printer.progress.mid_run = True
                page = call(http, "GET", f"/v1/runs/{run}/events", params={"limit": 1}).json()
                for item in page["events"]:
                    self.printer.progress.plan(item["event"])

    async def run(self) -> str | None:
        args = self.args
        skip_history_tokens = not args.from_start and args.from_cursor is None
        held = HeldTokens()

        def joined() -> None:
            # The replay is done: a step still streaming shows what it said
            # before we joined, so its live tokens do not start mid-sentence.
            for token in held.release():
                self.printer.show(token)

        async with follow(args.gateway, args.run_id, self.key, args.from_cursor) as sub:
            sub.on_caught_up = joined
            reconnects = 0
            async for event in sub:
                self.cursor = sub.cursor
                if sub.reconnects != reconnects:
                    reconnects = sub.reconnects
                    self.printer.note(f"connection dropped; resumed ({reconnects})")
                if skip_history_tokens and not sub.caught_up and held.hold(event):
                    continue
                self.printer.show(event)
            self.printer.finish(sub.status)
            return sub.status

    def resume_hint(self) -> str:
        if self.cursor is None:
            return ""
        return f"; pick up with: tidings watch {self.args.run_id} --from {self.cursor}"


class HeldTokens:
    """The tokens of history a default watch leaves out, kept until the replay
    ends in case their step is still running then.

    Tokens of a step that completed or failed, and of an attempt that a
    ``step.retrying`` discarded, are dropped as those events pass; whatever
    is left at ``caught_up`` is the output so far of the steps in flight.
    """

    def __init__(self) -> None:
        self._tokens: list[Event] = []

    def hold(self, event: Event) -> bool:
        """Take ``event`` if it is a token (True); otherwise forget the tokens it ends."""
        if event.type in (EventType.STEP_TOKEN, EventType.STEP_THINKING):
            self._tokens.append(event)
            return True
        if not self._tokens:
            return False
        if event.type in _TERMINAL:
            self._tokens.clear()
        elif event.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED):
            self._tokens = [t for t in self._tokens if t.step != event.step]
        elif event.type == EventType.STEP_RETRYING:
            discarded = event.data.get("discard_attempt", event.attempt)
            self._tokens = [
                t for t in self._tokens if not (t.step == event.step and t.attempt == discarded)
            ]
        return False

    def release(self) -> list[Event]:
        tokens, self._tokens = self._tokens, []
        return tokens


# -- progress ------------------------------------------------------------------


def base_step(name: str) -> str:
    """``search[2]`` -> ``search``; ``draft.fallback`` -> ``draft``."""
    return _BRANCH.sub("", name.removesuffix(".fallback"))


@dataclass
class Progress:
    """Steps done out of the total, from the events alone.

    ``run.started`` names the steps and stages (older runs do not: the total
    is then unknown). A plain step is done at its ``step.completed``; a
    fan-out step (``search[0]``, ``search[1]`` ...) and a skipped step are
    known done once a later stage starts, or the run completes.
    """

    stages: list[list[str]] = field(default_factory=list)
    started: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    branches: dict[str, int] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    # Watching from a cursor: steps of stages before the first one seen were
    # done before it, not skipped.
    mid_run: bool = False

    @property
    def total(self) -> int | None:
        return sum(len(stage) for stage in self.stages) or None

    def plan(self, event: dict[str, Any] | Event) -> None:
        data = event.data if isinstance(event, Event) else event.get("data") or {}
        kind = event.type if isinstance(event, Event) else event.get("type")
        stages = data.get("stages") if kind == EventType.RUN_STARTED else None
        if isinstance(stages, list) and all(isinstance(stage, list) for stage in stages):
            self.stages = [[str(name) for name in stage] for stage in stages]

    def count(self) -> str:
        total = self.total
        if not total:
            return f"{len(self.done)}"
        # Only the plan's steps count: a delegated step's sub-steps
        # (`ask.model-1`, activities/delegate.py) are not in it.
        planned = {step for stage in self.stages for step in stage}
        return f"{len(self.done & planned)}/{total}"

    def update(self, event: Event) -> list[tuple[str, str]]:
        """Steps this event shows to be finished without an event of their own:
        ``(step, "completed" | "skipped")``."""
        if event.type == EventType.RUN_STARTED:
            self.plan(event)
            return []
        if event.type == EventType.RUN_COMPLETED:
            return self._close(len(self.stages))
        if event.step is None or parent_step(event.step) is not None:
            # A sub-step is its parent's work, not a step of the plan.
            return []
        base = base_step(event.step)
        if self.mid_run:
            self.mid_run = False
            self._close(self._stage_of(base))
        inferred = self._close(self._stage_of(base))
        if event.type == EventType.STEP_STARTED:
            self.started.add(base)
            if event.step != base and not event.step.endswith(".fallback"):
                self.branches[base] = self.branches.get(base, 0) + 1
            if base not in self.running and base not in self.done:
                self.running.append(base)
        elif event.type == EventType.STEP_COMPLETED and base not in self.branches:
            self._finish(base)
        elif event.type == EventType.STEP_FAILED and base in self.running:
            self.running.remove(base)
        return inferred

    def _stage_of(self, step: str) -> int:
        for index, stage in enumerate(self.stages):
            if step in stage:
                return index
        return -1

    def _close(self, before: int) -> list[tuple[str, str]]:
        closed = []
        for stage in self.stages[: max(before, 0)]:
            for step in stage:
                if step not in self.done:
                    closed.append((step, "completed" if step in self.started else "skipped"))
                    self._finish(step)
        return closed

    def _finish(self, step: str) -> None:
        self.done.add(step)
        if step in self.running:
            self.running.remove(step)


# -- output --------------------------------------------------------------------


_STEP_STATES = {
    EventType.STEP_STARTED: "started",
    EventType.STEP_COMPLETED: "completed",
    EventType.STEP_RETRYING: "retrying",
    EventType.STEP_FAILED: "failed",
    EventType.STEP_REQUESTED: "handed to an agent service",
}
# Text a step streams, by event type: its label's suffix.
_STREAMED = {EventType.STEP_TOKEN: "", EventType.STEP_THINKING: " (thinking)"}
_PREVIEW = 100
_COLORS = {"completed": "32", "failed": "31", "retrying": "33", "skipped": "2"}
_BAR_WIDTH = 24


class Printer:
    def __init__(
        self, out: TextIO, *, as_json: bool, tty: bool = False, color: bool = False
    ) -> None:
        self._out = out
        self._json = as_json
        self._tty = tty
        self._color = color
        self._inline: str | None = None  # the step whose tokens are mid-line
        self._bar = False  # a progress bar is drawn on the current line
        self._final: str | None = None  # the terminal run event's line
        self.progress = Progress()

    def show(self, event: Event) -> None:
        if self._json:
            self._write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            return
        inferred = self.progress.update(event)
        # A sub-step's lines sit under its parent step's, one level in.
        indent = "  " if event.step is not None and parent_step(event.step) else ""
        if event.type in _STREAMED:
            self._clear_bar()
            # An agent's reasoning streams on a line of its own, apart from its text.
            label = f"{event.step}{_STREAMED[event.type]}"
            if self._inline != label:
                self._newline()
                self._write(f"{indent}  {label} | ")
                self._inline = label
            self._write(str(event.data.get("text", "")))
            return
        self._newline()
        self._clear_bar()
        for step, state in inferred:
            self._line(f"step {step} {self._paint(state)}{self._suffix(step)}")
        if event.type in _TERMINAL:
            self._final = _run_line(event)
        else:
            text = _line(event)
            if event.step is not None and event.type == EventType.STEP_COMPLETED:
                text += self._suffix(base_step(event.step), event.step)
            self._line(indent + text)
        self._draw_bar()

    def note(self, text: str) -> None:
        """A side remark (on stderr, so stdout stays the run's output)."""
        if not self._json:
            print(f"{PROG}: {text}", file=sys.stderr, flush=True)

    def finish(self, status: str | None) -> None:
        if self._json:
            return
        self._newline()
        self._clear_bar()
        final = self._final or f"run {status.lower() if status else 'stream ended'}"
        total = self.progress.total
        counted = f" [{self.progress.count()} steps]" if total else ""
        self._write(f"{final}{counted}\n")

    def interrupt(self) -> None:
        """Leave the terminal tidy before an error line."""
        if not self._json:
            self._newline()
            self._clear_bar()

    def _suffix(self, step: str, name: str | None = None) -> str:
        if step not in self.progress.done:
            return ""
        if name is not None and name != step and not name.endswith(".fallback"):
            return ""  # one branch of a fan-out: the step is not done yet
        return f" [{self.progress.count()}]"

    def _paint(self, state: str) -> str:
        code = _COLORS.get(state)
        return f"\x1b[{code}m{state}\x1b[0m" if self._color and code else state

    def _line(self, text: str) -> None:
        if self._color:
            for state in ("completed", "failed", "retrying"):
                text = text.replace(f" {state}", f" {self._paint(state)}", 1)
        self._write(text + "\n")

    def _draw_bar(self) -> None:
        if not self._tty:
            return
        progress = self.progress
        total = progress.total
        if total:
            filled = round(_BAR_WIDTH * len(progress.done) / total)
            bar = "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]"
        else:
            bar = "[steps done]"
        running = f"  {', '.join(progress.running)}" if progress.running else ""
        self._write(f"\x1b[2K\r{bar} {progress.count()}{running}")
        self._bar = True

    def _clear_bar(self) -> None:
        if self._bar:
            self._write("\r\x1b[2K")
            self._bar = False

    def _newline(self) -> None:
        if self._inline is not None:
            self._write("\n")
            self._inline = None

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


def _line(event: Event) -> str:
    data: dict[str, Any] = event.data
    if event.type == EventType.RUN_STARTED:
        steps = data.get("steps")
        count = f", {len(steps)} steps" if isinstance(steps, list) else ""
        pipeline = data.get("pipeline")
        return f"run started: {pipeline}{count}" if pipeline else "run started"
    if event.step is not None and event.type in _STEP_STATES:
        state = _STEP_STATES[event.type]
        detail = data.get("error") or data.get("reason") or data.get("message") or ""
        suffix = f": {detail}" if detail else ""
        if event.type == EventType.STEP_RETRYING:
            suffix += "; its output is discarded" if "discard_attempt" in data else ""
        return f"step {event.step} {state} (attempt {event.attempt}){suffix}"
    if event.type == EventType.STEP_PROGRESS:
        shown = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
        shown = shown if len(shown) <= 100 else shown[:97] + "..."
        return f"step {event.step} progress (attempt {event.attempt}): {shown}"
    if event.type == EventType.STEP_TOOL_CALL:
        args = json.dumps(data.get("args"), ensure_ascii=False, default=str)
        return f"step {event.step} calls {data.get('tool')}({_preview(args)})"
    if event.type == EventType.STEP_TOOL_RESULT:
        # Collapsed to one line; `--json` prints the whole (already cut) content.
        cut = " (cut)" if data.get("truncated") else ""
        content = _preview(str(data.get("content", "")))
        return f"step {event.step} got {data.get('tool')}: {content}{cut}"
    if event.type == EventType.RUN_WAITING:
        step = data.get("step") or "a step"
        signals = data.get("signals") or []
        wanted = " or ".join(signals or ["a signal"])
        # Name the commands that answer it, where there are such commands.
        commands = "|".join(name for name in signals if name in SIGNALS)
        how = f" (tidings {commands} {event.run_id})" if commands else ""
        return f"run waiting: {step} needs {wanted}{how}"
    if event.type == EventType.RUN_CONTINUED:
        return f"run continued as new (from stage {data.get('next_stage', '?')})"
    if event.type == EventType.ALERT_HOT_LOOP:
        return f"alert: step {event.step} is retrying in a hot loop"
    return event.type if not event.step else f"{event.type} {event.step}"


def _preview(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _PREVIEW else line[: _PREVIEW - 3] + "..."


def _run_line(event: Event) -> str:
    state = _TERMINAL[event.type].lower()
    data = event.data
    if event.type == EventType.RUN_FAILED:
        where = f"step {data['step']}: " if data.get("step") else ""
        detail = data.get("error") or ""
        return f"run {state}: {where}{detail}" if (where or detail) else f"run {state}"
    return f"run {state}"


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _color_ok() -> bool:
    return "NO_COLOR" not in os.environ
