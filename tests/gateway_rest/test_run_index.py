"""The run index on the real stack (gateway/stream/run_index.py): a run started
over REST opens on a gateway that never saw it without a question to
Temporal, and a run started outside Tidings is asked of Temporal once, then
known to every gateway."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from gateway.app import create_app
from tests.gateway_rest.helpers import DEMO_KEY, Runs, serve
from tests.gateway_rest.pipeline import start_run
from tests.gateway_rest.test_tokens import bearer, first_frame_or_close, start, ws_url
from tests.support import free_port, wait_for
from tidings.runs import PIPELINE_WORKFLOW, TENANT_ATTRIBUTE, run_id_for
from tidings.settings import Settings
from workers.catalog import open_catalog

pytestmark = pytest.mark.integration

_LOOKUPS = re.compile(r'^tidings_stream_run_lookups_total\{source="(\w+)"\} (\S+)$', re.MULTILINE)


async def lookups(url: str) -> dict[str, int]:
    """What answered the stream opens' run lookups on the gateway at ``url``, so far."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    return {source: int(float(n)) for source, n in _LOOKUPS.findall(text)}


async def opens(url: str, run_id: str) -> None:
    code, frame = await first_frame_or_close(
        ws_url(url, run_id), additional_headers=bearer(DEMO_KEY)
    )
    assert (code, frame.get("kind")) == (None, "token"), frame


async def test_runs_open_on_any_gateway_from_the_index_and_temporal_is_asked_once(
    demo: httpx.AsyncClient,
    runs: Runs,
    gateway_url: str,
    rest_settings: Settings,
    temporal: Client,
    events_topic_name: str,
) -> None:
    redis = Redis.from_url(rest_settings.redis.url.get_secret_value())
    before = datetime.now(UTC)
    started = (await start(demo, runs))["run_id"]
    # Recorded before the start was answered: owner and a time no later than the start.
    entry = (await redis.get(f"tidings:run:{started}")).decode()
    millis, _, tenant = entry.partition(":")
    assert tenant == "demo"
    assert before - timedelta(seconds=1) <= datetime.fromtimestamp(int(millis) / 1000, UTC)
    assert 0 < await redis.ttl(f"tidings:run:{started}") <= 3600

    outside = runs.track(run_id_for("demo", None))
    attributes = TypedSearchAttributes(
        [SearchAttributePair(SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE), "demo")]
    )
    await temporal.start_workflow(
        PIPELINE_WORKFLOW,
        id=outside,
        task_queue=f"{rest_settings.temporal.task_queue}-idle",  # nobody runs it
        search_attributes=attributes,
    )
    seen = await lookups(gateway_url)
    with serve(
        lambda: create_app(rest_settings, pipelines=open_catalog, starter=start_run), free_port()
    ) as fresh:
        await opens(fresh, started)
        await opens(fresh, outside)
        await opens(fresh, started)
        assert await lookups(fresh) == {"index": 1, "temporal": 1, "cache": 1}
    try:
        # Recorded by the fresh gateway once Temporal had answered it.
        async def recorded() -> bool:
            return bool(await redis.exists(f"tidings:run:{outside}"))

        await wait_for(recorded, 10, "the outside run recorded")
        await opens(gateway_url, outside)  # a gateway that never saw it either
        now = await lookups(gateway_url)
        assert now.get("index", 0) == seen.get("index", 0) + 1
        assert now.get("temporal", 0) == seen.get("temporal", 0)
    finally:
        await redis.delete(f"tidings:run:{started}", f"tidings:run:{outside}")
        await redis.aclose()
