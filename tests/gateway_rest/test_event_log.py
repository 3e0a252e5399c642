"""The bounds of one event page: records scanned and time, with exact resumption."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway.cursor import Cursor
from gateway.kafka import KafkaFactory
from gateway.rest.event_log import MAX_SCAN, READ_BUDGET, read_page
from tidings.events import Event, EventType
from tidings.settings import Settings
from tidings.topics import events_topic

pytestmark = pytest.mark.integration

TENANT = "bounded"


@pytest.fixture
async def kafka(rest_settings: Settings) -> AsyncIterator[KafkaFactory]:
    """One partition, so two runs' records interleave in it."""
    topic = events_topic(rest_settings.kafka.topic_prefix, TENANT)
    admin = AIOKafkaAdminClient(bootstrap_servers=rest_settings.kafka.bootstrap_servers)
    await admin.start()
    factory = KafkaFactory(rest_settings.kafka)
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        yield factory
        await admin.delete_topics([topic])
    finally:
        await factory.close()
        await admin.close()


async def test_bounded_pages_resume_without_loss(
    kafka: KafkaFactory, rest_settings: Settings
) -> None:
    mine, other = f"{TENANT}-{uuid.uuid4().hex}", f"{TENANT}-{uuid.uuid4().hex}"
    order = [mine, other, other, other, mine, other, mine]
    producer = AIOKafkaProducer(bootstrap_servers=rest_settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        topic = events_topic(rest_settings.kafka.topic_prefix, TENANT)
        for seq, run_id in enumerate(order):
            event = Event(EventType.STEP_PROGRESS, TENANT, run_id, "s", 1, seq)
            await producer.send_and_wait(topic, event.to_bytes(), key=run_id.encode())
    finally:
        await producer.stop()

    async def page(
        after: Cursor | None, *, max_scan: int = MAX_SCAN, budget: float = READ_BUDGET
    ) -> tuple[list[int], Cursor | None, bool]:
        got = await read_page(
            kafka,
            topic_prefix=rest_settings.kafka.topic_prefix,
            tenant=TENANT,
            run_id=mine,
            after=after,
            limit=10,
            max_scan=max_scan,
            budget=budget,
        )
        return [event["seq"] for _, event in got.events], got.next_cursor, got.more

    # No time at all: nothing read, no cursor invented, more to come.
    assert await page(None, budget=0) == ([], None, True)

    # Three records per page: the cursor moves past other runs' records too.
    assert await page(None, max_scan=3) == ([0], Cursor(0, 2), True)
    assert await page(Cursor(0, 2), max_scan=3) == ([4], Cursor(0, 5), True)
    assert await page(Cursor(0, 5), max_scan=3) == ([6], Cursor(0, 6), False)
    assert await page(Cursor(0, 6), max_scan=3) == ([], Cursor(0, 6), False)
