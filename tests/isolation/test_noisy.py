"""One noisy tenant must not raise another tenant's latency (docs/design.md).

Tenant A produces ten times tenant B's event rate to its own sockets on the
same gateway process. B's emit-to-client latency is measured in windows that
alternate A quiet / A noisy, in ABBA blocks so a drift in the machine's
background load falls on both sides evenly. For each side the statistic is
the median over its windows of each window's p99: one window spoiled by an
unrelated burst of load on the machine moves it little.

Latency is stamped with ``time.monotonic_ns()`` at emit (in the event's data)
and read again when the client receives the frame. CLOCK_MONOTONIC is one
clock for every process on a machine, so the two are comparable even though
the emitter, the gateway and the client are different processes.

What is held constant so that the comparison is about the gateway: the
gateway runs in a session of its own, favoured over unrelated processes
(best effort: niceness and, where Linux shares CPU between sessions, the
session's); A's load generator runs in another session, niced, because on a
deployment A's producers and clients are not on the gateway's machine; the
measuring process does not collect garbage while it measures. The Kafka broker
is shared by both tenants and is not the gateway's to isolate: a plain
consumer beside B's sockets measures B's records straight from Kafka in the
same windows, and whatever that path's p99 rises by with A noisy is allowed
on top of the tolerance.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.isolation.conftest import IsoEnv
from tests.isolation.harness import (
    Reading,
    favoured,
    gateway_process,
    kafka_witness,
    open_client,
    percentile,
    prioritise,
    produce_paced,
    producer,
    read_stream,
)
from tests.observability.scrape import scrape, value
from tests.processes import spawn_module
from tests.stream.harness import temporal_run
from tests.support import wait_for
from tidings.events import Event

pytestmark = [pytest.mark.integration]

B_RATE = 100.0  # events/s
A_RATE = 10 * B_RATE
A_RUNS, SOCKETS_PER_RUN = 4, 2  # B: one run, two sockets
PAD = 200  # filler bytes per event, the same for both tenants
WARMUP = 2.0  # seconds of B alone before the first window (not measured)
WINDOW = 2.5
SETTLE = 0.3  # the start of each window is not measured: A is switching
ORDER = ["quiet", "noisy", "noisy", "quiet"] * 4
# The tolerance: 20 %, or 5 ms when B's p99 is so small that 20 % of it is
# below what a shared 2-core machine can promise. With A noisy the gateway
# process does ten times the work in one event loop, and the machine runs
# A's generator and the broker's extra work between B's steps: milliseconds
# of scheduling that no gateway design removes. 5 ms is far below what a
# person watching tokens notices, and below one Kafka long-poll round trip.
RELATIVE, ABSOLUTE_MS = 0.20, 5.0


class NoisyTenant:
    """Tenant A's load process (``tests/isolation/noisy.py``), switched between
    quiet and noisy; :meth:`finish` ends it and returns its counts."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process, self._stdin, self._stdout = process, process.stdin, process.stdout

    @classmethod
    async def start(cls, config: dict[str, Any]) -> NoisyTenant:
        process = await spawn_module(
            "tests.isolation.noisy",
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Its own session (the kernel may share CPU between sessions), niced:
            # on a deployment A's producers and clients are not on the gateway's machine.
            start_new_session=True,
        )
        prioritise(process.pid, 10)
        tenant = cls(process)
        line = await asyncio.wait_for(tenant._stdout.readline(), 60)
        assert line.strip() == b"ready", line
        return tenant

    async def switch(self, mode: str) -> None:
        self._stdin.write(f"{mode}\n".encode())
        await self._stdin.drain()
        answer = await asyncio.wait_for(self._stdout.readline(), 10)
        assert answer.strip() == f"ok {mode}".encode(), answer

    async def finish(self) -> dict[str, Any]:
        if not self._stdin.is_closing():
            self._stdin.close()
        out = await asyncio.wait_for(self._stdout.read(), 30)
        await asyncio.wait_for(self.process.wait(), 30)
        lines = out.decode().strip().splitlines()
        counts: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        return counts


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this (measuring) process: its pauses would be
    counted as B's latency."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_b_p99_latency_does_not_rise_when_a_is_noisy(iso_env: IsoEnv) -> None:
    env = iso_env
    a, b = env.noisy, env.quiet
    async with (
        # The system under test is favoured over unrelated processes on a
        # shared machine (when we may), and A's load generator is niced.
        gateway_process(env.environ(), niceness=-10) as gw,
        producer(env.base.kafka.bootstrap_servers) as kafka,
        kafka_witness(env.base.kafka.bootstrap_servers, env.topic(b)) as witness,
        AsyncExitStack() as stack,
    ):
        a_runs = [
            await stack.enter_async_context(temporal_run(env.temporal, a)) for _ in range(A_RUNS)
        ]
        b_run = await stack.enter_async_context(temporal_run(env.temporal, b))
        noisy = await NoisyTenant.start(
            {
                "url": gw.url,
                "key": env.key(a),
                "tenant": a,
                "runs": a_runs,
                "sockets_per_run": SOCKETS_PER_RUN,
                "rate": A_RATE,
                "bootstrap": env.base.kafka.bootstrap_servers,
                "topic": env.topic(a),
                "pad": PAD,
            }
        )
        try:
            readings = [Reading() for _ in range(SOCKETS_PER_RUN)]
            readers = []
            for reading in readings:
                ws = await open_client(gw.ws(b_run), env.key(b))
                readers.append(asyncio.create_task(read_stream(ws, reading)))

            async def b_open() -> bool:
                samples = await scrape(gw.metrics_url)
                return value(samples, "tidings_stream_sockets", tenant=b) == SOCKETS_PER_RUN

            await wait_for(b_open, 30, "B's sockets registered", interval=0.1)
            with favoured(-10), collector_paused():
                first_window = time.monotonic() + WARMUP

                def make(i: int) -> Event:
                    now = time.monotonic()
                    window = int((now - first_window) // WINDOW) if now >= first_window else -1
                    settled = now - first_window - window * WINDOW >= SETTLE
                    data: dict[str, Any] = {
                        "t": time.monotonic_ns(),
                        "w": window if settled else -1,
                    }
                    data["pad"] = "x" * PAD
                    return Event("step.token", b, b_run, "draft", 1, i + 1, data)

                total = int(B_RATE * (WARMUP + WINDOW * len(ORDER)))
                producing = asyncio.create_task(
                    produce_paced(kafka, env.topic(b), make, total, B_RATE)
                )
                try:
                    for index, mode in enumerate(ORDER):
                        at = first_window + index * WINDOW
                        await asyncio.sleep(max(0.0, at - time.monotonic()))  # window start
                        await noisy.switch(mode)
                    sent = await producing
                finally:
                    producing.cancel()
                await noisy.switch("quiet")
                done = Event("run.completed", b, b_run, None, 1, 0, {"output": {}})
                await kafka.send_and_wait(
                    env.topic(b), done.to_bytes(), key=b_run.encode(), headers=done.headers()
                )
                await asyncio.wait_for(asyncio.gather(*readers), 30)
        finally:
            a_counts = await noisy.finish()

    expected = [e.id for e in sent] + [done.id]
    for reading in readings:
        assert reading.ids == expected, "B got every event once, in order"
    # Per window: B's emit->client latencies, and the same records' emit->
    # arrival straight from Kafka (the witness, in this process).
    end_to_end: dict[int, list[float]] = {}
    kafka_only: dict[int, list[float]] = {}
    for reading in readings:
        for event, received in zip(reading.events, reading.received_ns, strict=True):
            window, emitted = event["data"].get("w", -1), event["data"].get("t", 0)
            if window >= 0:
                end_to_end.setdefault(window, []).append((received - emitted) / 1e6)
                if event["id"] in witness:
                    kafka_only.setdefault(window, []).append((witness[event["id"]] - emitted) / 1e6)
    e2e, kafka_ = per_mode_p99(end_to_end), per_mode_p99(kafka_only)
    quiet_p99, noisy_p99 = e2e["quiet"], e2e["noisy"]
    kafka_rise = max(0.0, kafka_["noisy"] - kafka_["quiet"])
    a_seconds = WINDOW * ORDER.count("noisy")
    print(
        f"\nB p99 emit->client: A quiet {quiet_p99:.2f} ms, A noisy {noisy_p99:.2f} ms "
        f"(median of {len(ORDER) // 2} windows' p99 each; B's median latency "
        f"{statistics.median(x for v in end_to_end.values() for x in v):.2f} ms); "
        f"straight from Kafka: {kafka_['quiet']:.2f} / {kafka_['noisy']:.2f} ms; "
        f"per window: {window_p99s(end_to_end)}; Kafka: {window_p99s(kafka_only)}; "
        f"A produced {a_counts['produced']} ({a_counts['produced'] / a_seconds:.0f}/s while "
        f"noisy), its sockets received {a_counts['received']}"
    )
    # A really was noisy: ten times B's rate, delivered to its sockets.
    assert a_counts["produced"] >= 0.7 * A_RATE * a_seconds
    assert a_counts["received"] >= 0.9 * a_counts["produced"] * SOCKETS_PER_RUN
    allowed = max(quiet_p99 * (1 + RELATIVE), quiet_p99 + ABSOLUTE_MS) + kafka_rise
    assert noisy_p99 <= allowed, (
        f"B's p99 rose from {quiet_p99:.2f} ms to {noisy_p99:.2f} ms with A noisy "
        f"(allowed {allowed:.2f} ms, of which {kafka_rise:.2f} ms is Kafka's own rise)"
    )


def per_mode_p99(latencies: dict[int, list[float]]) -> dict[str, float]:
    """For quiet and for noisy: the median over that mode's windows of each
    window's p99 (robust to a burst of unrelated load spoiling one window)."""
    p99 = {w: percentile(v, 0.99) for w, v in latencies.items() if v}
    out = {}
    for mode in ("quiet", "noisy"):
        values = [p99[w] for w, m in enumerate(ORDER) if m == mode and w in p99]
        assert len(values) == ORDER.count(mode), f"windows without samples: {sorted(p99)}"
        out[mode] = statistics.median(values)
    return out


def window_p99s(latencies: dict[int, list[float]]) -> str:
    return " ".join(
        f"{ORDER[w][0]}{percentile(v, 0.99):.0f}" for w, v in sorted(latencies.items()) if v
    )
