"""The dashboard in a real browser against the fake gateway (tests/web/fake_gateway.py):
a retried step's text is discarded, a dropped socket and a 4408 are resumed
without losing or repeating text, approval works, refusals are not retried."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from infra.browser import Browser
from tests.support import wait_for
from tests.web.driver import clean_read, drive, page_state, screenshot_path
from tests.web.fake_gateway import (
    ANSWER,
    CITE_TEXT,
    TEMPORAL_UI,
    THOUGHT,
    TOOL_RESULT,
    FakeGateway,
    serve_fake,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

Served = tuple[FakeGateway, str]


async def post(url: str, path: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(path)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


async def test_run_streams_through_a_drop_and_a_too_slow_close(
    browser: Browser, fake: Served
) -> None:
    gateway, url = fake
    shot = screenshot_path("dashboard-fake.png")
    async with drive(
        browser, url, "run", approve="1", wait_retry="1", reload="1", screenshot=str(shot)
    ) as page:
        started = await page.expect("started")
        streaming = await page.expect("streaming")
        assert streaming["draft"], streaming
        # Drop the TCP connection mid-stream: the browser sees 1006 and resumes.
        # On a loaded machine the page may be between two sockets at this
        # instant (it has just resumed), so drop as soon as one is open.
        drops: list[int] = []

        async def dropped_some() -> bool:
            drops.append(int((await post(url, "/_fake/drop"))["dropped"]))
            return drops[-1] > 0

        await wait_for(dropped_some, 10, "an open dashboard socket to drop")
        assert drops[-1] == 1, drops
        waiting = await page.expect("waiting")
        assert waiting["status"] == "WAITING"
        finished = await page.expect("finished")
        done = await page.expect("done")  # after a reload, which replays the finished run

    assert done["problems"] == []
    assert finished["run_id"] == done["run_id"] == started["run_id"]
    # Attempt 1's partial text is gone; attempt 2's is there once, whole and unchanged.
    assert finished["draft"] == ANSWER
    assert finished["answer"] == ANSWER
    assert finished["injected_elements"] == 0
    assert "Attempt 1 failed" in finished["draft_note"]
    # An agent step's reasoning and tool calls: attempt 1's are gone with its text;
    # attempt 2's call shows collapsed (its result only on a click), markup as text.
    assert finished["draft_thinking"] == [THOUGHT]
    assert finished["draft_tools"] == [
        {
            "attempt": "2",
            "open": False,
            "summary": 'search({"query":"resume <b>tokens</b>"})',
            "result": TOOL_RESULT["content"] + "\n… (cut)",
            "result_visible": False,
        }
    ]
    # A delegated step: its sub-steps nested in its card, collapsed; its box
    # shows their kept text (a retried request's partial gone) and tool calls.
    assert finished["substeps"] == {
        "cite": {
            "open": False,
            "summary": "2 sub-steps",
            "steps": ["cite.model-1", "cite.model-2"],
            "shown": False,
        }
    }
    assert finished["cite"] == "".join(CITE_TEXT)
    assert finished["cite_tools"] == [
        {"open": False, "summary": 'search({"query":"resume <b>tokens</b>"})'}
    ]
    assert finished["steps"]["cite.model-2"]["attempts"] == "attempt 2"
    assert finished["steps"]["draft"]["state"] == "completed"
    assert finished["steps"]["draft"]["attempts"] == "attempt 2"
    assert finished["steps"]["review"]["state"] == "completed"
    assert finished["status"] == "COMPLETED"
    assert finished["connection"] == "ended"
    assert "reconnecting" in finished["connection_states"]
    assert finished["temporal_link"].startswith(f"{TEMPORAL_UI}/namespaces/default/workflows/")
    stats = finished["stats"]
    # First socket, the resume after the drop, the resume after the 4408.
    assert stats["connections"] >= 3, stats
    assert gateway.stats.resumes >= 2
    assert 4408 in gateway.stats.closes
    # Events sent but not acked came again, and the page dropped them by id.
    assert gateway.stats.resent > 0
    assert stats["duplicates"] > 0
    assert gateway.stats.acks > 0
    assert gateway.stats.bad_acks == 0
    # Live through a drop and a 4408, or replayed at once after a reload: the same page.
    for key in (
        "draft",
        "answer",
        "status",
        "steps",
        "draft_note",
        "draft_thinking",
        "draft_tools",
        "cite",
        "cite_tools",
        "substeps",
        "injected_elements",
    ):
        assert done[key] == finished[key], key
    # The page's state is the client's reduceRun: through the drop and the 4408,
    # and after the reload, it equals a clean read of every event the run emitted.
    events = gateway.runs[str(started["run_id"])].events
    assert page_state(finished) == clean_read(events)
    assert page_state(done) == clean_read(events)
    assert page_state(done)["steps"]["draft"]["attempt"] == 2
    assert done["stats"]["connections"] == 1
    assert shot.stat().st_size > 10_000


async def test_expired_token_offers_a_restart_from_the_start(
    browser: Browser, fake: Served
) -> None:
    gateway, url = fake
    async with drive(browser, url, "expired", wait_retry="1") as page:
        await page.expect("streaming")
        await post(url, "/_fake/expire")
        await post(url, "/_fake/drop")
        expired = await page.expect("expired")
        assert expired["restart_offered"]
        assert expired["connection"] == "error"
        assert "4410" in expired["stream_error"]
        done = await page.expect("done")

    assert done["problems"] == []
    # Replayed from the start: everything already shown is dropped by id.
    assert done["draft"] == ANSWER
    assert done["answer"] == ANSWER
    assert 4410 in gateway.stats.closes


async def test_a_bad_key_is_shown_and_never_retried(browser: Browser, fake: Served) -> None:
    gateway, url = fake
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(
            "/v1/runs",
            json={"pipeline": "research", "input": {"question": "q?"}},
            headers={"Authorization": "Bearer dev-key-demo"},
        )
        run_id = response.json()["run_id"]

    async with drive(browser, url, "bad-key", key="not-a-key", run_id=run_id) as page:
        refused = await page.expect("refused")
        assert "4401" in refused["stream_error"]
        assert refused["runs_error"] and "API key" in refused["runs_error"]
        done = await page.expect("done")

    assert done["problems"] == []
    assert done["stats"]["connections"] == 1
    assert gateway.stats.connections == 1
    assert gateway.stats.closes == [4401]


async def test_a_missing_client_build_is_said_on_the_page(browser: Browser, tmp_path: Path) -> None:
    # An empty folder stands for a checkout where `make deps` has not built clients/js.
    with serve_fake(tmp_path) as (_, url):
        async with drive(browser, url, "missing-client") as page:
            done = await page.expect("done")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            module = await client.get("/dashboard/client/index.js")
            runs = await client.get("/v1/runs", headers={"Authorization": "Bearer dev-key-demo"})

    assert done["client_missing"] and "make deps" in done["client_missing"]
    assert done["connection"] == "error"
    assert done["problems"] == []
    assert module.status_code == 404
    assert "make deps" in module.json()["error"]["message"]
    # The API does not depend on the page's build.
    assert runs.status_code == 200
