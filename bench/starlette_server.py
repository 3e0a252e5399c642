"""Serve a bench Starlette app the way every Python server under test is
served: uvicorn on 127.0.0.1, websockets-sansio (``--ws`` to compare another),
no deflate, a deep accept backlog for the connection bursts."""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette


def serve(app: Starlette) -> None:
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
