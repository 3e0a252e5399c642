"""Tidings: Kafka to the gateway, as deployed (and the gateway behind a plain ASGI server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    Server,
    server,
    wait_healthy,
)
from bench.messages import API_KEY, TENANT
from bench.systems.base import (
    ALL_WORKLOADS,
    Endpoints,
    System,
    collect,
    count_numbers,
    run_publisher,
    with_kafka_broker,
)
from infra.ports import free_port


class Tidings(System):
    name = "tidings"
    title = "Tidings (Kafka + gateway)"
    api_key = API_KEY
    ready_marker = "caught_up"
    workloads = ALL_WORKLOADS
    partitions = 6

    def __init__(self, work: Path, endpoints: Endpoints, *, cold_runs: bool = False) -> None:
        """``cold_runs``: leave the runs out of the gateways' run index, as
        runs started outside Tidings (every first open asks Temporal)."""
        super().__init__(work)
        self.endpoints = endpoints
        self.cold_runs = cold_runs
        self.prefix = "bench" + uuid.uuid4().hex[:8]
        self.topic = f"{self.prefix}.events.{TENANT}"
        self.task_queue = f"{self.prefix}-idle"
        self._runs: list[str] = []
        self._topic_made = False
        self._owner = True

    def borrow(self, other: Tidings) -> None:
        """Use ``other``'s topic and runs (it creates and removes them)."""
        self.prefix, self.topic, self.task_queue = other.prefix, other.topic, other.task_queue
        self._runs = other._runs
        other._ensure_topic()
        self._topic_made = True
        self._owner = False

    # -- infrastructure shared by the workloads --------------------------------
    def _kafka_options(self) -> dict[str, Any]:
        from tidings.kafka_connection import client_options
        from tidings.settings import KafkaSettings

        return client_options(KafkaSettings(bootstrap_servers=self.endpoints.kafka))

    def _ensure_topic(self) -> None:
        if self._topic_made:
            return

        async def make() -> None:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(**self._kafka_options())
            await admin.start()
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            self.topic,
                            num_partitions=self.partitions,
                            replication_factor=1,
                            topic_configs={"retention.ms": str(3600 * 1000)},
                        )
                    ]
                )
            finally:
                await admin.close()

        asyncio.run(make())
        self._topic_made = True

    def _start_runs(self, n: int) -> list[str]:
        """Real runs in Temporal, owned by the tenant, that stay open: no worker
        polls their task queue, so they sit RUNNING until terminated."""
        from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

        from tidings.runs import PIPELINE_ATTRIBUTE, PIPELINE_WORKFLOW, TENANT_ATTRIBUTE, run_id_for
        from tidings.settings import TemporalSettings
        from tidings.temporal_connect import connect_temporal

        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE), TENANT),
                SearchAttributePair(SearchAttributeKey.for_keyword(PIPELINE_ATTRIBUTE), "bench"),
            ]
        )

        async def start() -> list[str]:
            client = await connect_temporal(TemporalSettings(address=self.endpoints.temporal))
            ids = [run_id_for(TENANT, None) for _ in range(n)]
            semaphore = asyncio.Semaphore(32)

            async def one(run_id: str) -> None:
                async with semaphore:
                    await client.start_workflow(
                        PIPELINE_WORKFLOW,
                        id=run_id,
                        task_queue=self.task_queue,
                        search_attributes=attributes,
                        execution_timeout=timedelta(hours=2),
                    )

            await asyncio.gather(*(one(r) for r in ids))
            if not self.cold_runs:
                await record(ids)
            return ids

        async def record(ids: list[str]) -> None:
            # What POST /v1/runs does after a start (gateway/rest/runs.py).
            from datetime import UTC, datetime

            from redis.asyncio import Redis

            from gateway.stream import RunIndex

            redis = Redis.from_url(self.endpoints.redis)
            index = RunIndex(redis, ttl_seconds=3600)
            try:
                now = datetime.now(UTC)
                await asyncio.gather(*(index.record(run_id, TENANT, now) for run_id in ids))
            finally:
                await index.close()
                await redis.aclose()

        return asyncio.run(start())

    def channels(self, n: int) -> list[str]:
        self._ensure_topic()
        if len(self._runs) < n:
            self._runs += self._start_runs(n - len(self._runs))
        return self._runs[:n]

    def close(self) -> None:
        if not self._owner:
            return

        async def cleanup() -> None:
            from tidings.settings import TemporalSettings
            from tidings.temporal_connect import connect_temporal

            if self._runs:
                client = await connect_temporal(TemporalSettings(address=self.endpoints.temporal))
                semaphore = asyncio.Semaphore(32)

                async def one(run_id: str) -> None:
                    async with semaphore:
                        with contextlib.suppress(Exception):
                            await client.get_workflow_handle(run_id).terminate("bench done")

                await asyncio.gather(*(one(r) for r in self._runs))
            if self._topic_made:
                from aiokafka.admin import AIOKafkaAdminClient

                admin = AIOKafkaAdminClient(**self._kafka_options())
                await admin.start()
                try:
                    with contextlib.suppress(Exception):
                        await admin.delete_topics([self.topic])
                finally:
                    await admin.close()

        asyncio.run(cleanup())

    # -- the gateway -----------------------------------------------------------
    def gateway_env(self) -> dict[str, str]:
        return {
            "TIDINGS_TEMPORAL_ADDRESS": self.endpoints.temporal,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": self.endpoints.kafka,
            "TIDINGS_REDIS_URL": self.endpoints.redis,
            "TIDINGS_KAFKA_TOPIC_PREFIX": self.prefix,
            "TIDINGS_KAFKA_PARTITIONS": str(self.partitions),
            "TIDINGS_TENANTS_MAX_SOCKETS": "100000",
            "TIDINGS_LOG_LEVEL": "WARNING",
        }

    @contextmanager
    def running(self) -> Iterator[Server]:
        self._ensure_topic()
        self.port = free_port()
        argv = [str(Path(PYTHON).parent / "tidings"), "gateway", "--port", str(self.port)]
        with server(argv, self.port, self.gateway_env(), log=self.work / "gateway.log") as srv:
            self.server = srv
            yield srv

    def pids(self) -> dict[str, int]:
        return with_kafka_broker(super().pids(), self.endpoints)

    def stream_path(self, run_id: str, query: str = "from=now") -> str:
        return f"/v1/runs/{run_id}/stream?{query}"

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [(self.stream_path(run), None) for run in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        return run_publisher(
            "kafka", self.endpoints.kafka, channels, count, rate, deadline, "--topic", self.topic
        )

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        """Subscribe, keep the token, drop; ``events`` are emitted meanwhile;
        reconnect with ``resume=<token>`` and time until all have arrived."""
        run_id = self._start_runs(1)[0]
        self._runs.append(run_id)

        async def go() -> dict[str, Any]:
            first, _ = await collect(
                self.port,
                self.stream_path(run_id),
                hello=None,
                ready_marker=b"caught_up",
                until=b"caught_up",
                expect=0,
                limit_s=30,
                api_key=self.api_key,
            )
            token = next(json.loads(p)["token"] for p in first if p.startswith(b'{"kind":"token"'))
            sent = await asyncio.to_thread(self.publish, [run_id], events, 0, timeout)
            payloads, seconds = await collect(
                self.port,
                self.stream_path(run_id, f"resume={token}"),
                hello=None,
                ready_marker=None,
                until=b"caught_up",
                expect=events,
                limit_s=timeout,
                api_key=self.api_key,
            )
            return {**count_numbers(payloads, events), "seconds": seconds, "sent": sent["sent"]}

        return asyncio.run(go())


class TidingsProcesses(Tidings):
    """The same gateway as ``tidings gateway --processes 2``: two processes share
    the port (SO_REUSEPORT), each with its own tails. CPU and RSS are summed
    over the two (the idle supervisor is left out)."""

    name = "tidings-2p"
    title = "Tidings, 2 gateway processes"
    processes = 2

    def __init__(self, work: Path, endpoints: Endpoints) -> None:
        super().__init__(work, endpoints)
        self.own_ports: list[int] = []

    @contextmanager
    def running(self) -> Iterator[Server]:
        self._ensure_topic()
        self.port, own = free_port(), free_port()
        while not all(_bindable(own + i) for i in range(1, self.processes)):
            own = free_port()
        argv = [str(Path(PYTHON).parent / "tidings"), "gateway", "--port", str(self.port)]
        argv += ["--processes", str(self.processes), "--metrics-port", str(own)]
        self.own_ports = [own + i for i in range(self.processes)]
        with server(argv, self.port, self.gateway_env(), log=self.work / "gateway.log") as srv:
            # The supervisor listens before its processes serve: wait for each one.
            for i in range(self.processes):
                wait_healthy(own + i, 60, srv.proc)
            self.server = srv
            yield srv

    def warm_ports(self) -> list[int]:
        return self.own_ports  # process i alone listens on the i-th

    def server_pids(self) -> list[int]:
        assert self.server is not None
        pid = self.server.pid
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]

    def pids(self) -> dict[str, int]:
        children = {f"server_{i + 1}": pid for i, pid in enumerate(self.server_pids())}
        return with_kafka_broker(children, self.endpoints)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class TidingsAsgi(Tidings):
    """The same gateway with its direct sink off (TIDINGS_GATEWAY_DIRECT_FRAMES
    =false): every frame goes through the ASGI send and is framed per socket,
    as under any other server. The baseline for what the sink is worth."""

    name = "tidings-asgi"
    title = "Tidings, frames through ASGI"
    workloads = frozenset({"A", "B", "C", "E1", "E2", "F", "G"})

    def gateway_env(self) -> dict[str, str]:
        return {**super().gateway_env(), "TIDINGS_GATEWAY_DIRECT_FRAMES": "false"}
