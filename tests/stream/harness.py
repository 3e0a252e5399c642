"""Helpers for the stream tests: real servers on free ports, runs, events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from gateway.stream import StreamService
from tests.stream.app import listening_socket, server
from tests.support import free_port, wait_for
from tidings.events import Event
from tidings.runs import PIPELINE_WORKFLOW, TENANT_ATTRIBUTE
from tidings.settings import GatewaySettings, Settings
from tidings.topics import events_topic

__all__ = ["free_port", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    url: str
    service: StreamService | None = None
    process: subprocess.Popen[bytes] | None = None


@asynccontextmanager
async def gateway(settings: Settings, *, send_buffer: int | None = None) -> AsyncIterator[Gateway]:
    """A gateway in this process, served as ``tidings gateway`` serves it, on a free port."""
    port = free_port()
    settings = with_port(settings, port)
    if send_buffer is not None:
        settings = with_gateway(settings, send_buffer_bytes=send_buffer)
    uvicorn, made = server(settings)
    task = asyncio.create_task(uvicorn.serve(sockets=[listening_socket(port, send_buffer)]))
    try:
        await wait_for(lambda: uvicorn.started or task.done(), 15, "uvicorn to start")
        if task.done():
            task.result()
        service = made[0].app.state.stream
        yield Gateway(f"http://127.0.0.1:{port}", service=service)
    finally:
        uvicorn.should_exit = True
        await asyncio.wait_for(task, 20)


@asynccontextmanager
async def gateway_process(settings: Settings, api_keys: dict[str, str]) -> AsyncIterator[Gateway]:
    """A gateway in a child process, so a test can SIGKILL it."""
    port = free_port()
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL_ADDRESS": settings.temporal.address,
        "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TIDINGS_REDIS_URL": settings.redis.url.get_secret_value(),
        "TIDINGS_TENANTS_API_KEYS": json.dumps(api_keys),
        "TIDINGS_GATEWAY_TOKEN_SECRET": settings.gateway.token_secret.get_secret_value(),
        # Its identity in the lag hashes (gateway.lag.gateway_id).
        "TIDINGS_GATEWAY_PORT": str(port),
        "TIDINGS_GATEWAY_DIRECT_FRAMES": str(settings.gateway.direct_frames).lower(),
    }
    process = subprocess.Popen(  # noqa: ASYNC220 (started once, not waited on here)
        [sys.executable, "-m", "tests.stream.app", str(port)], cwd=ROOT, env=env
    )
    try:
        await wait_for(lambda: _accepts(port) or process.poll() is not None, 30, "gateway")
        assert process.poll() is None, "the gateway process exited at start"
        yield Gateway(f"http://127.0.0.1:{port}", process=process)
    finally:
        if process.poll() is None:
            process.terminate()
        await asyncio.to_thread(process.wait, 20)


@asynccontextmanager
async def served(
    settings: Settings, *, send_buffer: int | None = None
) -> AsyncIterator[tuple[Gateway, Emitter]]:
    """A gateway in this process and an emitter producing to the topics it reads."""
    async with gateway(settings, send_buffer=send_buffer) as gw, emitter(settings) as em:
        yield gw, em


def with_port(settings: Settings, port: int) -> Settings:
    """``settings`` for a gateway serving ``port`` (its identity in the lag hashes)."""
    return with_gateway(settings, port=port)


def with_gateway(settings: Settings, **changes: object) -> Settings:
    gateway = GatewaySettings(**{**settings.gateway.model_dump(), **changes})
    return settings.replace(gateway=gateway)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Emitter:
    """Produces envelopes the way the orchestration plane's emitter does."""

    producer: AIOKafkaProducer
    prefix: str
    sent: list[tuple[int, int, Event]] = field(default_factory=list)  # partition, offset, event

    async def emit(self, event: Event) -> tuple[int, int]:
        meta = await self.producer.send_and_wait(
            events_topic(self.prefix, event.tenant),
            event.to_bytes(),
            key=event.run_id.encode(),
            headers=event.headers(),
        )
        self.sent.append((meta.partition, meta.offset, event))
        return meta.partition, meta.offset

    async def emit_many(self, events: list[Event]) -> None:
        """Pipelined: the idempotent producer keeps them in order."""
        futures = [
            await self.producer.send(
                events_topic(self.prefix, event.tenant),
                event.to_bytes(),
                key=event.run_id.encode(),
                headers=event.headers(),
            )
            for event in events
        ]
        for event, future in zip(events, futures, strict=True):
            meta = await future
            self.sent.append((meta.partition, meta.offset, event))

    def of_run(self, run_id: str) -> list[Event]:
        return [
            event
            for _, _, event in sorted(self.sent, key=lambda s: s[:2])
            if event.run_id == run_id
        ]


@asynccontextmanager
async def emitter(settings: Settings) -> AsyncIterator[Emitter]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        yield Emitter(producer, settings.kafka.topic_prefix)
    finally:
        await producer.stop()


@asynccontextmanager
async def temporal_run(client: Client, tenant: str) -> AsyncIterator[str]:
    """A run id Temporal knows: a workflow started on a task queue no worker
    polls, so it stays RUNNING for the test and is terminated after. Tagged
    with its tenant as the run starter tags it: the gateway's ownership check
    reads the search attribute."""
    run_id = f"{tenant}-{uuid.uuid4().hex}"
    handle = await client.start_workflow(
        PIPELINE_WORKFLOW,
        {"tenant": tenant},
        id=run_id,
        task_queue=f"stream-test-{uuid.uuid4().hex}",
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE), tenant)]
        ),
    )
    try:
        yield run_id
    finally:
        with contextlib.suppress(RPCError):  # a test may have ended it already
            await handle.terminate("stream test done")


def script(tenant: str, run_id: str, tokens: int, payload: int = 0) -> list[Event]:
    """A run's events: started, one step's tokens, completed."""
    events = [Event("run.started", tenant, run_id, None, 1, 0)]
    events.append(Event("step.started", tenant, run_id, "draft", 1, 0))
    filler = "x" * payload
    events += [
        Event("step.token", tenant, run_id, "draft", 1, i + 1, {"text": f"t{i} ", "pad": filler})
        for i in range(tokens)
    ]
    events.append(Event("step.completed", tenant, run_id, "draft", 1, tokens + 1))
    events.append(Event("run.completed", tenant, run_id, None, 1, 0, {"output": {}}))
    return events


def ws_url(gateway_url: str, run_id: str, query: str = "") -> str:
    base = gateway_url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
    return f"{base}?{query}" if query else base


async def read_until_closed(
    ws: Any, deadline: float = 15.0
) -> tuple[int | None, list[dict[str, Any]]]:
    """Every frame until the server closes, and the close code it sent."""
    from websockets.exceptions import ConnectionClosed

    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(deadline):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames
