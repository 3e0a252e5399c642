"""Running a real worker and reading a run's events back from Kafka, for tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client

from activities.emitter import Emitter
from tests.orchestration.steps import TEST_PIPELINES, FixtureSteps
from tests.topics import events_of, run_records
from tidings.events import Event
from tidings.runs import PipelineResult
from tidings.settings import KafkaSettings, Settings, TemporalSettings
from tidings.topics import events_topic
from workers.build import Clients, build_worker, default_activities, open_clients
from workers.completions import CompletionConsumer
from workflows.registry import PipelineRegistry
from workflows.start import start_run

# One tenant per test session: its topic is created once, and runs of earlier
# sessions never mix into what a test reads.
TENANT = f"orch-{uuid.uuid4().hex[:8]}"


def fixture_registry() -> PipelineRegistry:
    registry = PipelineRegistry.with_builtins()
    for spec in TEST_PIPELINES:
        registry.register(spec)
    return registry


def settings_for(base: Settings, task_queue: str) -> Settings:
    return Settings(
        temporal=TemporalSettings(address=base.temporal.address, task_queue=task_queue),
        kafka=KafkaSettings(bootstrap_servers=base.kafka.bootstrap_servers, partitions=2),
        redis=base.redis,
    )


@dataclass
class Harness:
    settings: Settings
    clients: Clients
    registry: PipelineRegistry
    consumer: CompletionConsumer

    @property
    def client(self) -> Client:
        return self.clients.temporal

    async def start(
        self, pipeline: str, input: dict[str, Any], key: str | None = None
    ) -> tuple[str, bool]:
        return await start_run(
            self.client, self.settings, TENANT, pipeline, input, key, registry=self.registry
        )

    async def result(self, run_id: str) -> PipelineResult:
        handle = self.client.get_workflow_handle(run_id, result_type=PipelineResult)
        result: PipelineResult = await handle.result()
        return result


@asynccontextmanager
async def running_worker(
    settings: Settings,
    client: Client,
    registry: PipelineRegistry | None = None,
    *,
    extra: Callable[[Emitter], list[object]] | None = None,
) -> AsyncIterator[Harness]:
    """A worker running the fixture pipelines, and ``extra``'s objects (built
    on its emitter: an agent of a test's own, say)."""
    registry = registry or fixture_registry()
    async with open_clients(settings, client) as clients:
        objects = [*default_activities(clients, settings), FixtureSteps(clients.emitter)]
        objects += extra(clients.emitter) if extra else []
        worker = build_worker(clients, settings, objects, registry)
        consumer = CompletionConsumer(
            client,
            settings.kafka,
            clients.emitter,
            group_id=f"test-{settings.temporal.task_queue}",
        )
        consumer_task = asyncio.create_task(consumer.run())
        try:
            async with worker:
                yield Harness(settings, clients, registry, consumer)
        finally:
            consumer_task.cancel()
            await asyncio.gather(consumer_task, return_exceptions=True)


async def run_events(
    settings: Settings,
    run_id: str,
    *,
    until: Callable[[list[Event]], bool] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109
    tenant: str = TENANT,
) -> list[Event]:
    """The run's events in partition order, until a terminal run event (or ``until``)."""
    topic = events_topic(settings.kafka.topic_prefix, tenant)
    records = await run_records(
        settings.kafka.bootstrap_servers, topic, run_id, until=until, timeout=timeout
    )
    return events_of(records)


def logical(events: list[Event]) -> list[Event]:
    """Dedup by id, keeping the first copy, as the client library does."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            out.append(event)
    return out


def content(event: Event) -> str:
    """What must be equal for two copies of one id: everything but the emit time."""
    raw = event.to_dict()
    raw.pop("ts")
    return json.dumps(raw, sort_keys=True)


def assert_well_formed(events: list[Event]) -> None:
    """Same id never means different content; seq strictly grows per (step, attempt)."""
    by_id: dict[str, str] = {}
    for event in events:
        assert by_id.setdefault(event.id, content(event)) == content(event), event
    last: dict[tuple[str | None, int], int] = {}
    for event in logical(events):
        key = (event.step, event.attempt)
        assert event.seq > last.get(key, -1), f"seq not monotonic for {key}: {event}"
        last[key] = event.seq


def types_of(events: list[Event], step: str | None = None) -> list[str]:
    return [e.type for e in events if step is None or e.step == step]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
