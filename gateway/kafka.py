"""Kafka access for the gateway: a consumer factory and a reachability probe.
A run's partition and the committed reader are ``tidings.kafka_log``'s,
shared with the workers.

Consumers are cheap to make and hold no group membership here (``group_id``
is ``None``): REST replays assign one partition, read a bounded slice and
close. Long-lived fan-out consumers belong to the stream service.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient

from tidings.kafka_connection import client_options
from tidings.kafka_log import committed_reader
from tidings.settings import KafkaSettings


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
