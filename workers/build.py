"""Settings -> clients -> activity objects -> ``Worker``: the worker's assembly,
shared by ``tidings worker`` and the tests so both run the same thing."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.emitter import Emitter
from activities.models import build_provider
from activities.research import ResearchSteps
from activities.run_events import RunActivities
from activities.search_index import SearchIndex
from activities.steps import activities_of
from tidings.errors import ConfigError
from tidings.settings import Settings
from workflows.pipeline import PipelineWorkflow
from workflows.registry import PipelineRegistry

# A factory a user names with `tidings worker --activities module:factory`.
ActivityFactory = Callable[["Clients", Settings], object]


@dataclass
class Clients:
    """The long-lived clients activities receive in their constructors."""

    temporal: Client
    emitter: Emitter
    http: httpx.AsyncClient


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(settings.temporal.address, namespace=settings.temporal.namespace)


@asynccontextmanager
async def open_clients(
    settings: Settings, temporal: Client | None = None
) -> AsyncIterator[Clients]:
    emitter = Emitter(settings.kafka)
    await emitter.start()
    try:
        async with httpx.AsyncClient() as http:
            yield Clients(temporal or await connect_temporal(settings), emitter, http)
    finally:
        await emitter.stop()


def default_activities(clients: Clients, settings: Settings) -> list[object]:
    provider = build_provider(settings.model, clients.http)
    return [
        RunActivities(clients.emitter),
        ResearchSteps(clients.emitter, provider, SearchIndex.bundled()),
    ]


def load_factory(path: str) -> ActivityFactory:
    module_name, _, attr = path.partition(":")
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
        definition = activity._Definition.from_callable(fn)
        if definition is not None and definition.name:
            names.add(definition.name)
    return names


def build_worker(
    clients: Clients,
    settings: Settings,
    objects: list[object],
    registry: PipelineRegistry,
    *,
    task_queue: str | None = None,
) -> Worker:
    """A worker for every pipeline in ``registry``; refuses a spec naming a missing activity."""
    registry.check_activities(activity_names(objects))
    return Worker(
        clients.temporal,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=[PipelineWorkflow],
        activities=activities_of(*objects),
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker.max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker.shutdown_grace_seconds),
    )
