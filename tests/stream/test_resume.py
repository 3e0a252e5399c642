"""The resume guarantee end to end: two gateways (one a child process that is
SIGKILLed mid-stream), fifty clients dropping at random points and resuming
on whichever gateway answers; each must see the run exactly once, in order."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stream.conftest import StreamEnv
from tests.stream.harness import (
    gateway_process,
    script,
    served,
    temporal_run,
    with_gateway,
)
from tests.support import drop_connection
from tidings.client import Subscription, subscribe
from tidings.events import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 50
DROPS_PER_CLIENT = 3
EMIT_INTERVAL = 0.01  # seconds between events: ~3 s of run, a few frames a burst


async def open_sockets(url: str, tenant: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tidings_stream_sockets" and sample.labels["tenant"] == tenant:
                return sample.value
    return 0.0


async def test_fifty_clients_resume_exactly_once_across_a_gateway_kill(
    stream_env: StreamEnv,
) -> None:
    env = stream_env
    settings = env.settings()
    key = env.key(env.tenant)
    rng = random.Random(4)
    async with (
        # The replica that dies sends through ASGI, the survivor writes frames
        # directly: each client crosses both delivery paths.
        gateway_process(with_gateway(settings, direct_frames=False), env.keys) as doomed,
        served(settings) as (survivor, em),
        temporal_run(env.temporal, env.tenant) as run_id,
    ):
        events = script(env.tenant, run_id, tokens=300)
        for event in events[:10]:  # before anyone subscribes: late joiners get them too
            await em.emit(event)
        received: dict[int, list[Event]] = {}
        performed: dict[int, int] = {}
        subs: list[Subscription] = []
        assert doomed.process is not None

        async def client(n: int) -> None:
            urls = [doomed.url, survivor.url]
            if n % 2:
                urls.reverse()
            # Drop points in the first 80 %, each on a connection of its own:
            # frames come in bursts, so the events still buffered after a drop
            # may pass the next point before the client has reconnected.
            drops = sorted(rng.sample(range(1, len(events) * 4 // 5), DROPS_PER_CLIENT))
            dropped_on = -1
            got = received.setdefault(n, [])
            async with subscribe(
                urls,
                run_id,
                key,
                ack_every=rng.randint(1, 25),
                ack_interval=0.2,
                backoff_initial=0.05,
                max_attempts=12,
            ) as sub:
                subs.append(sub)
                async for event in sub:
                    got.append(event)
                    if drops and len(got) >= drops[0] and sub.reconnects != dropped_on:
                        drops.pop(0)
                        dropped_on = sub.reconnects
                        drop_connection(sub)  # an abrupt network drop
                        performed[n] = performed.get(n, 0) + 1
                assert sub.status == "COMPLETED"

        clients = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        for n, event in enumerate(events[10:]):
            await em.emit(event)
            # Paced, as a model streams tokens: events keep coming after every
            # drop point, so no client ever holds the rest of the run in its
            # buffer when it drops (a drop must force a resume).
            await asyncio.sleep(EMIT_INTERVAL)
            if n == len(events) // 2:
                on_doomed = await open_sockets(doomed.url, env.tenant)
                doomed.process.kill()  # SIGKILL: no goodbye to its clients
        async with asyncio.timeout(90):
            await asyncio.gather(*clients)

        assert on_doomed > 0, "the kill should hit a gateway that is serving clients"
        produced = [event.id for event in em.of_run(run_id)]
        assert len(produced) == len(events)
        for n in range(CLIENTS):
            assert [event.id for event in received[n]] == produced, f"client {n}"
        assert performed == dict.fromkeys(range(CLIENTS), DROPS_PER_CLIENT)
        assert all(sub.reconnects >= DROPS_PER_CLIENT for sub in subs)
        assert survivor.service is not None
        registry = survivor.service.metrics.registry
        resumes = registry.get_sample_value("tidings_stream_resumes_total", {"tenant": env.tenant})
        assert resumes is not None and resumes >= CLIENTS
