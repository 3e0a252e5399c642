"""A dependency away: new stream sockets get 1013 with a retry hint and the
gateway logs one warning (no traceback); REST answers 503 with
``Retry-After``; ``/readyz`` answers 503. One test per dependency, each
stopping the private stack's service and starting it again (they skip on
the shared stack)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError
from websockets.asyncio.client import connect

from tests.processes import ChildProcess, module_argv
from tests.services import GatewayProcess, service_env
from tests.stream.conftest import SECRET, StreamEnv
from tests.stream.harness import read_until_closed, ws_url
from tests.support import free_port

if TYPE_CHECKING:
    from tests.conftest import StackHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(
    stack: StackHandle, stream_env: StreamEnv, tmp_path: Path
) -> AsyncIterator[GatewayProcess]:
    if not stack.private:
        pytest.skip("stopping a service needs the private test stack")
    port = free_port()
    env = service_env(
        stream_env.settings(),
        stream_env.keys,
        port,
        TIDINGS_GATEWAY_TOKEN_SECRET=SECRET,
        TIDINGS_LOG_LEVEL="INFO",
    )
    child = ChildProcess("tidings gateway", module_argv("cli", "gateway"), env, tmp_path / "gw.log")
    process = GatewayProcess(child, port)
    await process.start()
    try:
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def started_run(env: StreamEnv, gateway: GatewayProcess) -> AsyncIterator[str]:
    """A run started through the gateway (no worker runs it: it stays RUNNING),
    terminated after the test."""
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {env.key(env.tenant)}"}
    ) as http:
        response = await http.post(
            f"{gateway.url}/v1/runs", json={"pipeline": "research", "input": {"question": "q"}}
        )
    assert response.status_code == 201, response.text
    run_id = str(response.json()["run_id"])
    try:
        yield run_id
    finally:
        with contextlib.suppress(RPCError):
            await env.temporal.get_workflow_handle(run_id).terminate("outage test done")


async def refusal(url: str, key: str) -> tuple[int | None, dict[str, Any], float]:
    """The close code, the last frame and how long the refusal took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        code, frames = await read_until_closed(ws, 30)
    assert frames, "an error frame before the close"
    return code, frames[-1], loop.time() - began


def assert_retry_hint(code: int | None, frame: dict[str, Any], dependency: str) -> None:
    assert code == 1013, (code, frame)
    assert frame == {
        "kind": "error",
        "code": "unavailable",
        "message": f"{dependency} is unavailable; retry in 5 s",
        "retry_after": 5,
    }


async def assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == {
        "code": "unavailable",
        "message": f"{dependency} is unavailable; retry in 5 s",
    }


async def not_ready(http: httpx.AsyncClient, url: str, check: str) -> None:
    response = await http.get(f"{url}/readyz")
    assert response.status_code == 503
    assert response.json()["checks"][check] != "ok"


def assert_logged_warning(gateway: GatewayProcess, dependency: str) -> None:
    """A WARNING line for the refusal, and nothing logged as an error or with
    a traceback."""
    log = gateway.child.log.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    refusals = [e for e in entries if f"refused: {dependency} unavailable" in e["message"]]
    assert refusals and all(e["level"] == "WARNING" for e in refusals), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # aiokafka logs each refused connection as an error of its own; nothing else may.
    errors = [
        e
        for e in entries
        if e["level"] in ("ERROR", "CRITICAL") and not e["logger"].startswith("aiokafka")
    ]
    assert not errors, errors


@asynccontextmanager
async def outage(
    stack: StackHandle,
    gateway: GatewayProcess,
    service: str,
    socket_url: str,
    key: str,
    http: httpx.AsyncClient,
) -> AsyncIterator[None]:
    """``service`` stopped for the block, once a new socket has been refused
    with 1013 and a retry hint and /readyz fails its check. After it: the
    refusal came within 10 s and the gateway logged it as a warning only."""
    name = {"redis": "Redis", "temporal": "Temporal", "kafka": "Kafka"}[service]
    await asyncio.to_thread(stack.stop, service)
    try:
        code, frame, took = await refusal(socket_url, key)
        assert_retry_hint(code, frame, name)
        await not_ready(http, gateway.url, service)
        yield
    finally:
        await asyncio.to_thread(stack.start, service)
    assert took < 10
    assert_logged_warning(gateway, name)


async def test_redis_down_refuses_new_sockets_with_1013(
    stack: StackHandle, stream_env: StreamEnv, gateway: GatewayProcess
) -> None:
    env = stream_env
    key = env.key(env.tenant)
    async with (
        started_run(env, gateway) as run_id,
        httpx.AsyncClient() as http,
        # The outage's own checks are the test: a refused socket and /readyz.
        outage(stack, gateway, "redis", ws_url(gateway.url, run_id), key, http),
    ):
        pass


async def test_temporal_down_refuses_new_sockets_with_1013_and_rest_with_503(
    stack: StackHandle, stream_env: StreamEnv, gateway: GatewayProcess
) -> None:
    env = stream_env
    key = env.key(env.tenant)
    unseen = f"{env.tenant}-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=30) as http,
        outage(stack, gateway, "temporal", ws_url(gateway.url, unseen), key, http),
    ):
        await assert_unavailable(await http.get(f"{gateway.url}/v1/runs"), "Temporal")
        await assert_unavailable(await http.get(f"{gateway.url}/v1/runs/{unseen}"), "Temporal")


async def test_kafka_down_refuses_new_sockets_with_1013_and_rest_with_503(
    stack: StackHandle, stream_env: StreamEnv, gateway: GatewayProcess
) -> None:
    env = stream_env
    key = env.key(env.tenant)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        started_run(env, gateway) as run_id,
        httpx.AsyncClient(headers=headers, timeout=60) as http,
    ):
        # A socket first, so the gateway has a live tail of the tenant's topic
        # when Kafka goes: the next socket's offset lookups find no broker.
        async with connect(ws_url(gateway.url, run_id), additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["kind"] == "token"
        async with outage(stack, gateway, "kafka", ws_url(gateway.url, run_id), key, http):
            events = await http.get(f"{gateway.url}/v1/runs/{run_id}/events")
            await assert_unavailable(events, "Kafka")
