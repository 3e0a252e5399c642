"""A client that stops reading is cut with 4408 and its queue freed, while a
healthy client on the same run misses nothing; the slow one then resumes with
its token and gets everything."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from tests.stream.app import CLOSE_LINGER_SECONDS
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


def kernel_send_buffer(server_port: int, client_port: int) -> tuple[int, int]:
    """(bytes the kernel holds for sending, its cap) of the gateway's end of a
    connection, as ``ss -tm`` reports them (``skmem`` w, queued, and tb)."""
    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{server_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    for n, line in enumerate(lines):
        if line.split() and line.split()[-1].endswith(f":{client_port}"):
            skmem = " ".join(lines[n : n + 2])
            queued, cap = re.search(r"\bw(\d+)", skmem), re.search(r"\btb(\d+)", skmem)
            assert queued is not None and cap is not None, out
            return int(queued[1]), int(cap[1])
    raise AssertionError(f"no connection from :{client_port} in {out!r}")


async def test_stalled_reader_gets_its_error_frame_and_4408(stream_env: StreamEnv) -> None:
    """The gateway's own SO_SNDBUF cap (no test override), a client whose
    socket stops reading: after the cut it reads every frame it was sent,
    the ``too_slow`` error and the 4408 close, not a 1006."""
    env = stream_env
    settings = env.settings(send_queue_max_events=50, send_queue_max_bytes=64 * 1024)
    cap = settings.gateway.send_buffer_bytes
    assert 0 < cap <= 128 * 1024
    key = env.key(env.tenant)
    async with served(settings) as (gw, em), temporal_run(env.temporal, env.tenant) as run_id:
        assert gw.service is not None
        registry = gw.service.metrics.registry
        events = script(env.tenant, run_id, tokens=600, payload=2000)
        url = ws_url(gw.url, run_id)
        sock = tiny_socket(url)
        async with connect(
            url,
            sock=sock,
            additional_headers={"Authorization": f"Bearer {key}"},
            max_queue=1,  # websockets stops reading its transport at once
            compression=None,
        ) as slow:
            assert json.loads(await slow.recv())["kind"] == "token"
            for start in range(0, len(events), 50):
                await em.emit_many(events[start : start + 50])
            await wait_for(
                lambda: registry.get_sample_value(
                    "tidings_stream_slow_client_closes_total", {"tenant": env.tenant}
                )
                == 1,
                20,
                "the stalled client to be cut",
            )
            held, limit = kernel_send_buffer(urlsplit(gw.url).port or 80, sock.getsockname()[1])
            # Linux doubles SO_SNDBUF for its bookkeeping, and may queue one
            # segment past it.
            assert limit <= 2 * cap and held <= limit + 64 * 1024, (held, limit)
            code, frames = await read_until_closed(slow)
        assert code == 4408
        assert frames[-1]["kind"] == "error" and frames[-1]["code"] == "too_slow"
        seen = [f["event"]["id"] for f in frames if f["kind"] == "event"]
        assert seen and seen == [e.id for e in events[: len(seen)]]
        assert len(seen) < len(events), "the stalled client was cut before the end"


async def test_a_reader_that_never_reads_again_is_aborted_after_the_linger(
    stream_env: StreamEnv,
) -> None:
    """Once cut, a socket whose client never reads again does not keep its
    kernel buffers: the connection is aborted after the close linger."""
    env = stream_env
    settings = env.settings(send_queue_max_events=50, send_queue_max_bytes=64 * 1024)
    key = env.key(env.tenant)
    async with served(settings) as (gw, em), temporal_run(env.temporal, env.tenant) as run_id:
        assert gw.service is not None
        registry = gw.service.metrics.registry
        url = ws_url(gw.url, run_id)
        sock = tiny_socket(url)
        server_port, client_port = urlsplit(gw.url).port or 80, sock.getsockname()[1]
        async with connect(
            url,
            sock=sock,
            additional_headers={"Authorization": f"Bearer {key}"},
            max_queue=1,
            compression=None,
        ) as slow:
            assert json.loads(await slow.recv())["kind"] == "token"
            await em.emit_many(script(env.tenant, run_id, tokens=600, payload=2000))
            await wait_for(
                lambda: registry.get_sample_value(
                    "tidings_stream_slow_client_closes_total", {"tenant": env.tenant}
                )
                == 1,
                20,
                "the stalled client to be cut",
            )
            assert kernel_send_buffer(server_port, client_port)[0] > 0, "frames wait unread"

            def gone() -> bool:
                # In any state: a socket closed with its bytes unsent would
                # linger as an orphan in FIN-WAIT-1, still holding them.
                out = subprocess.run(
                    ["ss", "-tnH", f"( sport = :{server_port} and dport = :{client_port} )"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                return not out.strip()

            await wait_for(gone, CLOSE_LINGER_SECONDS + 5, "the gateway to abort the connection")
