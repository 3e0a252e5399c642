"""GET /v1/runs/{id}/events: the run's stored events, read back from its Kafka partition."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.gateway_rest.helpers import EVENT_PARTITIONS, Runs
from tidings.events import Event, EventType
from tidings.kafka_log import partition_for
from tidings.settings import Settings

pytestmark = pytest.mark.integration


async def start_waiting_run(client: httpx.AsyncClient, runs: Runs) -> str:
    response = await client.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "e"}})
    assert response.status_code == 201, response.text
    return runs.track(response.json()["run_id"])


def event(run_id: str, seq: int, tenant: str = "demo") -> Event:
    return Event(
        type=EventType.STEP_PROGRESS, tenant=tenant, run_id=run_id, step="s", attempt=1, seq=seq
    )


async def produce(settings: Settings, topic: str, records: list[tuple[str, bytes]]) -> None:
    """Send with the producer's default partitioner, as the worker's emitter does."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key.encode())
    finally:
        await producer.stop()


async def all_pages(client: httpx.AsyncClient, run_id: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(50):
        page = (await client.get(f"/v1/runs/{run_id}/events", params=params)).json()
        assert len(page["events"]) <= limit
        seen.extend(page["events"])
        if not page["more"]:
            return seen
        params["after"] = page["next_cursor"]
    raise AssertionError("paging did not end")


async def test_events_are_the_runs_own_in_order_and_page_by_cursor(
    demo: httpx.AsyncClient, runs: Runs, rest_settings: Settings, events_topic_name: str
) -> None:
    run_id = await start_waiting_run(demo, runs)
    other = await start_waiting_run(demo, runs)
    records: list[tuple[str, bytes]] = []
    for seq in range(6):
        records.append((run_id, event(run_id, seq).to_bytes()))
        records.append((other, event(other, seq).to_bytes()))
    # Unreadable, or claiming another tenant or run: never shown.
    records.append((run_id, b"not json"))
    records.append((run_id, event(run_id, 99, tenant="acme").to_bytes()))
    records.append((run_id, event(other, 98).to_bytes()))
    records.append((run_id, event(run_id, 6).to_bytes()))
    await produce(rest_settings, events_topic_name, records)

    response = await demo.get(f"/v1/runs/{run_id}/events")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["run_id"] == run_id and page["more"] is False
    assert [item["event"]["seq"] for item in page["events"]] == list(range(7))
    assert {item["event"]["run_id"] for item in page["events"]} == {run_id}
    # The envelope as emitted, with its deterministic id.
    first = page["events"][0]["event"]
    assert first == json.loads(event(run_id, 0).to_bytes()) | {"ts": first["ts"]}
    partition = partition_for(run_id, list(range(EVENT_PARTITIONS)))
    assert all(item["cursor"].startswith(f"{partition}:") for item in page["events"])

    paged = await all_pages(demo, run_id, limit=2)
    assert [item["event"]["seq"] for item in paged] == list(range(7))

    # After the last event: nothing more, and the same cursor back.
    tail = await demo.get(f"/v1/runs/{run_id}/events", params={"after": page["next_cursor"]})
    assert tail.json()["events"] == [] and tail.json()["more"] is False

    # Resuming from an event's own cursor yields exactly what follows it.
    after_third = page["events"][2]["cursor"]
    rest = (await demo.get(f"/v1/runs/{run_id}/events", params={"after": after_third})).json()
    assert [item["event"]["seq"] for item in rest["events"]] == [3, 4, 5, 6]


async def test_cursor_of_another_partition_is_400(
    demo: httpx.AsyncClient, runs: Runs, events_topic_name: str
) -> None:
    run_id = await start_waiting_run(demo, runs)
    wrong = (partition_for(run_id, list(range(EVENT_PARTITIONS))) + 1) % EVENT_PARTITIONS
    response = await demo.get(f"/v1/runs/{run_id}/events", params={"after": f"{wrong}:0"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_run_without_stored_events_gets_an_empty_page(
    acme: httpx.AsyncClient, runs: Runs
) -> None:
    """acme has no topic under this session's prefix (auto-creation is off)."""
    run_id = await start_waiting_run(acme, runs)
    page = (await acme.get(f"/v1/runs/{run_id}/events")).json()
    assert page == {"run_id": run_id, "events": [], "next_cursor": None, "more": False}
