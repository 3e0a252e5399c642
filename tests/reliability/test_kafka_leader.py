"""Three brokers (KRaft, every topic three copies, two in sync, the worker's
producer acks=all and idempotent): SIGKILL the node leading most of the
tenant's partitions while runs emit and 100 clients stream. Nothing is lost,
the topic holds no duplicate ids, every run completes; the longest pause a
client saw goes to the results file (docs/reliability.md).

The cluster is started by the code behind ``tidings up --kafka-brokers 3``;
Temporal and Redis are the session stack's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from temporalio.client import Client

from infra import ports
from infra.process import ProcessRecord
from infra.settings import private_stack_settings
from infra.stack import Stack
from tests.conftest import StackHandle
from tests.reliability.deploy import PIPELINE, Deployment, Secrets, deployment_env, write_pipelines
from tests.reliability.verify import (
    Watchers,
    answers,
    assert_nothing_lost,
    check,
    record_tally,
    recovery,
    start_runs,
    topic_events,
    wait_completed,
)
from tests.support import wait_for
from tidings.topics import events_topic

pytestmark = pytest.mark.slow

RUNS = 10
CLIENTS_PER_RUN = 10  # 100 clients


def _say(message: str) -> None:
    print(f"[three brokers] {message}", file=sys.stderr)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    first = ports.free_port(block=6)
    settings = private_stack_settings(
        tmp_path_factory.mktemp("kafka3"),
        kafka_brokers=3,
        kafka_port=first,
        kafka_controller_port=first + 1,
        kafka_heap="256m",
    )
    stack = Stack(settings, apps=False, attached=True)
    try:
        stack.up(_say, only=[node.name for node in stack.kafkas])
        yield stack
    finally:
        stack.down(_say)


async def _leaders(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """Partition -> [leader, replicas...] of ``topic``, once every partition
    has three in-sync replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found: dict[int, list[int]] = {}

        async def described() -> bool:
            found.clear()
            for entry in await admin.describe_topics([topic]):
                for part in entry.get("partitions", []):
                    if len(part["isr"]) < 3:
                        return False
                    found[part["partition"]] = [part["leader"], *part["replicas"]]
            return bool(found)

        await wait_for(described, 30, f"{topic} with three in-sync replicas")
        return dict(found)
    finally:
        await admin.close()


async def test_leader_sigkill_three_brokers(
    stack: StackHandle, cluster: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    secrets = Secrets.fresh()
    tenant, prefix = f"kl{tag}", f"kl{tag}"
    bootstrap = cluster.kafka_bootstrap
    (tmp_path / "logs").mkdir()
    env = deployment_env(
        temporal=stack.endpoints.temporal_address,
        kafka=bootstrap,
        redis=stack.endpoints.redis_url,
        prefix=prefix,
        task_queue=f"kl-{tag}",
        pipelines=write_pipelines(tmp_path / "pipelines"),
        keys={secrets.api_key: tenant, secrets.abuse_key: f"a{tag}", secrets.other_key: f"o{tag}"},
        secrets=secrets,
        max_concurrent_runs=1000,
    )
    env["TIDINGS_KAFKA_REPLICATION_FACTOR"] = "3"
    env["TIDINGS_LOG_LEVEL"] = "WARNING"
    d = Deployment(tenant, f"a{tag}", f"o{tag}", prefix, f"kl-{tag}", secrets, tmp_path, env)
    temporal = await Client.connect(stack.endpoints.temporal_address)
    try:
        d.workers = [d.new_worker()]
        d.gateways = [d.new_gateway()]
        for proc in [*d.workers, *d.gateways]:
            await asyncio.to_thread(proc.wait_ready)
        began = time.monotonic()
        key = secrets.api_key
        run_ids = await start_runs(d.urls[0], key, PIPELINE, RUNS, "kafka leader")
        async with Watchers() as watchers:
            watches = [
                watchers.follow(run_id, d.urls, key)
                for run_id in run_ids
                for _ in range(CLIENTS_PER_RUN)
            ]
            await wait_for(
                lambda: all(w.tokens() >= 5 for w in watches) or any(w.error for w in watches),
                60,
                "every client streaming draft tokens",
            )
            layout = await _leaders(bootstrap, events_topic(prefix, tenant))
            led = Counter(replicas[0] for replicas in layout.values())
            victim, partitions_led = led.most_common(1)[0]
            node = cluster.kafkas[victim - 1]
            record = ProcessRecord.load(cluster.layout.pid_file(node.name))
            assert record is not None
            fault_at = time.monotonic()
            os.kill(record.pid, signal.SIGKILL)
            completed = await wait_completed(temporal, run_ids, 120)
            await watchers.finish(60)
        topic = await topic_events(bootstrap, prefix, tenant)
        tally = check(watches, topic, await answers(temporal, run_ids))
        duplicate_ids = sum(
            len(records) - len({e.id for e in records}) for records in topic.values()
        )
        pause = recovery(watches, fault_at)
        record_tally(
            "three brokers: SIGKILL the partition leader",
            f"SIGKILL kafka node {victim} (leader of {partitions_led} of {len(layout)} partitions, "
            "a controller too) mid-stream; RF 3, min.insync.replicas 2, acks=all, idempotent",
            tally,
            runs=RUNS,
            runs_completed=completed,
            recover_seconds=pause,
            duration_seconds=time.monotonic() - began,
            duplicate_ids_in_topic=duplicate_ids,
            longest_pause_seconds=None if pause is None else round(pause, 2),
        )
        assert completed == RUNS, f"{RUNS - completed} of {RUNS} runs did not complete"
        assert_nothing_lost(tally)
        assert tally.clients == RUNS * CLIENTS_PER_RUN
        assert duplicate_ids == 0, f"{duplicate_ids} duplicate ids in the topic"
        assert pause is not None
    finally:
        d.stop()
