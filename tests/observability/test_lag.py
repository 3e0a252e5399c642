"""Producers learn of lag: REST sheds a lagging tenant's new runs (429 +
Retry-After) and admits them again when its gateways catch up; the emitter
coalesces that tenant's tokens while the lag is high and stops when it falls."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.lag import LagPublisher, publish, withdraw
from tests.observability.conftest import (
    COALESCE_LAG,
    MAX_EVENTS_LAG,
    OTHER_KEY,
    TENANT,
    Obs,
)
from tests.observability.scrape import scrape, value
from tests.observability.steps import token_text
from tests.support import wait_for
from tests.topics import events_of, run_records, topic_reader
from tidings.events import Event, EventType
from tidings.lag import lag_key

pytestmark = pytest.mark.integration

GATEWAY = "test-gateway:1"


@pytest.fixture
async def redis(obs: Obs) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(obs.settings.redis.url.get_secret_value())
    try:
        yield client
    finally:
        # No lag of this test outlives it.
        await client.delete(lag_key(obs.settings.kafka.topic_prefix, TENANT))
        await client.aclose()


async def fill(obs: Obs, count: int) -> None:
    """``count`` records on the tenant's topic, as a busy run would write them."""
    run_id = f"{TENANT}-filler-{uuid.uuid4().hex[:8]}"
    for seq in range(count):
        event = Event(EventType.STEP_PROGRESS, TENANT, run_id, "fill", 1, seq, {"n": seq})
        await obs.clients.emitter.emit(event, wait=False)
    await obs.clients.emitter.flush()


async def start(obs: Obs, key: str | None = None, **input: int) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    async with obs.http(*(key,) if key else ()) as http:
        answer = await http.post("/v1/runs", json={"pipeline": "obs-speak", "input": input})
    return answer.status_code, dict(answer.headers), answer.json()


async def test_runs_are_shed_while_the_tenant_lags_and_admitted_when_it_catches_up(
    obs: Obs, redis: aioredis.Redis
) -> None:
    prefix = obs.settings.kafka.topic_prefix
    publisher = LagPublisher(redis, prefix, TENANT, GATEWAY, interval_seconds=0)
    metrics_url = f"{obs.gateway_url}/metrics"
    shed_before = value(
        await scrape(metrics_url), "tidings_gateway_runs_shed_total", tenant=TENANT, reason="lag"
    )
    # A live tail as a gateway runs one (no group, every partition, from the
    # end) that the test never lets read: its lag grows with every record.
    bootstrap = obs.settings.kafka.bootstrap_servers
    async with topic_reader(bootstrap, obs.topic, from_end=True) as (tail, tps):
        await fill(obs, MAX_EVENTS_LAG + 50)
        # Measured as a gateway measures it: broker end offsets minus the tail's position.
        await publisher.tick(tail, tps)
        assert publisher.last_records >= MAX_EVENTS_LAG + 50

        refused: dict[str, object] = {}

        async def shed() -> bool:
            status, headers, body = await start(obs, count=1)
            refused.update(status=status, headers=headers, body=body)
            return status == 429

        await wait_for(shed, 10, "POST /v1/runs answers 429 while the tenant lags")
        headers, body = refused["headers"], refused["body"]
        assert isinstance(headers, dict) and int(headers["retry-after"]) >= 1
        assert isinstance(body, dict) and body["error"]["code"] == "rate_limited"
        assert "behind" in body["error"]["message"]
        # Another tenant is not held back by this one's lag.
        status, _, _ = await start(obs, OTHER_KEY, count=1)
        assert status == 201

        # The gateway catches up: its tail reads to the end and says so.
        await tail.seek_to_end(*tps)
        for tp in tps:
            await tail.position(tp)
        await publisher.tick(tail, tps)
        assert publisher.last_records == 0
        caught_up = time.monotonic()
        admitted: list[int] = []

        async def admits() -> bool:
            status, _, _ = await start(obs, count=1)
            admitted.append(status)
            return status == 201

        await wait_for(admits, 10, "POST /v1/runs admits the tenant again once its lag falls")
        print(f"admitted {time.monotonic() - caught_up:.2f}s after the lag fell")
        await publisher.close()
    shed_after = value(
        await scrape(metrics_url), "tidings_gateway_runs_shed_total", tenant=TENANT, reason="lag"
    )
    assert shed_after >= shed_before + 1
    lag_seen = value(await scrape(metrics_url), "tidings_gateway_tenant_lag_records", tenant=TENANT)
    assert lag_seen == 0


async def speak_run(obs: Obs, count: int, pace_ms: int) -> list[Event]:
    status, _, body = await start(obs, count=count, pace_ms=pace_ms)
    assert status == 201, body
    records = await run_records(obs.settings.kafka.bootstrap_servers, obs.topic, body["run_id"])
    return events_of(records)


def check_tokens(events: list[Event], count: int) -> list[Event]:
    tokens = [e for e in events if e.type == EventType.STEP_TOKEN]
    assert "".join(e.data["text"] for e in tokens) == "".join(token_text(i) for i in range(count))
    assert sum(int(e.data.get("tokens", 1)) for e in tokens) == count
    step_events = [e for e in events if e.step == "speak"]
    seqs = [e.seq for e in step_events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq is monotonic per attempt"
    assert len({e.id for e in events}) == len(events), "every record is its own event"
    return tokens


async def test_tokens_coalesce_while_lag_is_high_and_stream_per_token_after(
    obs: Obs, redis: aioredis.Redis
) -> None:
    prefix, emitter = obs.settings.kafka.topic_prefix, obs.clients.emitter
    count, pace_ms = 120, 5
    before = await scrape(obs.worker_metrics_url)

    # Above the coalescing threshold, below the shedding one.
    await publish(redis, prefix, TENANT, GATEWAY, COALESCE_LAG + 50)
    await wait_for(lambda: emitter.coalescing(TENANT), 5, "the emitter sees the high lag")
    tokens = check_tokens(await speak_run(obs, count, pace_ms), count)
    # ~600 ms of tokens in <=150 ms / 512-byte records: a handful, not 120.
    assert len(tokens) <= count // 10, f"{len(tokens)} records for {count} tokens"
    after = await scrape(obs.worker_metrics_url)
    coalesced = value(after, "tidings_worker_coalesced_tokens_total", tenant=TENANT) - value(
        before, "tidings_worker_coalesced_tokens_total", tenant=TENANT
    )
    assert coalesced >= count - len(tokens)
    assert value(after, "tidings_worker_tenant_lag_records", tenant=TENANT) == COALESCE_LAG + 50
    print(f"coalesced: {count} tokens in {len(tokens)} records")

    await withdraw(redis, prefix, TENANT, GATEWAY)

    async def per_token() -> bool:
        return not await emitter.coalescing(TENANT)

    await wait_for(per_token, 5, "the emitter sees the lag fall")
    tokens = check_tokens(await speak_run(obs, count, 0), count)
    assert len(tokens) == count and all("tokens" not in e.data for e in tokens)
