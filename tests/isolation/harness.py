"""Helpers of the isolation tests: a gateway in its own process (its memory
measured alone), paced producers, and clients that read at a set pace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.processes import spawn_module
from tests.support import free_port, wait_for
from tests.topics import topic_reader
from tidings.events import Event


@dataclass
class GatewayProc:
    url: str
    pid: int

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    def ws(self, run_id: str, query: str = "") -> str:
        base = self.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
        return f"{base}?{query}" if query else base


@asynccontextmanager
async def gateway_process(
    environ: dict[str, str], *, send_buffer: int = 0, niceness: int = 0
) -> AsyncIterator[GatewayProc]:
    """``python -m tests.isolation.gateway_main`` on a free port with exactly
    ``environ`` as its TIDINGS_* settings; stopped (SIGTERM, then SIGKILL) on exit.
    ``niceness`` below 0 (if we may) favours it over unrelated processes."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env = {**inherited, **environ, "TIDINGS_GATEWAY_PORT": str(port)}
    process = await spawn_module(
        "tests.isolation.gateway_main",
        str(port),
        str(send_buffer),
        env=env,
        # A session of its own: where the kernel shares CPU between sessions
        # (autogroups), the gateway's share is not the test's or a load generator's.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    if niceness:
        prioritise(process.pid, niceness)
    try:

        async def healthy() -> bool:
            if process.returncode is not None:
                return True
            try:
                async with httpx.AsyncClient(timeout=1) as http:
                    return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(healthy, 30, "the gateway process to serve")
        assert process.returncode is None, "the gateway process exited at start"
        yield GatewayProc(url, process.pid)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


def prioritise(pid: int, niceness: int) -> None:
    """Set a process's niceness and, where the kernel groups CPU by session
    (``/proc/<pid>/autogroup``), its session's; best effort (it needs the right)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as group:
        group.write(str(niceness))


@contextlib.contextmanager
def favoured(niceness: int) -> Iterator[None]:
    """This process (and its session's CPU share, see :func:`prioritise`) at
    ``niceness`` for the block, best effort; restored after."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    group_before = _group_niceness()
    prioritise(os.getpid(), niceness)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, before)
        if group_before is not None:
            with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
                group.write(str(group_before))


def _group_niceness() -> int | None:
    try:
        with open("/proc/self/autogroup") as group:
            return int(group.read().split()[-1])  # "/autogroup-123 nice 0"
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes(pid: int) -> int:
    """The process's resident set (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class RssSampler:
    """Samples a process's RSS on a thread (steady, whatever the test's loop does)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.samples.append((time.monotonic(), rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)


@asynccontextmanager
async def producer(bootstrap: str, *, linger_ms: int = 0) -> AsyncIterator[AIOKafkaProducer]:
    # Large batches: with idempotence one request per partition is in flight,
    # and 16 KB batches of 3 KB events would cap a burst well below 1,000/s.
    kafka = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        max_batch_size=1 << 20,
        linger_ms=linger_ms,
    )
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


async def produce_paced(
    kafka: AIOKafkaProducer,
    topic: str,
    make: Callable[[int], Event],
    count: int,
    rate: float,
) -> list[Event]:
    """Send ``make(0..count-1)`` at ``rate`` events per second (built at send
    time, so a timestamp in the data is the emit time); waits for every ack."""
    start = time.monotonic()
    futures: list[asyncio.Future[Any]] = []
    events: list[Event] = []
    for i in range(count):
        ahead = start + i / rate - time.monotonic()
        if ahead > 0.002:
            await asyncio.sleep(ahead)  # pacing the producer, not a synchronisation
        event = make(i)
        events.append(event)
        futures.append(
            await kafka.send(
                topic, event.to_bytes(), key=event.run_id.encode(), headers=event.headers()
            )
        )
    await asyncio.gather(*futures)
    return events


@asynccontextmanager
async def kafka_witness(bootstrap: str, topic: str) -> AsyncIterator[dict[str, int]]:
    """A plain Kafka consumer of ``topic`` beside the gateway: when (monotonic
    ns) each record, by event id, reached this process straight from Kafka.
    Comparing it with the socket's arrival separates the gateway's share of a
    latency from the broker's and the machine's."""
    seen: dict[str, int] = {}

    async def follow(consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.monotonic_ns()
            for records in batches.values():
                for record in records:
                    ids = [v for k, v in record.headers if k == "id"]
                    if ids:
                        seen[ids[0].decode()] = now

    async with topic_reader(bootstrap, topic, from_end=True) as (consumer, _):
        task = asyncio.create_task(follow(consumer))
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def small_socket(url: str, rcvbuf: int) -> socket.socket:
    """A connected client socket with a small receive buffer, so a client that
    reads slowly holds back the gateway within kilobytes, not megabytes."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


@dataclass
class Reading:
    """What one client saw: event envelopes in order, the end status, the close code."""

    events: list[dict[str, Any]] = field(default_factory=list)
    received_ns: list[int] = field(default_factory=list)
    status: str | None = None
    close_code: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]


async def open_client(
    url: str, key: str, *, rcvbuf: int | None = None, max_queue: int = 16
) -> ClientConnection:
    sock = small_socket(url, rcvbuf) if rcvbuf else None
    return await connect(
        url,
        sock=sock,
        additional_headers={"Authorization": f"Bearer {key}"},
        max_queue=max_queue,
        compression=None,
        open_timeout=30,
    )


async def read_stream(
    ws: ClientConnection,
    reading: Reading,
    *,
    pace: float | None = None,
    stop_after: int | None = None,
    on_token: asyncio.Event | None = None,
) -> Reading:
    """Read frames into ``reading`` until ``end`` (or the close, or ``stop_after``
    events). ``pace``: at most this many event frames a second, steadily (a
    client slower than a burst but not stalled)."""
    due = time.monotonic()
    try:
        while True:
            frame = json.loads(await ws.recv())
            kind = frame["kind"]
            if kind == "event":
                reading.received_ns.append(time.monotonic_ns())
                reading.events.append(frame["event"])
                if stop_after is not None and len(reading.events) >= stop_after:
                    return reading
                if pace:
                    due = max(due + 1 / pace, time.monotonic() - 0.05)
                    ahead = due - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)  # the client's reading pace
            elif kind == "token":
                reading.token = frame["token"]
                if on_token is not None:
                    on_token.set()
            elif kind == "end":
                reading.status = frame["status"]
            elif kind == "error":
                reading.errors.append(frame)
    except ConnectionClosed as exc:
        reading.close_code = exc.rcvd.code if exc.rcvd else None
    return reading


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
    return ordered[rank]
