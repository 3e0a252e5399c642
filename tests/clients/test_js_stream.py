"""@tidings/client against the real stack, under Node 20's experimental WebSocket.

A TCP proxy between the client and the gateway drops the client's first two
connections, each after 4 KB of frames (mid-stream: the run's log holds far
more); the client must resume with its read token each time and see every
event of the run exactly once, in the log's order, and end with the run. Its
reduced state must be what the Python reducer makes of the run's stored
events: both clients agree on a real stream too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from gateway.app import create_app
from tests.gateway_rest.helpers import serve
from tests.services import private_settings
from tests.support import free_port
from tests.topics import private_topics
from tidings.run_state import initial_run_state, reduce_run, visible
from tidings.settings import Settings, TenantSettings
from workers.build import build_worker, default_activities, open_clients
from workers.catalog import open_catalog
from workflows.registry import PipelineRegistry

if TYPE_CHECKING:  # the root conftest is pytest's to import, not ours
    from tests.conftest import StackHandle

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

SUFFIX = uuid.uuid4().hex[:8]
KEY = f"js-client-key-{SUFFIX}"
TENANT = f"js{SUFFIX}"
SCRIPT = Path(__file__).with_name("stream_run.mjs")


class CuttingProxy:
    """Forwards 127.0.0.1:port to the gateway, and aborts each of the first
    ``cuts`` connections once it has carried ``after_bytes`` to the client:
    mid-stream, whatever the run's pace."""

    def __init__(self, upstream_port: int, *, cuts: int, after_bytes: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts_left = cuts
        self.after_bytes = after_bytes
        self.accepted = 0
        self.cut_done = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        cut = self.cuts_left > 0
        self.cuts_left -= 1 if cut else 0
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def upstream() -> None:
            while chunk := await reader.read(65536):
                up_writer.write(chunk)
                await up_writer.drain()

        async def downstream() -> None:
            carried = 0
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                carried += len(chunk)
                if cut and carried >= self.after_bytes:
                    self.cut_done += 1
                    return

        pipes = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        # An abort, not a close: the client sees the connection drop (1006).
        writer.transport.abort()
        up_writer.transport.abort()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture(scope="module")
def js_settings(stack: StackHandle) -> Settings:
    base = private_settings(stack, "jsclient", partitions=2)
    return base.replace(tenants=TenantSettings(api_keys={KEY: TENANT}))


@pytest.fixture
def gateway_url(js_settings: Settings) -> Iterator[str]:
    with serve(lambda: create_app(js_settings, pipelines=open_catalog), free_port()) as url:
        yield url


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[None]:
    async with open_clients(settings) as clients:
        objects = default_activities(clients, settings)
        async with build_worker(clients, settings, objects, PipelineRegistry.with_builtins()):
            yield


async def stored_events(url: str, run_id: str, *, key: str = KEY) -> list[dict[str, Any]]:
    """Every stored event of the run (GET /v1/runs/{id}/events, all pages)."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        for _ in range(20):
            page = (await http.get(f"/v1/runs/{run_id}/events", params=params)).json()
            events += [item["event"] for item in page["events"]]
            if not page["more"]:
                return events
            params["after"] = page["next_cursor"]
    raise AssertionError("paging did not end")


async def test_js_client_survives_two_cuts_mid_stream(
    js_client: Path, js_settings: Settings, gateway_url: str
) -> None:
    lines: list[dict[str, Any]] = []
    async with private_topics(js_settings, TENANT), worker(js_settings):
        proxy = CuttingProxy(int(gateway_url.rsplit(":", 1)[1]), cuts=2, after_bytes=4096)
        async with proxy:
            async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
                started = await http.post(
                    "/v1/runs",
                    headers={"Authorization": f"Bearer {KEY}"},
                    json={"pipeline": "research", "input": {"question": "How do tokens resume?"}},
                )
            assert started.status_code == 201, started.text
            run = started.json()
            # The browser's way: the run's read token, never the API key.
            node = await asyncio.create_subprocess_exec(
                "node",
                "--experimental-websocket",
                "--no-warnings",
                str(SCRIPT),
                f"http://127.0.0.1:{proxy.port}",
                run["run_id"],
                run["stream_token"],
                stdout=asyncio.subprocess.PIPE,
            )
            assert node.stdout is not None
            try:
                async with asyncio.timeout(120):
                    async for raw in node.stdout:
                        lines.append(json.loads(raw))
                    await node.wait()
            finally:
                if node.returncode is None:
                    node.kill()
                    await node.wait()
        stored = await stored_events(gateway_url, run["run_id"])

    assert lines and "done" in lines[-1], lines[-1:]
    done = lines[-1]
    seen = [x["event"] for x in lines[:-1]]
    # Every event of the run once, in the log's order, across both cuts.
    assert [e["id"] for e in seen] == [e["id"] for e in stored]
    assert seen[-1]["type"] == "run.completed"
    assert done["stats"]["connections"] >= 3, done["stats"]
    assert proxy.cut_done == 2 and proxy.accepted >= 3
    assert done["state"]["status"] == "COMPLETED"
    expected = visible(reduce(reduce_run, stored, initial_run_state()))
    js_state = {k: v for k, v in done["state"].items() if k not in ("tokenSeq", "own")}
    assert js_state == expected
    assert expected["steps"]["draft"]["text"]
