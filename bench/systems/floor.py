"""The floor: uvicorn and Starlette broadcasting to every socket, no broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import (
    PYTHON,
    Server,
    server,
)
from bench.systems.base import (
    ALL_WORKLOADS,
    System,
)
from infra.ports import free_port


class Floor(System):
    name = "floor"
    title = "floor: uvicorn+Starlette broadcast"
    workloads = ALL_WORKLOADS - {"D"}

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.port = free_port()
        argv = [PYTHON, "-m", "bench.floor", "--port", str(self.port)]
        with server(argv, self.port, log=self.work / "floor.log") as srv:
            self.server = srv
            yield srv

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [("/ws", None)]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        import httpx

        mode = "all" if len(channels) == 1 else "each"
        total = count * len(channels)
        per_second = rate if rate else 0
        response = httpx.post(
            f"http://127.0.0.1:{self.port}/broadcast",
            params={"count": count, "rate": per_second, "mode": mode},
            timeout=deadline + 60,
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        body["expected"] = total
        return body
