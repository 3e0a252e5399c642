"""The CLI tests' world: a real ``tidings worker`` and a real ``tidings gateway``
(child processes; the gateway can be SIGKILLed and started again on its
port) on the session's stack, a private tenant, key and topic prefix, and
the ``tidings`` CLI itself run as a child process, as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support import free_port, wait_for
from tidings.settings import Settings
from tidings.topics import events_topic

ROOT = Path(__file__).resolve().parents[2]
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
class Service:
    """One ``tidings <command>`` child process, its output in a log file."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tidings.cli", *self.argv],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = self.process.returncode if self.process else None
            raise AssertionError(f"tidings {self.argv[0]} exited ({code}){self.tail()}")
        return True

    def kill(self) -> None:
        """SIGKILL: no graceful close; its sockets just die."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
        return f"\n--- {self.argv[0]} log ---\n{text}" if text.strip() else ""


@dataclass
class CliWorld:
    settings: Settings
    tenant: str
    key: str
    gateway_port: int
    logs: Path
    gateway: Service | None = None
    worker: Service | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def service_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "TIDINGS_ENV": "local",
            "TIDINGS_TEMPORAL_ADDRESS": s.temporal.address,
            "TIDINGS_TEMPORAL_TASK_QUEUE": s.temporal.task_queue,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
            "TIDINGS_KAFKA_TOPIC_PREFIX": s.kafka.topic_prefix,
            "TIDINGS_KAFKA_PARTITIONS": str(s.kafka.partitions),
            "TIDINGS_REDIS_URL": s.redis.url.get_secret_value(),
            "TIDINGS_TENANTS_API_KEYS": json.dumps({self.key: self.tenant}),
            "TIDINGS_GATEWAY_HOST": "127.0.0.1",
            "TIDINGS_GATEWAY_PORT": str(self.gateway_port),
            "TIDINGS_GATEWAY_TOKEN_SECRET": f"cli-test-secret-{uuid.uuid4().hex}",
            "TIDINGS_LOG_LEVEL": "WARNING",
        }

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
        self.gateway.spawn()
        await wait_for(self._gateway_ready, 30, f"the gateway on :{self.gateway_port} to be ready")

    async def _gateway_ready(self) -> bool:
        assert self.gateway is not None
        self.gateway.alive()
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{self.url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def restart_gateway(self) -> None:
        """kill -9, then the same command on the same port."""
        assert self.gateway is not None
        await asyncio.to_thread(self.gateway.kill)
        await self.start_gateway()

    async def start_worker(self) -> None:
        assert self.worker is not None
        self.worker.spawn()
        await wait_for(
            lambda: self.worker is not None
            and self.worker.alive()
            and "ready on task queue" in self.worker.log.read_text(errors="replace"),
            60,
            "the worker to be ready",
        )

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
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tidings.cli",
            *argv,
            cwd=ROOT,
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
        detail: dict[str, Any] = {}
        async with httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10
        ) as client:

            async def closed() -> bool:
                response = await client.get(f"/v1/runs/{run_id}")
                response.raise_for_status()
                detail.clear()
                detail.update(response.json())
                return detail["status"] not in ("RUNNING", "WAITING")

            await wait_for(closed, 60, f"Temporal to close {run_id}")
        return detail


@asynccontextmanager
async def private_topics(settings: Settings, tenant: str) -> AsyncIterator[None]:
    """The tenant's events topic, made before anyone subscribes; every topic of
    the private prefix is deleted after."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        topic = events_topic(settings.kafka.topic_prefix, tenant)
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        yield
        prefix = f"{settings.kafka.topic_prefix}."
        ours = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if ours:
            with contextlib.suppress(Exception):
                await admin.delete_topics(ours)
    finally:
        await admin.close()


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
    world.gateway = Service(["gateway"], env, logs / "gateway.log")
    world.worker = Service(["worker"], env, logs / "worker.log")
    async with private_topics(settings, world.tenant):
        try:
            await asyncio.gather(world.start_worker(), world.start_gateway())
            yield world
        finally:
            world.gateway.stop()
            world.worker.stop()
