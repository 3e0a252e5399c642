"""`tidings gateway` as a real process: serves with the orchestration plane's
starter, keeps API keys out of its logs, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.gateway_rest.helpers import API_KEYS, DEMO_KEY, Runs
from tests.support import free_port, wait_for
from tidings.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_process(
    rest_settings: Settings, tmp_path: Path
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    port = free_port()
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "TIDINGS_TEMPORAL_ADDRESS": rest_settings.temporal.address,
        "TIDINGS_TEMPORAL_TASK_QUEUE": rest_settings.temporal.task_queue,
        "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": rest_settings.kafka.bootstrap_servers,
        "TIDINGS_KAFKA_TOPIC_PREFIX": rest_settings.kafka.topic_prefix,
        "TIDINGS_REDIS_URL": rest_settings.redis.url.get_secret_value(),
        "TIDINGS_TENANTS_API_KEYS": json.dumps(API_KEYS),
        "TIDINGS_LOG_LEVEL": "INFO",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "gateway", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", log, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def test_gateway_command_serves_redacts_and_stops_cleanly(
    gateway_process: tuple[str, Path, subprocess.Popen[bytes]],
    demo: httpx.AsyncClient,
    runs: Runs,
    events_topic_name: str,
) -> None:
    url, log, process = gateway_process

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                return (await client.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(healthy, 30, "the gateway process to answer /healthz")
    headers = {"Authorization": f"Bearer {DEMO_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        # The default starter is the orchestration plane's, with its registry.
        refused = await client.post("/v1/runs", json={"pipeline": "no-such-pipeline"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "unknown_pipeline"

    created = await demo.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "c"}})
    run_id = runs.track(created.json()["run_id"])
    ws_url = url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream?access_token={DEMO_KEY}"
    async with websockets.connect(ws_url) as socket:
        assert json.loads(await socket.recv())["kind"] == "token"

    process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once shut down, so the exit is "killed by SIGTERM".
    assert await asyncio.to_thread(process.wait, 20) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert DEMO_KEY not in text
    assert "access_token=[redacted]" in text
