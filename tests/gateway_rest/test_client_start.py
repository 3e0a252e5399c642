"""tidings.client.start_run against a real gateway: a run, its read token,
idempotency, and a refusal as a TidingsError with the gateway's code."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.gateway_rest.helpers import DEMO_KEY, Runs
from tidings.client import start_run
from tidings.errors import TidingsError

pytestmark = pytest.mark.integration


async def test_start_run_answers_the_run_and_its_read_token(
    gateway_url: str, runs: Runs, anonymous: httpx.AsyncClient
) -> None:
    key = f"py-{uuid.uuid4().hex}"
    run = await start_run(gateway_url, DEMO_KEY, "approval", {"text": "hi"}, idempotency_key=key)
    runs.track(run.run_id)
    assert run.status == "RUNNING" and run.stream_url.endswith(f"/v1/runs/{run.run_id}/stream")
    assert run.stream_token
    read = await anonymous.get(
        f"/v1/runs/{run.run_id}", headers={"Authorization": f"Bearer {run.stream_token}"}
    )
    assert read.status_code == 200
    again = await start_run(gateway_url, DEMO_KEY, "approval", {"text": "hi"}, idempotency_key=key)
    assert again.run_id == run.run_id

    with pytest.raises(TidingsError) as refused:
        await start_run(gateway_url, DEMO_KEY, "nope", {})
    assert (refused.value.status, refused.value.code) == (400, "unknown_pipeline")
    with pytest.raises(TidingsError) as unauthorised:
        await start_run(gateway_url, "wrong-key-123", "approval", {"text": "x"})
    assert unauthorised.value.status == 401 and "wrong-key" not in unauthorised.value.message
