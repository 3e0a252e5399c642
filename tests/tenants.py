"""Fresh tenants on the session stack for tests that run a gateway themselves:
their events topics, API keys, a Temporal client for their runs, and the
settings of a gateway that serves them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import SecretStr
from temporalio.client import Client

from tests.topics import create_topics, delete_topics
from tidings.settings import GatewaySettings, Settings, TenantSettings
from tidings.topics import events_topic


@dataclass
class Tenants:
    base: Settings
    names: tuple[str, ...]
    keys: dict[str, str]  # api key -> tenant
    temporal: Client
    secret: str  # the gateway's token secret

    def key(self, tenant: str) -> str:
        return next(k for k, t in self.keys.items() if t == tenant)

    def topic(self, tenant: str) -> str:
        return events_topic(self.base.kafka.topic_prefix, tenant)

    def settings(self, tenants: dict[str, Any] | None = None, **gateway: Any) -> Settings:
        """For a gateway in this process that knows every key."""
        return Settings(
            temporal=self.base.temporal,
            kafka=self.base.kafka,
            redis=self.base.redis,
            tenants=TenantSettings(api_keys=self.keys, **(tenants or {})),
            gateway=GatewaySettings(token_secret=SecretStr(self.secret), **gateway),
        )


T = TypeVar("T", bound=Tenants)


@asynccontextmanager
async def fresh_tenants(
    kind: type[T], base: Settings, names: Sequence[str], *, secret: str, partitions: int
) -> AsyncIterator[T]:
    """``names`` as tenants (key ``key-<name>``), their topics there for the block."""
    bootstrap = base.kafka.bootstrap_servers
    topics = [events_topic(base.kafka.topic_prefix, name) for name in names]
    await create_topics(bootstrap, topics, partitions)
    try:
        temporal = await Client.connect(base.temporal.address, namespace=base.temporal.namespace)
        keys = {f"key-{name}": name for name in names}
        yield kind(base, tuple(names), keys, temporal, secret)
    finally:
        await delete_topics(bootstrap, topics)
