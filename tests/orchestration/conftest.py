"""Fixtures: one Temporal client per session, a fresh task queue and worker per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.orchestration.harness import Harness, running_worker, settings_for
from tidings.settings import Settings


@pytest_asyncio.fixture(scope="session")
async def temporal_client(stack) -> Client:  # type: ignore[no-untyped-def]
    return await Client.connect(stack.endpoints.temporal_address)


@pytest.fixture
def orch_settings(stack) -> Settings:  # type: ignore[no-untyped-def]
    return settings_for(stack.settings(), f"orch-{uuid.uuid4().hex[:12]}")


@pytest_asyncio.fixture
async def harness(orch_settings: Settings, temporal_client: Client) -> AsyncIterator[Harness]:
    async with running_worker(orch_settings, temporal_client) as running:
        yield running
