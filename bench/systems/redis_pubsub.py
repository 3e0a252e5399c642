"""The naive design: Redis pub/sub, one subscription per socket."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    Server,
    server,
)
from bench.systems.base import (
    ALL_WORKLOADS,
    System,
    collect,
    count_numbers,
    run_publisher,
)
from bench.wsclient import connect
from infra.ports import free_port


class RedisPubSub(System):
    name = "redis-pubsub"
    title = "naive: Redis pub/sub + Starlette"
    ready_marker = '"ready"'
    workloads = ALL_WORKLOADS

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.redis_port = 0
        self._redis: subprocess.Popen[bytes] | None = None

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.redis_port = free_port()
        self.port = free_port()
        with ExitStack() as stack:
            redis_argv = [
                shutil.which("redis-server") or "redis-server",
                "--bind", "127.0.0.1", "--port", str(self.redis_port),
                "--save", "", "--appendonly", "no", "--maxclients", "60000",
                "--dir", str(self.work),
            ]  # fmt: skip
            self._redis_srv = stack.enter_context(
                server(redis_argv, self.redis_port, log=self.work / "redis.log")
            )
            env = {"BENCH_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0"}
            argv = [PYTHON, "-m", "bench.peers.redis_pubsub", "--port", str(self.port)]
            srv = stack.enter_context(
                server(argv, self.port, env, log=self.work / "redis_pubsub.log")
            )
            self.server = srv
            yield srv

    def pids(self) -> dict[str, int]:
        return {**super().pids(), "broker": self._redis_srv.pid}

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [(f"/ws/{ch}", None) for ch in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        target = f"redis://127.0.0.1:{self.redis_port}/0"
        return run_publisher("redis", target, channels, count, rate, deadline)

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        """Pub/sub has no resume: reconnect after the events and count what arrives."""
        channel = "bench-resume"

        async def go() -> dict[str, Any]:
            first = await connect("127.0.0.1", self.port, f"/ws/{channel}", ready_marker=b'"ready"')
            first.close()
            await asyncio.sleep(0.2)
            await asyncio.to_thread(self.publish, [channel], events, 0, timeout)
            payloads, _ = await collect(
                self.port,
                f"/ws/{channel}",
                hello=None,
                ready_marker=b'"ready"',
                until=b"\x00never",
                expect=events,
                limit_s=min(timeout, 3.0),
            )
            counted = count_numbers(payloads, events)
            return {
                **counted,
                "seconds": None,
                "note": "no replay: pub/sub drops what a client missed",
            }

        return asyncio.run(go())
