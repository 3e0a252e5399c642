"""The workloads, for any system reached over WebSocket (bench.systems).

A  fan-out: 1 channel x N subscribers, a burst of M messages: deliveries/s.
B  many runs: N channels x 1 subscriber each, M messages per channel.
C  idle: N open connections; RSS per connection of the server process.
D  resume: drop, miss K events, come back: time to receive all, missing/dup.
E  latency: emit -> receive at a fixed rate (1 sub on each of N runs, and
   N subs on 1 run): p50/p99/p99.9.
F  burst of new authenticated, subscribed connections: connections/s.
G  1 run x 200 subscribers, a burst of 1,500 events (more than the 1,000
   events a Tidings send queue holds): does everything arrive?

Clients run in bench.loadgen processes, publishers in bench.publish
processes; this driver only coordinates and reads /proc.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from bench.harness import cpu_seconds, latency_summary, load, rss_kb, write_targets
from bench.profile import sampled
from bench.systems import System


@dataclass(frozen=True)
class Scale:
    a_subs: int = 1000
    a_messages: int = 200
    b_runs: int = 1000
    b_messages: int = 50
    c_connections: int = 10_000
    d_events: int = 10_000
    e1_runs: int = 1000
    e1_rate: float = 1000
    e2_subs: int = 1000
    e2_rate: float = 50
    e_seconds: float = 10
    e_warmup: float = 1.0
    f_connections: int = 2000
    g_subs: int = 200
    g_messages: int = 1500
    # O1: concurrent runs, tokens per second per run, seconds of emitting.
    o1_runs: tuple[int, ...] = (1, 100, 1000)
    o1_rate: float = 5
    o1_seconds: float = 20
    o2_events: int = 200_000
    o3_runs: int = 1000
    load_processes: int = 2
    idle_load_processes: int = 2
    timeout: float = 90

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Scale()
QUICK = Scale(
    a_subs=200,
    a_messages=50,
    b_runs=200,
    b_messages=20,
    c_connections=300,
    d_events=2000,
    e1_runs=200,
    e1_rate=200,
    e2_subs=200,
    e_seconds=2,
    e_warmup=0.5,
    f_connections=300,
    g_subs=100,
    g_messages=1200,
    o1_runs=(1, 10, 50),
    o1_seconds=3,
    o2_events=20_000,
    o3_runs=100,
    timeout=45,
)


IDLE_CONCURRENCY = 40


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU-seconds per process; a gateway of several processes (``server_1``,
    ``server_2``...) also gets their sum as ``server``."""
    spent = {name: cpu_seconds(pid) for name, pid in pids.items()}
    several = [v for name, v in spent.items() if name.startswith("server_")]
    if several:
        spent["server"] = sum(several)
    return spent


def _cpu_per_million(
    before: dict[str, float], after: dict[str, float], delivered: int
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in before:
        spent = after.get(name, 0.0) - before[name]
        out[f"cpu_s_per_M_{name}"] = round(spent / delivered * 1e6, 2) if delivered else None
    return out


def _opened(readies: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for ready in readies:
        for key, count in ready.get("errors", {}).items():
            errors[key] = errors.get(key, 0) + count
    return {
        "connected": sum(r["clients"] for r in readies),
        "failed": sum(r["failed"] for r in readies),
        "connect_s": round(
            (max(r["ready_ns"] for r in readies) - min(r["start_ns"] for r in readies)) / 1e9, 3
        ),
        **({"errors": errors} if errors else {}),
    }


def _deliver(
    system: System,
    channels: list[str],
    subs: int,
    count: int,
    rate: float,
    scale: Scale,
    *,
    latency: bool,
    warmup: float = 0.0,
) -> dict[str, Any]:
    """Open ``subs`` sockets round-robin over ``channels``, publish ``count``
    messages per channel, gather what arrives."""
    targets = write_targets(system.targets(channels))
    try:
        with (
            system.running(),
            load(
                scale.load_processes,
                subs,
                targets=targets,
                latency=latency,
                open_timeout=scale.timeout,
                **system.load_options(),
            ) as loads,
        ):
            opened = _opened([proc.ready(scale.timeout * 3) for proc in loads])
            if opened["connected"] == 0:
                return {"error": "no connection opened", **opened}
            per_socket = count  # every channel gets ``count``; each socket follows one
            duration = (count * len(channels) / rate) if rate else 0.0
            wait = duration + scale.timeout
            since = time.monotonic_ns() + int(warmup * 1e9) + int(0.3e9)
            for proc in loads:
                proc.measure_start(per_socket, wait, since)
            time.sleep(0.3)
            pids = system.pids()
            cpu0 = _cpu(pids)
            published = system.publish(channels, count, rate, duration + scale.timeout)
            results = [proc.measure_result(wait) for proc in loads]
            cpu1 = _cpu(pids)
    finally:
        os.unlink(targets)
    received = sum(r["messages"] for r in results)
    expected = opened["connected"] * count
    last_ns = max(r["last_ns"] for r in results)
    seconds = max(1e-9, (last_ns - published["t0_ns"]) / 1e9)
    out: dict[str, Any] = {
        **opened,
        "expected": expected,
        "received": received,
        "incomplete_sockets": sum(r["clients"] - r["complete"] for r in results),
        "closed_sockets": sum(r["closed"] for r in results),
        "close_codes": sorted({c for r in results for c in r["close_codes"]}),
        "seconds": round(seconds, 3),
        "publish_s": round((published["t1_ns"] - published["t0_ns"]) / 1e9, 3),
        "deliveries_per_s": round(received / seconds),
        **_cpu_per_million(cpu0, cpu1, received),
    }
    if latency:
        out.update(latency_summary([s / 1e6 for r in results for s in r["latencies_ns"]]))
    return out


def fanout(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(1)
    return _deliver(system, channels, scale.a_subs, scale.a_messages, 0, scale, latency=False)


def many_runs(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(scale.b_runs)
    return _deliver(system, channels, scale.b_runs, scale.b_messages, 0, scale, latency=False)


def latency_many_runs(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(scale.e1_runs)
    count = max(1, round(scale.e1_rate * scale.e_seconds / len(channels)))
    result = _deliver(
        system,
        channels,
        scale.e1_runs,
        count,
        scale.e1_rate,
        scale,
        latency=True,
        warmup=scale.e_warmup,
    )
    return {"rate": scale.e1_rate, "subs_per_run": 1, "runs": len(channels), **result}


def latency_fanout(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(1)
    count = max(1, round(scale.e2_rate * scale.e_seconds))
    result = _deliver(
        system,
        channels,
        scale.e2_subs,
        count,
        scale.e2_rate,
        scale,
        latency=True,
        warmup=scale.e_warmup,
    )
    return {"rate": scale.e2_rate, "subs_per_run": scale.e2_subs, "runs": 1, **result}


def big_burst(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(1)
    return _deliver(system, channels, scale.g_subs, scale.g_messages, 0, scale, latency=False)


@contextmanager
def warmed(system: System, targets: str, scale: Scale) -> Iterator[None]:
    """One open socket on each of the system's warm ports, kept open until exit."""
    with ExitStack() as stack:
        for port in system.warm_ports():
            options = {**system.load_options(), "port": port}
            warm = stack.enter_context(load(1, 1, targets=targets, **options))
            warm[0].ready(scale.timeout)
        yield


def idle(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(min(1000, scale.c_connections))
    targets = write_targets(system.targets(channels))
    try:
        # One socket first, so state made on first use (a tenant's Kafka
        # tail, a Redis pool) is in the baseline, not spread over the rest.
        with system.running() as srv, warmed(system, targets, scale):
            time.sleep(1.0)
            rss0 = sum(rss_kb(pid) for pid in system.server_pids())
            with load(
                scale.idle_load_processes,
                scale.c_connections,
                targets=targets,
                open_timeout=scale.timeout * 2,
                # The same, moderate pace for every system: RSS keeps the
                # high-water mark of connection set-up, which a faster burst raises.
                **{**system.load_options(), "connect_concurrency": IDLE_CONCURRENCY},
            ) as loads:
                opened = _opened([proc.ready(scale.timeout * 6) for proc in loads])
                time.sleep(2.0)
                rss1 = sum(rss_kb(pid) for pid in system.server_pids())
                alive = srv.proc.poll() is None
    finally:
        os.unlink(targets)
    connected = max(1, opened["connected"])
    return {
        **opened,
        "rss0_mb": round(rss0 / 1024, 1),
        "rss1_mb": round(rss1 / 1024, 1),
        "kb_per_conn": round((rss1 - rss0) / connected, 1),
        "server_alive": alive,
    }


def connect_burst(system: System, scale: Scale) -> dict[str, Any]:
    channels = system.channels(min(1000, scale.f_connections))
    targets = write_targets(system.targets(channels))
    try:
        with system.running() as srv:
            with warmed(system, targets, scale):
                pids = system.pids()
                cpu0 = _cpu(pids)
                with (
                    sampled(f"{system.name}-F", system.server_pids()[0]),
                    load(
                        scale.load_processes,
                        scale.f_connections,
                        targets=targets,
                        open_timeout=scale.timeout * 2,
                        **system.load_options(burst=True),
                    ) as loads,
                ):
                    opened = _opened([proc.ready(scale.timeout * 4) for proc in loads])
                    cpu1 = _cpu(pids)  # before the sockets close: closing costs too
            alive = srv.proc.poll() is None
    finally:
        os.unlink(targets)
    connected = opened["connected"]
    spent = {k: cpu1[k] - cpu0[k] for k in cpu0}
    return {
        **opened,
        "connections_per_s": round(connected / max(opened["connect_s"], 1e-9)),
        "cpu_ms_per_conn_server": round(spent["server"] / max(connected, 1) * 1000, 3),
        "server_alive": alive,
    }


def resume(system: System, scale: Scale) -> dict[str, Any]:
    with system.running():
        result = system.resume(scale.d_events, scale.timeout)
    return {"events": scale.d_events, **result}


WORKLOADS = {
    "A": ("1 run x subscribers: burst fan-out", fanout),
    "B": ("runs x 1 subscriber: burst", many_runs),
    "C": ("idle connections: RSS", idle),
    "D": ("resume after missing events", resume),
    "E1": ("latency: 1 sub on each run", latency_many_runs),
    "E2": ("latency: subscribers on 1 run", latency_fanout),
    "F": ("burst of new connections", connect_burst),
    "G": ("1 run x subscribers: burst larger than a send queue", big_burst),
}
