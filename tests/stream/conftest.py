"""Session fixtures of the stream tests: two fresh tenants with their topics,
API keys and a Temporal client, on the shared dev stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client

from tests.stream.harness import create_topic, delete_topic
from tidings.settings import GatewaySettings, Settings, TenantSettings
from tidings.topics import events_topic

SECRET = "stream-test-secret-0123456789abcdef"


@dataclass
class StreamEnv:
    base: Settings
    tenant: str
    other: str
    keys: dict[str, str]  # api key -> tenant
    temporal: Client

    def key(self, tenant: str) -> str:
        return next(k for k, t in self.keys.items() if t == tenant)

    def settings(self, **gateway: Any) -> Settings:
        return Settings(
            temporal=self.base.temporal,
            kafka=self.base.kafka,
            redis=self.base.redis,
            tenants=TenantSettings(api_keys=self.keys),
            gateway=GatewaySettings(token_secret=SecretStr(SECRET), **gateway),
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stream_env(stack: Any) -> AsyncIterator[StreamEnv]:
    tag = uuid.uuid4().hex[:8]
    tenant, other = f"st{tag}", f"su{tag}"
    base: Settings = stack.settings()
    topics = [events_topic(base.kafka.topic_prefix, t) for t in (tenant, other)]
    for topic in topics:
        await create_topic(base.kafka.bootstrap_servers, topic, partitions=3)
    temporal = await Client.connect(base.temporal.address, namespace=base.temporal.namespace)
    keys = {f"key-{tenant}": tenant, f"key-{other}": other}
    try:
        yield StreamEnv(base, tenant, other, keys, temporal)
    finally:
        for topic in topics:
            await delete_topic(base.kafka.bootstrap_servers, topic)
