"""The ack ledger's rules, with a stand-in for Redis: the latest ack of a
session wins, sessions share one write, a failed write is kept and retried,
a settle waits for the write in flight, and an expired session is reported."""

from __future__ import annotations

import asyncio

import pytest

from gateway.stream.acks import AckLedger
from tests.support import wait_for

pytestmark = pytest.mark.unit


class FakeRedis:
    def __init__(self) -> None:
        self.writes: list[dict[str, int]] = []
        self.stored: dict[str, int] = {}
        self.expired: set[str] = set()
        self.down = False
        self.gate: asyncio.Event | None = None  # set: writes wait for it

    async def advance(self, nexts: dict[str, int]) -> dict[str, bool]:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionError("Redis is away")
        self.writes.append(dict(nexts))
        for sid, offset in nexts.items():
            if sid not in self.expired:
                self.stored[sid] = max(self.stored.get(sid, 0), offset)
        return {sid: sid not in self.expired for sid in nexts}


def nothing() -> None:
    pass


async def test_latest_ack_wins_and_sessions_share_one_write() -> None:
    redis = FakeRedis()
    ledger = AckLedger(redis.advance, interval=0.001)
    for offset in range(1, 500):
        ledger.record("a", offset, nothing)
    ledger.record("b", 7, nothing)
    ledger.record("a", 3, nothing)  # an older ack never moves it back
    await wait_for(lambda: not ledger.pending("a") and not ledger.pending("b"), 2, "written")
    assert redis.writes == [{"a": 499, "b": 7}]
    await ledger.close()


async def test_a_failed_write_is_kept_and_retried_with_the_newest_ack() -> None:
    redis = FakeRedis()
    redis.down = True
    ledger = AckLedger(redis.advance, interval=0.001)
    ledger.record("a", 5, nothing)
    await wait_for(lambda: ledger.pending("a") and not redis.writes, 1, "a failed write")
    ledger.record("a", 9, nothing)
    redis.down = False
    await wait_for(lambda: redis.stored.get("a") == 9, 5, "the retry")
    await ledger.close()


async def test_settle_writes_at_once_after_the_write_in_flight() -> None:
    redis = FakeRedis()
    redis.gate = asyncio.Event()
    ledger = AckLedger(redis.advance, interval=0.001)
    ledger.record("a", 5, nothing)
    await wait_for(lambda: ledger.pending("a") and "a" in ledger._in_flight, 1, "in flight")
    ledger.record("a", 8, nothing)
    settling = asyncio.create_task(ledger.settle("a"))
    await asyncio.sleep(0)
    assert not settling.done(), "settle waits for the write in flight"
    redis.gate.set()
    await asyncio.wait_for(settling, 2)
    assert redis.stored["a"] == 8 and not ledger.pending("a")
    await ledger.close()


async def test_an_expired_session_is_reported_unless_forgotten() -> None:
    redis = FakeRedis()
    redis.expired = {"gone", "left"}
    ledger = AckLedger(redis.advance, interval=0.001)
    told: list[str] = []
    ledger.record("gone", 3, lambda: told.append("gone"))
    ledger.record("left", 3, lambda: told.append("left"))
    ledger.forget("left")  # its socket closed: nobody to tell
    await wait_for(lambda: not ledger.pending("gone"), 2, "written")
    assert told == ["gone"]
    await ledger.close()


async def test_close_writes_what_is_due() -> None:
    redis = FakeRedis()
    ledger = AckLedger(redis.advance, interval=60)
    ledger.record("a", 4, nothing)
    await ledger.close()
    assert redis.stored == {"a": 4}
