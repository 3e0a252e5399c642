"""Session fixtures of the isolation tests: two fresh tenants (a noisy one and
a quiet one) with their topics and API keys, and a Temporal client for runs,
on the session stack."""

from __future__ import annotations

import json
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

SECRET = "isolation-test-secret-0123456789abcdef"
PARTITIONS = 3


@dataclass
class IsoEnv:
    base: Settings
    noisy: str  # tenant A
    quiet: str  # tenant B
    keys: dict[str, str]  # api key -> tenant
    temporal: Client

    def key(self, tenant: str) -> str:
        return next(k for k, t in self.keys.items() if t == tenant)

    def topic(self, tenant: str) -> str:
        return events_topic(self.base.kafka.topic_prefix, tenant)

    def settings(self, tenants: dict[str, Any] | None = None, **gateway: Any) -> Settings:
        """For a gateway in this process."""
        return Settings(
            temporal=self.base.temporal,
            kafka=self.base.kafka,
            redis=self.base.redis,
            tenants=TenantSettings(api_keys=self.keys, **(tenants or {})),
            gateway=GatewaySettings(token_secret=SecretStr(SECRET), **gateway),
        )

    def environ(self, **extra: str) -> dict[str, str]:
        """For a gateway process: TIDINGS_* variables (``extra`` adds or overrides)."""
        return {
            "TIDINGS_TEMPORAL_ADDRESS": self.base.temporal.address,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": self.base.kafka.bootstrap_servers,
            "TIDINGS_REDIS_URL": self.base.redis.url.get_secret_value(),
            "TIDINGS_TENANTS_API_KEYS": json.dumps(self.keys),
            "TIDINGS_GATEWAY_TOKEN_SECRET": SECRET,
            "TIDINGS_LOG_LEVEL": "WARNING",
            **extra,
        }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def iso_env(stack: Any) -> AsyncIterator[IsoEnv]:
    tag = uuid.uuid4().hex[:8]
    noisy, quiet = f"ia{tag}", f"ib{tag}"
    base: Settings = stack.settings()
    topics = [events_topic(base.kafka.topic_prefix, t) for t in (noisy, quiet)]
    for topic in topics:
        await create_topic(base.kafka.bootstrap_servers, topic, partitions=PARTITIONS)
    temporal = await Client.connect(base.temporal.address, namespace=base.temporal.namespace)
    keys = {f"key-{noisy}": noisy, f"key-{quiet}": quiet}
    try:
        yield IsoEnv(base, noisy, quiet, keys, temporal)
    finally:
        for topic in topics:
            await delete_topic(base.kafka.bootstrap_servers, topic)
