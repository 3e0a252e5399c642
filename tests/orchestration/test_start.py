"""Starting runs: idempotent under concurrency, validated before anything starts."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowFailureError

from tests.orchestration.harness import TENANT, Harness
from tidings.errors import BadRequest, ErrorCode
from tidings.runs import PIPELINE_WORKFLOW, PipelineInput, run_id_for
from workflows.start import start_run

pytestmark = pytest.mark.integration


async def test_twenty_concurrent_identical_starts_make_one_run(harness: Harness) -> None:
    key = f"key-{uuid.uuid4().hex}"
    results = await asyncio.gather(*(harness.start("parallel", {}, key) for _ in range(20)))
    run_ids = {run_id for run_id, _ in results}
    assert run_ids == {run_id_for(TENANT, key)}
    assert sum(created for _, created in results) == 1
    (run_id,) = run_ids
    await harness.result(run_id)

    executions = [
        execution async for execution in harness.client.list_workflows(f"WorkflowId = '{run_id}'")
    ]
    assert len(executions) == 1
    # The same key after the run finished still names that run, never a second one.
    assert await harness.start("parallel", {}, key) == (run_id, False)


async def test_bad_requests_are_refused_before_starting(harness: Harness) -> None:
    with pytest.raises(BadRequest) as unknown:
        await harness.start("nope", {})
    assert unknown.value.code == ErrorCode.UNKNOWN_PIPELINE
    for bad, field in (
        ({}, "input.question is required"),
        ({"question": "  "}, "input.question must not be empty"),
        ({"question": "x" * 2001}, "input.question must have at most 2000"),
        ({"question": "ok", "extra": 1}, "input.extra is not a field"),
        ({"question": "ok", "require_approval": "yes"}, "input.require_approval must be of type"),
    ):
        with pytest.raises(BadRequest) as error:
            await start_run(harness.client, harness.settings, TENANT, "research", bad, None)
        assert error.value.code == ErrorCode.VALIDATION
        assert field in error.value.message


async def test_a_start_without_a_spec_fails_once_saying_why(harness: Harness) -> None:
    run_id = f"{TENANT}-{uuid.uuid4().hex}"
    handle = await harness.client.start_workflow(
        PIPELINE_WORKFLOW,
        PipelineInput(tenant=TENANT, pipeline="research", input={"question": "q"}),
        id=run_id,
        task_queue=harness.settings.temporal.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "start_run" in str(failure.value.cause)
