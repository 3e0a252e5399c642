"""Settings -> clients -> activity objects -> ``Worker``: the worker's assembly,
shared by ``tidings worker`` and the tests so both run the same thing."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import redis.asyncio as aioredis
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import Runtime
from temporalio.worker import Interceptor, Worker

from activities.coalesce import CoalescePolicy
from activities.defn import activity_name
from activities.delivery import EmitBackoff
from activities.emitter import Emitter
from activities.metrics import WorkerMetrics
from activities.models import build_provider
from activities.quota import TenantQuota
from activities.research import ResearchSteps
from activities.run_events import RunActivities
from activities.search_index import SearchIndex
from activities.steps import activities_of
from tidings import redis_connect, temporal_connect
from tidings.errors import ConfigError
from tidings.lag import LagReader
from tidings.settings import Settings
from workers.finished_steps import FinishedSteps
from workflows.pipeline import PipelineWorkflow
from workflows.registry import PipelineRegistry

if TYPE_CHECKING:
    from workflows.agent import DurableAgent

# A factory a user names with `tidings worker --activities module:factory`.
ActivityFactory = Callable[["Clients", Settings], object]


@dataclass
class Clients:
    """The long-lived clients activities receive in their constructors."""

    temporal: Client
    emitter: Emitter
    http: httpx.AsyncClient
    # Read-only here: the emitter learns each tenant's lag from it (tidings.lag).
    redis: aioredis.Redis | None = None


# Redis only tells the emitter about lag: a slow Redis must never stall emits
# (the lag reader reads in the background and keeps the last value).
REDIS_TIMEOUT_SECONDS = 2.0


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    # The tracing interceptor continues the caller's trace (from the workflow
    # start's headers) in the workflow and its activities.
    return await temporal_connect.connect_temporal(
        settings.temporal, interceptors=[TracingInterceptor()], runtime=runtime
    )


def build_emitter(
    settings: Settings, redis: aioredis.Redis, metrics: WorkerMetrics | None = None
) -> Emitter:
    """The emitter with the tenants' quota, lag-driven coalescing and metrics."""
    return Emitter(
        settings.kafka,
        metrics=metrics,
        quota=TenantQuota(settings.tenants.max_events_per_second),
        lag=LagReader(redis, settings.kafka.topic_prefix),
        coalesce=CoalescePolicy(
            lag_threshold=settings.tenants.coalesce_lag,
            max_ms=settings.worker.coalesce_max_ms,
            max_bytes=settings.worker.coalesce_max_bytes,
        ),
        backoff=EmitBackoff(
            initial=settings.worker.emit_backoff_initial_ms / 1000,
            maximum=max(
                settings.worker.emit_backoff_max_ms, settings.worker.emit_backoff_initial_ms
            )
            / 1000,
        ),
    )


@asynccontextmanager
async def open_clients(
    settings: Settings,
    temporal: Client | None = None,
    *,
    metrics: WorkerMetrics | None = None,
) -> AsyncIterator[Clients]:
    redis = redis_connect.connect_redis(settings.redis, timeout=REDIS_TIMEOUT_SECONDS)
    emitter = build_emitter(settings, redis, metrics)
    try:
        await emitter.start()
        try:
            async with httpx.AsyncClient() as http:
                yield Clients(temporal or await connect_temporal(settings), emitter, http, redis)
        finally:
            await emitter.stop()
    finally:
        await redis.aclose()


def default_activities(clients: Clients, settings: Settings) -> list[object]:
    provider = build_provider(settings.model, clients.http)
    index = SearchIndex.bundled()
    try:
        # Imported here: the built-in `agent` pipeline is the only user of the extra.
        from activities.agent.model import build_agent_model
        from activities.agent.steps import AgentSteps, agent_tools
        from workflows.agent import build_agent
    except ImportError as exc:
        raise ConfigError(
            f"the built-in agent pipeline needs the agents extra "
            f"(pip install 'tidings[agents]'): {exc}"
        ) from None
    agent = build_agent(
        build_agent_model(settings.model),
        agent_tools(index),
        clients.emitter,
        provider=settings.model.provider,
    )
    return [
        RunActivities(clients.emitter),
        ResearchSteps(clients.emitter, provider, index),
        # The agent steps of runs started before the agent workflow.
        AgentSteps(clients.emitter, settings.model, index),
        # Run by the agent workflow: the `agent` steps of runs since.
        agent,
    ]


def load_factory(path: str) -> ActivityFactory:
    """``module:factory``, importable from the current directory as ``python -m``
    would (a console script's ``sys.path`` starts at its own folder instead)."""
    module_name, _, attr = path.partition(":")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        factory = getattr(importlib.import_module(module_name), attr or "activities")
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--activities {path}: {exc}") from None
    if not callable(factory):
        raise ConfigError(f"--activities {path}: not callable")
    return factory  # type: ignore[no-any-return]


def activity_names(objects: list[object]) -> set[str]:
    names = set()
    for fn in activities_of(*objects):
        name = activity_name(fn)
        if name:
            names.add(name)
    return names


def build_worker(
    clients: Clients,
    settings: Settings,
    objects: list[object],
    registry: PipelineRegistry,
    *,
    task_queue: str | None = None,
) -> Worker:
    """The worker of the deployment's queue (the built-in pipelines); refuses a
    spec naming a missing activity."""
    registry.check_activities(activity_names(objects))
    return _worker(clients, settings, objects, task_queue or settings.temporal.task_queue)


def build_workers(
    clients: Clients,
    settings: Settings,
    objects: list[object],
    registry: PipelineRegistry,
    *,
    task_queue: str | None = None,
) -> list[Worker]:
    """One worker per task queue of ``registry``: the deployment's, then one per
    pipeline of its own (workflows.registry.dedicated_queue), each with every
    activity, so a pipeline's tasks only reach workers that registered its steps."""
    base = task_queue or settings.temporal.task_queue
    registry.check_activities(activity_names(objects))
    return [_worker(clients, settings, objects, queue) for queue in registry.task_queues(base)]


def _worker(clients: Clients, settings: Settings, objects: list[object], queue: str) -> Worker:
    client = clients.temporal
    workflows: list[type[Any]] = [PipelineWorkflow]
    extra: list[Callable[..., Any]] = []
    agents = _durable_agents(objects)
    if agents:
        # Pydantic's converter writes and reads the pipeline's payloads as the
        # default one does (JSON), and Pydantic AI's messages besides.
        from pydantic_ai.durable_exec.temporal import PydanticAIPayloadConverter
        from temporalio.converter import DataConverter

        from workflows.agent import agent_workflow

        max_chars = settings.model.tool_result_max_chars
        workflows.append(agent_workflow(agents, max_result_chars=max_chars))
        extra = [fn for agent in agents for fn in agent.activities]

        config = client.config()
        config["data_converter"] = DataConverter(payload_converter_class=PydanticAIPayloadConverter)
        client = Client(**config)
    # A client connected without tracing (tests, embedders) still gets traced
    # workers; one that has it must not get a second interceptor.
    traced = any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])
    interceptors: list[Interceptor] = [] if traced else [TracingInterceptor()]
    ttl = settings.worker.step_result_ttl_seconds
    if clients.redis is not None and ttl > 0:
        converter = client.data_converter.payload_converter
        interceptors.append(FinishedSteps(clients.redis, converter, ttl))
    return Worker(
        client,
        interceptors=interceptors,
        task_queue=queue,
        workflows=workflows,
        activities=[*activities_of(*objects), *extra],
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker.max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker.shutdown_grace_seconds),
    )


def _durable_agents(objects: list[object]) -> list[DurableAgent]:
    """The agents among ``objects`` (workflows.agent.build_agent), if the extra is installed."""
    try:
        from workflows.agent import DurableAgent
    except ImportError:
        return []
    return [o for o in objects if isinstance(o, DurableAgent)]
