"""One real worker and one real gateway (child processes) for the CLI tests,
on a private tenant, key, topic prefix and task queue of the session stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.cli.harness import PARTITIONS, CliWorld, cli_world
from tests.conftest import StackHandle
from tidings.settings import KafkaSettings, Settings, TemporalSettings


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def world(
    stack: StackHandle, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CliWorld]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        temporal=TemporalSettings(
            address=stack.endpoints.temporal_address, task_queue=f"cli-{suffix}"
        ),
        kafka=KafkaSettings(
            bootstrap_servers=stack.endpoints.kafka_bootstrap,
            topic_prefix=f"cli{suffix}",
            partitions=PARTITIONS,
        ),
        redis=stack.settings().redis,
    )
    async with cli_world(settings, tmp_path_factory.mktemp("cli")) as running:
        yield running
