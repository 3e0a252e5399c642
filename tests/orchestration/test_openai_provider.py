"""The OpenAI-compatible provider against a local server speaking the streaming format."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.models import Passage, build_provider
from activities.models.openai import OpenAIProvider
from tidings.errors import ActivityErrorType
from tidings.settings import ModelSettings

pytestmark = pytest.mark.unit

KEY = "sk-test-secret-0123456789"
PASSAGES = [Passage(doc="kafka-partitions", title="Kafka", text="Order is per partition.")]


@dataclass
class FakeOpenAI:
    """Answers POST /v1/chat/completions with SSE chunks, like OpenAI does with stream=true."""

    status: int = 200
    chunks: list[str] = field(default_factory=lambda: ["Order ", "is ", "per ", "partition."])
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.strip().split("\r\n")
        headers = {
            name.lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(
            {"line": request_line, "headers": headers, "body": json.loads(body or b"{}")}
        )
        if self.status != 200:
            writer.write(
                f"HTTP/1.1 {self.status} Nope\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
                "{}".encode()
            )
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            )
            events = [{"choices": [{"delta": {"role": "assistant"}}]}] + [
                {"choices": [{"delta": {"content": text}, "index": 0}]} for text in self.chunks
            ]
            for event in events:
                writer.write(f"data: {json.dumps(event)}\n\n".encode())
                await writer.drain()
            writer.write(b": keep-alive comment\n\ndata: [DONE]\n\n")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def serving(fake: FakeOpenAI) -> AsyncIterator[str]:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


def _settings(base_url: str) -> ModelSettings:
    return ModelSettings(
        provider="openai", base_url=base_url, name="tiny", api_key=SecretStr(KEY), timeout_seconds=5
    )


async def _collect(provider: OpenAIProvider) -> str:
    return "".join([token async for token in provider.stream("Where is order kept?", PASSAGES)])


async def test_streams_tokens_and_sends_the_openai_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeOpenAI()
    async with serving(fake) as base_url, httpx.AsyncClient() as http:
        provider = build_provider(_settings(base_url), http)
        assert isinstance(provider, OpenAIProvider)
        assert await _collect(provider) == "Order is per partition."
    (request,) = fake.requests
    assert request["line"].startswith("POST /v1/chat/completions")
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "tiny" and request["body"]["stream"] is True
    assert "[kafka-partitions]" in request["body"]["messages"][-1]["content"]
    assert KEY not in caplog.text


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (429, True), (401, False)])
async def test_http_errors_say_whether_to_retry(status: int, retryable: bool) -> None:
    async with serving(FakeOpenAI(status=status)) as base_url, httpx.AsyncClient() as http:
        with pytest.raises(ApplicationError) as error:
            await _collect(OpenAIProvider(_settings(base_url), http))
    assert error.value.type == ActivityErrorType.PROVIDER_UNAVAILABLE
    assert error.value.non_retryable is (not retryable)
    assert str(status) in error.value.message and KEY not in error.value.message


async def test_unreachable_server_is_retryable_and_keeps_the_key_secret() -> None:
    async with serving(FakeOpenAI()) as base_url:
        pass  # closed again: nothing listens on the port now
    async with httpx.AsyncClient() as http:
        with pytest.raises(ApplicationError) as error:
            await _collect(OpenAIProvider(_settings(base_url), http))
    assert error.value.non_retryable is False
    assert "unreachable" in error.value.message and KEY not in error.value.message
    assert KEY not in repr(_settings(base_url))
