"""The floor: bare uvicorn + Starlette broadcasting one pre-serialised frame to
every socket, no broker. Whatever Tidings does beyond this is its own cost.

Run: python -m bench.floor --port P
"""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.messages import peer_message
from bench.starlette_server import serve

SOCKETS: set[WebSocket] = set()


async def stream(websocket: WebSocket) -> None:
    await websocket.accept()
    SOCKETS.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        SOCKETS.discard(websocket)


async def broadcast(request: Request) -> JSONResponse:
    """``count`` messages per socket. ``mode=all``: each message is serialised
    once and sent to every socket (1 run x N subscribers); ``mode=each``: every
    socket gets messages of its own (N runs x 1 subscriber). ``rate``: messages
    per second in total (0 = as fast as possible)."""
    count = int(request.query_params.get("count", "100"))
    rate = float(request.query_params.get("rate", "0"))
    each = request.query_params.get("mode", "all") == "each"
    targets = list(SOCKETS)
    total = count * len(targets) if each else count
    started = time.monotonic()
    first = time.monotonic_ns()
    for i in range(total):
        if each:
            sockets_ = [targets[i % len(targets)]]
            frame = peer_message("floor", i // len(targets))
        else:
            sockets_ = targets
            # One serialisation per message, shared by every socket.
            frame = peer_message("floor", i)
        for websocket in sockets_:
            try:
                await websocket.send_text(frame)
            except (WebSocketDisconnect, RuntimeError):
                SOCKETS.discard(websocket)
        if rate:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    return JSONResponse(
        {"sockets": len(targets), "sent": total, "t0_ns": first, "t1_ns": time.monotonic_ns()}
    )


async def sockets(_: Request) -> JSONResponse:
    return JSONResponse({"sockets": len(SOCKETS)})


app = Starlette(
    routes=[
        WebSocketRoute("/ws", stream),
        Route("/broadcast", broadcast, methods=["POST"]),
        Route("/sockets", sockets),
    ]
)


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
