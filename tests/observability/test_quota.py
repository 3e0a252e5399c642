"""The events/s quota delays a tenant's events, never drops them, and never
delays another tenant's."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from activities.emitter import Emitter
from activities.quota import TenantQuota
from tests.observability.conftest import OTHER, TENANT, Obs
from tests.observability.scrape import scrape, value
from tests.topics import events_of, run_records
from tidings.events import Event, EventType
from tidings.topics import events_topic

pytestmark = pytest.mark.integration

RATE = 50
BURST_AND_MORE = 150  # a one-second burst, then two seconds' worth at the rate


async def emit_all(emitter: Emitter, tenant: str, run_id: str, count: int) -> float:
    started = time.monotonic()
    for seq in range(count):
        event = Event(EventType.STEP_PROGRESS, tenant, run_id, "q", 1, seq, {"n": seq})
        await emitter.emit(event, wait=False)
    await emitter.flush()
    return time.monotonic() - started


async def test_over_quota_events_wait_and_all_arrive_in_order(obs: Obs) -> None:
    before = await scrape(obs.worker_metrics_url)
    emitter = Emitter(obs.settings.kafka, metrics=obs.metrics, quota=TenantQuota(RATE))
    await emitter.start()
    try:
        noisy, quiet = (f"{t}-quota-{uuid.uuid4().hex[:8]}" for t in (TENANT, OTHER))
        noisy_seconds, quiet_seconds = await asyncio.gather(
            emit_all(emitter, TENANT, noisy, BURST_AND_MORE),
            emit_all(emitter, OTHER, quiet, 20),
        )
    finally:
        await emitter.stop()
    expected = (BURST_AND_MORE - RATE) / RATE
    assert noisy_seconds >= expected * 0.9, f"{noisy_seconds:.2f}s: the quota did not delay"
    assert quiet_seconds < 1.0, f"{quiet_seconds:.2f}s: another tenant was held back"
    print(f"{BURST_AND_MORE} events at {RATE}/s: {noisy_seconds:.2f}s; other {quiet_seconds:.3f}s")

    bootstrap, prefix = obs.settings.kafka.bootstrap_servers, obs.settings.kafka.topic_prefix

    def complete(events: list[Event]) -> bool:
        return len(events) >= BURST_AND_MORE

    records = await run_records(bootstrap, events_topic(prefix, TENANT), noisy, until=complete)
    assert [e.seq for e in events_of(records)] == list(range(BURST_AND_MORE)), "none dropped"

    after = await scrape(obs.worker_metrics_url)
    delayed = value(after, "tidings_worker_quota_delay_seconds_total", tenant=TENANT) - value(
        before, "tidings_worker_quota_delay_seconds_total", tenant=TENANT
    )
    # Less than the wall time: the time spent enqueueing refills the bucket too.
    assert delayed >= expected / 2
    assert value(after, "tidings_worker_quota_delay_seconds_total", tenant=OTHER) == value(
        before, "tidings_worker_quota_delay_seconds_total", tenant=OTHER
    )
