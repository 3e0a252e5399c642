"""What the Temporal UI shows of a run: findable by tenant and pipeline (search
attributes), a static summary and details, readable activity summaries, and
the current step as the workflow's current details."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.converter import DataConverter

from tests.cli.harness import CliWorld
from tests.support import wait_for
from tidings.runs import PIPELINE_ATTRIBUTE, TENANT_ATTRIBUTE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_runs_are_findable_and_readable_in_the_temporal_ui(world: CliWorld) -> None:
    run_ids = {await world.start_run(), await world.start_run("What does a DLQ hold?")}
    for run_id in run_ids:
        await world.finished(run_id)
    client = await Client.connect(world.settings.temporal.address)

    # Findable by tenant and pipeline (the query the UI's search box takes).
    query = f'{TENANT_ATTRIBUTE}="{world.tenant}" AND {PIPELINE_ATTRIBUTE}="research"'
    found: set[str] = set()

    async def listed() -> bool:
        found.clear()
        found.update([execution.id async for execution in client.list_workflows(query)])
        return run_ids <= found

    await wait_for(listed, 30, f"visibility to list {run_ids} for {query}")
    assert all(run_id.startswith(f"{world.tenant}-") for run_id in found)
    other = f'{TENANT_ATTRIBUTE}="{world.tenant}" AND {PIPELINE_ATTRIBUTE}="nope"'
    assert [execution.id async for execution in client.list_workflows(other)] == []

    run_id = sorted(run_ids)[0]
    handle = client.get_workflow_handle(run_id)
    description = await handle.describe()
    summary = await description.static_summary()
    details = await description.static_details()
    assert summary is not None and summary.startswith(f"research for {world.tenant} · question: ")
    assert details is not None
    assert "**pipeline** research" in details
    assert "**steps** plan → search → draft → review → final" in details
    assert world.key not in summary + details

    # Each activity carries a readable summary (metadata on its scheduling command).
    converter = DataConverter.default
    summaries: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            assert event.user_metadata.HasField("summary"), event
            (text,) = await converter.decode([event.user_metadata.summary])
            summaries.append(str(text))
    assert "emit run.started" in summaries
    assert "plan: research.plan (up to 3 attempts, 30s each)" in summaries
    assert "search[0]: research.search (up to 3 attempts, 30s each)" in summaries
    assert "draft: research.draft (up to 3 attempts, 300s each, heartbeat 10s)" in summaries
    assert "emit run.completed" in summaries

    # The workflow's current details (the UI's "Current Details"): the run's step state.
    metadata: Any = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith("**research** · completed · 5/5 steps done")
