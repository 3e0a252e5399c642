"""``GET /v1/pipelines`` and the seam to the orchestration plane's pipeline catalog.

The catalog (``workers.catalog``) knows the pipelines the workers announced
in Redis, picks a run's task queue and validates its input. The process's
entry point passes its opener in (``create_app(pipelines=...)``), as it does
the run starter (``gateway.rest.starter``), so this package never imports
workflow code; a gateway given none lists nothing and answers 503 to run
starts.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis.asyncio as aioredis
from fastapi import APIRouter
from pydantic import BaseModel, Field
from temporalio.client import Client

from gateway.rest.auth import Tenant
from gateway.rest.deps import ServicesDep
from gateway.rest.errors import error_responses
from tidings.settings import Settings


class PipelineCatalog(Protocol):
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def pipelines(self) -> list[dict[str, Any]]: ...

    async def start_run(
        self,
        client: Client,
        settings: Settings,
        tenant: str,
        pipeline: str,
        input: dict[str, Any],
        idempotency_key: str | None,
    ) -> tuple[str, bool]: ...


class CatalogOpener(Protocol):
    def __call__(self, settings: Settings, redis: aioredis.Redis) -> PipelineCatalog:
        """The catalog over ``redis``; raises :class:`tidings.errors.ConfigError`
        for a bad pipelines folder, naming the variable, file and field: the
        gateway must not start then."""
        ...


class PipelineStep(BaseModel):
    name: str
    kind: str = Field(description="activity, approval or external")
    activity: str | None = None
    parallel_group: str | None = None
    for_each: str | None = None


class Pipeline(BaseModel):
    name: str
    description: str = ""
    version: str = Field(description="A digest of the spec: it changes when the spec does.")
    task_queue: str = Field(description="The Temporal task queue its runs go to.")
    announced: bool = Field(description="Announced by a running worker (else built in or local).")
    input: dict[str, dict[str, Any]] = Field(description="Input fields and their constraints.")
    steps: list[PipelineStep]
    stages: list[list[str]] = Field(description="Step names grouped as they run.")


class PipelineList(BaseModel):
    pipelines: list[Pipeline]


router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"], responses=error_responses(401, 503))


@router.get("", response_model=PipelineList, summary="List the pipelines this deployment offers")
async def list_pipelines(tenant: Tenant, services: ServicesDep) -> PipelineList:
    catalog = services.pipelines
    found = [] if catalog is None else catalog.pipelines()
    return PipelineList(pipelines=[Pipeline.model_validate(item) for item in found])
