"""``tidings approve|reject|cancel <run_id>``: act on a run through the gateway.

``approve`` and ``reject`` answer a run waiting at an approval step
(``tidings watch`` shows ``run waiting: review needs approve or reject``);
``cancel`` asks a running run to stop. Each reads the run first, so a run that
is not waiting, or already finished, gets a clear refusal instead of a signal
the workflow would ignore. The gateway answers 202 once Temporal has the
request; the run's events show its effect.

Exit codes are those of :mod:`cli.common`: 0 sent, 2 refused (an
unknown run, a bad key, a finished run, a run not waiting), 3 unavailable.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from cli.common import (
    EXIT_OK,
    CommandError,
    add_gateway_options,
    call,
    client,
    run_command,
)
from tidings.runs import APPROVE_SIGNAL, REJECT_SIGNAL, RunState

CANCEL = "cancel"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run's id (as `tidings run` printed it)")
    if parser.prog.split()[-1] != CANCEL:
        parser.add_argument("--comment", help="a note for the run's events (at most 4,000 chars)")
    if parser.prog.split()[-1] == APPROVE_SIGNAL:
        parser.add_argument(
            "--deny",
            action="append",
            metavar="CALL_ID",
            help="an agent's pending tool call to refuse (repeatable); the others run",
        )
    add_gateway_options(parser)
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")


def main(args: argparse.Namespace) -> int:
    action = str(args.command)
    return run_command(f"tidings {action}", args, lambda a: _act(a, action))


def _act(args: argparse.Namespace, action: str) -> int:
    run = quote(args.run_id, safe="")
    with client(args) as http:
        detail: dict[str, Any] = call(http, "GET", f"/v1/runs/{run}").json()
        status = str(detail.get("status"))
        if status in RunState.FINISHED:
            raise CommandError(
                f"run {args.run_id} already finished ({status}); nothing to {action}"
            )
        if action == CANCEL:
            answer = call(http, "POST", f"/v1/runs/{run}/cancel").json()
            line = f"cancel requested: {args.run_id} (its events show when it stops)"
        else:
            step = detail.get("waiting_for")
            if not step:
                current = detail.get("current_step")
                where = f", at step {current}" if current else ""
                raise CommandError(
                    f"run {args.run_id} is not waiting for approve or reject ({status}{where})"
                )
            body: dict[str, Any] = {"step": step}
            if args.comment is not None:
                body["comment"] = args.comment
            if getattr(args, "deny", None):
                body["deny"] = list(args.deny)
            answer = call(http, "POST", f"/v1/runs/{run}/signals/{action}", json=body).json()
            line = f"{_past(action)}: {args.run_id} (step {step})"
    print(json.dumps(answer, indent=2) if args.json else line)
    return EXIT_OK


def _past(action: str) -> str:
    return {APPROVE_SIGNAL: "approved", REJECT_SIGNAL: "rejected"}[action]
