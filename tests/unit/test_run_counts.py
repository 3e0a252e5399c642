"""RunningCounts: a tenant's count of open runs serves its starts for a moment,
plus the starts this gateway made since, and a burst asks Temporal once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import pytest
from temporalio.client import Client

from gateway.rest.limits import RunningCounts
from tests.support import wait_for

pytestmark = pytest.mark.unit


@dataclass
class _Counted:
    count: int


class FakeTemporal:
    """Answers count_workflows with ``running``, after ``gate`` opens."""

    def __init__(self, running: int) -> None:
        self.running = running
        self.asked: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def count_workflows(self, query: str) -> _Counted:
        self.asked.append(query)
        await self.gate.wait()
        return _Counted(self.running)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client(fake: FakeTemporal) -> Client:
    return cast(Client, cast(Any, fake))


async def test_a_count_serves_for_its_age_with_this_gateways_starts_added() -> None:
    fake, clock = FakeTemporal(running=3), Clock()
    counts = RunningCounts(max_age=0.1, clock=clock)
    assert await counts.running(client(fake), "acme") == 3
    counts.started("acme")
    counts.started("acme")
    clock.now += 0.05
    assert await counts.running(client(fake), "acme") == 5
    assert len(fake.asked) == 1
    assert "'acme'" in fake.asked[0]
    # Older than max_age: answered at once from the last count while a new
    # one is asked; the starts are in the new count.
    fake.running = 6
    clock.now += 0.1
    assert await counts.running(client(fake), "acme") == 5
    await wait_for(lambda: len(fake.asked) == 2, 5, "the count asked again")
    await asyncio.sleep(0)
    assert await counts.running(client(fake), "acme") == 6
    assert len(fake.asked) == 2
    # Older than stale: the start waits for a new count.
    fake.running = 7
    clock.now += 1.5
    assert await counts.running(client(fake), "acme") == 7
    assert len(fake.asked) == 3


async def test_starts_arriving_together_share_one_question() -> None:
    fake, clock = FakeTemporal(running=1), Clock()
    counts = RunningCounts(max_age=0.1, clock=clock)
    fake.gate.clear()
    waiting = [asyncio.ensure_future(counts.running(client(fake), "acme")) for _ in range(20)]
    await asyncio.sleep(0)
    fake.gate.set()
    assert await asyncio.gather(*waiting) == [1] * 20
    assert len(fake.asked) == 1


async def test_since_asks_for_a_count_no_older_than_the_request() -> None:
    fake, clock = FakeTemporal(running=2), Clock()
    counts = RunningCounts(max_age=10.0, clock=clock)
    assert await counts.running(client(fake), "acme") == 2
    arrived = clock.now + 1
    clock.now = arrived
    fake.running = 0
    # The cached 2 is young enough for max_age, not for a refusal.
    assert await counts.running(client(fake), "acme") == 2
    assert await counts.running(client(fake), "acme", since=arrived) == 0
    assert len(fake.asked) == 2


async def test_tenants_are_counted_apart() -> None:
    fake, clock = FakeTemporal(running=4), Clock()
    counts = RunningCounts(max_age=0.1, clock=clock)
    assert await counts.running(client(fake), "acme") == 4
    counts.started("acme")
    assert await counts.running(client(fake), "globex") == 4
    assert await counts.running(client(fake), "acme") == 5
    assert len(fake.asked) == 2


async def test_a_failed_count_is_not_kept() -> None:
    class Failing(FakeTemporal):
        async def count_workflows(self, query: str) -> _Counted:
            self.asked.append(query)
            raise RuntimeError("temporal away")

    failing, clock = Failing(running=0), Clock()
    counts = RunningCounts(max_age=0.1, clock=clock)
    with pytest.raises(RuntimeError):
        await counts.running(client(failing), "acme")
    with pytest.raises(RuntimeError):
        await counts.running(client(failing), "acme")
    assert len(failing.asked) == 2
