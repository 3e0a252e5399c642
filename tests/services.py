"""A private deployment of real services on the session stack: its settings
(a task queue and topic prefix of its own), the ``TIDINGS_*`` environment of
its worker and gateway processes, a gateway process a test can kill, and what
a test asks a running gateway."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from tests.processes import ChildProcess
from tests.support import wait_for
from tidings.settings import KafkaSettings, Settings, TemporalSettings

if TYPE_CHECKING:
    from tests.conftest import StackHandle


def private_settings(stack: StackHandle, name: str, *, partitions: int) -> Settings:
    """The stack, with a task queue and a topic prefix named after ``name`` and
    fresh each time: these runs and topics never meet another suite's."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        temporal=TemporalSettings(
            address=stack.endpoints.temporal_address, task_queue=f"{name}-{suffix}"
        ),
        kafka=KafkaSettings(
            bootstrap_servers=stack.endpoints.kafka_bootstrap,
            topic_prefix=f"{name}{suffix}",
            partitions=partitions,
        ),
        redis=stack.settings().redis,
    )


def service_env(
    settings: Settings, api_keys: dict[str, str], gateway_port: int, **extra: str
) -> dict[str, str]:
    """``settings`` as a worker or gateway process reads them (``extra`` adds
    or overrides ``TIDINGS_*`` variables)."""
    return {
        **os.environ,
        "TIDINGS_ENV": "local",
        "TIDINGS_TEMPORAL_ADDRESS": settings.temporal.address,
        "TIDINGS_TEMPORAL_TASK_QUEUE": settings.temporal.task_queue,
        "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TIDINGS_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "TIDINGS_KAFKA_PARTITIONS": str(settings.kafka.partitions),
        "TIDINGS_REDIS_URL": settings.redis.url.get_secret_value(),
        "TIDINGS_TENANTS_API_KEYS": json.dumps(api_keys),
        "TIDINGS_GATEWAY_HOST": "127.0.0.1",
        "TIDINGS_GATEWAY_PORT": str(gateway_port),
        "TIDINGS_LOG_LEVEL": "WARNING",
        **extra,
    }


async def gateway_ready(url: str) -> bool:
    """``GET /readyz`` answers 200; a gateway not listening yet is just not ready."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"{url}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class GatewayProcess:
    """A gateway child process serving ``port``; it comes back on the same port,
    so clients resume there."""

    child: ChildProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.child.start(lambda: gateway_ready(self.url), 30)

    async def restart(self) -> None:
        """kill -9, then the same command on the same port."""
        await asyncio.to_thread(self.child.kill)
        await self.start()

    def stop(self) -> None:
        self.child.stop()


async def finished_run(url: str, key: str, run_id: str, within: float) -> dict[str, Any]:
    """``GET /v1/runs/{id}`` once Temporal has closed the run (it may answer
    RUNNING for a moment after the run's last event)."""
    detail: dict[str, Any] = {}
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:

        async def closed() -> bool:
            response = await client.get(f"/v1/runs/{run_id}")
            response.raise_for_status()
            detail.clear()
            detail.update(response.json())
            return detail["status"] not in ("RUNNING", "WAITING")

        await wait_for(closed, within, f"Temporal to close {run_id}")
    return detail
