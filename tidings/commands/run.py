"""``tidings run <pipeline> --input JSON [--watch]``: start a run through a gateway.

Without ``--watch`` it prints the new run and returns. With ``--watch`` it
hands over to ``tidings watch`` (live events over the WebSocket) when that
command is installed, and otherwise polls ``GET /v1/runs/{id}`` until the run
finishes. The exit status is 0 for a started (or, watched, a completed) run
and 1 for any failure, each with a one-line reason on stderr.

The small HTTP helpers here are shared with ``tidings events``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any

import httpx

from tidings.runs import RunState

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
DEFAULT_API_KEY = "dev-key-demo"  # the local stack's demo tenant (DESIGN.md)
POLL_SECONDS = 0.5
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class CommandError(Exception):
    """A failure to report on stderr as one line, then exit 1."""


def add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway",
        default=os.environ.get("TIDINGS_GATEWAY_URL", DEFAULT_GATEWAY),
        help=f"gateway URL (default: $TIDINGS_GATEWAY_URL or {DEFAULT_GATEWAY})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="API key (default: $TIDINGS_API_KEY, else the local dev key)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def api_key(args: argparse.Namespace) -> str:
    key: str = args.api_key or os.environ.get("TIDINGS_API_KEY") or DEFAULT_API_KEY
    return key


def client(args: argparse.Namespace) -> httpx.Client:
    return httpx.Client(
        base_url=str(args.gateway).rstrip("/"),
        headers={"Authorization": f"Bearer {api_key(args)}"},
        timeout=HTTP_TIMEOUT,
    )


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; any transport or HTTP error becomes a :class:`CommandError`
    carrying the gateway's error code and message (never the API key)."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise CommandError(
            f"cannot reach the gateway at {http.base_url} ({type(exc).__name__}); "
            "is it running? (`tidings up` starts one)"
        ) from None
    if response.is_error:
        raise CommandError(describe_error(response))
    return response


def describe_error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']} (HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} {response.reason_phrase}"


def run_command(prog: str, args: argparse.Namespace, body: Any) -> int:
    """Run ``body(args)``, turning a :class:`CommandError` into a message and exit 1."""
    try:
        result: int = body(args)
        return result
    except CommandError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="pipeline name, e.g. research")
    parser.add_argument("--input", default="{}", help="the run's input as a JSON object")
    parser.add_argument("--watch", action="store_true", help="follow the run until it ends")
    parser.add_argument(
        "--idempotency-key", help="the same key never starts a second run (safe retries)"
    )
    add_gateway_options(parser)


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
            return 0
        watch = _watch_command()
        if watch is not None:
            if not args.json:
                _print_started(args, started)
            return _delegate_watch(watch, args, run_id)
        if not args.json:
            _print_started(args, started)
        detail = _poll(http, run_id, quiet=args.json)
    if args.json:
        print(json.dumps(detail, indent=2))
    else:
        _print_summary(detail)
    return 0 if detail["status"] == RunState.COMPLETED else 1


def _parse_input(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--input is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise CommandError('--input must be a JSON object, e.g. \'{"question": "..."}\'')
    return value


def _print_started(args: argparse.Namespace, started: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(started, indent=2))
        return
    print(f"run      {started['run_id']} ({started['status']})")
    print(f"stream   {started['stream_url']}")
    print(f"temporal {started['temporal_ui_url']}")


def _watch_command() -> Any | None:
    try:
        return importlib.import_module("tidings.commands.watch")
    except ModuleNotFoundError as exc:
        if exc.name != "tidings.commands.watch":
            raise
        return None


def _delegate_watch(watch: Any, args: argparse.Namespace, run_id: str) -> int:
    parser = argparse.ArgumentParser(prog="tidings watch")
    watch.configure(parser)
    argv = [run_id, "--gateway", str(args.gateway), "--api-key", api_key(args)]
    if args.json:
        argv.append("--json")
    # parse_known_args: options this watch command does not define are ignored.
    watch_args, _ = parser.parse_known_args(argv)
    result: int = watch.main(watch_args)
    return result


def _poll(http: httpx.Client, run_id: str, *, quiet: bool) -> dict[str, Any]:
    shown: tuple[Any, ...] = ()
    while True:
        detail: dict[str, Any] = call(http, "GET", f"/v1/runs/{run_id}").json()
        state = (detail["status"], detail.get("current_step"), detail.get("waiting_for"))
        if state != shown and not quiet:
            step = f" step {state[1]}" if state[1] else ""
            waiting = f", waiting for {state[2]}" if state[2] else ""
            print(f"... {state[0]}{step}{waiting}", flush=True)
            shown = state
        if detail["status"] in RunState.FINISHED:
            return detail
        time.sleep(POLL_SECONDS)  # polling interval between status reads


def _print_summary(detail: dict[str, Any]) -> None:
    print(f"{detail['status']}: {detail['run_id']}")
    if detail.get("result") is not None:
        print(json.dumps(detail["result"], indent=2, ensure_ascii=False))
    if detail.get("error"):
        print(f"error: {detail['error']}", file=sys.stderr)
