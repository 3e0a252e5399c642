"""Kafka access for the gateway: a consumer factory, a reachability probe and
the partitioner that finds a run's partition.

Consumers are cheap to make and hold no group membership here (``group_id``
is ``None``): REST replays assign one partition, read a bounded slice and
close. Long-lived fan-out consumers belong to the stream service.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
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


class KafkaFactory:
    """Builds short-lived Kafka consumers from one :class:`KafkaSettings`, and
    keeps one long-lived metadata client (made on first use, closed by
    :meth:`close`) to find a topic's partitions."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str = "tidings-gateway",
        max_concurrent_reads: int = 16,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        # Each REST replay holds a consumer (a broker connection and fetch
        # buffers); past this many, further reads wait their turn instead of
        # growing the gateway's connections and memory with the request rate.
        self.read_slots = asyncio.Semaphore(max_concurrent_reads)
        self._metadata: AIOKafkaClient | None = None
        self._lock = asyncio.Lock()

    async def partitions(self, topic: str) -> list[int] | None:
        """The topic's partition ids, or ``None`` if it does not exist.

        Asks for *all* topics' metadata on purpose: a metadata request naming
        the topic could auto-create it on a broker configured to do so.
        """
        client = await self._metadata_client()
        cluster = await client.fetch_all_metadata()
        found = cluster.partitions_for_topic(topic)
        return sorted(found) if found else None

    async def _metadata_client(self) -> AIOKafkaClient:
        async with self._lock:
            if self._metadata is None:
                client = AIOKafkaClient(
                    **client_options(self.settings),
                    client_id=f"{self.client_id}-metadata",
                    request_timeout_ms=self.settings.request_timeout_ms,
                )
                try:
                    await client.bootstrap()
                except BaseException:
                    await client.close()
                    raise
                self._metadata = client
            return self._metadata

    async def close(self) -> None:
        async with self._lock:
            if self._metadata is not None:
                await self._metadata.close()
                self._metadata = None

    def consumer(self, **overrides: Any) -> AIOKafkaConsumer:
        """An unstarted consumer without a group; the caller starts and stops it."""
        options: dict[str, Any] = {
            "client_id": self.client_id,
            "auto_offset_reset": "earliest",
            "request_timeout_ms": self.settings.request_timeout_ms,
        }
        options.update(overrides)
        return committed_reader(self.settings, **options)

    async def probe(self) -> None:
        """Raise unless a broker answers a metadata request (callers bound the time)."""
        client = AIOKafkaClient(
            **client_options(self.settings),
            client_id=f"{self.client_id}-probe",
            request_timeout_ms=self.settings.request_timeout_ms,
        )
        try:
            await client.bootstrap()
        finally:
            await client.close()
