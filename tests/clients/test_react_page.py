"""A React component using ``useRun`` renders a live run in Chromium, across a
gateway SIGKILL and a page reload.

The page watches a ``research`` run that waits for approval, with the run's
read token. Once the draft shows (the run still going: it waits for the
approval the test gives later) the gateway is killed with SIGKILL and
started again on the same port; the page is reloaded while it is down, so it
restores its saved state and resumes with its saved token. After the test
approves the run, the page must show exactly what a clean read of the run's
stored events gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from infra.browser import Browser
from tests.clients.test_js_stream import stored_events, worker
from tests.processes import ChildProcess, module_argv
from tests.services import GatewayProcess, private_settings, service_env
from tests.support import free_port
from tests.topics import private_topics
from tests.web.driver import Driver
from tidings.run_state import initial_run_state, reduce_run, visible
from tidings.settings import Settings

if TYPE_CHECKING:  # the root conftest is pytest's to import, not ours
    from tests.conftest import StackHandle

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

SUFFIX = uuid.uuid4().hex[:8]
KEY = f"react-key-{SUFFIX}"
TENANT = f"react{SUFFIX}"
HERE = Path(__file__).resolve().parent / "web"


@pytest.fixture(scope="module")
def react_settings(stack: StackHandle) -> Settings:
    return private_settings(stack, "reactpage", partitions=2)


@pytest.fixture
def gateway_process(react_settings: Settings, tmp_path: Path) -> Iterator[GatewayProcess]:
    port = free_port()
    child = ChildProcess(
        "the gateway",
        module_argv("tests.web.gateway_main"),
        service_env(react_settings, {KEY: TENANT}, port),
        tmp_path / "gateway.log",
    )
    process = GatewayProcess(child, port)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def page_url(js_client: Path, tmp_path: Path) -> Iterator[str]:
    """The page (index.html + the bundle esbuild makes of app.mjs) on a static server."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(HERE / "index.html", site / "index.html")
    node = shutil.which("node") or "node"
    subprocess.run([node, str(HERE / "bundle.mjs"), str(site)], check=True, timeout=120)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # the URLs carry the read token: keep them out of the output

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


async def test_use_run_survives_a_gateway_kill_and_a_reload(
    browser: Browser,
    react_settings: Settings,
    gateway_process: GatewayProcess,
    page_url: str,
) -> None:
    async with private_topics(react_settings, TENANT), worker(react_settings):
        await gateway_process.start()
        url = gateway_process.url
        auth = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
            started = await http.post(
                "/v1/runs",
                json={
                    "pipeline": "research",
                    "input": {"question": "What does a reload keep?", "require_approval": True},
                },
            )
            assert started.status_code == 201, started.text
            run = started.json()
            query = httpx.QueryParams(gateway=url, run=run["run_id"], token=run["stream_token"])
            process = await asyncio.create_subprocess_exec(
                str(browser.node),
                str(HERE / "drive.mjs"),
                cwd=browser.root,
                env={**os.environ, **browser.env(), "TIDINGS_PAGE": f"{page_url}?{query}"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            driver = Driver(process)
            drain = asyncio.create_task(driver._drain_stderr())
            try:
                streaming = await driver.expect("streaming", timeout=60)
                await gateway_process.restart()  # kill -9 mid-stream, then back on the same port
                reloaded = await driver.expect("reloaded", timeout=60)
                await driver.expect("waiting", timeout=60)
                approved = await http.post(f"/v1/runs/{run['run_id']}/signals/approve", json={})
                assert approved.status_code == 202, approved.text
                done = await driver.expect("done", timeout=60)
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                drain.cancel()
        stored = await stored_events(url, run["run_id"], key=KEY)

    clean: dict[str, Any] = visible(reduce(reduce_run, stored, initial_run_state()))
    assert done["state"] == clean
    assert clean["status"] == "COMPLETED" and clean["steps"]["draft"]["text"]
    # The kill came while the run was still going, and the reload continued
    # from the page's saved state and token rather than reading the run again.
    assert streaming["state"]["status"] in ("RUNNING", "WAITING")
    assert reloaded["restored"] is True
