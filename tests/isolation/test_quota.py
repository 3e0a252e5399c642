"""TIDINGS_TENANTS_MAX_SOCKETS per gateway: the socket past the quota is
refused with 1013 (Try Again Later) and a reason, other tenants are not
affected, a freed slot is taken again, and the client library backs off and
gets in once there is room."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tests.isolation.conftest import IsoEnv
from tests.stream.harness import read_until_closed, script, served, temporal_run
from tests.support import wait_for
from tidings.client import subscribe
from tidings.events import Event

pytestmark = [pytest.mark.integration]

QUOTA = 3


async def test_past_the_socket_quota_1013_then_recovery(iso_env: IsoEnv) -> None:
    env = iso_env
    tenant, other = env.noisy, env.quiet
    settings = env.settings(tenants={"max_sockets": QUOTA})
    key, other_key = env.key(tenant), env.key(other)
    async with (
        served(settings) as (gw, em),
        temporal_run(env.temporal, tenant) as run_id,
        temporal_run(env.temporal, other) as other_run,
    ):
        service = gw.service
        assert service is not None
        registry = service.metrics.registry

        def open_sockets() -> int:
            return len([s for s in service.subscribers if s.tenant == tenant])

        url = gw.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream?from=now"
        auth = {"Authorization": f"Bearer {key}"}
        held = [await connect(url, additional_headers=auth) for _ in range(QUOTA)]
        for ws in held:
            assert json.loads(await ws.recv())["kind"] == "token"

        async with connect(url, additional_headers=auth) as refused:
            code, frames = await read_until_closed(refused)
        assert code == 1013
        assert frames == [
            {
                "kind": "error",
                "code": "rate_limited",
                "message": f"your tenant has {QUOTA} streams open on this gateway, "
                "its maximum; retry later",
            }
        ]
        assert refused.close_reason and "retry later" in refused.close_reason
        refusals = "tidings_stream_socket_quota_refusals_total"
        assert registry.get_sample_value(refusals, {"tenant": tenant}) == 1
        assert registry.get_sample_value("tidings_stream_closes_total", {"code": "1013"}) == 1

        # Another tenant's quota is its own.
        other_url = gw.url.replace("http://", "ws://") + f"/v1/runs/{other_run}/stream"
        async with connect(
            other_url, additional_headers={"Authorization": f"Bearer {other_key}"}
        ) as ws:
            assert json.loads(await ws.recv())["kind"] == "token"

        # The client library, refused, backs off and retries; a slot frees
        # after its first refusal and it gets in and reads the run.
        events = script(tenant, run_id, tokens=5)
        seen: list[Event] = []

        async def watch() -> str | None:
            async with subscribe(gw.url, run_id, key, try_later_delay=0.2) as sub:
                async for event in sub:
                    seen.append(event)
            return sub.status

        watcher = asyncio.create_task(watch())
        await wait_for(
            lambda: registry.get_sample_value(refusals, {"tenant": tenant}) == 2,
            10,
            "the library's first attempt is refused",
        )
        await held.pop().close()
        await wait_for(
            lambda: open_sockets() == QUOTA,
            10,
            "the library is admitted once a slot is free",
        )
        for event in events:
            await em.emit(event)
        assert await asyncio.wait_for(watcher, 20) == "COMPLETED"
        assert [e.id for e in seen] == [e.id for e in events]
        for ws in held:
            await ws.close()
        await wait_for(lambda: open_sockets() == 0, 10, "sockets released")
        # Released sockets give their slots back: the quota is free again.
        again = [await connect(url, additional_headers=auth) for _ in range(QUOTA)]
        for ws in again:
            assert json.loads(await ws.recv())["kind"] == "token"
            await ws.close()
