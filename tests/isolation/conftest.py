"""Session fixtures of the isolation tests: two fresh tenants (a noisy one and
a quiet one) with their topics and API keys, and a Temporal client for runs,
on the session stack."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from tests.tenants import Tenants, fresh_tenants

SECRET = "isolation-test-secret-0123456789abcdef"
PARTITIONS = 3


class IsoEnv(Tenants):
    @property
    def noisy(self) -> str:  # tenant A
        return self.names[0]

    @property
    def quiet(self) -> str:  # tenant B
        return self.names[1]

    def environ(self, **extra: str) -> dict[str, str]:
        """For a gateway process: TIDINGS_* variables (``extra`` adds or overrides)."""
        return {
            "TIDINGS_TEMPORAL_ADDRESS": self.base.temporal.address,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": self.base.kafka.bootstrap_servers,
            "TIDINGS_REDIS_URL": self.base.redis.url.get_secret_value(),
            "TIDINGS_TENANTS_API_KEYS": json.dumps(self.keys),
            "TIDINGS_GATEWAY_TOKEN_SECRET": self.secret,
            "TIDINGS_LOG_LEVEL": "WARNING",
            **extra,
        }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def iso_env(stack: Any) -> AsyncIterator[IsoEnv]:
    tag = uuid.uuid4().hex[:8]
    names = [f"ia{tag}", f"ib{tag}"]
    async with fresh_tenants(
        IsoEnv, stack.settings(), names, secret=SECRET, partitions=PARTITIONS
    ) as env:
        yield env
