"""Tenant A's load for the noisy-neighbour test, in a process of its own so
that its producer and its clients do not share the measuring test's event
loop (B's latencies must show the gateway, not the harness).

``python -m tests.isolation.noisy '<json config>'``; config keys: ``url``
(gateway), ``key``, ``tenant``, ``runs``, ``sockets_per_run``, ``rate``
(events/s over all runs), ``bootstrap``, ``topic``, ``pad`` (filler bytes).

It opens its sockets and prints ``ready``. Then each line on stdin switches
its producer: ``noisy`` (produce at ``rate``) or ``quiet`` (produce nothing);
on end of input it stops, closes its sockets, and prints one JSON line:
``{"produced": n, "received": m, "closes": [codes]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.isolation.harness import producer
from tidings.events import Event


async def read(ws: ClientConnection, counts: dict[str, Any]) -> None:
    try:
        async for raw in ws:
            if '"kind":"event"' in str(raw)[:20]:
                counts["received"] += 1
    except ConnectionClosed as exc:
        counts["closes"].append(exc.rcvd.code if exc.rcvd else None)


async def main(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    counts: dict[str, Any] = {"produced": 0, "received": 0, "closes": []}
    sockets: list[ClientConnection] = []
    for run_id in config["runs"]:
        for _ in range(config["sockets_per_run"]):
            ws = await connect(
                config["url"].replace("http://", "ws://") + f"/v1/runs/{run_id}/stream?from=now",
                additional_headers={"Authorization": f"Bearer {config['key']}"},
                compression=None,
            )
            assert json.loads(await ws.recv())["kind"] == "token"
            sockets.append(ws)
    readers = [asyncio.create_task(read(ws, counts)) for ws in sockets]

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)

    noisy = asyncio.Event()
    rate, runs, tenant = float(config["rate"]), config["runs"], config["tenant"]
    pad = "x" * int(config["pad"])

    async def produce() -> None:
        # Batched like the worker's emitter (linger 5 ms), not one request per event.
        async with producer(config["bootstrap"], linger_ms=5) as kafka:
            seq = 0
            while True:
                await noisy.wait()
                start, sent = time.monotonic(), 0
                while noisy.is_set():
                    due = start + sent / rate
                    ahead = due - time.monotonic()
                    if ahead > 0.002:
                        await asyncio.sleep(ahead)  # the producer's pace
                    seq += 1
                    event = Event(
                        "step.token", tenant, runs[seq % len(runs)], "draft", 1, seq,
                        {"text": f"a{seq} ", "pad": pad},
                    )  # fmt: skip
                    await kafka.send(
                        config["topic"],
                        event.to_bytes(),
                        key=event.run_id.encode(),
                        headers=event.headers(),
                    )
                    sent += 1
                    counts["produced"] += 1

    producing = asyncio.create_task(produce())
    while line := (await reader.readline()).decode().strip():
        if line == "noisy":
            noisy.set()
        elif line == "quiet":
            noisy.clear()
        print(f"ok {line}", flush=True)
    producing.cancel()
    await asyncio.gather(producing, return_exceptions=True)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
