"""The backpressure pieces without services: the tail's high/low marks, the
subscribers' byte accounting, the pause and resume of a tail's partitions,
the cut of stalled sockets while paused, and the fan-out span (and its cost)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from pydantic import ValidationError
from redis.asyncio import BlockingConnectionPool

from gateway.rest.deps import REDIS_TIMEOUT_SECONDS, connect_redis
from gateway.stream import tail as tail_module
from gateway.stream.errors import StreamClosed
from gateway.stream.frames import event_frame
from gateway.stream.metrics import StreamMetrics
from gateway.stream.subscriber import Subscriber
from gateway.stream.tail import TenantTail
from gateway.stream.tracing import FanoutSpans
from gateway.stream.watermarks import Watermarks
from tests.stream.drivers import dispatch, next_item
from tests.support import wait_for
from tidings.errors import CloseCode
from tidings.events import Event
from tidings.settings import GatewaySettings, KafkaSettings, RedisSettings, Settings

pytestmark = pytest.mark.unit

TOPIC = "tidings.events.acme"
TP = TopicPartition(TOPIC, 0)


def record(
    run_id: str, offset: int, pad: int = 0, headers: Any = ()
) -> ConsumerRecord[bytes, bytes]:
    event = Event("step.token", "acme", run_id, "s", 1, offset, {"text": "x" * pad})
    return ConsumerRecord(
        TOPIC, 0, offset, 0, 0, run_id.encode(), event.to_bytes(), None, 0, 0, list(headers)
    )


class FakeConsumer:
    """What a tail asks of its AIOKafkaConsumer, fed by the test."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[ConsumerRecord[bytes, bytes]]] = asyncio.Queue()
        self._paused: set[TopicPartition] = set()
        self.pauses = 0
        self.position_ = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        assert not self._paused, "a paused tail must not fetch"
        try:
            batch = await asyncio.wait_for(self.batches.get(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        self.position_ = batch[-1].offset + 1
        return {TP: batch}

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)
        self.pauses += 1

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def highwater(self, tp: TopicPartition) -> int:
        return self.position_

    async def position(self, tp: TopicPartition) -> int:
        return self.position_

    async def stop(self) -> None:
        return None


@contextlib.asynccontextmanager
async def running_tail(watermarks: Watermarks, stall_seconds: float = 30.0) -> Any:
    metrics = StreamMetrics(lambda: ())
    tail = TenantTail(
        "acme",
        TOPIC,
        KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        metrics,
        idle_seconds=60,
        request_timeout_ms=1000,
        watermarks=watermarks,
        stall_seconds=stall_seconds,
    )
    consumer = FakeConsumer()
    tail._consumer = consumer
    tail._tps, tail.partitions = [TP], [0]
    tail._task = asyncio.create_task(tail._run())
    try:
        yield tail, consumer, metrics
    finally:
        await tail.stop()


def live_sub(
    watermarks: Watermarks, run_id: str = "acme-1", max_bytes: int = 1 << 20
) -> Subscriber:
    sub = Subscriber(
        "acme", run_id, 0, max_events=100_000, max_bytes=max_bytes, watermarks=watermarks
    )
    sub.go_live()
    return sub


def test_watermarks_track_the_sum_and_its_peak() -> None:
    watermarks = Watermarks(100, 50)
    watermarks.add(80)
    watermarks.add(30)
    assert watermarks.over and watermarks.peak == 110
    watermarks.remove(60)
    assert not watermarks.over and watermarks.bytes == 50 and watermarks.peak == 110
    with pytest.raises(ValueError):
        Watermarks(10, 10)


def test_subscribers_count_what_they_hold_and_give_it_back() -> None:
    watermarks = Watermarks(1 << 20, 1 << 19)
    sub = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, watermarks=watermarks)
    frames = [event_frame(0, i, record("acme-1", i).value or b"", "acme-1") for i in range(3)]
    sub.offer(frames[0])  # catching up: buffered, and counted
    assert watermarks.bytes == len(frames[0].wire) == sub.queued_bytes
    pending = sub.take_pending()
    assert pending == [frames[0]] and watermarks.bytes == 0
    sub.go_live()  # queues caught_up
    sub.offer(frames[1])
    sub.offer(frames[2])
    assert watermarks.bytes == sub.queued_bytes > 0
    sub.fail(StreamClosed(CloseCode.NORMAL, "closed"))
    assert watermarks.bytes == 0 and sub.queued_bytes == 0
    sub.push_control("after the end")  # never sent, never counted
    assert watermarks.bytes == 0


async def test_a_tail_pauses_above_the_high_mark_and_resumes_below_the_low() -> None:
    frame_size = len(event_frame(0, 0, record("acme-1", 0, 900).value or b"", "acme-1").wire)
    watermarks = Watermarks(high=10 * frame_size, low=4 * frame_size)
    async with running_tail(watermarks) as (tail, consumer, metrics):
        sub = live_sub(watermarks)
        tail.add(sub)
        await consumer.batches.put([record("acme-1", i, 900) for i in range(100)])
        await wait_for(lambda: tail.paused, 5, "the tail pauses")
        assert consumer.pauses == 1
        assert (
            metrics.registry.get_sample_value(
                "tidings_stream_paused_partitions", {"tenant": "acme"}
            )
            == 1
        )
        held = sub.depth
        # Paused means paused: nothing more is queued while the socket does not drain.
        await asyncio.sleep(0.05)  # a pause that lasts, not a synchronisation
        assert sub.depth == held
        received: list[int] = []
        while len(received) < 100:
            item = await asyncio.wait_for(next_item(sub), 5)
            if item.offset >= 0:
                received.append(item.offset)
        assert received == list(range(100)), "in order, none lost"
        assert watermarks.peak <= watermarks.high + frame_size
        assert consumer.pauses > 1 and not tail.paused
        assert (
            metrics.registry.get_sample_value(
                "tidings_stream_paused_partitions", {"tenant": "acme"}
            )
            == 0
        )
        assert (
            metrics.registry.get_sample_value(
                "tidings_stream_tail_pauses_total", {"tenant": "acme"}
            )
            == consumer.pauses
        )


async def test_a_paused_tail_cuts_sockets_that_do_not_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tail_module, "_HOLD_WAKEUP_SECONDS", 0.02)
    watermarks = Watermarks(high=20_000, low=10_000)
    async with running_tail(watermarks, stall_seconds=0.2) as (tail, consumer, _):
        stuck, draining = live_sub(watermarks, "acme-1"), live_sub(watermarks, "acme-2")
        tail.add(stuck)
        tail.add(draining)
        await consumer.batches.put([record(f"acme-{1 + i % 2}", i, 900) for i in range(60)])
        await wait_for(lambda: tail.paused, 5, "the tail pauses")

        async def drain() -> None:
            while True:
                await next_item(draining)

        reader = asyncio.create_task(drain())
        try:
            await wait_for(lambda: stuck.failure is not None, 5, "the stalled socket is cut")
            assert stuck.failure is not None and stuck.failure.code == CloseCode.TOO_SLOW
            assert draining.failure is None
            await wait_for(lambda: not tail.paused, 5, "the tail resumes without it")
        finally:
            reader.cancel()


@contextlib.contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        yield exporter
    finally:
        processor.shutdown()


async def test_one_fanout_span_per_record_continues_the_records_trace() -> None:
    watermarks = Watermarks(1 << 30, 1 << 29)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01".encode()
    async with running_tail(watermarks) as (tail, _, _):
        subs = [live_sub(watermarks) for _ in range(3)]
        for sub in subs:
            tail.add(sub)
        with recorded_spans() as spans:
            assert dispatch(tail, 0, record("acme-1", 7, headers=[("traceparent", traceparent)]))
            assert not dispatch(tail, 0, record("acme-nobody", 8))  # no sockets, no span
        (span,) = [s for s in spans.get_finished_spans() if s.name == "ws.fanout"]
        assert span.context is not None
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.attributes is not None
        assert span.attributes["tidings.sockets"] == 3
        assert span.attributes["tidings.run_id"] == "acme-1"
        assert all(sub.depth == 2 for sub in subs)  # caught_up + the event


async def test_the_fanout_span_costs_microseconds_per_record() -> None:
    """Prints the per-record cost of the fan-out span (one per record, whatever
    the number of sockets) with the SDK as ``tidings gateway`` sets it up
    without an exporter, and with tracing off; the bound is loose, the
    figures are the point."""
    watermarks = Watermarks(1 << 40, 1 << 39)
    traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    records = [
        record("acme-1", i, 100, headers=[("traceparent", traceparent)]) for i in range(5000)
    ]
    sdk = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0))).get_tracer("tidings")

    async with running_tail(watermarks) as (tail, _, _):
        sub = live_sub(watermarks)
        tail.add(sub)

        def per_record(tracer: trace.Tracer) -> float:
            tail._spans = FanoutSpans("acme", tracer)
            best = float("inf")
            for _ in range(3):  # best of three: a loaded machine only ever adds time
                began = time.perf_counter()
                for r in records:
                    dispatch(tail, 0, r)
                best = min(best, (time.perf_counter() - began) / len(records))
                while sub.depth:
                    sub.pop()  # the writer's part is not measured here
            return best

        traced, off = per_record(sdk), per_record(trace.NoOpTracer())

        class Untraced(FanoutSpans):
            def start(self, headers: Any, run_id: str, sockets: int) -> trace.Span:
                return trace.INVALID_SPAN

        tail._spans = Untraced("acme")
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for r in records:
                dispatch(tail, 0, r)
            best = min(best, (time.perf_counter() - began) / len(records))
            while sub.depth:
                sub.pop()
    print(
        f"\nfan-out span per record: {(traced - best) * 1e6:.1f} us with the SDK, "
        f"{(off - best) * 1e6:.1f} us with tracing off "
        f"(dispatch of one record to one socket without a span: {best * 1e6:.1f} us)"
    )
    assert traced - best < 200e-6


def test_the_buffer_marks_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="BUFFER_LOW_BYTES must be below"):
        GatewaySettings(buffer_high_bytes=1 << 20, buffer_low_bytes=1 << 20)
    marks = GatewaySettings()
    assert marks.buffer_low_bytes < marks.buffer_high_bytes


async def test_the_gateways_redis_pool_blocks_instead_of_failing() -> None:
    settings = Settings(redis=RedisSettings(max_connections=7))
    redis = connect_redis(settings)
    try:
        pool = redis.connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 7
        assert pool.timeout == REDIS_TIMEOUT_SECONDS
    finally:
        await redis.aclose()
