"""``tidings replay <run_id> | --history-file F``: a determinism check.

Replays a run's recorded Temporal history against the workflow code of this
checkout (or, with ``--workflow MODULE:CLASS``, against a candidate class
registered under the same workflow name). A mismatch means the code changed
in a way that would break runs in flight: guard the change with
``workflow.patched(...)``.

Prints one line, ``ok: ...`` or ``mismatch: ...`` (naming the first command
that differs), and exits 0 (clean), 1 (mismatch), 2 (bad arguments, an
unreadable file, an unknown run) or 3 (Temporal unreachable). The run-id form
reads ``TIDINGS_TEMPORAL_ADDRESS`` / ``TIDINGS_TEMPORAL_NAMESPACE``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import re
import sys
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from tidings import errors
from tidings.errors import BadRequest, NotFound
from tidings.settings import Settings, TemporalSettings
from tidings.temporal_connect import connect_temporal
from workflows.pipeline import PipelineWorkflow

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
# The SDK core's failure text wraps the one line that matters in a Rust debug dump.
_EXPECTED_RPC_ERRORS = frozenset(
    {RPCStatusCode.NOT_FOUND, RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}
)
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


class Unavailable(Exception):
    """Temporal could not be reached."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", nargs="?", help="the run (workflow id) to fetch from Temporal")
    parser.add_argument("--history-file", type=Path, help="a history JSON exported from Temporal")
    parser.add_argument(
        "--workflow",
        metavar="MODULE:CLASS",
        help="replay against this workflow class instead of workflows.pipeline:PipelineWorkflow "
        "(check a candidate change before deploying it)",
    )


def main(args: argparse.Namespace) -> int:
    if (args.run_id is None) == (args.history_file is None):
        raise BadRequest("give exactly one of: a run id, --history-file FILE")
    workflow = load_workflow(args.workflow) if args.workflow else PipelineWorkflow
    # Settings are read here, at the entry point, and only for the run-id form.
    temporal = Settings().temporal if args.history_file is None else None
    try:
        verdict, ok = asyncio.run(_replay(args.run_id, args.history_file, temporal, workflow))
    except Unavailable as exc:
        print(f"tidings replay: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        # The Temporal client is native: free it (and any cycle through an
        # error's traceback) now, not during interpreter shutdown, where its
        # threads calling into Python abort the process.
        gc.collect()
    print(verdict)
    return EXIT_OK if ok else EXIT_MISMATCH


def load_workflow(path: str) -> type:
    module_name, _, attr = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr or "PipelineWorkflow")
    except (ImportError, AttributeError) as exc:
        raise BadRequest(f"--workflow {path}: {exc}") from None
    if not isinstance(found, type):
        raise BadRequest(f"--workflow {path}: not a class")
    return found


async def load_history(
    run_id: str | None, history_file: Path | None, temporal: TemporalSettings | None = None
) -> WorkflowHistory:
    if history_file is not None:
        try:
            text = history_file.read_text(encoding="utf-8")
            return WorkflowHistory.from_json(run_id or history_file.stem, text)
        except OSError as exc:
            raise BadRequest(f"cannot read {history_file}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest(f"{history_file} is not a Temporal history JSON: {exc}") from None
    assert run_id is not None and temporal is not None
    try:
        client = await connect_temporal(temporal)
    except errors.Unavailable as exc:
        raise Unavailable(exc.message) from None
    try:
        return await client.get_workflow_handle(run_id).fetch_history()
    except RPCError as exc:
        if exc.status not in _EXPECTED_RPC_ERRORS:
            raise
        status, message = exc.status, exc.message
    # Only plain values leave: the error's traceback (and the client its frames
    # hold) must not outlive the loop (see main).
    if status == RPCStatusCode.NOT_FOUND:
        raise NotFound(f"unknown run {run_id!r} in namespace {temporal.namespace}")
    raise Unavailable(f"Temporal at {temporal.address}: {message}")


async def replay(
    history: WorkflowHistory, workflow: type = PipelineWorkflow, runtime: Runtime | None = None
) -> tuple[str, bool]:
    """``(one-line verdict, ok)`` for one history against ``workflow`` (the current code)."""
    replayer = Replayer(workflows=[workflow], runtime=runtime)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    events = len(history.events)
    if result.replay_failure is None:
        return (
            f"ok: {history.workflow_id} replays cleanly against the current code "
            f"({events} history events)",
            True,
        )
    reason = " ".join(str(result.replay_failure).split())
    found = _CORE_MESSAGE.search(reason)
    if found:
        reason = found.group(1)
    return (
        f"mismatch: {history.workflow_id}: {reason} (guard the change with workflow.patched)",
        False,
    )


def quiet_runtime() -> Runtime:
    """The SDK core logs each failed replay as a warning; the verdict says it once."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


async def _replay(
    run_id: str | None, history_file: Path | None, temporal: TemporalSettings | None, workflow: type
) -> tuple[str, bool]:
    history = await load_history(run_id, history_file, temporal)
    return await replay(history, workflow, quiet_runtime())
