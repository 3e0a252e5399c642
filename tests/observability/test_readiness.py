"""/readyz flips to 503 naming the dependency that went away, and back to 200
when it returns. The shared stack is left alone: a second gateway reaches
Redis through a TCP relay this test owns and cuts."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from gateway.app import create_app
from tests.gateway_rest.helpers import serve
from tests.observability.conftest import Obs
from tests.support import free_port, wait_for
from tidings.settings import RedisSettings, Settings
from workers.catalog import open_catalog

pytestmark = pytest.mark.integration


class Relay:
    """A TCP relay on a fixed port that can be cut (listener and live connections) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def test_readiness_follows_redis_going_and_coming_back(obs: Obs) -> None:
    url = urlsplit(obs.settings.redis.url.get_secret_value())
    relay = Relay((url.hostname or "127.0.0.1", url.port or 6379))
    await relay.start()
    relayed = url._replace(netloc=f"{url.hostname}:{relay.port}").geturl()
    base = obs.settings
    settings = Settings(
        temporal=base.temporal,
        kafka=base.kafka,
        redis=RedisSettings(url=SecretStr(relayed)),
        tenants=base.tenants,
    )
    try:
        with serve(
            lambda: create_app(settings, pipelines=open_catalog, stream=False), free_port()
        ) as gateway:
            async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:

                async def status(expected: int) -> bool:
                    return (await http.get("/readyz")).status_code == expected

                await wait_for(lambda: status(200), 15, "ready with every dependency up")
                await relay.cut()
                await wait_for(lambda: status(503), 15, "not ready once Redis is gone")
                body = (await http.get("/readyz")).json()
                assert body["checks"]["redis"] != "ok"
                assert body["checks"]["kafka"] == "ok" and body["checks"]["temporal"] == "ok"
                assert "redis" in body["error"]["message"]
                assert (await http.get("/healthz")).status_code == 200
                await relay.start()
                await wait_for(lambda: status(200), 15, "ready again once Redis is back")
    finally:
        await relay.cut()
