"""External steps: a request on tidings.requests, the answer on tidings.completions."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from temporalio.client import WorkflowFailureError

from tests.orchestration.harness import Harness, assert_well_formed, run_events
from tests.topics import records_until
from tidings.errors import ActivityErrorType
from tidings.events import EventType
from tidings.topics import completions_topic, dlq_topic, requests_topic

pytestmark = pytest.mark.integration


async def _requests(harness: Harness, run_id: str, count: int) -> list[dict[str, Any]]:
    records = await records_until(
        harness.settings.kafka.bootstrap_servers,
        requests_topic(harness.settings.kafka.topic_prefix),
        key=run_id,
        until=lambda records: len(records) >= count,
        timeout=15,
    )
    return [json.loads(r.value or b"") for r in records]


async def _send(harness: Harness, *payloads: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=harness.settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        topic = completions_topic(harness.settings.kafka.topic_prefix)
        for payload in payloads:
            await producer.send_and_wait(topic, payload, key=b"test")
    finally:
        await producer.stop()


async def test_duplicate_completions_are_ignored(harness: Harness) -> None:
    run_id, _ = await harness.start("external", {"text": "hello"})
    (request,) = await _requests(harness, run_id, 1)
    assert request["step"] == "ask" and request["input"] == {"text": "hello"}
    marker = uuid.uuid4().hex

    def completion(answer: str) -> bytes:
        body = {"run_id": run_id, "idempotency_key": request["idempotency_key"]}
        return json.dumps({**body, "output": {"answer": answer}}).encode()

    await _send(harness, f"not json {marker}".encode(), completion("first"), completion("second"))
    result = await harness.result(run_id)
    assert result.output == {"answer": {"answer": "first"}}

    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    ask = [e for e in events if e.step == "ask"]
    assert [e.type for e in ask] == [EventType.STEP_REQUESTED, EventType.STEP_COMPLETED]
    assert ask[1].data["output"] == {"answer": "first"}

    bad = [
        r.value or b""
        for r in await records_until(
            harness.settings.kafka.bootstrap_servers,
            dlq_topic(harness.settings.kafka.topic_prefix),
            key="completions",
            until=lambda records: any(marker.encode() in (r.value or b"") for r in records),
            timeout=10,
        )
    ]
    record = json.loads(next(value for value in bad if marker.encode() in value))
    assert record["kind"] == "bad_completion" and "not JSON" in record["reason"]


async def test_missing_completion_times_out_after_its_retries(harness: Harness) -> None:
    run_id, _ = await harness.start("external", {"text": "anyone?"})
    with pytest.raises(WorkflowFailureError) as failure:
        await harness.result(run_id)
    assert ActivityErrorType.EXTERNAL_TIMEOUT in repr(failure.value.cause)
    requests = await _requests(harness, run_id, 2)
    assert [r["attempt"] for r in requests] == [1, 2]
    assert len({r["idempotency_key"] for r in requests}) == 1

    events = await run_events(harness.settings, run_id)
    assert_well_formed(events)
    ask = [(e.type, e.attempt) for e in events if e.step == "ask"]
    assert ask == [
        (EventType.STEP_REQUESTED, 1),
        (EventType.STEP_RETRYING, 1),
        (EventType.STEP_REQUESTED, 2),
        (EventType.STEP_FAILED, 2),
    ]
    assert events[-1].type == EventType.RUN_FAILED
