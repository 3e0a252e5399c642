"""Redis keeps its data across a restart (AOF), as the resume-token store needs."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from tests.conftest import StackHandle

pytestmark = pytest.mark.integration


async def test_data_survives_restart_with_aof(stack: StackHandle) -> None:
    key = f"tidings:test:{uuid.uuid4().hex}"
    client = aioredis.from_url(stack.endpoints.redis_url)
    try:
        await client.hset(key, mapping={"cursor": "7-42", "tenant": "demo"})
        await client.expire(key, 3600)
    finally:
        await client.aclose()

    stack.restart("redis")

    client = aioredis.from_url(stack.endpoints.redis_url)
    try:
        assert await client.hgetall(key) == {b"cursor": b"7-42", b"tenant": b"demo"}
        assert 0 < await client.ttl(key) <= 3600
    finally:
        await client.aclose()
