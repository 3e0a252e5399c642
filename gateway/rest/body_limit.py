"""Refuse request bodies over ``GatewaySettings.max_body_bytes`` with 413,
before anything parses them.

A declared ``Content-Length`` over the limit is refused without reading a
byte. A chunked body is counted as it arrives; the read that crosses the
limit raises ``HTTPException(413)``, which FastAPI lets through its body
parsing unchanged, so the route never runs and the edge renders the error.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.rest.errors import error_response
from tidings.errors import ErrorCode


def _too_large(limit: int) -> str:
    return f"request body exceeds {limit} bytes"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = error_response(413, ErrorCode.PAYLOAD_TOO_LARGE, _too_large(self.max_bytes))
            await response(scope, receive, send)
            return

        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
