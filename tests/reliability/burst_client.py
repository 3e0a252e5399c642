"""A thin WebSocket client for the connection burst, run as its own process:

    python -m tests.reliability.burst_client CONFIG_JSON

Opens ``count`` short-lived stream sockets (``concurrency`` at a time, spread
over the gateways and runs): HTTP upgrade, wait for the first server frame
(the resume token: the gateway has subscribed the socket), then drop the TCP
connection without a close frame. Stops at ``seconds``. Prints one JSON line
of counts and latencies. Raw asyncio streams: a full client library would
spend more CPU per socket than the gateways do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from typing import Any


async def one(host: str, port: int, path: str, key: str, limit: float) -> tuple[str, float]:
    began = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port)
            nonce = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
                    f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {key}\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode()
            if status != "101":
                return f"http_{status}", time.monotonic() - began
            first = await reader.readexactly(2)
            length = first[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(length)
            opcode = first[0] & 0x0F
            if opcode == 1 and b'"token"' in payload:
                return "subscribed", time.monotonic() - began
            if opcode == 8:
                code = int.from_bytes(payload[:2], "big") if length >= 2 else 1005
                return f"closed_{code}", time.monotonic() - began
            return "other_frame", time.monotonic() - began
    except TimeoutError:
        return "timeout", time.monotonic() - began
    except (OSError, asyncio.IncompleteReadError) as exc:
        return f"error_{type(exc).__name__}", time.monotonic() - began
    finally:
        if writer is not None:
            writer.transport.abort()  # drop: no close frame, no FIN handshake


async def main(config: dict[str, Any]) -> dict[str, Any]:
    gateways: list[tuple[str, int]] = [(str(h), int(p)) for h, p in config["gateways"]]
    runs: list[str] = config["runs"]
    count, concurrency, seconds = config["count"], config["concurrency"], config["seconds"]
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    began = time.monotonic()
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            host, port = gateways[i % len(gateways)]
            path = f"/v1/runs/{runs[i % len(runs)]}/stream?from=now"
            outcome, took = await one(host, port, path, config["key"], config["timeout"])
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "subscribed":
                latencies.append(took)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p: float) -> float | None:
        return round(latencies[int(p * (len(latencies) - 1))], 4) if latencies else None

    return {
        "attempted": next_index,
        "outcomes": outcomes,
        "elapsed_seconds": round(elapsed, 2),
        "per_second": round(next_index / elapsed, 1) if elapsed else None,
        "p50_seconds": pct(0.5),
        "p99_seconds": pct(0.99),
        "max_seconds": pct(1.0),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
