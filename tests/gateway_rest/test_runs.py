"""Happy paths of every /v1/runs route, against a real gateway and real Temporal."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.gateway_rest.helpers import Runs, eventually

pytestmark = pytest.mark.integration


async def start(client: httpx.AsyncClient, runs: Runs, pipeline: str, **headers: str) -> Any:
    response = await client.post(
        "/v1/runs", json={"pipeline": pipeline, "input": {"text": "hi"}}, headers=headers
    )
    assert response.status_code in (200, 201), response.text
    body = response.json()
    runs.track(body["run_id"])
    return body


async def until_state(client: httpx.AsyncClient, run_id: str, *states: str) -> Any:
    async def probe() -> Any:
        body = (await client.get(f"/v1/runs/{run_id}")).json()
        return body if body["status"] in states else None

    return await eventually(probe, what=f"{run_id} to reach {states}")


async def test_start_returns_201_with_links(demo: httpx.AsyncClient, runs: Runs) -> None:
    response = await demo.post("/v1/runs", json={"pipeline": "echo", "input": {"text": "hi"}})
    assert response.status_code == 201, response.text
    body = response.json()
    runs.track(body["run_id"])
    assert body["run_id"].startswith("demo-")
    assert body["status"] == "RUNNING"
    assert body["stream_url"] == f"ws://{demo.base_url.host}:{demo.base_url.port}" + (
        f"/v1/runs/{body['run_id']}/stream"
    )
    assert body["temporal_ui_url"].endswith(f"/namespaces/default/workflows/{body['run_id']}")


async def test_completed_run_shows_its_result(demo: httpx.AsyncClient, runs: Runs) -> None:
    run = await start(demo, runs, "echo")
    detail = await until_state(demo, run["run_id"], "COMPLETED")
    assert detail["pipeline"] == "echo"
    assert detail["result"]["echo"] == {"text": "hi"}
    assert detail["error"] is None
    assert detail["closed_at"] is not None


async def test_failed_run_shows_why(demo: httpx.AsyncClient, runs: Runs) -> None:
    response = await demo.post("/v1/runs", json={"pipeline": "fail"})
    assert response.status_code == 201
    run_id = runs.track(response.json()["run_id"])
    detail = await until_state(demo, run_id, "FAILED")
    assert detail["result"] is None
    assert "failed on purpose" in detail["error"]


async def test_waiting_run_shows_its_step_then_approve_completes_it(
    demo: httpx.AsyncClient, runs: Runs
) -> None:
    run_id = (await start(demo, runs, "approval"))["run_id"]
    detail = await until_state(demo, run_id, "WAITING")
    assert detail["current_step"] == "review"
    assert detail["waiting_for"] == "approve"

    payload = {"comment": "lgtm", "reviewer": "ann"}  # any JSON object reaches the workflow
    response = await demo.post(f"/v1/runs/{run_id}/signals/approve", json=payload)
    assert response.status_code == 202, response.text
    assert response.json()["signal"] == "approve"

    detail = await until_state(demo, run_id, "COMPLETED")
    assert detail["result"]["decision"] == {"approved": True, **payload}


async def test_signal_without_body(demo: httpx.AsyncClient, runs: Runs) -> None:
    run_id = (await start(demo, runs, "approval"))["run_id"]
    response = await demo.post(f"/v1/runs/{run_id}/signals/reject")
    assert response.status_code == 202, response.text
    detail = await until_state(demo, run_id, "COMPLETED")
    assert detail["result"]["decision"] == {"approved": False}


async def test_cancel_cancels(demo: httpx.AsyncClient, runs: Runs) -> None:
    run_id = (await start(demo, runs, "approval"))["run_id"]
    response = await demo.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json() == {"run_id": run_id, "status": "CANCELLING"}
    detail = await until_state(demo, run_id, "CANCELLED")
    assert detail["error"] == "cancelled"


async def test_history_is_temporal_json(demo: httpx.AsyncClient, runs: Runs) -> None:
    run_id = (await start(demo, runs, "echo"))["run_id"]
    await until_state(demo, run_id, "COMPLETED")
    response = await demo.get(f"/v1/runs/{run_id}/history")
    assert response.status_code == 200
    events = response.json()["events"]
    assert events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    assert events[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"


async def test_list_is_tenant_scoped_and_pages(
    demo: httpx.AsyncClient, acme: httpx.AsyncClient, runs: Runs
) -> None:
    mine = {(await start(demo, runs, "echo"))["run_id"] for _ in range(3)}
    theirs = (await start(acme, runs, "echo"))["run_id"]

    async def listed() -> set[str] | None:
        body = (await demo.get("/v1/runs", params={"limit": 500})).json()
        ids = {run["run_id"] for run in body["runs"]}
        return ids if mine <= ids else None

    ids = await eventually(listed, what="the new runs in the listing")
    assert theirs not in ids
    assert all(run_id.startswith("demo-") for run_id in ids)

    first = (await demo.get("/v1/runs", params={"limit": 2})).json()
    assert len(first["runs"]) == 2 and first["next_page"]
    second = (await demo.get("/v1/runs", params={"limit": 2, "page": first["next_page"]})).json()
    assert {r["run_id"] for r in first["runs"]}.isdisjoint(r["run_id"] for r in second["runs"])

    # A page cursor only works for the tenant and the filters that produced it.
    page = first["next_page"]
    tampered = page[:-2] + ("AA" if page[-2:] != "AA" else "BB")
    for client, params in [
        (acme, {"limit": 2, "page": page}),
        (demo, {"limit": 2, "page": page, "pipeline": "echo"}),
        (demo, {"limit": 2, "page": tampered}),
    ]:
        refused = await client.get("/v1/runs", params=params)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["error"]["code"] == "bad_request"

    only_echo = (await demo.get("/v1/runs", params={"pipeline": "echo", "limit": 500})).json()
    assert only_echo["runs"] and all(run["pipeline"] == "echo" for run in only_echo["runs"])
    done = (await demo.get("/v1/runs", params={"status": "COMPLETED", "limit": 500})).json()
    assert all(run["status"] == "COMPLETED" for run in done["runs"])


async def test_idempotent_start_under_20_concurrent_requests(
    demo: httpx.AsyncClient, runs: Runs
) -> None:
    key = f"idem-{id(runs)}-{asyncio.get_running_loop().time()}"
    body = {"pipeline": "approval", "input": {"text": "once"}}

    responses = await asyncio.gather(
        *(demo.post("/v1/runs", json=body, headers={"Idempotency-Key": key}) for _ in range(20))
    )
    run_ids = {response.json()["run_id"] for response in responses}
    assert len(run_ids) == 1, run_ids
    runs.track(run_ids.pop())
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 19 + [201]

    again = await demo.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200
    assert again.json()["run_id"] == responses[0].json()["run_id"]
    assert again.json()["status"] in ("RUNNING", "WAITING")
