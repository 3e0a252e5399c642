"""Refusals close only the offending socket, with the contract's code, while a
witness on the same run keeps receiving everything."""

from __future__ import annotations

import json
import time

import pytest
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from websockets.asyncio.client import connect

from gateway.stream.tokens import TokenSigner
from tests.stream.conftest import SECRET, StreamEnv
from tests.stream.harness import (
    read_until_closed,
    script,
    served,
    temporal_run,
    wait_for,
    ws_url,
)
from tidings.client import subscribe
from tidings.events import Event

pytestmark = [pytest.mark.integration]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refused(url: str, *, headers: dict[str, str] | None = None, send: object = None) -> int:
    async with connect(url, additional_headers=headers, compression=None) as ws:
        if send is not None:
            first = json.loads(await ws.recv())
            assert first["kind"] == "token"
            await ws.send(send)  # type: ignore[arg-type]
        code, frames = await read_until_closed(ws)
    assert frames and frames[-1]["kind"] == "error", frames
    if send is None:
        # Refused while opening: no token (nor anything else) before the error,
        # although the open asks Kafka and Redis while the run lookup is out.
        assert len(frames) == 1, frames
    assert code is not None
    return code


async def test_refusals_leave_other_sockets_alone(stream_env: StreamEnv) -> None:
    env = stream_env
    settings = env.settings(max_frame_bytes=1024)
    key, other_key = env.key(env.tenant), env.key(env.other)
    async with (
        served(settings) as (gw, em),
        temporal_run(env.temporal, env.tenant) as run_id,
        temporal_run(env.temporal, env.other) as other_run,
    ):
        events = script(env.tenant, run_id, tokens=20)
        for event in events[:5]:
            await em.emit(event)
        received: list[Event] = []
        async with subscribe(gw.url, run_id, key, ack_every=1) as witness:
            async for event in witness:
                received.append(event)
                if len(received) == 5:
                    break
            url = ws_url(gw.url, run_id)
            signer = TokenSigner(SECRET, ttl_seconds=600)
            good = witness.token
            assert good is not None

            assert await refused(url) == 4401
            assert await refused(url, headers=bearer("wrong-key-123")) == 4401
            assert await refused(f"{url}?resume={good[:-3]}xyz", headers=bearer(key)) == 4401
            forged = TokenSigner("another-secret" * 3, ttl_seconds=600).issue(
                env.tenant, run_id, "sid"
            )[0]
            assert await refused(f"{url}?resume={forged}", headers=bearer(key)) == 4401
            expired = TokenSigner(SECRET, ttl_seconds=600, clock=lambda: time.time() - 3600)
            old = expired.issue(env.tenant, run_id, "sid")[0]
            assert await refused(f"{url}?resume={old}", headers=bearer(key)) == 4410
            theirs = signer.issue(env.other, other_run, "sid")[0]
            other_url = ws_url(gw.url, other_run)
            assert await refused(f"{other_url}?resume={theirs}", headers=bearer(key)) == 4403
            assert await refused(f"{url}?resume={theirs}", headers=bearer(key)) == 4403
            assert await refused(f"{url}?resume={good}", headers=bearer(other_key)) == 4403
            unknown = ws_url(gw.url, f"{env.tenant}-nosuchrun")
            assert await refused(unknown, headers=bearer(key)) == 4404
            # Another tenant's run looks exactly like a missing one.
            assert await refused(other_url, headers=bearer(key)) == 4404
            assert await refused(f"{url}?from=yesterday", headers=bearer(key)) == 4400
            own = bearer(key)
            assert await refused(url, headers=own, send="{not json") == 4400
            assert await refused(url, headers=own, send='{"kind": "subscribe"}') == 4400
            assert await refused(url, headers=own, send='{"ack": "0:999999"}') == 4400
            assert await refused(url, headers=own, send='{"ack": "zz"}') == 4400
            assert await refused(url, headers=own, send=b"\x00binary") == 4400
            big = json.dumps({"ack": "0:1", "pad": "x" * 2000})
            assert await refused(url, headers=own, send=big) == 1009
            # Browsers pass the key in the query.
            async with connect(f"{url}?access_token={key}&from=now") as ws:
                assert json.loads(await ws.recv())["kind"] == "token"

            for event in events[5:]:
                await em.emit(event)
            async for event in witness:
                received.append(event)
            assert witness.status == "COMPLETED"
        assert [e.id for e in received] == [e.id for e in events]
        metrics = gw.service.metrics.registry if gw.service else None
        assert metrics is not None
        assert metrics.get_sample_value("tidings_stream_closes_total", {"code": "4401"}) == 4


async def test_expired_session_and_cursor_past_retention(stream_env: StreamEnv) -> None:
    env = stream_env
    settings = env.settings()
    key = env.key(env.tenant)
    async with (
        served(settings) as (gw, em),
        temporal_run(env.temporal, env.tenant) as run_id,
    ):
        events = script(env.tenant, run_id, tokens=5)
        for event in events[:4]:
            await em.emit(event)
        async with connect(ws_url(gw.url, run_id), additional_headers=bearer(key)) as ws:
            token = json.loads(await ws.recv())["token"]
            first = json.loads(await ws.recv())
        url = f"{ws_url(gw.url, run_id)}?resume={token}"

        # Retention deleted what the session still needs: 4410, never a silent gap.
        partition = int(first["cursor"].split(":")[0])
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
        await admin.start()
        try:
            end = max(o for p, o, _ in em.sent if p == partition) + 1
            tp = TopicPartition(f"tidings.events.{env.tenant}", partition)
            await admin.delete_records({tp: RecordsToDelete(end)})
        finally:
            await admin.close()
        assert await refused(url, headers=bearer(key)) == 4410

        redis = aioredis.from_url(settings.redis.url.get_secret_value())
        try:
            keys = [k async for k in redis.scan_iter("tidings:stream:session:*")]
            assert keys
            await redis.delete(*keys)
        finally:
            await redis.aclose()
        assert await refused(url, headers=bearer(key)) == 4410
        await wait_for(lambda: not gw.service or not gw.service.subscribers, 5, "sockets gone")
