"""Redis behind three Sentinels: SIGKILL the primary while clients stream and resume.

The topology is the one ``tidings up --redis-sentinel`` starts (a primary, a
replica, three sentinels; infra/services/sentinel.py), on ports of its own.
A worker and two gateways find the primary through the sentinels
(``TIDINGS_REDIS_SENTINELS``). Mid-draft the primary is SIGKILLed; clients keep
being cut so each resume needs its session from Redis; after the failover new
sockets open from the start of their runs. Every client must see every event
exactly once. A probe using the same client the gateways use
(``tidings.redis_connect``) measures the window in which Redis commands failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from pydantic import SecretStr
from redis.exceptions import RedisError
from temporalio.client import Client

from infra.ports import free_port
from infra.process import ProcessRecord
from infra.services.sentinel import MASTER_NAME
from infra.settings import private_stack_settings
from infra.stack import Stack
from tests.conftest import StackHandle
from tests.reliability.conftest import Rel
from tests.reliability.deploy import Deployment, Secrets, deployment_env, write_pipelines
from tests.reliability.scenario import Case, run_case
from tests.reliability.verify import drop_live
from tests.support import wait_for
from tests.topics import create_topics, delete_prefixed
from tidings.redis_connect import connect_redis
from tidings.settings import RedisSettings
from tidings.topics import events_topic

REDIS_SERVICES = [
    "redis",
    "redis-replica",
    "redis-sentinel-1",
    "redis-sentinel-2",
    "redis-sentinel-3",
]


def _say(message: str) -> None:
    print(f"[sentinel stack] {message}", file=sys.stderr)


@dataclass
class Topology:
    stack: Stack
    redis: RedisSettings

    def primary_pid(self) -> int:
        record = ProcessRecord.load(self.stack.layout.pid_file("redis"))
        assert record is not None
        return record.pid


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    settings = private_stack_settings(
        tmp_path_factory.mktemp("sentinel"),
        redis_sentinel=True,
        redis_replica_port=free_port(),
        redis_sentinel_port=free_port(block=3),
        start_timeout_seconds=60.0,
    )
    stack = Stack(settings, apps=False, attached=True)
    try:
        stack.up(_say, only=REDIS_SERVICES)
        redis = RedisSettings(
            url=SecretStr(stack.redis.redis_url),
            sentinels=stack.wiring.redis_sentinels.split(","),
            sentinel_master=MASTER_NAME,
        )
        yield Topology(stack, redis)
    finally:
        stack.down(_say)


@pytest_asyncio.fixture(scope="module")
async def sentinel_rel(
    stack: StackHandle, topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Rel]:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path_factory.mktemp("sentinel-deploy")
    (folder / "logs").mkdir()
    secrets = Secrets.fresh()
    tenant = f"sen{tag}"
    prefix = f"sen{tag}"
    env = deployment_env(
        temporal=stack.endpoints.temporal_address,
        kafka=stack.endpoints.kafka_bootstrap,
        redis=topology.redis.url.get_secret_value(),
        prefix=prefix,
        task_queue=f"sen-{tag}",
        pipelines=write_pipelines(folder / "pipelines"),
        keys={secrets.api_key: tenant},
        secrets=secrets,
        max_concurrent_runs=100,
    )
    env["TIDINGS_REDIS_SENTINELS"] = ",".join(topology.redis.sentinels)
    env["TIDINGS_REDIS_SENTINEL_MASTER"] = MASTER_NAME
    deployment = Deployment(tenant, tenant, tenant, prefix, f"sen-{tag}", secrets, folder, env)
    await create_topics(stack.endpoints.kafka_bootstrap, [events_topic(prefix, tenant)])
    temporal = await Client.connect(stack.endpoints.temporal_address)
    try:
        deployment.workers = [deployment.new_worker()]
        deployment.gateways = [deployment.new_gateway(), deployment.new_gateway()]
        for proc in [*deployment.workers, *deployment.gateways]:
            await asyncio.to_thread(proc.wait_ready)
        yield Rel(stack, deployment, temporal)
    finally:
        await asyncio.to_thread(deployment.stop)
        await delete_prefixed(stack.endpoints.kafka_bootstrap, prefix)


class ErrorWindow:
    """Writes through the Sentinel-aware client every 50 ms; the span from the
    first failed command to the last one is the window clients could see."""

    def __init__(self, settings: RedisSettings) -> None:
        self._redis = connect_redis(settings, timeout=1.0)
        self.first_error: float | None = None
        self.last_error: float | None = None
        self.errors = 0
        self.ok_after_error = False
        self._stop = asyncio.Event()

    async def run(self) -> None:
        key = f"tidings:test:sentinel:{uuid.uuid4().hex}"
        try:
            while not self._stop.is_set():
                try:
                    await self._redis.set(key, str(time.monotonic()), ex=60)
                    if self.errors:
                        self.ok_after_error = True
                except (RedisError, OSError):
                    now = time.monotonic()
                    self.first_error = self.first_error or now
                    self.last_error = now
                    self.errors += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.05)
        finally:
            await self._redis.aclose()

    def stop(self) -> None:
        self._stop.set()

    @property
    def seconds(self) -> float:
        if self.first_error is None or self.last_error is None:
            return 0.0
        return self.last_error - self.first_error


async def test_sentinel_failover_while_clients_resume(
    sentinel_rel: Rel, topology: Topology
) -> None:
    rel = sentinel_rel
    d = rel.deployment
    probe = ErrorWindow(topology.redis)
    probing = asyncio.create_task(probe.run())
    sentinel = connect_redis(topology.redis, timeout=1.0)
    old_primary = ("127.0.0.1", topology.stack.redis.port)

    async def master() -> tuple[str, int] | None:
        pool = sentinel.connection_pool
        with contextlib.suppress(RedisError, OSError):
            return tuple(await pool.sentinel_manager.discover_master(MASTER_NAME))  # type: ignore[attr-defined, no-any-return]
        return None

    async def inject(case: Case) -> None:
        assert await master() == old_primary
        killed = time.monotonic()
        os.kill(topology.primary_pid(), signal.SIGKILL)
        drops = 0
        promoted_at: float | None = None
        # Cut every client while the sentinels fail over, and a few times
        # after: each cut is a resume that reads its session from Redis.
        after = 0
        while after < 4 and drops < 300:
            drops += drop_live(case.watches)
            await asyncio.sleep(0.4)
            now_master = await master()
            if promoted_at is None and now_master not in (None, old_primary):
                promoted_at = time.monotonic()
            if promoted_at is not None:
                after += 1
            assert time.monotonic() - killed < 30, "no failover within 30 s"
        # New sockets after the failover, from each run's first event.
        for run_id in case.run_ids[:2]:
            case.watches.append(case.watchers.follow(run_id, d.urls, d.secrets.api_key))
        assert promoted_at is not None
        await wait_for(
            lambda: probe.errors == 0 or probe.ok_after_error, 10, "Redis commands to work again"
        )
        case.notes["failover_seconds"] = round(promoted_at - killed, 2)
        case.notes["forced_drops"] = drops
        # The Redis outage as a client of the gateways' kind saw it.
        case.notes["outage_seconds"] = round(probe.seconds, 2)
        case.notes["redis_errors_probed"] = probe.errors

    try:
        tally = await run_case(
            rel,
            "Redis Sentinel failover",
            "SIGKILL the Redis primary (Sentinel promotes the replica) while clients resume",
            inject,
        )
    finally:
        probe.stop()
        await probing
        await sentinel.aclose()
    assert probe.ok_after_error, "the probe saw no failure at all: did the kill land?"
    print(
        f"sentinel failover: probe errors {probe.errors}, window {probe.seconds:.2f}s, "
        f"clients {tally.clients}, lost {tally.lost}",
        file=sys.stderr,
    )
