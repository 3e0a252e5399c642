"""A workflow's history survives a restart of the Temporal server (SQLite on disk)."""

from __future__ import annotations

import uuid

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import StackHandle
from tests.support import wait_for

pytestmark = pytest.mark.integration


@workflow.defn(sandboxed=False)
class WaitForApproval:
    def __init__(self) -> None:
        self.approved = False

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.approved)
        return f"approved {name}"

    @workflow.signal
    def approve(self) -> None:
        self.approved = True


async def _event_types(client: Client, workflow_id: str) -> list[int]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [event.event_type for event in history.events]


async def test_history_survives_server_restart(stack: StackHandle) -> None:
    address = stack.endpoints.temporal_address
    task_queue = f"test-{uuid.uuid4().hex[:8]}"
    workflow_id = f"restart-{uuid.uuid4().hex[:8]}"
    client = await Client.connect(address)
    async with Worker(client, task_queue=task_queue, workflows=[WaitForApproval]):
        await client.start_workflow(
            WaitForApproval.run, "draft", id=workflow_id, task_queue=task_queue
        )

        async def first_task_done() -> bool:
            types = await _event_types(client, workflow_id)
            return EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in types

        await wait_for(first_task_done, 15, "the workflow's first task completes")
        before = await _event_types(client, workflow_id)

    stack.restart("temporal")

    client = await Client.connect(address)
    assert (await _event_types(client, workflow_id))[: len(before)] == before
    async with Worker(client, task_queue=task_queue, workflows=[WaitForApproval]):
        handle = client.get_workflow_handle(workflow_id)
        await handle.signal(WaitForApproval.approve)
        assert await handle.result() == "approved draft"
