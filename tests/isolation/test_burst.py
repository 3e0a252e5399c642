"""A 10x burst to many sockets that read steadily but slower than the burst:
the tenant's tail pauses its partitions instead of buffering without bound or
cutting everyone with 4408; the gateway's buffered bytes stay under the high
mark plus one record's fan-out, its RSS barely moves, and every client gets
every event once, in order. The same run shows every stream metric moving.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from gateway.lag import gateway_id
from tests.isolation.conftest import PARTITIONS, IsoEnv
from tests.isolation.harness import (
    GatewayProc,
    Reading,
    RssSampler,
    gateway_process,
    open_client,
    produce_paced,
    producer,
    read_stream,
)
from tests.observability.scrape import Samples, scrape, value
from tests.stream.harness import temporal_run
from tests.support import drop_connection, wait_for
from tidings.client import subscribe
from tidings.events import Event
from tidings.lag import lag_key

pytestmark = [pytest.mark.integration]

RUNS = 4
SOCKETS_PER_RUN = 6
PAD = 3000  # bytes of filler per event: a frame is ~3.3 KB
NORMAL_RATE = 100.0  # events/s over all runs
BURST_RATE = 10 * NORMAL_RATE
NORMAL_SECONDS, BURST_SECONDS = 1.0, 2.0
# Each client reads 150 frames/s: far above its run's normal 25/s, well below
# its run's 250/s in the burst. Unpaused, its queue would grow ~330 KB/s.
READ_RATE = 150.0
HIGH, LOW = 512 * 1024, 256 * 1024
# Per socket: unpaused, each socket's backlog would pass this (~560 KB at the
# burst's peak) and all of them would be cut with 4408; paused, each holds
# ~1/24 of the high mark.
SOCKET_QUEUE = 256 * 1024
SEND_BUFFER = RCV_BUFFER = 16 * 1024  # kernel buffers small, so queues are the gateway's
RESUME_AFTER, ACK_AT = 10, 5


@dataclass
class Burst:
    gateway: GatewayProc
    tenant: str
    sent: dict[str, list[Event]]
    readings: dict[str, list[Reading]]
    resumed: list[Event]  # what the client library saw across its drop and resume
    resumed_status: str | None
    before: Samples  # /metrics with the sockets open, before any event
    during: list[Samples]  # scraped every 200 ms while events flowed
    after: Samples
    rss_baseline: int
    rss_peak: int
    max_frame: int
    lag_published: list[int]  # this gateway's lag in Redis, read every 200 ms
    lag_withdrawn: bool  # its field gone once the gateway stopped
    timings: dict[str, float] = field(default_factory=dict)


def token_event(tenant: str, run_id: str, seq: int) -> Event:
    return Event(
        "step.token", tenant, run_id, "draft", 1, seq, {"text": f"t{seq} ", "pad": "x" * PAD}
    )


async def run_burst(env: IsoEnv) -> Burst:
    tenant, key = env.noisy, env.key(env.noisy)
    environ = env.environ(
        TIDINGS_GATEWAY_BUFFER_HIGH_BYTES=str(HIGH),
        TIDINGS_GATEWAY_BUFFER_LOW_BYTES=str(LOW),
        TIDINGS_GATEWAY_SEND_QUEUE_MAX_BYTES=str(SOCKET_QUEUE),
    )
    redis = aioredis.from_url(env.base.redis.url.get_secret_value())
    try:
        async with (
            gateway_process(environ, send_buffer=SEND_BUFFER) as gw,
            producer(env.base.kafka.bootstrap_servers) as kafka,
            AsyncExitStack() as stack,
        ):
            runs = [
                await stack.enter_async_context(temporal_run(env.temporal, tenant))
                for _ in range(RUNS)
            ]
            clients: list[tuple[str, ClientConnection]] = []
            for run_id in runs:
                for _ in range(SOCKETS_PER_RUN):
                    ws = await open_client(gw.ws(run_id), key, rcvbuf=RCV_BUFFER, max_queue=4)
                    clients.append((run_id, ws))
            readings: dict[str, list[Reading]] = {run_id: [] for run_id in runs}
            tasks: list[asyncio.Task[Any]] = []
            for run_id, ws in clients:
                reading = Reading()
                readings[run_id].append(reading)
                tasks.append(asyncio.create_task(read_stream(ws, reading, pace=READ_RATE)))
            # One more client on the first run, the client library reading at full
            # speed, whose connection drops after a few events: it resumes with its token.
            resumed: list[Event] = []
            status: list[str | None] = []

            async def drop_and_resume() -> None:
                async with subscribe(gw.url, runs[0], key, ack_every=ACK_AT) as sub:
                    async for event in sub:
                        resumed.append(event)
                        if len(resumed) == RESUME_AFTER:
                            drop_connection(sub)
                status.append(sub.status)

            tasks.append(asyncio.create_task(drop_and_resume()))

            async def all_open() -> bool:
                samples = await scrape(gw.metrics_url)
                return value(samples, "tidings_stream_sockets", tenant=tenant) == len(clients) + 1

            await wait_for(all_open, 30, "every socket registered", interval=0.1)
            before = await scrape(gw.metrics_url)

            sent: dict[str, list[Event]] = {run_id: [] for run_id in runs}
            seq = iter(range(1, 1_000_000))

            def make(i: int) -> Event:
                run_id = runs[i % RUNS]
                event = token_event(tenant, run_id, next(seq))
                sent[run_id].append(event)
                return event

            during: list[Samples] = []
            flowing = True
            lag_key_ = lag_key(env.base.kafka.topic_prefix, tenant)
            field_ = gateway_id(int(gw.url.rsplit(":", 1)[1]))
            published: list[int] = []

            async def scrape_while_flowing() -> None:
                while flowing:
                    during.append(await scrape(gw.metrics_url))
                    raw = await redis.hget(lag_key_, field_)
                    if raw is not None:
                        published.append(int(raw.split()[0]))
                    await asyncio.sleep(0.2)  # the scrape interval

            scraper = asyncio.create_task(scrape_while_flowing())
            topic = env.topic(tenant)
            with RssSampler(gw.pid) as rss:
                t0 = time.monotonic()
                normal = int(NORMAL_RATE * NORMAL_SECONDS)
                await produce_paced(kafka, topic, make, normal, NORMAL_RATE)
                t1 = time.monotonic()
                burst = int(BURST_RATE * BURST_SECONDS)
                await produce_paced(kafka, topic, make, burst, BURST_RATE)
                t2 = time.monotonic()
                await produce_paced(kafka, topic, make, normal, NORMAL_RATE)
                for run_id in runs:
                    done = Event("run.completed", tenant, run_id, None, 1, 0, {"output": {}})
                    await kafka.send_and_wait(
                        topic, done.to_bytes(), key=run_id.encode(), headers=done.headers()
                    )
                    sent[run_id].append(done)
                t3 = time.monotonic()
                await asyncio.wait_for(asyncio.gather(*tasks), 60)
                t4 = time.monotonic()
            flowing = False
            await scraper
            after = await scrape(gw.metrics_url)
        # The gateway process has stopped: its tail withdrew its lag.
        withdrawn = await redis.hget(lag_key_, field_) is None
    finally:
        await redis.aclose()
    baseline = sorted(rss.between(t0, t1))[len(rss.between(t0, t1)) // 2]
    frames = [len(e.to_bytes()) + 40 for events in sent.values() for e in events]
    return Burst(
        gateway=gw,
        tenant=tenant,
        sent=sent,
        readings=readings,
        resumed=resumed,
        resumed_status=status[0] if status else None,
        before=before,
        during=during,
        after=after,
        rss_baseline=baseline,
        rss_peak=max(rss.between(t0, t4)),
        max_frame=max(frames),
        lag_published=published,
        lag_withdrawn=withdrawn,
        timings={
            "normal": t1 - t0,
            "burst": t2 - t1,
            "produce": t3 - t0,
            "drain after the last event": t4 - t3,
        },
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def burst(iso_env: IsoEnv) -> Burst:
    return await run_burst(iso_env)


async def test_a_burst_pauses_the_tail_and_bounds_memory_losing_nothing(burst: Burst) -> None:
    b = burst
    pauses = value(b.after, "tidings_stream_tail_pauses_total", tenant=b.tenant)
    peak = value(b.after, "tidings_stream_buffer_peak_bytes", tenant=b.tenant)
    # The tail checks the mark before each record, so the sum can pass it by
    # one record's fan-out at most (its run's sockets, the resumer included),
    # plus control frames (token, caught_up) of the sockets.
    fanout = (SOCKETS_PER_RUN + 1) * b.max_frame
    control = (RUNS * SOCKETS_PER_RUN + 1) * 512
    growth = b.rss_peak - b.rss_baseline
    print(
        f"\nburst: {pauses:.0f} pauses; buffered peak {peak / 1024:.0f} KiB "
        f"(high {HIGH // 1024} KiB, + one fan-out {fanout // 1024} KiB); "
        f"RSS baseline {b.rss_baseline / 2**20:.1f} MiB, peak {b.rss_peak / 2**20:.1f} MiB "
        f"(+{growth / 2**20:.1f} MiB); " + ", ".join(f"{k} {v:.2f}s" for k, v in b.timings.items())
    )
    assert pauses >= 1, "the tail never paused its partitions"
    assert peak <= HIGH + fanout + control, peak
    for samples in b.during:
        assert value(samples, "tidings_stream_buffer_bytes", tenant=b.tenant) <= peak
    # Unpaused (marks out of reach), this burst cuts all 24 sockets with 4408
    # at their 256 KiB queue bound, ~5.6 MiB queued at the peak. Paused, what
    # the gateway adds is the high mark, one Kafka fetch and allocator slack;
    # measured +3 to +9 MiB either way (frames are shared by a run's sockets),
    # so this bound is a guard against growth without bound, not a fine one.
    assert growth < 32 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB"
    for run_id, readings in b.readings.items():
        expected = [e.id for e in b.sent[run_id]]
        for reading in readings:
            assert reading.errors == [] and reading.close_code == 1000, reading.errors
            assert reading.ids == expected, "every event once, in order"
            assert reading.status == "COMPLETED"
    first_run = next(iter(b.sent.values()))
    assert [e.id for e in b.resumed] == [e.id for e in first_run], "the resumed client too"
    assert b.resumed_status == "COMPLETED"
    assert value(b.after, "tidings_stream_slow_client_closes_total", tenant=b.tenant) == 0
    assert value(b.after, "tidings_stream_paused_partitions", tenant=b.tenant) == 0


async def test_d_stream_metrics_are_present_and_move_under_load(burst: Burst) -> None:
    b, t = burst, burst.tenant
    clients = RUNS * SOCKETS_PER_RUN + 1
    events = sum(len(v) for v in b.sent.values())
    assert value(b.before, "tidings_stream_sockets", tenant=t) == clients
    assert max(value(s, "tidings_stream_send_queue_events", tenant=t) for s in b.during) > 0
    # One emit -> socket sample per record fanned out (every record of this tenant).
    emitted = value(b.after, "tidings_stream_emit_to_socket_seconds_count", tenant=t)
    assert emitted - value(b.before, "tidings_stream_emit_to_socket_seconds_count", tenant=t) >= (
        events
    )
    # Write times are sampled per dispatch slice and per queued batch, not per frame.
    for part in ("count", "sum"):
        name = f"tidings_stream_socket_write_seconds_{part}"
        assert value(b.after, name, tenant=t) > value(b.before, name, tenant=t)
    delivered = value(b.after, "tidings_stream_events_delivered_total", tenant=t) - value(
        b.before, "tidings_stream_events_delivered_total", tenant=t
    )
    # Every socket's events, plus the resumed client's (re-sent unacked ones too).
    assert delivered >= events * SOCKETS_PER_RUN + len(b.resumed)
    lag_partitions = {
        dict(labels)["partition"]
        for name, labels in b.after
        if name == "tidings_stream_consumer_lag" and dict(labels).get("tenant") == t
    }
    assert lag_partitions == {str(p) for p in range(PARTITIONS)}
    assert max(value(s, "tidings_stream_consumer_lag", tenant=t) for s in b.during) > 0
    assert value(b.after, "tidings_stream_resumes_total", tenant=t) == 1
    assert value(b.after, "tidings_stream_replayed_events_total", tenant=t) >= (
        RESUME_AFTER - ACK_AT
    )
    # Declared for the tenant (set at its first pause), and every sample is all
    # or none of its partitions: the tail pauses and resumes them together.
    assert ("tidings_stream_paused_partitions", frozenset({("tenant", t)})) in b.after
    assert {value(s, "tidings_stream_paused_partitions", tenant=t) for s in b.during} <= {
        0,
        PARTITIONS,
    }
    assert value(b.after, "tidings_stream_tail_pauses_total", tenant=t) >= 1
    assert value(b.after, "tidings_stream_buffer_peak_bytes", tenant=t) > 0
    assert value(b.after, "tidings_stream_closes_total", code="1000") >= clients
    # The tail published its lag for the producers (records behind, under this
    # gateway's host:port), it grew while the tail was paused, and it was
    # withdrawn when the gateway stopped.
    assert b.lag_published and max(b.lag_published) > 0, b.lag_published
    assert b.lag_withdrawn
