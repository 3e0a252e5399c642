"""Reading a run's Kafka records back (with headers) and holding a tail behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.topics import Record, records_until, topic_reader
from tidings.events import Event


async def run_records(
    bootstrap: str,
    topic: str,
    run_id: str,
    *,
    until: Callable[[list[Event]], bool] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 (a deadline for polling)
) -> list[Record]:
    """The run's records from the beginning, until a terminal event (or ``until``)."""

    def done(found: list[Record]) -> bool:
        events = events_of(found)
        return until(events) if until else any(e.is_terminal for e in events)

    return await records_until(bootstrap, topic, key=run_id, until=done, timeout=timeout)


def events_of(records: list[Record]) -> list[Event]:
    return [Event.from_bytes(r.value or b"") for r in records]


@asynccontextmanager
async def held_tail(
    bootstrap: str, topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A live tail as a gateway runs one (no group, every partition, from the
    end) that the test never lets read: its lag grows with every record."""
    async with topic_reader(bootstrap, topic, from_end=True) as tail:
        yield tail
