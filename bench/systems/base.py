"""What every system under test shares: the interface the workloads drive,
the publisher process, and a socket that collects one stream for the resume
workload.

Each system starts its server as a separate process (fresh for every
workload, so CPU and memory figures are its own), names its channels (a run
for Tidings), says how a client subscribes to one, and publishes through a
separate publisher process (bench.publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    ROOT,
    Server,
    pid_listening,
)
from bench.wsclient import connect

N_RE = re.compile(rb'"n":(\d+)')
ALL_WORKLOADS = frozenset({"A", "B", "C", "D", "E1", "E2", "F", "G"})
CACHE = ROOT / "bench" / ".cache"


@dataclass(frozen=True)
class Endpoints:
    temporal: str
    kafka: str
    redis: str


def run_publisher(
    system: str,
    target: str,
    channels: list[str],
    count: int,
    rate: float,
    deadline: float,
    *extra: str,
) -> dict[str, Any]:
    """Run ``bench.publish`` for ``system`` in a process of its own; ``extra``
    are system-specific flags. The channels go through a file (argv is too
    small for 1,000)."""
    handle, path = tempfile.mkstemp(prefix="bench-channels-", suffix=".json")
    with os.fdopen(handle, "w") as file:
        json.dump(channels, file)
    argv = [
        "--system", system, "--target", target, *extra, "--channels", path,
        "--count", str(count), "--rate", str(rate), "--deadline", str(deadline),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            [PYTHON, "-m", "bench.publish", *argv],
            capture_output=True,
            text=True,
            timeout=deadline + 60,
            cwd=ROOT,
        )
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise RuntimeError(f"publisher failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def with_kafka_broker(pids: dict[str, int], endpoints: Endpoints) -> dict[str, int]:
    """``pids`` and, as "broker", the process serving the stack's Kafka port."""
    broker = pid_listening(int(endpoints.kafka.rsplit(":", 1)[1]))
    return pids if broker is None else {**pids, "broker": broker}


class System:
    name = ""
    title = ""
    api_key = ""
    ready_marker = ""
    empty_ping = False
    workloads = ALL_WORKLOADS
    # Sockets each load process opens at once (bursts use burst_concurrency).
    connect_concurrency = 200
    burst_concurrency = 250

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = 0
        self.server: Server | None = None

    @contextmanager
    def running(self) -> Iterator[Server]:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        """Processes whose CPU counts: ``server`` (the fan-out process) and,
        where there is one, ``broker``."""
        assert self.server is not None
        return {"server": self.server.pid}

    def server_pids(self) -> list[int]:
        """The serving processes whose memory counts (more than one for a
        multi-process gateway)."""
        assert self.server is not None
        return [self.server.pid]

    def warm_ports(self) -> list[int]:
        """Where one warm-up socket each goes before C and F measure, so state
        made on first use is in every serving process's baseline."""
        return [self.port]

    def channels(self, n: int) -> list[str]:
        return [f"bench-{i}" for i in range(n)]

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        raise NotImplementedError

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        raise NotImplementedError

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what outlives one workload (runs, topics)."""

    def load_options(self, burst: bool = False) -> dict[str, Any]:
        return {
            "connect_concurrency": self.burst_concurrency if burst else self.connect_concurrency,
            "port": self.port,
            "api_key": self.api_key,
            "ready_marker": self.ready_marker,
            "empty_ping": self.empty_ping,
        }


async def collect(
    port: int,
    path: str,
    *,
    hello: str | None,
    ready_marker: bytes | None,
    until: bytes,
    expect: int,
    limit_s: float,
    api_key: str = "",
) -> tuple[list[bytes], float]:
    """Open one socket and gather its text payloads until ``until`` was seen
    (if given) and ``expect`` benchmark messages arrived, or the timeout;
    return them and the seconds from connecting to that moment."""
    payloads: list[bytes] = []
    numbered = 0
    seen = False
    done = asyncio.Event()
    finished_at = 0.0

    def keep(buf: bytes, start: int, end: int, _now: int) -> None:
        nonlocal numbered, seen, finished_at
        payload = buf[start:end]
        payloads.append(payload)
        numbered += payload.count(b'"t_ns"')
        if until and until in payload:
            seen = True
        if (seen or not until) and numbered >= expect and not done.is_set():
            finished_at = time.monotonic()
            done.set()

    started = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    client = await connect(
        "127.0.0.1",
        port,
        path,
        headers,
        keep,
        open_timeout=limit_s,
        hello=hello,
        ready_marker=ready_marker,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), max(0.01, started + limit_s - time.monotonic()))
    client.close()
    return payloads, (finished_at or time.monotonic()) - started


def count_numbers(payloads: list[bytes], events: int) -> dict[str, Any]:
    numbers = [int(m.group(1)) for p in payloads for m in N_RE.finditer(p)]
    unique = set(numbers)
    in_order = all(a < b for a, b in itertools.pairwise(numbers))
    return {
        "received": len(numbers),
        "missing": sum(1 for i in range(events) if i not in unique),
        "duplicated": len(numbers) - len(unique),
        "in_order": in_order,
    }
