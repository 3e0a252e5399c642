"""The gateway with changes the benchmark recommends, applied from outside
(bench/ does not edit gateway/), so each change's gain is measured on the
same run as the gateway as shipped. ``BENCH_GATEWAY_FIXES`` picks them
(comma-separated; default ``lazy,offsets,dircache,frames,gc``: ``pool`` and
``yield`` are in the gateway itself since 2026-11-29 00:40 UTC, as
gateway/deps.py's blocking pool and tail.py's dispatch slices, and the
``yield`` patch would now replace the tail loop with its older version):

``pool``  Redis through a *blocking* connection pool. redis-py 8's default
          asyncio pool holds at most 100 connections and raises
          ``MaxConnectionsError`` past them, so more than ~100 sockets opening
          at once (each does Redis reads/writes) fail with 1011. A blocking
          pool queues them instead. (gateway/app.py ``connect_redis``)
``lazy``  Catch-up reader made on demand. Every socket builds and starts its
          own AIOKafkaConsumer for catch-up (a TCP connection and a metadata
          round trip, under a 32-slot semaphore) even when there is nothing
          to replay (``from=now``, or a resume already at the end). Start it
          on the first fetch instead. (gateway/stream/replay.py
          ``PartitionReader``)
``offsets`` Offset lookups coalesced. Each socket asks the broker for its
          partition's earliest and end offsets (and catch-up asks the end
          again) on one shared consumer connection, which the broker answers
          in order: a burst of N sockets queues 3N ListOffsets round trips.
          Callers that arrive before a request is sent join it (one request
          per tick for all partitions asked); the sample is still taken after
          each joiner registered with the tail, so the hand-over proof in
          replay.py holds. (gateway/stream/hub.py ``Offsets``)
``dircache`` Run lookups cached. Every socket open asks Temporal to describe
          the run (ownership, state, start time): one gRPC round trip, ~5 ms
          and a few hundred per second at most from one process here. Keep a
          short-lived (5 s) in-process cache of runs found RUNNING, so a burst
          of sockets on the same runs asks once. Ownership never changes, so
          a production version can cache it for good and still ask for state.
          (gateway/run_directory.py ``OwnedRunDirectory.lookup``)
``frames`` Lighter record check. Each record is decoded into a full ``Event``
          (json.loads plus the dataclass and its validation, ~8 us here) before
          its bytes are spliced into a frame; with one subscriber per run that
          is paid on every delivery. ``json.loads`` and the three checks the
          frame needs (an object, of this run, its type) keep the guarantee
          that only valid JSON of the right run reaches clients.
          (gateway/stream/frames.py ``event_frame``)
``yield``  Let writers run during a fetched batch. The live tail dispatches a
          whole ``getmany`` batch (up to 2,000 records) without yielding, so
          no socket writes meanwhile; a burst of more events than the send
          queue holds (1,000) fails every live socket with 4408, however fast
          its client. Yield to the loop every 64 records.
          (gateway/stream/tail.py ``TenantTail._run``)
``gc``    Fewer garbage collections. Fan-out allocates an object per event per
          socket (subscriber.py ``Item``), and with thousands of queued items
          alive CPython's default thresholds (700, 10, 10) run collections that
          traverse them again and again. Raise the thresholds once at start.
          (gateway/command.py ``main``)

Run: python -m bench.gateway_variant --port P (same env as ``tidings gateway``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis
from aiokafka import TopicPartition

from gateway import app as gateway_app
from gateway import command, run_directory
from gateway.stream import connection, frames, hub, replay, tail
from gateway.stream.cursor import Cursor
from gateway.stream.frames import EventFrame
from tidings.events import EnvelopeError
from tidings.settings import Settings


def connect_redis(settings: Settings) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis.url.get_secret_value(),
        max_connections=256,
        timeout=gateway_app.REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=gateway_app.REDIS_TIMEOUT_SECONDS,
        socket_timeout=gateway_app.REDIS_TIMEOUT_SECONDS,
    )
    return aioredis.Redis.from_pool(pool)


class LazyPartitionReader(replay.PartitionReader):
    def __init__(
        self, bootstrap: str, topic: str, partition: int, run_id: str, *, request_timeout_ms: int
    ) -> None:
        self._lazy = (bootstrap, topic, partition, run_id, request_timeout_ms)
        self._ready = False
        self.bad_records = 0

    async def __aenter__(self) -> LazyPartitionReader:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ready:
            await self._consumer.stop()

    async def frames(self, start: int, target: int) -> AsyncGenerator[EventFrame, None]:
        if start >= target:
            return
        if not self._ready:
            bootstrap, topic, partition, run_id, timeout_ms = self._lazy
            replay.PartitionReader.__init__(
                self, bootstrap, topic, partition, run_id, request_timeout_ms=timeout_ms
            )
            await self._consumer.start()
            self._consumer.assign([self._tp])
            self._ready = True
        async for frame in replay.PartitionReader.frames(self, start, target):
            yield frame


class CoalescingOffsets(hub.Offsets):
    def __init__(self, kafka: Any) -> None:
        super().__init__(kafka)
        self._batches: dict[str, tuple[set[TopicPartition], asyncio.Future[Any]]] = {}

    async def _ask(self, kind: str, tp: TopicPartition) -> int:
        batch = self._batches.get(kind)
        if batch is None:
            batch = (set(), asyncio.get_running_loop().create_future())
            self._batches[kind] = batch
            asyncio.get_running_loop().call_soon(self._send, kind)
        batch[0].add(tp)
        offsets = await asyncio.shield(batch[1])
        return int(offsets[tp])

    def _send(self, kind: str) -> None:
        tps, future = self._batches.pop(kind)

        async def send() -> None:
            try:
                consumer = await self._ready()
                ask = consumer.end_offsets if kind == "end" else consumer.beginning_offsets
                future.set_result(await ask(list(tps)))
            except Exception as exc:
                future.set_exception(exc)

        task = asyncio.ensure_future(send())
        task.add_done_callback(lambda _t: None)

    async def bounds(self, topic: str, partition: int) -> tuple[int, int]:
        tp = TopicPartition(topic, partition)
        earliest, end = await asyncio.gather(self._ask("begin", tp), self._ask("end", tp))
        return earliest, end

    async def end(self, topic: str, partition: int) -> int:
        return await self._ask("end", TopicPartition(topic, partition))


def light_event_frame(partition: int, offset: int, value: bytes, run_id: str) -> EventFrame:
    try:
        raw = json.loads(value)
    except ValueError as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("run_id") != run_id or raw.get("schema") != 1:
        raise EnvelopeError(f"not an envelope of run {run_id!r}")
    text = (
        '{"kind":"event","cursor":"' + Cursor(partition, offset).encode() + '","event":'
        + value.decode() + "}"
    )  # fmt: skip
    return EventFrame(offset, text, frames._END_STATUS.get(raw.get("type")))  # type: ignore[arg-type]


async def tail_run(self: Any) -> None:
    try:
        while not self.closing:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                for i, record in enumerate(records):
                    self._dispatch(tp.partition, record)
                    if i % 64 == 63:
                        await asyncio.sleep(0)
                if records:
                    self._report_lag(tp, records[-1].offset + 1)
            if self.idle:
                self.closing = True
    except asyncio.CancelledError:
        raise
    except Exception:
        tail.log.exception("live tail of %s failed", self.topic)
        self.closing = True
        self._fail_all(
            tail.StreamClosed(tail.CloseCode.INTERNAL_ERROR, "gateway lost its event feed; resume")
        )


def cache_lookups(ttl: float = 5.0) -> None:
    original = run_directory.OwnedRunDirectory.lookup
    cache: dict[tuple[str, str], tuple[float, Any]] = {}

    async def lookup(self: Any, tenant: str, run_id: str) -> Any:
        now = time.monotonic()
        hit = cache.get((tenant, run_id))
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        info = await original(self, tenant, run_id)
        if info is not None and not info.finished:
            if len(cache) > 100_000:
                cache.clear()
            cache[(tenant, run_id)] = (now, info)
        return info

    run_directory.OwnedRunDirectory.lookup = lookup  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    command.configure(parser)
    args = parser.parse_args()
    fixes = set(os.environ.get("BENCH_GATEWAY_FIXES", "lazy,offsets,dircache,frames,gc").split(","))
    if "pool" in fixes:
        gateway_app.connect_redis = connect_redis  # create_app looks it up at call time
    if "lazy" in fixes:
        connection.PartitionReader = LazyPartitionReader  # type: ignore[misc]
    if "offsets" in fixes:
        hub.Offsets = CoalescingOffsets  # type: ignore[misc]
    if "dircache" in fixes:
        cache_lookups()
    if "frames" in fixes:
        tail.event_frame = light_event_frame  # type: ignore[assignment]
        replay.event_frame = light_event_frame  # type: ignore[assignment]
    if "yield" in fixes:
        tail.TenantTail._run = tail_run  # type: ignore[method-assign]
    if "gc" in fixes:
        gc.set_threshold(50_000, 50, 100)
    raise SystemExit(command.main(args))


if __name__ == "__main__":
    main()
