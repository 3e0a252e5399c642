"""LagPublisher: at most once a second, and at once when the tail pauses."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from gateway.lag import LagPublisher

pytestmark = pytest.mark.unit

TP = TopicPartition("t.events.acme", 0)


class Tail:
    def __init__(self) -> None:
        self.end, self.at = 10, 10

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, self.end)

    async def position(self, partition: TopicPartition) -> int:
        return self.at


class Pipe:
    def __init__(self, written: list[tuple[str, str]]) -> None:
        self.written = written

    def hset(self, key: str, field: str, value: str) -> None:
        self.written.append((field, value))

    def pexpire(self, key: str, ms: int) -> None:
        pass

    async def execute(self) -> list[Any]:
        return []


class Redis:
    def __init__(self) -> None:
        self.written: list[tuple[str, str]] = []

    def pipeline(self, transaction: bool = True) -> Pipe:
        return Pipe(self.written)


async def test_a_pause_publishes_at_once_between_the_seconds() -> None:
    redis, tail = Redis(), Tail()
    publisher = LagPublisher(redis, "t", "acme", "gw:1", interval_seconds=60)
    await publisher.tick(tail, [TP])
    tail.end = 500  # the tenant falls behind within the second
    await publisher.tick(tail, [TP])
    assert len(redis.written) == 1 and publisher.last_records == 0
    await publisher.tick(tail, [TP], now_due=True)
    assert len(redis.written) == 2 and publisher.last_records == 490
