"""Our own processes on top of the stack: the Temporal worker and the gateways.

They get their settings the way they would in production, through ``TIDINGS_*``
variables, derived here from the stack's ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from infra.layout import Layout
from infra.services.base import Port, Service
from infra.services.temporal import temporal_binary


def tidings_executable() -> str:
    beside = Path(sys.executable).parent / "tidings"
    return str(beside) if beside.is_file() else "tidings"


@dataclass(frozen=True)
class Wiring:
    """Where the infrastructure listens, as the apps must be told."""

    temporal_address: str
    temporal_ui_url: str
    kafka_bootstrap: str
    redis_url: str
    task_queue: str
    # The Sentinel topology (`tidings up --redis-sentinel`): the apps find the
    # primary through these instead of redis_url's host.
    redis_sentinels: str = ""
    redis_sentinel_master: str = ""
    # Copies of each tenant topic: 3 on a cluster of three or more brokers.
    kafka_replication: int = 1

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "TIDINGS_TEMPORAL_ADDRESS": self.temporal_address,
            "TIDINGS_TEMPORAL_UI_URL": self.temporal_ui_url,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "TIDINGS_REDIS_URL": self.redis_url,
        }
        if self.redis_sentinels:
            env["TIDINGS_REDIS_SENTINELS"] = self.redis_sentinels
            env["TIDINGS_REDIS_SENTINEL_MASTER"] = self.redis_sentinel_master
        if self.kafka_replication > 1:
            env["TIDINGS_KAFKA_REPLICATION_FACTOR"] = str(self.kafka_replication)
        return env


@dataclass(frozen=True)
class UserCode:
    """User pipelines and activities for the workers (``tidings up --pipelines
    DIR --activities module:factory``); modules import from ``import_path``."""

    pipelines_dir: Path | None = None
    activities: tuple[str, ...] = ()
    import_path: Path | None = None

    def argv(self) -> list[str]:
        return [arg for factory in self.activities for arg in ("--activities", factory)]

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.pipelines_dir is not None:
            env["TIDINGS_WORKER_PIPELINES_DIR"] = str(self.pipelines_dir)
        if self.import_path is not None:
            paths = [str(self.import_path), env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        return env


class Worker(Service):
    def __init__(
        self, layout: Layout, host: str, index: int, wiring: Wiring, code: UserCode | None = None
    ) -> None:
        super().__init__(layout, host)
        self.name = f"worker-{index}"
        self.wiring = wiring
        self.code = code or UserCode()
        # Set by the stack once started, to tell our poller from those of earlier workers.
        self.pid: int | None = None
        self.started_at = float("inf")

    @property
    def ports(self) -> list[Port]:
        return []

    def attach(self, pid: int, *, started_at: float) -> None:
        self.pid, self.started_at = pid, started_at

    def command(self) -> list[str]:
        return [tidings_executable(), "worker", *self.code.argv()]

    def environment(self) -> Mapping[str, str]:
        return self.code.env(self.wiring.env())

    def healthy(self) -> bool:
        """Ready once Temporal lists this process among the task queue's pollers."""
        binary = temporal_binary()
        if binary is None or self.pid is None:
            return False
        argv = [str(binary), "task-queue", "describe", "-o", "json"]
        argv += ["--address", self.wiring.temporal_address, "--task-queue", self.wiring.task_queue]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=3, check=False)
            pollers = json.loads(done.stdout).get("pollers") or []
        except (subprocess.TimeoutExpired, OSError, ValueError, AttributeError):
            return False
        # Pollers of dead workers linger for minutes: only one that is ours, by the SDK's default
        # identity "<pid>@<host>" or by having polled since we started it, counts.
        return any(
            str(p.get("identity", "")).startswith(f"{self.pid}@")
            or _epoch(str(p.get("lastAccessTime", ""))) >= self.started_at
            for p in pollers
        )

    def url(self) -> str:
        return f"task queue {self.wiring.task_queue}"


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds dropped), 0 if unparsable."""
    whole = stamp.split(".")[0].removesuffix("Z")
    try:
        return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


class Gateway(Service):
    stop_grace = 15.0  # lets open sockets close with 1001 so clients resume elsewhere

    def __init__(
        self, layout: Layout, host: str, port: int, wiring: Wiring, processes: int = 1
    ) -> None:
        super().__init__(layout, host)
        self.name = f"gateway-{port}"
        self.port = port
        self.wiring = wiring
        self.processes = processes

    @property
    def ports(self) -> list[Port]:
        return [Port(self.port, "TIDINGS_STACK_GATEWAY_PORT (or --gateways)")]

    def command(self) -> list[str]:
        argv = [tidings_executable(), "gateway", "--port", str(self.port)]
        if self.processes > 1:
            argv += ["--processes", str(self.processes)]
        return argv

    def environment(self) -> Mapping[str, str]:
        return {
            **self.wiring.env(),
            "TIDINGS_GATEWAY_HOST": self.host,
            "TIDINGS_GATEWAY_PORT": str(self.port),
        }

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url()}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
