"""``python -m bench.stalled_readers``: what 1,000 readers that stop reading
cost a gateway and its kernel, beside 1,000 idle sockets.

One ``tidings gateway`` process on a free port (bench.systems.Tidings: its
own topic and one open run), against running Temporal, Kafka and Redis named
by TIDINGS_BENCH_TEMPORAL_ADDRESS, TIDINGS_BENCH_KAFKA_BOOTSTRAP and
TIDINGS_BENCH_REDIS_URL. Two phases, each with ``--sockets`` raw sockets
that do the WebSocket handshake and then never read:

- idle: nothing is published; the baseline.
- stalled: each socket has a 4 KiB receive buffer, and ``--events`` events
  of ``--payload`` bytes are published to the run they all follow, so every
  socket's pipe fills, then its queue, until the gateway cuts it with 4408
  and, once the close linger is over, aborts it.

Sampled every half second: the gateway's RSS, the kernel's TCP memory
(``/proc/net/sockstat``, machine-wide, so reported as the change from
before the phase), and ``ss -tm`` summed over the gateway's sockets (bytes
queued to send, and their SO_SNDBUF caps) and over the clients' (bytes
received and unread). Writes the figures as JSON to ``--out`` and prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.harness import ROOT, raise_fd_limit, rss_kb
from bench.messages import API_KEY, TENANT
from bench.systems import Endpoints, Tidings
from tidings.events import Event
from tidings.kafka_connection import client_options
from tidings.settings import KafkaSettings

PAGE = os.sysconf("SC_PAGE_SIZE")


def say(message: str) -> None:
    print(f"[stalled {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sockstat(field: str) -> int:
    """A field of the kernel's TCP line in ``/proc/net/sockstat``, machine-wide
    (``mem``: buffer memory in pages; ``orphan``: closed sockets still sending)."""
    with open("/proc/net/sockstat") as stat:
        for line in stat:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index(field) + 1])
    return 0


def tcp_pages() -> int:
    return sockstat("mem")


def skmem(filter_: str) -> dict[str, int]:
    """``ss -tm`` of the sockets matching ``filter_``, summed (every state but
    listening: one closed with bytes unsent lingers in FIN-WAIT-1, holding them)."""
    out = subprocess.run(
        ["ss", "-tmnH", filter_],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    totals = {"sockets": 0, "rmem": 0, "queued": 0, "sndbuf": 0}
    for found in re.finditer(r"skmem:\(r(\d+),rb\d+,t\d+,tb(\d+),f\d+,w(\d+)", out):
        totals["sockets"] += 1
        totals["rmem"] += int(found[1])
        totals["sndbuf"] += int(found[2])
        totals["queued"] += int(found[3])
    return totals


def sample(pid: int, port: int, pages_before: int) -> dict[str, int]:
    server = skmem(f"( sport = :{port} )")
    client = skmem(f"( dport = :{port} )")
    return {
        "gateway_rss_kib": rss_kb(pid),
        "kernel_tcp_kib_delta": (tcp_pages() - pages_before) * PAGE // 1024,
        "orphan_sockets": sockstat("orphan"),
        "gateway_sockets": server["sockets"],
        "gateway_send_queued_kib": server["queued"] // 1024,
        "gateway_sndbuf_caps_kib": server["sndbuf"] // 1024,
        "client_unread_kib": client["rmem"] // 1024,
    }


async def open_raw(port: int, path: str, rcvbuf: int | None) -> socket.socket:
    """A socket past the WebSocket handshake, that reads nothing more."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {API_KEY}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 1024)
        if not chunk:
            raise RuntimeError("the gateway closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return sock


async def open_many(n: int, port: int, path: str, rcvbuf: int | None) -> list[socket.socket]:
    limit = asyncio.Semaphore(50)

    async def one() -> socket.socket:
        async with limit:
            return await open_raw(port, path, rcvbuf)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def publish(kafka: str, topic: str, run_id: str, events: int, payload: int) -> None:
    options = client_options(KafkaSettings(bootstrap_servers=kafka))
    producer = AIOKafkaProducer(**options, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        pad = "x" * payload
        for start in range(0, events, 200):
            batch = [
                await producer.send(
                    topic,
                    Event(
                        "step.token", TENANT, run_id, "draft", 1, i + 1, {"text": pad}
                    ).to_bytes(),
                    key=run_id.encode(),
                )
                for i in range(start, min(start + 200, events))
            ]
            await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def phase(
    name: str,
    system: Tidings,
    pid: int,
    run_id: str,
    args: argparse.Namespace,
    *,
    stalled: bool,
) -> dict[str, Any]:
    port = system.port
    pages_before = tcp_pages()
    before = sample(pid, port, pages_before)
    path = system.stream_path(run_id, "from=now")
    socks = await open_many(args.sockets, port, path, 4096 if stalled else None)
    say(f"{name}: {len(socks)} sockets open")
    opened = sample(pid, port, pages_before)
    peak = dict(opened)
    samples = [opened]
    if stalled:
        publisher = asyncio.create_task(
            publish(system.endpoints.kafka, system.topic, run_id, args.events, args.payload)
        )
        deadline = time.monotonic() + args.stall_window
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = sample(pid, port, pages_before)
            samples.append(now)
            peak = {k: max(peak[k], v) for k, v in now.items()}
            if publisher.done() and now["gateway_sockets"] == 0:
                break  # every stalled socket was cut and aborted
        await publisher
    else:
        await asyncio.sleep(2)
        samples.append(sample(pid, port, pages_before))
        peak = {k: max(peak[k], v) for k, v in samples[-1].items()}
    end = sample(pid, port, pages_before)
    for sock in socks:
        sock.close()
    say(f"{name}: peak {peak}")
    return {"before": before, "opened": opened, "peak": peak, "end": end, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--payload", type=int, default=1000, help="bytes of text per event")
    parser.add_argument(
        "--stall-window", type=float, default=75.0, help="seconds to sample the stalled phase"
    )
    parser.add_argument(
        "--send-buffer", type=int, default=None, help="TIDINGS_GATEWAY_SEND_BUFFER_BYTES"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "stalled-readers.json"
    )
    args = parser.parse_args()
    names = (
        "TIDINGS_BENCH_TEMPORAL_ADDRESS",
        "TIDINGS_BENCH_KAFKA_BOOTSTRAP",
        "TIDINGS_BENCH_REDIS_URL",
    )
    if not all(os.environ.get(n) for n in names):
        parser.error("name running services with " + ", ".join(names))
    endpoints = Endpoints(*(os.environ[n] for n in names))
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="stalled-") as work:
        system = Tidings(Path(work), endpoints)
        if args.send_buffer is not None:
            env = system.gateway_env()
            env["TIDINGS_GATEWAY_SEND_BUFFER_BYTES"] = str(args.send_buffer)
            system.gateway_env = lambda: env  # type: ignore[method-assign]
        try:
            run_id = system.channels(1)[0]
            with system.running() as server:
                time.sleep(1)
                idle = asyncio.run(phase("idle", system, server.pid, run_id, args, stalled=False))
                time.sleep(2)  # the idle sockets' closes reach the gateway
                stalled = asyncio.run(
                    phase("stalled", system, server.pid, run_id, args, stalled=True)
                )
        finally:
            system.close()
    result = {
        "sockets": args.sockets,
        "events": args.events,
        "payload_bytes": args.payload,
        "send_buffer_bytes": args.send_buffer,
        "idle": idle,
        "stalled": stalled,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for name in ("idle", "stalled"):
        print(
            name, "peak", json.dumps(result[name]["peak"]), "end", json.dumps(result[name]["end"])
        )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
