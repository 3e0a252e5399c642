"""Record one Temporal history per pipeline scenario into tests/histories/*.json.

    python -m tests.histories.record        # against TIDINGS_TEST_* or the default dev ports
    python -m tests.histories.record LABEL  # only these scenarios

Re-record after a deliberate, patched workflow change; never to make a
failing replay test pass (a failing replay means runs in flight would break).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError

from tests.orchestration.harness import Harness, running_worker, settings_for
from tests.support import wait_for
from tests.topics import records_until
from tidings.runs import APPROVE_SIGNAL, STATUS_QUERY, RunStatus
from tidings.settings import KafkaSettings, RedisSettings, Settings, TemporalSettings
from tidings.topics import completions_topic, requests_topic

HERE = Path(__file__).parent


async def _approve_when_waiting(harness: Harness, run_id: str) -> None:
    handle = harness.client.get_workflow_handle(run_id)

    async def waiting() -> bool:
        status = await handle.query(STATUS_QUERY, result_type=RunStatus)
        return status.waiting_for is not None

    await wait_for(waiting, 30, "run waits for approval")
    await handle.signal(APPROVE_SIGNAL, {"by": "recorder"})


async def _complete_external(harness: Harness, run_id: str) -> None:
    kafka = harness.settings.kafka
    (raw,) = await records_until(
        kafka.bootstrap_servers,
        requests_topic(kafka.topic_prefix),
        key=run_id,
        until=lambda records: len(records) >= 1,
        timeout=30,
    )
    request = json.loads(raw.value or b"")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        body = {"run_id": run_id, "idempotency_key": request["idempotency_key"]}
        for answer in ("first", "duplicate"):
            payload = json.dumps({**body, "output": {"answer": answer}}).encode()
            await producer.send_and_wait(completions_topic(kafka.topic_prefix), payload)
    finally:
        await producer.stop()


async def _cancel_mid_step(harness: Harness, run_id: str) -> None:
    handle = harness.client.get_workflow_handle(run_id)

    async def running() -> bool:
        status = await handle.query(STATUS_QUERY, result_type=RunStatus)
        return status.current_step is not None

    await wait_for(running, 30, "run is in its step")
    await handle.cancel()


SCENARIOS: list[tuple[str, str, dict[str, Any]]] = [
    ("research", "research", {"question": "How do resume tokens survive a gateway restart?"}),
    (
        "research-approval",
        "research-approval",
        {"question": "Why a DLQ?", "require_approval": True},
    ),
    (
        "research-approval-timeout",
        "research-approval-timeout",
        {"question": "Why?", "require_approval": True},
    ),
    ("always-fails", "always-fails", {"value": 1}),
    ("with-fallback", "with-fallback", {"value": 2}),
    ("external", "external", {"text": "answer me"}),
    ("long", "long", {"n": 3}),
    ("parallel", "parallel", {}),
    ("fan-out-fails", "fan-out-fails", {}),
    ("slow-step", "slow-step", {"seconds": 60}),
    ("plane-away", "plane-away", {}),
    ("agent-fails", "agent-fails", {}),
    ("agent", "agent", {"question": "How do resume tokens survive a gateway restart?"}),
    (
        "agent-approval",
        "agent",
        {"question": "How do resume tokens work?", "require_approval": True},
    ),
    # Since the agent step runs as a child workflow (workflows/agent.py): the
    # pipeline's history, and each agent step's own in agent_workflow/.
    ("agent-durable", "agent", {"question": "How do resume tokens survive a gateway restart?"}),
    (
        "agent-durable-approval",
        "agent",
        {"question": "How do resume tokens work?", "require_approval": True},
    ),
]

# The agent workflow's histories (one per agent step of the agent-durable scenarios).
AGENT_STEPS = ("answer", "final")


async def record(
    settings: Settings, client: Client, folder: Path, only: set[str] | None = None
) -> list[Path]:
    written: list[Path] = []
    async with running_worker(settings, client) as harness:
        for label, pipeline, data in SCENARIOS:
            if only and label not in only:
                continue
            run_id, _ = await harness.start(pipeline, data, f"history-{uuid.uuid4().hex}")
            helper = None
            if label in ("research-approval", "agent-approval", "agent-durable-approval"):
                helper = asyncio.create_task(_approve_when_waiting(harness, run_id))
            if label == "external":
                helper = asyncio.create_task(_complete_external(harness, run_id))
            if label == "slow-step":  # cancelled mid-step
                helper = asyncio.create_task(_cancel_mid_step(harness, run_id))
            with contextlib.suppress(WorkflowFailureError):
                await harness.result(run_id)
            if helper is not None:
                await helper
            runs = [e async for e in client.list_workflows(f"WorkflowId = '{run_id}'")]
            runs.sort(key=lambda execution: execution.start_time)
            for index, execution in enumerate(runs, start=1):
                history = await client.get_workflow_handle(
                    run_id, run_id=execution.run_id
                ).fetch_history()
                name = label if len(runs) == 1 else f"{label}.run{index}"
                path = folder / f"{name}.json"
                path.write_text(history.to_json(), encoding="utf-8")
                written.append(path)
            if label.startswith("agent-durable"):
                written += await _agent_steps(client, run_id, label, folder / "agent_workflow")
    return written


async def _agent_steps(client: Client, run_id: str, label: str, folder: Path) -> list[Path]:
    written = []
    folder.mkdir(exist_ok=True)
    for step in AGENT_STEPS:
        history = await client.get_workflow_handle(f"{run_id}/{step}").fetch_history()
        path = folder / f"{label}.{step}.json"
        path.write_text(history.to_json(), encoding="utf-8")
        written.append(path)
    return written


async def main() -> int:
    temporal = os.environ.get("TIDINGS_TEST_TEMPORAL_ADDRESS", "127.0.0.1:17233")
    kafka = os.environ.get("TIDINGS_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    redis = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")
    base = Settings(
        temporal=TemporalSettings(address=temporal),
        kafka=KafkaSettings(bootstrap_servers=kafka),
        redis=RedisSettings(url=SecretStr(redis)),
    )
    settings = settings_for(base, f"histories-{uuid.uuid4().hex[:8]}")
    client = await Client.connect(temporal)
    for path in await record(settings, client, HERE, set(sys.argv[1:])):
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
