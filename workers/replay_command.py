"""``tidings replay <run_id> | --history-file F``: a determinism check.

Replays a run's recorded Temporal history against the workflow code of this
checkout. A mismatch means the code changed in a way that would break runs in
flight: guard the change with ``workflow.patched(...)``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from tidings.errors import BadRequest
from tidings.settings import Settings
from workflows.pipeline import PipelineWorkflow


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", nargs="?", help="the run (workflow id) to fetch from Temporal")
    parser.add_argument("--history-file", type=Path, help="a history JSON exported from Temporal")


def main(args: argparse.Namespace) -> int:
    if (args.run_id is None) == (args.history_file is None):
        raise BadRequest("give exactly one of: a run id, --history-file FILE")
    verdict, ok = asyncio.run(_replay(args.run_id, args.history_file))
    print(verdict)
    return 0 if ok else 1


async def load_history(run_id: str | None, history_file: Path | None) -> WorkflowHistory:
    if history_file is not None:
        text = history_file.read_text(encoding="utf-8")
        return WorkflowHistory.from_json(run_id or history_file.stem, text)
    settings = Settings()
    client = await Client.connect(settings.temporal.address, namespace=settings.temporal.namespace)
    assert run_id is not None
    return await client.get_workflow_handle(run_id).fetch_history()


async def replay(history: WorkflowHistory) -> tuple[str, bool]:
    """``(one-line verdict, ok)`` for one history against the current workflow code."""
    replayer = Replayer(workflows=[PipelineWorkflow])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    events = len(history.events)
    if result.replay_failure is None:
        return (
            f"ok: {history.workflow_id} replays cleanly against the current code "
            f"({events} history events)",
            True,
        )
    reason = " ".join(str(result.replay_failure).split())
    return f"mismatch: {history.workflow_id}: {reason}", False


async def _replay(run_id: str | None, history_file: Path | None) -> tuple[str, bool]:
    return await replay(await load_history(run_id, history_file))
