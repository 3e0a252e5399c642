"""The naive design: Redis pub/sub fanned out by a Starlette WebSocket endpoint,
written the way teams write it first: every socket opens its own Redis
subscription and forwards each message it gets. No replay, no resume: what
is published while a client is away is gone.

Run: python -m bench.peers.redis_pubsub --port P --redis redis://127.0.0.1:6379/0
Sockets: ``/ws/{channel}``; the server sends ``{"kind":"ready"}`` once its
subscription is confirmed, so the benchmark knows when to start publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.starlette_server import serve

# One connection per subscribed socket: redis-py caps its pool, so lift the cap.
REDIS = Redis.from_url(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=1_000_000
)


async def stream(websocket: WebSocket) -> None:
    channel = websocket.path_params["channel"]
    await websocket.accept()
    pubsub = REDIS.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    await websocket.send_text('{"kind":"ready"}')

    async def forward() -> None:
        async for message in pubsub.listen():
            await websocket.send_text(message["data"].decode())

    task = asyncio.create_task(forward())
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):
            await pubsub.aclose()


app = Starlette(routes=[WebSocketRoute("/ws/{channel}", stream)])


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
