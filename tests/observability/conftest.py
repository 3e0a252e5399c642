"""Fixtures: one in-process worker (with its /metrics) and one gateway app
(uvicorn on a thread) against the session stack, on a private task queue and
topic prefix, with tight lag thresholds, and every span of the process kept
in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from activities.metrics import WorkerMetrics
from gateway.app import create_app
from tests.gateway_rest.helpers import serve
from tests.observability.steps import FAILS, SPEAK, ObsSteps
from tests.services import private_settings
from tests.support import free_port
from tidings.settings import (
    Settings,
    TenantSettings,
    WorkerSettings,
)
from tidings.topics import events_topic
from workers.build import Clients, build_worker, connect_temporal, default_activities, open_clients
from workers.catalog import open_catalog
from workers.metrics_server import MetricsServer, serve_metrics
from workflows.registry import PipelineRegistry
from workflows.start import start_run

if TYPE_CHECKING:
    from tests.conftest import StackHandle

TENANT = "obs"
OTHER = "obs-other"
KEY = "test-key-obs-0001"
OTHER_KEY = "test-key-obs-0002"
# Tight thresholds so a test can cross them with a few hundred records.
MAX_EVENTS_LAG = 300
COALESCE_LAG = 100
COALESCE_MAX_MS = 150

_EXPORTER = InMemorySpanExporter()


def _install_exporter() -> None:
    # One global provider per process: use the one a previous test installed,
    # or install ours. The TracingInterceptor's default tracer follows it.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))


_install_exporter()


@dataclass
class Obs:
    settings: Settings
    clients: Clients
    metrics: WorkerMetrics
    worker_metrics_url: str
    gateway_url: str
    spans: InMemorySpanExporter

    @property
    def topic(self) -> str:
        return events_topic(self.settings.kafka.topic_prefix, TENANT)

    def http(self, key: str = KEY) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


@pytest.fixture(scope="session")
def obs_settings(stack: StackHandle) -> Settings:
    return private_settings(stack, "obs", partitions=2).replace(
        tenants=TenantSettings(
            api_keys={KEY: TENANT, OTHER_KEY: OTHER},
            max_events_lag=MAX_EVENTS_LAG,
            coalesce_lag=COALESCE_LAG,
        ),
        worker=WorkerSettings(coalesce_max_ms=COALESCE_MAX_MS, coalesce_max_bytes=512),
    )


def obs_registry() -> PipelineRegistry:
    registry = PipelineRegistry.with_builtins()
    registry.register(SPEAK)
    registry.register(FAILS)
    return registry


@pytest.fixture(scope="session")
def metrics_server() -> Iterator[tuple[WorkerMetrics, MetricsServer]]:
    metrics = WorkerMetrics()
    server = serve_metrics("127.0.0.1", free_port(), metrics.registry)
    try:
        yield metrics, server
    finally:
        server.close()


@pytest.fixture(scope="session")
async def obs(
    obs_settings: Settings, metrics_server: tuple[WorkerMetrics, MetricsServer]
) -> AsyncIterator[Obs]:
    metrics, server = metrics_server
    registry = obs_registry()
    # As `tidings worker` does: the client runs on the runtime that serves
    # the SDK's metrics, and carries the tracing interceptor.
    temporal: Client = await connect_temporal(obs_settings, server.runtime)

    async def starter(
        client: Client,
        settings: Settings,
        tenant: str,
        pipeline: str,
        input: dict[str, Any],
        key: str | None,
    ) -> tuple[str, bool]:
        return await start_run(client, settings, tenant, pipeline, input, key, registry=registry)

    async with open_clients(obs_settings, temporal, metrics=metrics) as clients:
        await clients.emitter.ensure_topics(
            [events_topic(obs_settings.kafka.topic_prefix, t) for t in (TENANT, OTHER)]
        )
        objects = [*default_activities(clients, obs_settings), ObsSteps(clients.emitter)]
        worker = build_worker(clients, obs_settings, objects, registry)
        async with worker:
            app = partial(
                create_app, obs_settings, pipelines=open_catalog, starter=starter, stream=False
            )
            with serve(app, free_port()) as url:
                yield Obs(obs_settings, clients, metrics, server.url, url, _EXPORTER)
