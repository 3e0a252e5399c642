"""A stand-in for the orchestration plane's starter, with a three-pipeline
registry; it follows the contract of the real ``start_run`` (validate first,
then start with the id from ``run_id_for``, conflict policy USE_EXISTING).

The REST tests exercise the gateway, not the pipelines, so a stub keeps them
fast and independent of the real steps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from tidings.errors import BadRequest, ErrorCode
from tidings.runs import (
    PIPELINE_ATTRIBUTE,
    PIPELINE_WORKFLOW,
    TENANT_ATTRIBUTE,
    PipelineInput,
    run_id_for,
)
from tidings.settings import Settings

# pipeline -> required string fields of its input
PIPELINES: dict[str, list[str]] = {"echo": ["text"], "approval": ["text"], "fail": []}

TENANT_KEY = SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE)
PIPELINE_KEY = SearchAttributeKey.for_keyword(PIPELINE_ATTRIBUTE)


async def start_run(
    client: Client,
    settings: Settings,
    tenant: str,
    pipeline: str,
    input: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[str, bool]:
    if pipeline not in PIPELINES:
        raise BadRequest(f"unknown pipeline {pipeline!r}", code=ErrorCode.UNKNOWN_PIPELINE)
    for name in PIPELINES[pipeline]:
        if not isinstance(input.get(name), str):
            raise BadRequest(f"input.{name} is required", code=ErrorCode.VALIDATION)
    run_id = run_id_for(tenant, idempotency_key)
    try:
        handle = await client.start_workflow(
            PIPELINE_WORKFLOW,
            PipelineInput(tenant=tenant, pipeline=pipeline, input=input, run_id=run_id),
            id=run_id,
            task_queue=settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            execution_timeout=timedelta(minutes=10),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TENANT_KEY, tenant),
                    SearchAttributePair(PIPELINE_KEY, pipeline),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        return run_id, False  # closed already; the reuse policy keeps it the one run
    response = getattr(handle, "_start_workflow_response", None)
    return run_id, bool(getattr(response, "started", True))
