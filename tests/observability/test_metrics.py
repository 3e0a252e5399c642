"""Every metric we add is on /metrics (worker: ours and the Temporal SDK's;
gateway: ours) and moves when there is work; a failing run moves the DLQ and
hot-loop counters and logs a JSON line naming its run, tenant and trace."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest

from tests.observability.conftest import KEY, TENANT, Obs
from tests.observability.scrape import names, scrape, value
from tests.support import wait_for
from tests.topics import run_records
from tidings.observability import JsonFormatter, RedactingFilter

pytestmark = pytest.mark.integration

# Every family we add (names as declared, before _total/_bucket suffixes).
WORKER_METRICS = {
    "tidings_worker_events_emitted",
    "tidings_worker_emit_seconds",
    "tidings_worker_quota_delay_seconds",
    "tidings_worker_dlq_records",
    "tidings_worker_hot_loop_alerts",
    "tidings_worker_coalesced_tokens",
    "tidings_worker_coalesced_records",
    "tidings_worker_tenant_lag_records",
}
GATEWAY_METRICS = {"tidings_gateway_runs_shed", "tidings_gateway_tenant_lag_records"}


async def run(obs: Obs, pipeline: str, input: dict[str, int]) -> str:
    async with obs.http() as http:
        answer = await http.post("/v1/runs", json={"pipeline": pipeline, "input": input})
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    await run_records(obs.settings.kafka.bootstrap_servers, obs.topic, run_id)
    return run_id


async def test_worker_metrics_move_under_load(obs: Obs) -> None:
    before = await scrape(obs.worker_metrics_url)
    for _ in range(3):
        await run(obs, "obs-speak", {"count": 50})
    # A run's last event is on Kafka a moment before its workflow completes:
    # wait for the SDK to count the third completion rather than race it.
    floor = value(before, "temporal_workflow_completed_total") + 3

    async def completed_all() -> bool:
        nonlocal after
        after = await scrape(obs.worker_metrics_url)
        return value(after, "temporal_workflow_completed_total") >= floor

    after = before
    await wait_for(completed_all, 20, "the SDK to count three completed workflows")

    emitted = value(after, "tidings_worker_events_emitted_total", tenant=TENANT, type="step.token")
    assert (
        emitted
        - value(before, "tidings_worker_events_emitted_total", tenant=TENANT, type="step.token")
        >= 150
    )
    acked = value(after, "tidings_worker_emit_seconds_count", tenant=TENANT)
    assert acked > value(before, "tidings_worker_emit_seconds_count", tenant=TENANT)
    # The Temporal SDK's own series ride on the same endpoint.
    sdk = {n for n in names(after) if n.startswith("temporal_")}
    for name in (
        "temporal_activity_execution_latency_count",
        "temporal_workflow_task_schedule_to_start_latency_count",
        "temporal_worker_task_slots_available",
        "temporal_workflow_completed_total",
    ):
        assert name in sdk, sorted(sdk)
    assert value(after, "temporal_workflow_completed_total") >= floor
    print(f"worker /metrics: {len(names(after))} series names, {len(sdk)} from the SDK")


async def test_a_failing_run_moves_dlq_and_hot_loop_and_logs_json(obs: Obs) -> None:
    before = await scrape(obs.worker_metrics_url)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter([KEY]))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        run_id = await run(obs, "obs-fails", {})
    finally:
        root.removeHandler(handler)
    after = await scrape(obs.worker_metrics_url)

    dlq = "tidings_worker_dlq_records_total"
    assert (
        value(after, dlq, tenant=TENANT, kind="step_failed")
        == value(before, dlq, tenant=TENANT, kind="step_failed") + 1
    )
    alerts = "tidings_worker_hot_loop_alerts_total"
    assert value(after, alerts, tenant=TENANT) == value(before, alerts, tenant=TENANT) + 1

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    hot = [line for line in lines if line["message"].startswith("hot loop")]
    assert hot, lines
    assert {"ts", "level", "logger", "message"} <= set(hot[0])
    assert hot[0]["run_id"] == run_id and hot[0]["tenant"] == TENANT
    assert len(hot[0]["trace_id"]) == 32
    assert KEY not in stream.getvalue()


async def declared(url: str) -> set[str]:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url)).text
    # The text format names a counter family with its _total suffix.
    return {
        line.split()[2].removesuffix("_total")
        for line in text.splitlines()
        if line.startswith("# TYPE")
    }


async def test_every_added_metric_is_exposed(obs: Obs) -> None:
    # Declared (HELP/TYPE) from start, so dashboards and alerts never see a
    # missing series; the other tests show each one moving.
    worker, gateway = (
        await declared(obs.worker_metrics_url),
        await declared(f"{obs.gateway_url}/metrics"),
    )
    assert WORKER_METRICS - worker == set()
    assert GATEWAY_METRICS - gateway == set()
