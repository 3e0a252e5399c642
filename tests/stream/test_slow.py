"""A client that stops reading is cut with 4408 and its queue freed, while a
healthy client on the same run misses nothing; the slow one then resumes with
its token and gets everything."""

from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from tests.stream.conftest import StreamEnv
from tests.stream.harness import (
    read_until_closed,
    script,
    served,
    temporal_run,
    wait_for,
    ws_url,
)
from tidings.client import subscribe
from tidings.events import Event

pytestmark = [pytest.mark.integration]


def tiny_socket(url: str) -> socket.socket:
    # A small receive buffer so the pipe to a non-reading client fills in KBs.
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.setblocking(False)
    return sock


async def test_slow_client_is_cut_then_resumes_without_loss(stream_env: StreamEnv) -> None:
    env = stream_env
    settings = env.settings(send_queue_max_events=50, send_queue_max_bytes=64 * 1024)
    key = env.key(env.tenant)
    async with (
        served(settings, send_buffer=8192) as (gw, em),
        temporal_run(env.temporal, env.tenant) as run_id,
    ):
        assert gw.service is not None
        registry = gw.service.metrics.registry
        events = script(env.tenant, run_id, tokens=400, payload=2000)
        url = ws_url(gw.url, run_id)
        async with connect(
            url,
            sock=tiny_socket(url),
            additional_headers={"Authorization": f"Bearer {key}"},
            max_queue=1,  # websockets stops reading its transport at once
            compression=None,
        ) as slow:
            token = json.loads(await slow.recv())["token"]

            healthy: list[Event] = []

            async def follow() -> None:
                async with subscribe(gw.url, run_id, key) as sub:
                    async for event in sub:
                        healthy.append(event)

            follower = asyncio.create_task(follow())
            await wait_for(lambda: len(gw.service.subscribers) == 2, 10, "both subscribed")  # type: ignore[union-attr]
            # In steps the healthy client keeps up with (it shares the test's
            # small socket buffers), so only the client that never reads overflows.
            for start in range(0, len(events), 20):
                await em.emit_many(events[start : start + 20])
                done = min(start + 20, len(events))

                def kept_up(n: int = done) -> bool:
                    return len(healthy) >= n

                await wait_for(kept_up, 10, "the healthy client")
            await wait_for(
                lambda: registry.get_sample_value(
                    "tidings_stream_slow_client_closes_total", {"tenant": env.tenant}
                )
                == 1,
                20,
                "the slow client to be cut",
            )
            code, frames = await read_until_closed(slow)
            assert code == 4408
            assert frames[-1]["kind"] == "error" and frames[-1]["code"] == "too_slow"
            seen = [f["event"]["id"] for f in frames if f["kind"] == "event"]
            assert seen == [e.id for e in events[: len(seen)]]
            async with asyncio.timeout(20):
                await follower
            assert [e.id for e in healthy] == [e.id for e in events]
            # The cut socket's queue is gone even though its peer has not read a byte.
            assert all(sub.depth == 0 for sub in gw.service.subscribers)

        resumed: list[Event] = []
        async with subscribe(gw.url, run_id, key, resume_token=token) as sub:
            async for event in sub:
                resumed.append(event)
        assert [e.id for e in resumed] == [e.id for e in events]
        assert sub.status == "COMPLETED"
