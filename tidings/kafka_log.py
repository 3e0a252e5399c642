"""Reading the event log, for every reader of tenant topics (the gateway's REST
replays and stream, the workers' run-close watcher): a run's record key and
partition, the partitioner its writer uses, the committed reader, and
starting a consumer without leaking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner, murmur2

from tidings.kafka_connection import client_options
from tidings.settings import KafkaSettings

# Keys whose hash is kept (a run id is about 40 bytes); the whole cache is
# dropped when full: finished runs' keys are never asked for again.
_KEYS_KEPT = 4096


class KeyHashPartitioner:
    """The producer's partitioner (the emitter's ``AIOKafkaProducer`` is given
    one): aiokafka's default partition for a key (murmur2, the same as the
    Java client), its hash computed once per key. A key is a run id and a
    run streams thousands of tokens under it; aiokafka computes murmur2 in
    pure Python, about a tenth of a token's CPU in the emitter. The
    partition is taken modulo the partitions as the caller has them on each
    call, exactly as the default does, so a topic given more partitions is
    followed the same way."""

    def __init__(self, size: int = _KEYS_KEPT) -> None:
        self._size = size
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: list[int]
    ) -> int:
        if key is None:
            return int(self._default(key, list(all_partitions), available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


# The same partitioner, so "the run's partition" here is where its events went.
_PARTITIONER = KeyHashPartitioner()


def run_key(run_id: str) -> bytes:
    """The Kafka record key of a run's events (docs/design.md: key = run id)."""
    return run_id.encode("utf-8")


def partition_for(run_id: str, partitions: list[int]) -> int:
    """The partition the producer's partitioner sends ``run_id`` to."""
    ordered = sorted(partitions)
    return _PARTITIONER(run_key(run_id), ordered, ordered)


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
