"""Kafka behaves as in production: idempotent producer, end offsets, data kept across a restart."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import StackHandle

pytestmark = pytest.mark.integration

PARTITIONS = 2


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=value[:5])
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> tuple[dict[int, int], list[bytes]]:
    """End offsets per partition, and every record from the start, in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batch.items():
                records[tp.partition] += [m.value for m in messages if m.value is not None]
        return {tp.partition: ends[tp] for tp in partitions}, [
            value for p in range(PARTITIONS) for value in records[p]
        ]
    finally:
        await consumer.stop()


async def test_idempotent_producer_end_offsets_and_broker_restart(stack: StackHandle) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    topic = f"tidings.test.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()

    first = [f"run-{i % 3}:{i}".encode() for i in range(30)]
    await _produce(bootstrap, topic, first)
    ends, records = await _read_all(bootstrap, topic)
    assert sum(ends.values()) == len(first)  # idempotence: no duplicate from a retried send
    assert sorted(records) == sorted(first)
    # One key stays in one partition, in order: the guarantee run events rely on.
    for key in (b"run-0", b"run-1", b"run-2"):
        assert [r for r in records if r.startswith(key)] == [r for r in first if r.startswith(key)]

    stack.restart("kafka")

    ends_after, records_after = await _read_all(bootstrap, topic)
    assert ends_after == ends
    assert records_after == records
    await _produce(bootstrap, topic, [b"run-9:after-restart"])
    ends_more, _ = await _read_all(bootstrap, topic)
    assert sum(ends_more.values()) == len(first) + 1
