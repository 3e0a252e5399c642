"""Fixtures of the agent tests: a gateway and a worker on the stack, with
their own task queue and topics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from tests.conftest import StackHandle
from tests.processes import ChildProcess, module_argv
from tests.services import GatewayProcess, private_settings, service_env
from tests.support import free_port
from tests.topics import private_topics
from tidings.settings import Settings
from workflows.builtin import AGENT

MAX_RESULT_CHARS = 200
# The built-in agent pipeline with its answer paced, so a fault lands mid-answer.
SLOW_AGENT = "agent-slow"


def write_pipelines(folder: Path) -> Path:
    raw = AGENT.model_dump(mode="json", exclude_defaults=True)
    raw["name"] = SLOW_AGENT
    for step in raw["steps"]:
        if step["name"] == "answer":
            step["input"]["pace_ms"] = 150
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SLOW_AGENT}.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return folder


@dataclass
class Deployment:
    url: str
    key: str
    # What a process needs to reach this deployment (worker, CLI, example).
    env: dict[str, str]
    worker: ChildProcess
    settings: Settings
    tenant: str

    async def restart_worker(self) -> None:
        """Start the worker again (after a test killed it)."""
        start = len(self.worker.log.read_bytes())

        async def ready() -> bool:
            return b"ready on task queue" in self.worker.log.read_bytes()[start:]

        await self.worker.start(ready, 60)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )


@asynccontextmanager
async def deploy(stack: StackHandle, logs: Path, **model: str) -> AsyncIterator[Deployment]:
    """A worker and a gateway with their own task queue, topics and tenant;
    ``model`` adds the worker's model settings (TIDINGS_MODEL_*)."""
    settings = private_settings(stack, "agent", partitions=1)
    suffix = uuid.uuid4().hex[:8]
    tenant, key = f"agent{suffix}", f"agent-key-{suffix}"
    port = free_port()
    env = service_env(
        settings,
        {key: tenant},
        port,
        TIDINGS_MODEL_TOOL_RESULT_MAX_CHARS=str(MAX_RESULT_CHARS),
        TIDINGS_WORKER_PIPELINES_DIR=str(write_pipelines(logs / "pipelines")),
        **model,
    )
    worker = ChildProcess("worker", module_argv("cli", "worker"), env, logs / "w.log")
    gateway = GatewayProcess(
        ChildProcess("gateway", module_argv("cli", "gateway"), env, logs / "gw.log"), port
    )

    async def ready() -> bool:
        return "ready on task queue" in worker.log.read_text(errors="replace")

    async with private_topics(settings, tenant):
        try:
            await worker.start(ready, 60)
            await gateway.start()
            yield Deployment(
                gateway.url,
                key,
                {**env, "TIDINGS_GATEWAY_URL": gateway.url, "TIDINGS_API_KEY": key},
                worker,
                settings,
                tenant,
            )
        finally:
            gateway.stop()
            worker.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def deployment(
    stack: StackHandle, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    async with deploy(
        stack, tmp_path_factory.mktemp("agent"), TIDINGS_MODEL_PROVIDER="offline"
    ) as deployed:
        yield deployed
