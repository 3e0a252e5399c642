"""A real deployment for the reliability suite: worker and gateway *processes*
(``tidings worker`` / ``tidings gateway``, the production entry points) on the
session stack, with a private tenant, topic prefix, task queue and
distinctive secrets, so a test can SIGKILL any of them and scan their logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import yaml

from tests.support import free_port
from workflows.builtin import RESEARCH

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "rel-research"


def write_pipelines(folder: Path) -> Path:
    """``rel-research``: the built-in research pipeline, paced so faults land
    mid-stream, with a 2 s heartbeat and quick retries so a killed worker's
    attempt is retried within seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = RESEARCH.model_dump(mode="json", exclude_defaults=True)
    raw["name"] = PIPELINE
    for step in raw["steps"]:
        if "activity" not in step:  # the approval step
            continue
        step["retry"] = {
            "max_attempts": 20,
            "initial_interval_seconds": 0.2,
            "max_interval_seconds": 2,
        }
        step["heartbeat_seconds"] = 2
        if step["name"] == "draft":
            step["input"]["pace_ms"] = 25
    (folder / f"{PIPELINE}.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return folder


@dataclass
class Secrets:
    """Distinctive values: any of them found in a log, body or metric is a leak."""

    api_key: str
    abuse_key: str
    other_key: str
    token_secret: str
    model_key: str

    @classmethod
    def fresh(cls) -> Secrets:
        tag = uuid.uuid4().hex
        return cls(
            api_key=f"relapikey{tag[:20]}",
            abuse_key=f"relabusekey{tag[:20]}",
            other_key=f"relotherkey{tag[:20]}",
            token_secret=f"reltokensecret{tag}",
            model_key=f"relmodelkey{tag[:24]}",
        )

    def all(self) -> dict[str, str]:
        return {
            "api_key": self.api_key,
            "abuse_key": self.abuse_key,
            "other_key": self.other_key,
            "token_secret": self.token_secret,
            "model_key": self.model_key,
        }


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    _out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        self._out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
        self._close_log()

    def stop(self, timeout: float = 20) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive, f"{self.name} exited at start: see {self.log}"
            if self._ready():
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready within {timeout:g}s: see {self.log}")

    def _ready(self) -> bool:
        if self.port is None:  # a worker says so on stdout
            return b"ready on task queue" in self.log.read_bytes()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                pass
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except (OSError, httpx.HTTPError):
            return False


@dataclass
class Deployment:
    tenant: str
    abuse_tenant: str
    other_tenant: str
    prefix: str
    task_queue: str
    secrets: Secrets
    folder: Path
    base_env: dict[str, str]
    workers: list[Proc] = field(default_factory=list)
    gateways: list[Proc] = field(default_factory=list)
    extras: list[Proc] = field(default_factory=list)
    _count: int = 0

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.gateways]

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.base_env, **extra}

    def new_worker(self, **extra: str) -> Proc:
        self._count += 1
        proc = Proc(
            f"worker-{self._count}",
            [sys.executable, "-m", "cli", "worker"],
            self.env(**extra),
            self.folder / "logs" / f"worker-{self._count}.log",
        )
        proc.start()
        return proc

    def new_gateway(self, port: int | None = None, **extra: str) -> Proc:
        self._count += 1
        port = port or free_port()
        proc = Proc(
            f"gateway-{self._count}",
            [sys.executable, "-m", "cli", "gateway", "--port", str(port)],
            self.env(**extra),
            self.folder / "logs" / f"gateway-{self._count}.log",
            port=port,
        )
        proc.start()
        return proc

    def replace_worker(self, index: int) -> None:
        """Start a fresh worker in place of ``workers[index]`` (dead or not)."""
        self.workers[index].kill()
        self.workers[index] = self.new_worker()
        self.workers[index].wait_ready()

    def restart_gateway(self, index: int) -> None:
        """Start the gateway again on the same port (after a kill)."""
        old = self.gateways[index]
        old.kill()
        proc = Proc(old.name, old.argv, old.env, old.log, port=old.port)
        proc.start()
        self.gateways[index] = proc
        proc.wait_ready()

    def ensure_healthy(self) -> None:
        """Every worker and gateway running; a dead one is replaced."""
        for i, worker in enumerate(self.workers):
            if not worker.alive:
                self.replace_worker(i)
        for i, gw in enumerate(self.gateways):
            if not gw.alive:
                self.restart_gateway(i)
            else:
                gw.wait_ready()

    def logs(self) -> dict[str, bytes]:
        folder = self.folder / "logs"
        return {path.name: path.read_bytes() for path in sorted(folder.glob("*.log"))}

    def stop(self) -> None:
        for proc in [*self.gateways, *self.extras, *self.workers]:
            with contextlib.suppress(Exception):
                proc.stop()


def deployment_env(
    *,
    temporal: str,
    kafka: str,
    redis: str,
    prefix: str,
    task_queue: str,
    pipelines: Path,
    keys: dict[str, str],
    secrets: Secrets,
    max_concurrent_runs: int,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TIDINGS_LOG_LEVEL": "INFO",
            "TIDINGS_TEMPORAL_ADDRESS": temporal,
            "TIDINGS_TEMPORAL_TASK_QUEUE": task_queue,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "TIDINGS_KAFKA_TOPIC_PREFIX": prefix,
            "TIDINGS_KAFKA_PARTITIONS": "3",
            "TIDINGS_KAFKA_REQUEST_TIMEOUT_MS": "10000",
            "TIDINGS_REDIS_URL": redis,
            "TIDINGS_TENANTS_API_KEYS": json.dumps(keys),
            "TIDINGS_TENANTS_MAX_CONCURRENT_RUNS": str(max_concurrent_runs),
            "TIDINGS_GATEWAY_TOKEN_SECRET": secrets.token_secret,
            "TIDINGS_WORKER_PIPELINES_DIR": str(pipelines),
            "TIDINGS_WORKER_SHUTDOWN_GRACE_SECONDS": "1",
            "TIDINGS_MODEL_API_KEY": secrets.model_key,
        }
    )
    return env
