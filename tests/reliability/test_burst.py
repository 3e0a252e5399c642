"""A burst of short-lived connections (connect, subscribe, drop) against both
gateway replicas while 100 runs stream to their own clients.

The burst comes from a thin raw-socket client in a separate process
(``burst_client.py``), bounded in count (10,000, the issue's figure) and in
time; the figures it reached are recorded either way.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx

from tests.processes import spawn_module
from tests.reliability.conftest import Rel
from tests.reliability.deploy import PIPELINE
from tests.reliability.verify import (
    Watchers,
    answers,
    assert_nothing_lost,
    check,
    record_tally,
    start_runs,
    topic_events,
    wait_completed,
)
from tests.support import wait_for

BURST = 10_000
BURST_SECONDS = 70.0
IDLE_SECONDS = 8.0
RUNS = 100


def open_sockets(metrics: str, tenant: str) -> float:
    found = re.search(rf'^tidings_stream_sockets{{tenant="{tenant}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def run_burst(rel: Rel, run_ids: list[str], count: int, seconds: float) -> dict[str, Any]:
    d = rel.deployment
    config = {
        "gateways": [["127.0.0.1", g.port] for g in d.gateways],
        "runs": run_ids,
        "key": d.secrets.api_key,
        "count": count,
        "concurrency": 48,
        "seconds": seconds,
        "timeout": 20.0,
    }
    process = await spawn_module(
        "tests.reliability.burst_client", json.dumps(config), stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_connection_burst_while_runs_stream(rel: Rel) -> None:
    d = rel.deployment
    key = d.secrets.api_key
    began = time.monotonic()
    # Baseline first: the same burst against a finished run, nothing else streaming.
    finished = await start_runs(d.urls[0], key, PIPELINE, 1, "burst baseline")
    await wait_completed(rel.temporal, finished, 120)
    idle = await run_burst(rel, finished, BURST, IDLE_SECONDS)
    run_ids = await start_runs(d.urls[0], key, PIPELINE, RUNS, "burst")
    async with Watchers() as watchers:
        watches = [
            watchers.follow(run_id, d.urls[i % 2 :] + d.urls[: i % 2], key)
            for i, run_id in enumerate(run_ids)
        ]
        burst = await run_burst(rel, run_ids, BURST, BURST_SECONDS)
        completed = await wait_completed(rel.temporal, run_ids, 180)
        await watchers.finish(90)

    # Every dropped socket is released: the gateways' open-socket gauges fall back to 0.
    async with httpx.AsyncClient(timeout=10) as http:

        async def drained() -> bool:
            pages = [(await http.get(f"{url}/metrics")).text for url in d.urls]
            return all(open_sockets(page, d.tenant) == 0 for page in pages)

        await wait_for(drained, 30, "the gateways to release every burst socket")

    topic = await topic_events(rel.kafka, d.prefix, d.tenant)
    tally = check(watches, topic, await answers(rel.temporal, run_ids))
    subscribed = burst["outcomes"].get("subscribed", 0)
    record_tally(
        "connection burst",
        f"{burst['attempted']:,} connect-subscribe-drop sockets (of {BURST:,} planned, "
        f"{BURST_SECONDS:g}s bound) while {RUNS} runs stream",
        tally,
        runs=RUNS,
        runs_completed=completed,
        recover_seconds=None,
        duration_seconds=time.monotonic() - began,
        burst=burst,
        burst_idle_baseline=idle,
    )
    assert completed == RUNS
    assert_nothing_lost(tally)
    assert burst["attempted"] >= 1_000, burst
    # Every burst socket that was attempted got subscribed: none refused or timed out.
    assert subscribed == burst["attempted"], burst
