"""``tidings run <pipeline> --input JSON [--watch]``: start a run through a gateway.

Without ``--watch`` it prints the new run and returns. With ``--watch`` it
hands over to ``tidings watch`` (live events over the WebSocket, from the
run's first event). Exit codes: see :mod:`cli.common` (0 started or,
watched, completed; 1 the watched run failed; 2 refused; 3 unavailable), each
failure with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.common import (
    EXIT_OK,
    CommandError,
    add_gateway_options,
    api_key,
    call,
    client,
    run_command,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="pipeline name, e.g. research")
    parser.add_argument("--input", default="{}", help="the run's input as a JSON object")
    parser.add_argument("--watch", action="store_true", help="follow the run until it ends")
    parser.add_argument(
        "--idempotency-key", help="the same key never starts a second run (safe retries)"
    )
    add_gateway_options(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the started run as JSON; with --watch, one event envelope per line",
    )


def main(args: argparse.Namespace) -> int:
    return run_command("tidings run", args, _run)


def _run(args: argparse.Namespace) -> int:
    payload = {"pipeline": args.pipeline, "input": _parse_input(args.input)}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    with client(args) as http:
        started = call(http, "POST", "/v1/runs", json=payload, headers=headers).json()
        run_id = started["run_id"]
        if not args.watch:
            _print_started(args, started)
            return EXIT_OK
        # Scripts reading --json get only envelopes on stdout; the run goes to stderr.
        _print_started(args, started, out=sys.stderr if args.json else sys.stdout)
    return _delegate_watch(args, run_id)


def _parse_input(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--input is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise CommandError('--input must be a JSON object, e.g. \'{"question": "..."}\'')
    return value


def _print_started(args: argparse.Namespace, started: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    if args.json and not args.watch:
        print(json.dumps(started, indent=2), file=out)
        return
    print(f"run      {started['run_id']} ({started['status']})", file=out)
    print(f"stream   {started['stream_url']}", file=out)
    print(f"temporal {started['temporal_ui_url']}", file=out, flush=True)


def _delegate_watch(args: argparse.Namespace, run_id: str) -> int:
    # Imported here: `tidings run` without --watch never needs the WebSocket client.
    from cli import watch

    parser = argparse.ArgumentParser(prog="tidings watch")
    watch.configure(parser)
    # From the first event, tokens included: nothing of a run this command
    # started may be skipped as "history".
    argv = [run_id, "--gateway", str(args.gateway), "--api-key", api_key(args), "--from-start"]
    if args.json:
        argv.append("--json")
    return watch.main(parser.parse_args(argv))
