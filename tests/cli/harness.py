"""The CLI tests' world: a real ``tidings worker`` and a real ``tidings gateway``
(child processes; the gateway can be SIGKILLed and started again on its
port) on the session's stack, a private tenant, key and topic prefix, and
the ``tidings`` CLI itself run as a child process, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.processes import ChildProcess, module_argv, spawn_module
from tests.services import GatewayProcess, finished_run, service_env
from tests.support import free_port
from tests.topics import private_topics
from tidings.settings import Settings

PARTITIONS = 2
QUESTION = "How do resume tokens survive a gateway restart?"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


@dataclass
class CliWorld:
    settings: Settings
    tenant: str
    key: str
    gateway_port: int
    logs: Path
    gateway: GatewayProcess | None = None
    worker: ChildProcess | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def service_env(self) -> dict[str, str]:
        return service_env(
            self.settings,
            {self.key: self.tenant},
            self.gateway_port,
            TIDINGS_GATEWAY_TOKEN_SECRET=f"cli-test-secret-{uuid.uuid4().hex}",
        )

    def cli_env(self) -> dict[str, str]:
        """What a user's shell has: the gateway, the key, and (for replay) Temporal."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("TIDINGS_") and key not in ("NO_COLOR", "TERM")
        }
        return {
            **env,
            "TIDINGS_GATEWAY_URL": self.url,
            "TIDINGS_API_KEY": self.key,
            "TIDINGS_TEMPORAL_ADDRESS": self.settings.temporal.address,
            **self.extra_env,
        }

    # -- the gateway and the worker -----------------------------------------

    async def start_gateway(self) -> None:
        assert self.gateway is not None
        await self.gateway.start()

    async def restart_gateway(self) -> None:
        """kill -9, then the same command on the same port."""
        assert self.gateway is not None
        await self.gateway.restart()

    async def start_worker(self) -> None:
        assert self.worker is not None
        log = self.worker.log

        async def says_ready() -> bool:
            return "ready on task queue" in log.read_text(errors="replace")

        await self.worker.start(says_ready, 60)

    # -- the CLI ---------------------------------------------------------------

    async def tidings(self, *argv: str, timeout: float = 60) -> Result:  # noqa: ASYNC109
        """``tidings ARGV`` as a child process; stdout is a pipe, not a terminal."""
        proc = await self.spawn_cli(*argv)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(
                f"tidings {' '.join(argv)} did not finish in {timeout}s\n{out.decode()}\n"
                f"{err.decode()}"
            ) from None
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def spawn_cli(self, *argv: str) -> asyncio.subprocess.Process:
        return await spawn_module(
            "cli",
            *argv,
            env=self.cli_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def start_run(self, question: str = QUESTION, **extra: Any) -> str:
        result = await self.tidings(
            "run", "research", "--input", json.dumps({"question": question, **extra}), "--json"
        )
        assert result.code == 0, result
        run_id: str = json.loads(result.out)["run_id"]
        return run_id

    async def finished(self, run_id: str) -> dict[str, Any]:
        """``GET /v1/runs/{id}`` once Temporal has closed the run."""
        return await finished_run(self.url, self.key, run_id, 60)


@asynccontextmanager
async def cli_world(settings: Settings, logs: Path) -> AsyncIterator[CliWorld]:
    suffix = uuid.uuid4().hex[:8]
    world = CliWorld(
        settings=settings,
        tenant=f"cli{suffix}",
        key=f"cli-key-{suffix}",
        gateway_port=free_port(),
        logs=logs,
    )
    env = world.service_env()
    gateway = ChildProcess(
        "tidings gateway", module_argv("cli", "gateway"), env, logs / "gateway.log"
    )
    world.gateway = GatewayProcess(gateway, world.gateway_port)
    world.worker = ChildProcess(
        "tidings worker", module_argv("cli", "worker"), env, logs / "worker.log"
    )
    async with private_topics(settings, world.tenant):
        try:
            await asyncio.gather(world.start_worker(), world.start_gateway())
            yield world
        finally:
            world.gateway.stop()
            world.worker.stop()
