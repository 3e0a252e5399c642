"""`tidings gateway --processes 2` as real processes against the real stack:
sockets on the shared port land on both processes, a session resumes on the
other process, SIGTERM drains both with 1001, and a killed process is replaced.

Each process also listens alone on ``--metrics-port`` + its index, which lets
a test reach one process on purpose and read each one's own /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.gateway_rest.helpers import API_KEYS, DEMO_KEY, Runs
from tests.gateway_rest.test_events import event, produce, start_waiting_run
from tests.support import free_port, wait_for
from tidings.settings import Settings

pytestmark = pytest.mark.integration

REASON = "gateway going away: reconnect with your resume token"
AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}


@dataclass
class Gateways:
    process: subprocess.Popen[bytes]
    url: str  # the shared port
    own: list[str]  # process i alone
    log: Path

    def children(self) -> set[int]:
        """The supervisor's live children, as the kernel lists them."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return {int(pid) for pid in path.read_text().split()}
        except (OSError, ValueError):
            return set()


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
async def gateways(
    rest_settings: Settings, stub_worker: None, tmp_path: Path
) -> AsyncIterator[Gateways]:
    port, metrics = free_port(), free_port()
    for _ in range(20):  # process 1 listens alone on the port after metrics
        if await asyncio.to_thread(_bindable, metrics + 1):
            break
        metrics = free_port()
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL_ADDRESS": rest_settings.temporal.address,
        "TIDINGS_TEMPORAL_TASK_QUEUE": rest_settings.temporal.task_queue,
        "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": rest_settings.kafka.bootstrap_servers,
        "TIDINGS_KAFKA_TOPIC_PREFIX": rest_settings.kafka.topic_prefix,
        "TIDINGS_REDIS_URL": rest_settings.redis.url.get_secret_value(),
        "TIDINGS_TENANTS_API_KEYS": json.dumps(API_KEYS),
        "TIDINGS_LOG_LEVEL": "INFO",
    }
    log = tmp_path / "gateway.log"
    argv = [sys.executable, "-m", "cli", "gateway", "--port", str(port)]
    argv += ["--processes", "2", "--metrics-port", str(metrics)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    found = Gateways(
        process,
        f"http://127.0.0.1:{port}",
        [f"http://127.0.0.1:{metrics + i}" for i in range(2)],
        log,
    )
    try:

        async def all_up() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            return all([await answers(url) for url in found.own])

        await wait_for(all_up, 60, "both gateway processes to answer /healthz")
        yield found
    finally:
        leftover = found.children()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for pid in leftover:  # only if the supervisor failed to stop them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ws(url: str, run_id: str, query: str) -> str:
    return url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream?{query}"


async def frames_until(conn: ClientConnection, kind: str) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    while True:
        frame = json.loads(await asyncio.wait_for(conn.recv(), 10))
        seen.append(frame)
        if frame["kind"] == kind:
            return seen


async def open_sockets(url: str) -> int:
    """This process's open stream sockets, from its own /metrics."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        text = (await client.get("/metrics")).text
    found = re.search(r'^tidings_stream_sockets\{tenant="demo"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


async def test_sockets_land_on_both_processes_and_resume_across_them(
    gateways: Gateways,
    demo: httpx.AsyncClient,
    runs: Runs,
    rest_settings: Settings,
    events_topic_name: str,
) -> None:
    run_id = await start_waiting_run(demo, runs)
    await produce(
        rest_settings, events_topic_name, [(run_id, event(run_id, s).to_bytes()) for s in range(3)]
    )
    count = 16
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            ws_ = await stack.enter_async_context(
                connect(ws(gateways.url, run_id, "from=now"), additional_headers=AUTH)
            )
            assert json.loads(await asyncio.wait_for(ws_.recv(), 10))["kind"] == "token"
        per_process = [await open_sockets(url) for url in gateways.own]
        # The kernel hashes each connection to one of the two listeners: 16
        # sockets all on one process would happen 1 time in 32,768.
        assert sum(per_process) == count and min(per_process) > 0, per_process

    # A session opened on process 0, acked to the first event, resumes on
    # process 1 with the event after it.
    async with connect(ws(gateways.own[0], run_id, "from=start"), additional_headers=AUTH) as one:
        frames = await frames_until(one, "caught_up")
        token = next(f["token"] for f in frames if f["kind"] == "token")
        events = [f for f in frames if f["kind"] == "event"]
        assert [f["event"]["seq"] for f in events] == [0, 1, 2]  # type: ignore[index]
        await one.send(json.dumps({"ack": events[0]["cursor"]}))

        async def acked() -> bool:
            async with connect(
                ws(gateways.own[1], run_id, f"resume={token}"), additional_headers=AUTH
            ) as other:
                frames = await frames_until(other, "caught_up")
            seqs = [f["event"]["seq"] for f in frames if f["kind"] == "event"]  # type: ignore[index]
            return seqs == [1, 2]

        await wait_for(acked, 10, "a resume on process 1 to start after the ack made on 0")


async def test_sigterm_drains_every_process_with_1001(
    gateways: Gateways, demo: httpx.AsyncClient, runs: Runs
) -> None:
    run_id = await start_waiting_run(demo, runs)
    sockets = [
        await connect(ws(url, run_id, "from=now"), additional_headers=AUTH) for url in gateways.own
    ]
    closes: list[tuple[int, str]] = []
    try:
        for conn in sockets:
            assert json.loads(await asyncio.wait_for(conn.recv(), 10))["kind"] == "token"
        gateways.process.send_signal(signal.SIGTERM)
        for conn in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(conn.recv(), 15)
            assert closed.value.rcvd is not None
            closes.append((closed.value.rcvd.code, closed.value.rcvd.reason))
    finally:
        for conn in sockets:
            await conn.close()
    assert closes == [(1001, REASON), (1001, REASON)]
    assert await asyncio.to_thread(gateways.process.wait, 30) == 0
    text = gateways.log.read_text()
    assert text.count("Application shutdown complete") == 2
    assert DEMO_KEY not in text


async def test_a_killed_process_is_replaced(gateways: Gateways) -> None:
    before = gateways.children()
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = gateways.children()
        return len(now) == 2 and victim not in now

    await wait_for(replaced, 10, "the supervisor to start a replacement process")
    # The replacement serves the same sockets: both processes answer again.
    await wait_for(
        lambda: _all_answer(gateways.own), 60, "the replacement process to answer /healthz"
    )
    assert gateways.process.poll() is None
    assert "gateway process exited; replacing it" in gateways.log.read_text()


async def _all_answer(urls: list[str]) -> bool:
    return all([await answers(url) for url in urls])


def test_a_port_in_use_stops_the_supervisor_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "cli", "gateway", "--port", str(port)]
        done = subprocess.run(
            [*argv, "--processes", "2"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TIDINGS_LOG_LEVEL": "WARNING"},
        )
    assert done.returncode == 2, done.stderr
    assert f"tidings: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
