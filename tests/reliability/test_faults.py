"""Faults while runs stream: nothing lost, nothing repeated, every run completes.

Each case starts runs of ``rel-research`` (draft tokens paced 25 ms), follows
every run with ``tidings.client`` across both gateway replicas, injects one
fault once every client is mid-draft, and then checks every client against
the run's records in Kafka (``verify.check``).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from temporalio.api.enums.v1 import PendingActivityState

from tests.reliability.conftest import Rel
from tests.reliability.scenario import Case, run_case
from tests.reliability.verify import drop_live, topic_events
from tests.support import wait_for
from tidings.topics import events_topic


async def busiest_worker(rel: Rel, run_ids: list[str]) -> tuple[int, int]:
    """(index, running attempts) of the worker running the most of these runs'
    activities right now, from Temporal's pending activities (worker identity
    is ``pid@host``), so the kill is sure to land mid-step."""
    pids: dict[str, int] = {}
    for index, proc in enumerate(rel.deployment.workers):
        if proc.popen is not None:
            pids[str(proc.popen.pid)] = index
    counts = dict.fromkeys(pids.values(), 0)
    for run_id in run_ids:
        desc = await rel.temporal.get_workflow_handle(run_id).describe()
        for pending in desc.raw_description.pending_activities:
            pid = pending.last_worker_identity.split("@", 1)[0]
            if pid in pids and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
                counts[pids[pid]] += 1
    index = max(counts, key=lambda i: counts[i])
    return index, counts[index]


async def test_worker_sigkill_mid_step(rel: Rel) -> None:
    d = rel.deployment

    async def inject(case: Case) -> None:
        victim = await busiest_worker(rel, case.run_ids)
        case.notes["killed_worker_attempts_running"] = victim[1]
        d.workers[victim[0]].kill()
        # A replacement comes up while the survivor takes over the retries.
        await asyncio.to_thread(d.replace_worker, victim[0])

    try:
        tally = await run_case(
            rel, "worker SIGKILL", "SIGKILL one of two workers mid-draft", inject
        )
    finally:
        await asyncio.to_thread(d.ensure_healthy)
    # The kill must have landed inside a step, or the case proved nothing.
    assert tally.retried_attempts >= 1, "no step attempt was cut short by the kill"


async def test_gateway_sigkill_mid_stream(rel: Rel) -> None:
    d = rel.deployment
    first, second = d.urls

    async def inject(case: Case) -> None:
        d.gateways[0].kill()
        # The clients move to the other replica with their tokens.
        await wait_for(
            lambda: all(
                w.done.is_set() or (w.subscription is not None and w.subscription.reconnects)
                for w in case.watches
            ),
            30,
            "every client to notice the dead gateway",
        )
        await asyncio.to_thread(d.restart_gateway, 0)

    try:
        await run_case(
            rel,
            "gateway SIGKILL",
            "SIGKILL the gateway replica every client was on",
            inject,
            gateways=[first, second],
        )
    finally:
        await asyncio.to_thread(d.ensure_healthy)


async def test_kafka_broker_restart(rel: Rel) -> None:
    d = rel.deployment

    async def inject(case: Case) -> None:
        began = time.monotonic()
        await asyncio.to_thread(rel.stack.restart, "kafka")
        case.notes["outage_seconds"] = round(time.monotonic() - began, 1)

    try:
        await run_case(rel, "Kafka restart", "restart the Kafka broker while runs stream", inject)
    finally:
        await asyncio.to_thread(d.ensure_healthy)


async def test_redis_restart_while_clients_resume(rel: Rel) -> None:
    d = rel.deployment

    async def inject(case: Case) -> None:
        began = time.monotonic()
        restart = asyncio.create_task(asyncio.to_thread(rel.stack.restart, "redis"))
        drops = 0
        # Keep cutting every client's connection while Redis goes down and comes
        # back, and a few times after: each cut is a resume that needs its session.
        after = 0
        while after < 4 and drops < 200:
            drops += drop_live(case.watches)
            await asyncio.sleep(0.4)
            if restart.done():
                after += 1
        await restart
        case.notes["outage_seconds"] = round(time.monotonic() - began, 1)
        case.notes["forced_drops"] = drops

    try:
        await run_case(
            rel, "Redis restart", "restart Redis (AOF) while clients drop and resume", inject
        )
    finally:
        await asyncio.to_thread(d.ensure_healthy)


async def test_temporal_restart_mid_run(rel: Rel) -> None:
    d = rel.deployment

    async def inject(case: Case) -> None:
        began = time.monotonic()
        await asyncio.to_thread(rel.stack.restart, "temporal")
        case.notes["outage_seconds"] = round(time.monotonic() - began, 1)

    try:
        await run_case(
            rel,
            "Temporal restart",
            "restart the Temporal server mid-run",
            inject,
            completion_timeout=180,
        )
    finally:
        await asyncio.to_thread(d.ensure_healthy)


async def test_duplicates_and_redelivery_are_invisible(rel: Rel) -> None:
    """Records produced twice (same envelope id) and events re-sent after a
    resume without acks (the gateway's redelivery) reach each application once."""
    d = rel.deployment
    topic = events_topic(d.prefix, d.tenant)

    async def inject(case: Case) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=rel.kafka, enable_idempotence=True)
        await producer.start()
        copies = 0
        try:
            for _ in range(3):
                records = await topic_events(rel.kafka, d.prefix, d.tenant)
                for run_id in case.run_ids:
                    for event in records.get(run_id, [])[:40]:
                        if event.is_terminal:
                            continue
                        await producer.send(
                            topic, event.to_bytes(), key=run_id.encode(), headers=event.headers()
                        )
                        copies += 1
                await producer.flush()
                # Redelivery: these clients never ack, so a resume re-sends everything.
                drop_live(case.watches)
                await asyncio.sleep(0.5)
        finally:
            await producer.stop()
        case.notes["duplicate_records_produced"] = copies

    tally = await run_case(
        rel,
        "duplicates + redelivery",
        "re-produce records with the same id; resume clients that never acked",
        inject,
        watch_options={"ack_every": 1_000_000, "ack_interval": 3600.0},
    )
    assert tally.records > tally.expected, "the topic should hold duplicate records"
