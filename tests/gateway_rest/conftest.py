"""Fixtures for the REST tests: one real gateway (uvicorn on a free port)
against the real stack, a stub pipeline worker on a private task queue, a
private Kafka topic prefix, and per-test cleanup of every run a test starts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from temporalio.client import Client
from temporalio.worker import Worker

from gateway.app import create_app
from tests.gateway_rest.helpers import (
    ACME_KEY,
    API_KEYS,
    DEMO_KEY,
    EVENT_PARTITIONS,
    MAX_BODY,
    Runs,
    serve,
)
from tests.gateway_rest.pipeline import start_run
from tests.gateway_rest.stub_workflow import StubPipeline
from tests.support import free_port
from tidings.settings import (
    GatewaySettings,
    KafkaSettings,
    Settings,
    TemporalSettings,
    TenantSettings,
)
from tidings.topics import events_topic
from workers.catalog import open_catalog

if TYPE_CHECKING:  # the root conftest is pytest's to import, not ours
    from tests.conftest import StackHandle


@pytest.fixture(scope="session")
def rest_settings(stack: StackHandle) -> Settings:
    base = stack.settings()
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        temporal=TemporalSettings(
            address=stack.endpoints.temporal_address, task_queue=f"gw-rest-{suffix}"
        ),
        # A private prefix: these tests' topics never meet anyone else's.
        kafka=KafkaSettings(
            bootstrap_servers=stack.endpoints.kafka_bootstrap, topic_prefix=f"gwrest{suffix}"
        ),
        redis=base.redis,
        tenants=TenantSettings(api_keys=API_KEYS),
        gateway=GatewaySettings(max_body_bytes=MAX_BODY),
    )


@pytest.fixture(scope="session")
async def temporal(rest_settings: Settings) -> Client:
    return await Client.connect(rest_settings.temporal.address)


@pytest.fixture(scope="session")
async def stub_worker(temporal: Client, rest_settings: Settings) -> AsyncIterator[None]:
    worker = Worker(
        temporal, task_queue=rest_settings.temporal.task_queue, workflows=[StubPipeline]
    )
    async with worker:
        yield


@pytest.fixture(scope="session")
async def events_topic_name(rest_settings: Settings) -> AsyncIterator[str]:
    topic = events_topic(rest_settings.kafka.topic_prefix, "demo")
    admin = AIOKafkaAdminClient(bootstrap_servers=rest_settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=EVENT_PARTITIONS, replication_factor=1)]
        )
        yield topic
        await admin.delete_topics([topic])
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def gateway_url(rest_settings: Settings, stub_worker: None) -> Iterator[str]:
    with serve(
        lambda: create_app(rest_settings, pipelines=open_catalog, starter=start_run), free_port()
    ) as url:
        yield url


@pytest.fixture
async def demo(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {DEMO_KEY}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def acme(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ACME_KEY}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def anonymous(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        yield client


@pytest.fixture
async def runs(temporal: Client) -> AsyncIterator[Runs]:
    tracked = Runs(temporal)
    yield tracked
    await tracked.close_all()
