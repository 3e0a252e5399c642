"""429 + Retry-After when a tenant has too many runs in progress."""

from __future__ import annotations

import uuid

import httpx
import pytest
from temporalio.client import Client

from gateway.app import create_app
from tests.gateway_rest.helpers import Runs, serve
from tests.gateway_rest.pipeline import start_run
from tests.support import free_port, wait_for
from tidings.runs import TENANT_ATTRIBUTE
from tidings.settings import Settings, TenantSettings
from workers.catalog import open_catalog

pytestmark = pytest.mark.integration


async def test_over_the_limit_is_429_but_a_known_key_still_answers(
    rest_settings: Settings, temporal: Client, runs: Runs
) -> None:
    tenant = f"limited-{uuid.uuid4().hex[:8]}"  # a tenant of its own: nobody else's runs count
    key = "limited-key-0001"
    settings = Settings(
        temporal=rest_settings.temporal,
        kafka=rest_settings.kafka,
        redis=rest_settings.redis,
        tenants=TenantSettings(api_keys={key: tenant}, max_concurrent_runs=1),
        gateway=rest_settings.gateway,
    )
    body = {"pipeline": "approval", "input": {"text": "l"}}
    with serve(
        lambda: create_app(settings, pipelines=open_catalog, starter=start_run, stream=False),
        free_port(),
    ) as url:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            first = await client.post("/v1/runs", json=body, headers={"Idempotency-Key": "one"})
            assert first.status_code == 201, first.text
            runs.track(first.json()["run_id"])

            query = f"{TENANT_ATTRIBUTE} = '{tenant}' AND ExecutionStatus = 'Running'"

            async def counted() -> bool:
                return (await temporal.count_workflows(query)).count == 1

            await wait_for(counted, 10, "the first run to be visible")
            refused = await client.post("/v1/runs", json=body)
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "5"
            assert refused.json()["error"]["code"] == "rate_limited"

            again = await client.post("/v1/runs", json=body, headers={"Idempotency-Key": "one"})
            assert again.status_code == 200
            assert again.json()["run_id"] == first.json()["run_id"]
