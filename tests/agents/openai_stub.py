"""A small OpenAI-compatible server for tests: POST /v1/chat/completions
answered as OpenAI streams (SSE chunks, then ``data: [DONE]``).

Its first answer to a conversation is a streamed ``search`` tool call; once
the conversation holds a tool result, streamed text. Started on 127.0.0.1 by
the test (:func:`serving`), it records every request (headers included)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@dataclass
class StubOpenAI:
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    def _answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not any(m.get("role") == "tool" for m in body.get("messages", [])):
            call = {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "search", "arguments": ""},
            }
            return [
                _chunk({"role": "assistant", "tool_calls": [call]}),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"query": '}}]}),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"kafka"}'}}]}),
                _chunk({}, "tool_calls"),
            ]
        words = ["Order ", "is ", "per ", "partition."]
        return [
            _chunk({"role": "assistant", "content": ""}),
            *(_chunk({"content": word}) for word in words),
            _chunk({}, "stop"),
        ]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        _, *lines = head.strip().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
        self.requests.append({"headers": headers, "body": body})
        if self.status != 200:
            reply = json.dumps({"error": {"message": "no"}}).encode()
            writer.write(
                f"HTTP/1.1 {self.status} Nope\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(reply)}\r\nConnection: close\r\n\r\n".encode()
                + reply
            )
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            )
            for chunk in self._answer(body):
                writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
            writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def serving(stub: StubOpenAI) -> AsyncIterator[str]:
    server = await asyncio.start_server(stub.handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()
        await server.wait_closed()
