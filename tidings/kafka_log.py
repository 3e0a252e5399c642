"""Reading the event log, for every reader of tenant topics (the gateway's REST
replays and stream, the workers' run-close watcher): a run's record key and
partition, the committed reader, and starting a consumer without leaking it.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from tidings.kafka_connection import client_options
from tidings.settings import KafkaSettings

# The producer's partitioner (aiokafka's default: murmur2 of the key, the same
# as the Java client), so "the run's partition" here is where its events went.
_PARTITIONER = DefaultPartitioner()


def run_key(run_id: str) -> bytes:
    """The Kafka record key of a run's events (docs/design.md: key = run id)."""
    return run_id.encode("utf-8")


def partition_for(run_id: str, partitions: list[int]) -> int:
    """The partition the producer's default partitioner sends ``run_id`` to."""
    ordered = sorted(partitions)
    result: int = _PARTITIONER(run_key(run_id), ordered, ordered)
    return result


def committed_reader(kafka: KafkaSettings, **options: Any) -> AIOKafkaConsumer:
    """An unstarted consumer without a group or auto-commit that sees committed
    records only: a transactional producer's aborted events are never shown,
    and open ones wait for their commit.

    Every reader of tenant topics is made here (REST replays, the stream's live
    tail and catch-up reader, the end offsets between them), so they all stop
    at the same last stable offset and a hand-over from one to another agrees.
    """
    return AIOKafkaConsumer(
        **client_options(kafka),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **options,
    )


async def started(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """``consumer``, started; one that fails to start (Kafka away) is stopped
    before the error goes on, so its connections are closed now instead of
    being left to the collector (asyncio's "Unclosed AIOKafkaConsumer")."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer
