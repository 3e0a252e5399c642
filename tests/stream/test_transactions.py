"""Events a transactional producer aborted are never delivered, live or on
replay, and the committed ones around them arrive in order, once.

No Tidings emitter writes in transactions, but a tenant topic is a Kafka
topic: another producer may. The REST event log always read committed
records only; this holds the stream (live tail, catch-up reader and the end
offsets the hand-over between them samples) to the same view.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from tests.stream.conftest import StreamEnv
from tests.stream.harness import script, served, temporal_run, wait_for
from tidings.client import subscribe
from tidings.events import Event
from tidings.topics import events_topic

pytestmark = [pytest.mark.integration]


async def test_aborted_events_are_never_delivered(stream_env: StreamEnv) -> None:
    env = stream_env
    settings = env.settings()
    key = env.key(env.tenant)
    async with served(settings) as (gw, em), temporal_run(env.temporal, env.tenant) as run_id:
        events = script(env.tenant, run_id, tokens=4)
        committed = Event("step.token", env.tenant, run_id, "draft", 1, 98, {"text": "in a tx"})
        aborted = Event("step.token", env.tenant, run_id, "draft", 1, 99, {"text": "ABORTED"})
        topic = events_topic(settings.kafka.topic_prefix, env.tenant)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            transactional_id=f"tx-test-{uuid.uuid4().hex}",
        )

        async def in_transaction(event: Event) -> None:
            await producer.send_and_wait(
                topic, event.to_bytes(), key=run_id.encode(), headers=event.headers()
            )

        live: list[Event] = []

        async def follow() -> None:
            async with subscribe(gw.url, run_id, key) as sub:
                async for event in sub:
                    live.append(event)

        await producer.start()
        try:
            await em.emit_many(events[:3])
            follower = asyncio.create_task(follow())
            # Past its replay: what follows reaches it through the live tail.
            await wait_for(lambda: len(live) == 3, 20, "the subscriber to catch up")
            async with producer.transaction():
                await in_transaction(committed)
            await producer.begin_transaction()
            await in_transaction(aborted)
            await producer.abort_transaction()
            await em.emit_many(events[3:])
            async with asyncio.timeout(30):
                await follower
        finally:
            await producer.stop()

        replayed: list[Event] = []
        async with asyncio.timeout(30), subscribe(gw.url, run_id, key) as sub:
            async for event in sub:
                replayed.append(event)

    expected = [e.id for e in events[:3]] + [committed.id] + [e.id for e in events[3:]]
    assert [e.id for e in live] == expected
    assert [e.id for e in replayed] == expected
