"""The floor: bare uvicorn + Starlette broadcasting one pre-serialised frame to
every socket, no broker. Whatever Tidings does beyond this is its own cost.

Run: python -m bench.floor --port P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

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
    count = int(request.query_params.get("count", "100"))
    size = int(request.query_params.get("size", "300"))
    rate = float(request.query_params.get("rate", "0"))
    started = time.monotonic()
    for seq in range(count):
        # One serialisation per message, shared by every socket.
        head = json.dumps({"kind": "event", "seq": seq, "t_ns": time.monotonic_ns()})
        frame = head[:-1] + ',"pad":"' + "x" * max(0, size - len(head) - 10) + '"}'
        for websocket in list(SOCKETS):
            try:
                await websocket.send_text(frame)
            except (WebSocketDisconnect, RuntimeError):
                SOCKETS.discard(websocket)
        if rate:
            await asyncio.sleep(max(0.0, started + (seq + 1) / rate - time.monotonic()))
    return JSONResponse({"sockets": len(SOCKETS), "count": count})


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
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="websockets-sansio")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        ws=args.ws,
        ws_per_message_deflate=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
