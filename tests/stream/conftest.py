"""Session fixtures of the stream tests: two fresh tenants with their topics,
API keys and a Temporal client, on the shared dev stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from tests.tenants import Tenants, fresh_tenants

SECRET = "stream-test-secret-0123456789abcdef"


class StreamEnv(Tenants):
    @property
    def tenant(self) -> str:
        return self.names[0]

    @property
    def other(self) -> str:
        return self.names[1]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stream_env(stack: Any) -> AsyncIterator[StreamEnv]:
    tag = uuid.uuid4().hex[:8]
    names = [f"st{tag}", f"su{tag}"]
    async with fresh_tenants(
        StreamEnv, stack.settings(), names, secret=SECRET, partitions=3
    ) as env:
        yield env
