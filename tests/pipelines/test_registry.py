"""The pipelines registry on a real Redis: what workers announce, what a
gateway's catalog reads, expiry, refresh and deployments kept apart."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from temporalio.client import Client

from tests.conftest import StackHandle
from tests.support import free_port, wait_for
from tidings.errors import BadRequest, ErrorCode, Unavailable
from tidings.settings import RedisSettings, Settings, TemporalSettings
from workers import announce
from workers.announcer import Announcer
from workers.catalog import PipelineCatalog
from workflows.registry import PipelineRegistry
from workflows.spec import load_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GREET = load_spec(
    {
        "name": "greet",
        "input": {"name": {"type": "string", "max_length": 5}},
        "steps": [{"name": "hello", "activity": "greet.hello"}],
    },
    source="test",
)


@pytest_asyncio.fixture
async def redis(stack: StackHandle) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(stack.settings().redis.url.get_secret_value())
    try:
        yield client
    finally:
        await client.aclose()


def deployment(stack: StackHandle, redis_url: str | None = None) -> Settings:
    base = stack.settings()
    return Settings(
        temporal=TemporalSettings(
            address=base.temporal.address, task_queue=f"reg-{uuid.uuid4().hex[:8]}"
        ),
        redis=RedisSettings(url=redis_url) if redis_url else base.redis,
    )


async def test_announcements_are_read_per_deployment_and_expire(
    stack: StackHandle, redis: aioredis.Redis
) -> None:
    mine, other = deployment(stack), deployment(stack)
    ns = mine.temporal.namespace
    item = announce.Announcement(GREET, f"{mine.temporal.task_queue}.pipeline.greet", "1@h")
    await announce.announce(redis, ns, mine.temporal.task_queue, [item], ttl_seconds=1)
    assert await announce.read(redis, ns, mine.temporal.task_queue) == [item]
    assert await announce.read(redis, ns, other.temporal.task_queue) == []

    async def expired() -> bool:
        return await announce.read(redis, ns, mine.temporal.task_queue) == []

    await wait_for(expired, 5, "the announcement to expire")
    # An unreadable announcement is skipped, not fatal to the gateway.
    key = announce.entry_key(ns, mine.temporal.task_queue, "junk")
    await redis.set(key, "not json", ex=30)
    await redis.sadd(announce.index_key(ns, mine.temporal.task_queue), "junk")  # type: ignore[misc]
    assert await announce.read(redis, ns, mine.temporal.task_queue) == []


async def test_a_worker_refills_a_registry_that_lost_its_data(
    stack: StackHandle, redis: aioredis.Redis
) -> None:
    settings = deployment(stack)
    base, ns = settings.temporal.task_queue, settings.temporal.namespace
    announcer = Announcer(redis, ns, base, PipelineRegistry([GREET]), period=0.2)
    assert await announcer.announce_once()
    task = asyncio.create_task(announcer.run())
    try:
        await redis.delete(announce.entry_key(ns, base, "greet"))

        async def back() -> bool:
            return [a.spec.name for a in await announce.read(redis, ns, base)] == ["greet"]

        await wait_for(back, 5, "the refresh to announce greet again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_catalog_learns_a_new_pipeline_at_once_and_validates_its_input(
    stack: StackHandle, redis: aioredis.Redis
) -> None:
    settings = deployment(stack)
    base, ns = settings.temporal.task_queue, settings.temporal.namespace
    catalog = PipelineCatalog(settings, redis)
    assert not catalog.ready()
    await catalog.start()
    try:
        assert catalog.ready()
        assert [p["name"] for p in catalog.pipelines()] == ["agent", "research"]
        item = announce.Announcement(GREET, f"{base}.pipeline.greet")
        await announce.announce(redis, ns, base, [item], ttl_seconds=30)
        # The next periodic refresh is seconds away: a miss looks again at once.
        with pytest.raises(BadRequest) as refused:
            await catalog.start_run(
                cast(Client, None), settings, "acme", "greet", {"name": "too long"}, None
            )
        assert refused.value.code == ErrorCode.VALIDATION
        listed = {p["name"]: p for p in catalog.pipelines()}
        assert listed["greet"]["task_queue"] == f"{base}.pipeline.greet"
        assert listed["greet"]["announced"] is True
    finally:
        await catalog.stop()


async def test_a_catalog_that_cannot_read_the_registry_is_not_ready(stack: StackHandle) -> None:
    settings = deployment(stack, f"redis://127.0.0.1:{free_port()}/0")
    dead = aioredis.from_url(settings.redis.url.get_secret_value(), socket_connect_timeout=1)
    catalog = PipelineCatalog(settings, dead)
    try:
        await catalog.start()
        assert not catalog.ready()
        with pytest.raises(Unavailable, match="pipelines registry"):
            await catalog.start_run(cast(Client, None), settings, "acme", "greet", {}, None)
        # Built-ins need no registry.
        with pytest.raises(BadRequest, match=r"input\.question is required"):
            await catalog.start_run(cast(Client, None), settings, "acme", "research", {}, None)
    finally:
        await catalog.stop()
        await dead.aclose()
