"""A client-load process: opens N WebSockets, reports READY, then counts frames
until each socket has the expected number or the deadline passes.

It prints one JSON line per phase on stdout, so the driver in another process
reads figures without sharing a CPU-heavy event loop with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time

from bench.wsclient import CountingClient, connect

T_NS = re.compile(rb'"t_ns":(\d+)')


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    latencies: list[int] = []

    def sample(payload: bytes, now_ns: int) -> None:
        match = T_NS.search(payload)
        if match and len(latencies) < args.max_samples:
            latencies.append(now_ns - int(match.group(1)))

    on_payload = sample if args.latency else None
    clients: list[CountingClient] = []
    failed = 0
    started = time.monotonic()
    paths = args.path.split(",")
    semaphore = asyncio.Semaphore(args.connect_concurrency)

    async def open_one(i: int) -> None:
        nonlocal failed
        async with semaphore:
            try:
                clients.append(
                    await connect(args.host, args.port, paths[i % len(paths)], headers, on_payload)
                )
            except (OSError, ConnectionError, TimeoutError):
                failed += 1

    await asyncio.gather(*(open_one(i) for i in range(args.clients)))
    connect_s = time.monotonic() - started
    print(
        json.dumps(
            {"phase": "ready", "clients": len(clients), "failed": failed, "connect_s": connect_s}
        ),
        flush=True,
    )
    if args.expect <= 0:
        # Idle mode: hold the sockets until the driver closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    else:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if all(c.frames >= args.expect for c in clients):
                break
            await asyncio.sleep(0.005)
    frames = sum(c.frames for c in clients)
    print(
        json.dumps(
            {
                "phase": "done",
                "clients": len(clients),
                "frames": frames,
                "complete": sum(1 for c in clients if c.frames >= args.expect),
                "last_ns": max((c.last_ns for c in clients), default=0),
                "latencies_ns": latencies,
                "close_codes": sorted({c.close_code for c in clients if c.close_code is not None}),
            }
        ),
        flush=True,
    )
    for client in clients:
        if client.transport is not None:
            client.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="comma-separated: clients round-robin")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--expect", type=int, default=0, help="frames per client; 0 = idle")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--max-samples", type=int, default=200_000)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    args = parser.parse_args()
    _raise_fd_limit()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
