"""Every refusal answers its documented status with {"error": {"code", "message"}},
and starts or changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.gateway_rest.helpers import ACME_KEY, DEMO_KEY, MAX_BODY, Runs, eventually
from tidings.runs import run_id_for

pytestmark = pytest.mark.integration


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    message: str = body["error"]["message"]
    assert message
    return message


async def settled_history(temporal: Client, run_id: str) -> int:
    """History length once the first workflow task completed (the stub then waits)."""
    handle = temporal.get_workflow_handle(run_id)

    async def length() -> int | None:
        found = (await handle.describe()).history_length
        return found if found >= 4 else None

    return await eventually(length, what=f"{run_id}'s first workflow task")


async def never_started(temporal: Client, tenant: str, key: str) -> None:
    """The run a key would have named does not exist (describe is strongly consistent)."""
    with pytest.raises(RPCError) as info:
        await temporal.get_workflow_handle(run_id_for(tenant, key)).describe()
    assert info.value.status == RPCStatusCode.NOT_FOUND


@pytest.fixture
def key() -> str:
    return f"bad-{uuid.uuid4().hex}"


async def post_run(
    client: httpx.AsyncClient, key: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return await client.post(
        "/v1/runs", headers={"Idempotency-Key": key, **(headers or {})}, **kwargs
    )


# -- starting -------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", ["nope", "../etc", ""])
async def test_unknown_pipeline(
    demo: httpx.AsyncClient, temporal: Client, key: str, pipeline: str
) -> None:
    response = await post_run(demo, key, json={"pipeline": pipeline, "input": {"text": "x"}})
    error_of(response, 400, "unknown_pipeline")
    await never_started(temporal, "demo", key)


async def test_input_failing_the_schema_is_422(
    demo: httpx.AsyncClient, temporal: Client, key: str
) -> None:
    response = await post_run(demo, key, json={"pipeline": "echo", "input": {"text": 7}})
    assert "input.text" in error_of(response, 422, "validation_error")
    await never_started(temporal, "demo", key)


@pytest.mark.parametrize(
    "body",
    [{}, {"pipeline": 3}, {"pipeline": "echo", "input": []}, {"pipeline": "echo", "x": 1}],
)
async def test_malformed_body_is_422(
    demo: httpx.AsyncClient, temporal: Client, key: str, body: Any
) -> None:
    error_of(await post_run(demo, key, json=body), 422, "validation_error")
    await never_started(temporal, "demo", key)


async def test_body_that_is_not_json_is_400(
    demo: httpx.AsyncClient, temporal: Client, key: str
) -> None:
    response = await post_run(
        demo, key, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    error_of(response, 400, "bad_request")
    await never_started(temporal, "demo", key)


async def test_oversize_body_is_413_before_parsing(
    demo: httpx.AsyncClient, temporal: Client, key: str
) -> None:
    big = {"pipeline": "echo", "input": {"text": "x" * (MAX_BODY + 1)}}
    error_of(await post_run(demo, key, json=big), 413, "payload_too_large")
    await never_started(temporal, "demo", key)


async def test_oversize_chunked_body_is_413(
    demo: httpx.AsyncClient, temporal: Client, key: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pipeline": "echo", "input": {"text": "'
        for _ in range(MAX_BODY // 512 + 2):
            yield b"y" * 512
        yield b'"}}'

    response = await post_run(
        demo, key, content=chunks(), headers={"Content-Type": "application/json"}
    )
    error_of(response, 413, "payload_too_large")
    await never_started(temporal, "demo", key)


async def test_bad_idempotency_key_is_400(demo: httpx.AsyncClient) -> None:
    body = {"pipeline": "echo", "input": {"text": "x"}}
    response = await demo.post("/v1/runs", json=body, headers={"Idempotency-Key": "a b"})
    error_of(response, 400, "bad_request")


async def test_refusals_start_nothing_at_all(
    demo: httpx.AsyncClient, temporal: Client, rest_settings: Any, runs: Runs
) -> None:
    """Listing by task queue: after a burst of refused starts, a sentinel run is the only
    new workflow. The sentinel is a barrier for visibility's eventual consistency."""
    queue = rest_settings.temporal.task_queue
    query = f"TaskQueue = '{queue}'"
    before = (await temporal.count_workflows(query)).count
    for body in (
        {"pipeline": "nope", "input": {}},
        {"pipeline": "echo", "input": {"text": 1}},
        {"pipeline": "echo"},
        {"pipeline": "echo", "input": {"text": "x" * MAX_BODY}},
    ):
        assert (await demo.post("/v1/runs", json=body)).status_code >= 400
    assert (await demo.post("/v1/runs", json={"pipeline": "echo"}, headers={})).status_code == 422
    sentinel = await demo.post("/v1/runs", json={"pipeline": "echo", "input": {"text": "s"}})
    sentinel_id = runs.track(sentinel.json()["run_id"])

    async def sentinel_listed() -> bool:
        async for execution in temporal.list_workflows(f"{query} AND WorkflowId = '{sentinel_id}'"):
            return execution.id == sentinel_id
        return False

    await eventually(sentinel_listed, what="the sentinel run to be listed")
    assert (await temporal.count_workflows(query)).count == before + 1


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-123"}, {"Authorization": f"Basic {DEMO_KEY}"}],
)
async def test_missing_or_bad_key_is_401(
    anonymous: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for response in (
        await anonymous.get("/v1/runs", headers=headers),
        await anonymous.post("/v1/runs", json={"pipeline": "echo"}, headers=headers),
        await anonymous.get("/v1/runs/demo-0123/events", headers=headers),
    ):
        message = error_of(response, 401, "unauthorized")
        assert "wrong-key" not in response.text and DEMO_KEY not in message


async def test_401_comes_before_body_validation(anonymous: httpx.AsyncClient) -> None:
    error_of(await anonymous.post("/v1/runs", content=b"junk"), 401, "unauthorized")


# -- another tenant's run, unknown runs ------------------------------------------------------


async def test_another_tenants_run_is_404_on_every_route(
    demo: httpx.AsyncClient, acme: httpx.AsyncClient, temporal: Client, runs: Runs
) -> None:
    created = await acme.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "s"}})
    theirs = runs.track(created.json()["run_id"])
    history_before = await settled_history(temporal, theirs)

    unknown = "demo-" + "0" * 32
    for run_id in (theirs, unknown, "not-a-run", "acme"):
        for method, path in (
            ("GET", ""),
            ("GET", "/history"),
            ("GET", "/events"),
            ("POST", "/cancel"),
            ("POST", "/signals/approve"),
        ):
            response = await demo.request(method, f"/v1/runs/{run_id}{path}")
            message = error_of(response, 404, "not_found")
            assert message == "run not found"
            assert "acme" not in response.text or run_id == "acme"

    described = await temporal.get_workflow_handle(theirs).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert described.history_length == history_before
    assert (await acme.get(f"/v1/runs/{theirs}")).status_code == 200


async def test_run_with_tenant_prefix_but_no_tenant_attribute_is_404(
    demo: httpx.AsyncClient, temporal: Client, rest_settings: Any, runs: Runs
) -> None:
    """A workflow whose id looks like demo's but that demo's starter did not tag."""
    run_id = runs.track(f"demo-{uuid.uuid4().hex}")
    await temporal.start_workflow(
        "PipelineWorkflow",
        {"tenant": "demo", "pipeline": "approval", "input": {"text": "x"}},
        id=run_id,
        task_queue=rest_settings.temporal.task_queue,
    )
    error_of(await demo.get(f"/v1/runs/{run_id}"), 404, "not_found")


# -- signals and cancel -----------------------------------------------------------------------


async def test_unknown_signal_is_400_and_changes_nothing(
    demo: httpx.AsyncClient, temporal: Client, runs: Runs
) -> None:
    created = await demo.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "s"}})
    run_id = runs.track(created.json()["run_id"])
    handle = temporal.get_workflow_handle(run_id)
    before = await settled_history(temporal, run_id)
    error_of(await demo.post(f"/v1/runs/{run_id}/signals/launch"), 400, "unknown_signal")
    assert (await handle.describe()).history_length == before


async def test_cancelling_or_signalling_a_finished_run_is_409(
    demo: httpx.AsyncClient, temporal: Client, runs: Runs
) -> None:
    created = await demo.post("/v1/runs", json={"pipeline": "echo", "input": {"text": "s"}})
    run_id = runs.track(created.json()["run_id"])
    handle = temporal.get_workflow_handle(run_id)

    async def done() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    await eventually(done, what="the echo run to complete")
    before = (await handle.describe()).history_length
    error_of(await demo.post(f"/v1/runs/{run_id}/cancel"), 409, "run_finished")
    error_of(await demo.post(f"/v1/runs/{run_id}/signals/approve"), 409, "run_finished")
    after = await handle.describe()
    assert after.status == WorkflowExecutionStatus.COMPLETED
    assert after.history_length == before


async def test_unknown_route_and_method_use_the_error_format(demo: httpx.AsyncClient) -> None:
    error_of(await demo.get("/v1/nothing"), 404, "not_found")
    error_of(await demo.delete("/v1/runs"), 405, "bad_request")


async def test_bad_list_and_events_parameters(demo: httpx.AsyncClient, runs: Runs) -> None:
    # Query parameters out of format or range are malformed requests: 400, as documented.
    for params in ({"limit": 0}, {"limit": "x"}, {"status": "SLEEPING"}, {"status": "BOGUS"}):
        message = error_of(await demo.get("/v1/runs", params=params), 400, "bad_request")
        assert next(iter(params)) in message and "BOGUS" not in message, message
    error_of(await demo.get("/v1/runs", params={"page": "!!!"}), 400, "bad_request")
    created = await demo.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "s"}})
    run_id = runs.track(created.json()["run_id"])
    for after in ("x", "1", "1:-2", "abc:def", "9" * 40):
        response = await demo.get(f"/v1/runs/{run_id}/events", params={"after": after})
        error_of(response, 400, "bad_request")
    for params in ({"limit": 0}, {"limit": 1001}):
        response = await demo.get(f"/v1/runs/{run_id}/events", params=params)
        error_of(response, 400, "bad_request")


async def test_cross_tenant_key_cannot_read_acme_with_demo_key_in_access_token(
    anonymous: httpx.AsyncClient,
) -> None:
    """REST accepts only the Authorization header (access_token is for WebSockets)."""
    response = await anonymous.get("/v1/runs", params={"access_token": ACME_KEY})
    error_of(response, 401, "unauthorized")


async def test_idempotency_key_reused_for_another_pipeline_is_409(
    demo: httpx.AsyncClient, runs: Runs, key: str
) -> None:
    first = await post_run(demo, key, json={"pipeline": "approval", "input": {"text": "k"}})
    assert first.status_code == 201
    runs.track(first.json()["run_id"])
    other = await post_run(demo, key, json={"pipeline": "echo", "input": {"text": "k"}})
    assert "approval" in error_of(other, 409, "conflict")


async def test_idempotency_key_reused_with_another_body_is_422(
    demo: httpx.AsyncClient, runs: Runs, key: str
) -> None:
    first = await post_run(demo, key, json={"pipeline": "approval", "input": {"text": "k"}})
    assert first.status_code == 201, first.text
    run_id = runs.track(first.json()["run_id"])
    # The same body, however it is spelt, is the same request: the first run.
    same = await post_run(
        demo,
        key,
        content=b'{ "input": {"text": "k"},  "pipeline": "approval" }',
        headers={"Content-Type": "application/json"},
    )
    assert same.status_code == 200 and same.json()["run_id"] == run_id, same.text
    other = await post_run(demo, key, json={"pipeline": "approval", "input": {"text": "k2"}})
    assert "Idempotency-Key" in error_of(other, 422, "idempotency_key_reused")


async def test_racing_bodies_under_one_key_start_one_run_and_refuse_the_rest(
    demo: httpx.AsyncClient, runs: Runs, key: str
) -> None:
    """The fingerprint is written with the run itself (its start request):
    whichever body wins the race, every other body is refused, never answered
    with a run that does not match it."""
    bodies = [{"pipeline": "approval", "input": {"text": f"body-{i % 2}"}} for i in range(10)]
    responses = await asyncio.gather(*(post_run(demo, key, json=body) for body in bodies))
    started = [r for r in responses if r.status_code in (200, 201)]
    assert len({r.json()["run_id"] for r in started}) == 1, [r.text for r in responses]
    runs.track(started[0].json()["run_id"])
    assert sorted(r.status_code for r in started) == [200] * (len(started) - 1) + [201]
    winner = bodies[responses.index(next(r for r in started if r.status_code == 201))]
    for body, response in zip(bodies, responses, strict=True):
        if body == winner:
            assert response.status_code in (200, 201), response.text
        else:
            error_of(response, 422, "idempotency_key_reused")
