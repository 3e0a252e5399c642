"""The dashboard end to end: a real browser, a real gateway process, a real worker,
Temporal, Kafka and Redis.

The page starts a ``research`` run that needs approval; while the draft is
streaming the gateway is killed with SIGKILL and started again on the same
port. The page must resume with its token, approve the run, and show exactly
the run's result: no token lost, none repeated. Its state (the client's
``reduceRun``) must equal a clean read of the run's stored events, and again
after a page reload.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.browser import Browser
from tests.conftest import StackHandle
from tests.processes import ChildProcess, module_argv
from tests.services import GatewayProcess, finished_run, private_settings, service_env
from tests.support import free_port
from tests.topics import private_topics
from tests.web.driver import clean_read, drive, page_state, screenshot_path
from tidings.settings import Settings
from workers.build import build_worker, default_activities, open_clients
from workflows.registry import PipelineRegistry

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

# A private tenant: the shared stack's `demo` tenant may be over its run limit
# (429) with other sessions' runs. The page is given this key through its form.
SUFFIX = uuid.uuid4().hex[:8]
KEY = f"web-e2e-key-{SUFFIX}"
TENANT = f"web{SUFFIX}"
PARTITIONS = 2


@pytest.fixture(scope="module")
def e2e_settings(stack: StackHandle) -> Settings:
    # A private prefix: this test's topics never meet anyone else's.
    return private_settings(stack, "webe2e", partitions=PARTITIONS)


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[None]:
    """A real worker (the builtin pipelines, the offline model) on the test's task queue."""
    async with open_clients(settings) as clients:
        objects = default_activities(clients, settings)
        async with build_worker(clients, settings, objects, PipelineRegistry.with_builtins()):
            yield


@pytest.fixture
def gateway_process(e2e_settings: Settings, tmp_path: Path) -> Iterator[GatewayProcess]:
    """``tidings gateway``'s server (plus the dashboard) in a child process the test can kill."""
    port = free_port()
    child = ChildProcess(
        "the gateway",
        module_argv("tests.web.gateway_main"),
        service_env(e2e_settings, {KEY: TENANT}, port),
        tmp_path / "gateway.log",
    )
    process = GatewayProcess(child, port)
    try:
        yield process
    finally:
        process.stop()


async def test_dashboard_survives_a_gateway_kill_mid_stream(
    browser: Browser, e2e_settings: Settings, gateway_process: GatewayProcess
) -> None:
    shot = screenshot_path("dashboard-e2e.png")
    async with private_topics(e2e_settings, TENANT), worker(e2e_settings):
        await gateway_process.start()
        url = gateway_process.url
        async with drive(
            browser, url, "run", key=KEY, approve="1", reload="1", screenshot=str(shot)
        ) as page:
            started = await page.expect("started", timeout=60)
            streaming = await page.expect("streaming", timeout=45)
            assert streaming["draft"]
            # Mid-stream: kill -9 the gateway, then bring it back on the same port.
            await gateway_process.restart()
            waiting = await page.expect("waiting", timeout=40)
            assert waiting["status"] == "WAITING"
            finished = await page.expect("finished", timeout=40)
            done = await page.expect("done", timeout=40)  # after a reload

        run = await finished_run(url, KEY, started["run_id"], 15)
        events = await stored_events(url, str(started["run_id"]))

    assert done["problems"] == []
    assert run["status"] == "COMPLETED", run
    # Through the kill, and after the reload: the same state as a clean read.
    assert page_state(finished) == clean_read(events)
    assert page_state(done) == clean_read(events)
    assert page_state(done)["status"] == "COMPLETED"
    answer = run["result"]["answer"]
    assert answer
    # Every token once, in order, across the kill: the streamed text is the result.
    assert done["draft"] == answer
    assert done["answer"] == answer
    # The kill really came mid-stream: the page had only part of the text then.
    assert len(streaming["draft"]) < len(answer)
    assert done["status"] == "COMPLETED"
    assert done["steps"]["review"]["state"] == "completed"
    assert done["connection"] == "ended"
    assert "reconnecting" in finished["connection_states"], finished["connection_states"]
    assert finished["stats"]["connections"] >= 2, finished["stats"]
    assert done["stats"]["connections"] == 1, done["stats"]
    assert done["temporal_link"] == run["temporal_ui_url"]
    assert shot.stat().st_size > 10_000


async def stored_events(url: str, run_id: str) -> list[dict[str, Any]]:
    """Every event of the run, read page by page from ``GET /v1/runs/{id}/events``."""
    events: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 1000}
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as client:
        for _ in range(50):  # bounded: a research run has a few hundred events
            response = await client.get(f"/v1/runs/{run_id}/events", params=params)
            response.raise_for_status()
            page = response.json()
            events.extend(item["event"] for item in page["events"])
            if not page.get("more"):
                return events
            params["after"] = page["next_cursor"]
    raise AssertionError(f"more than 50 pages of events for {run_id}")
