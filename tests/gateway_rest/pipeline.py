"""A stand-in for the orchestration plane's starter, with a three-pipeline
registry: it validates against those, then starts the run as the real
``start_run`` does (:func:`workflows.start.start_pipeline`: the id from
``run_id_for``, conflict policy USE_EXISTING).

The REST tests exercise the gateway, not the pipelines, so a stub keeps them
fast and independent of the real steps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client

from tidings.errors import BadRequest, ErrorCode
from tidings.runs import PipelineInput, run_id_for
from tidings.settings import Settings
from workflows.start import start_pipeline

# pipeline -> required string fields of its input
PIPELINES: dict[str, list[str]] = {"echo": ["text"], "approval": ["text"], "fail": []}


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
    arg = PipelineInput(
        tenant=tenant, pipeline=pipeline, input=input, run_id=run_id_for(tenant, idempotency_key)
    )
    return await start_pipeline(
        client, arg, settings.temporal.task_queue, execution_timeout=timedelta(minutes=10)
    )
