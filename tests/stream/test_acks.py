"""Acks count in every phase: a client that acks each event as it reads it,
then drops cleanly, resumes right after its last ack, whether it dropped
while catching up, while live, or after the run's ``end`` (acks still on
their way when ``end`` went out are read before the gateway closes). After
a gateway SIGKILL a resume starts no earlier than the acks sent 50 ms
before the kill; the repeats per client are printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.cursor import Cursor
from gateway.stream.tokens import TokenSigner
from tests.stream.conftest import SECRET, StreamEnv
from tests.stream.harness import (
    Emitter,
    gateway_process,
    read_until_closed,
    script,
    served,
    temporal_run,
    ws_url,
)
from tidings.events import Event

pytestmark = [pytest.mark.integration]


async def open_stream(url: str, key: str) -> ClientConnection:
    return await connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, compression=None
    )


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(15):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def read_acking(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """Read event frames, acking each at once, until ``count``; fails if the
    stream ends or catches up first."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await next_frame(ws)
        assert frame["kind"] == "event", frame
        got.append(frame)
        await ws.send(json.dumps({"ack": frame["cursor"]}))
    return got


async def resumed_events(url: str, key: str, token: str) -> tuple[list[str], dict[str, Any]]:
    """Event ids of a resumed stream up to its first non-event frame after the token."""
    async with await open_stream(f"{url}?resume={token}", key) as ws:
        assert (await next_frame(ws))["kind"] == "token"
        ids: list[str] = []
        while (frame := await next_frame(ws))["kind"] == "event":
            ids.append(frame["event"]["id"])
        return ids, frame


async def acked_in_redis(env: StreamEnv, token: str) -> int:
    """The session's first unacked offset, as Redis holds it."""
    sid = TokenSigner(SECRET, [], ttl_seconds=3600).verify(token).sid
    redis = Redis.from_url(env.settings().redis.url.get_secret_value())
    try:
        return int(await redis.hget(f"tidings:stream:session:{sid}", "next") or -1)
    finally:
        await redis.aclose()


async def paced(em: Emitter, events: list[Event], chunk: int = 25) -> None:
    for start in range(0, len(events), chunk):
        await em.emit_many(events[start : start + chunk])


@dataclass(frozen=True)
class Scripted:
    """A running run's scripted events (not yet emitted), what emits them, the
    run's stream URL and the tenant's key."""

    em: Emitter
    events: list[Event]
    url: str
    key: str


@asynccontextmanager
async def scripted_run(
    env: StreamEnv, tokens: int, *, emitted: bool = False
) -> AsyncIterator[Scripted]:
    """A gateway in this process and a run Temporal knows, with its script
    (already in Kafka if ``emitted``)."""
    async with served(env.settings()) as (gw, em), temporal_run(env.temporal, env.tenant) as run:
        events = script(env.tenant, run, tokens=tokens)
        if emitted:
            await em.emit_many(events)
        yield Scripted(em, events, ws_url(gw.url, run), env.key(env.tenant))


async def test_resume_after_a_drop_in_catch_up_starts_right_after_the_last_ack(
    stream_env: StreamEnv,
) -> None:
    env = stream_env
    async with scripted_run(env, tokens=3000, emitted=True) as run:
        events, url, key = run.events, run.url, run.key
        dropped_after = 2000
        async with await open_stream(f"{url}?from=start", key) as ws:
            token = (await next_frame(ws))["token"]
            # Every frame so far is an event: the socket is still catching up.
            got = await read_acking(ws, dropped_after)
            # Acks are read as fast as events are sent: Redis has the last one
            # a few ms later, not after a round trip per ack queued behind it.
            last = Cursor.decode(got[-1]["cursor"]).offset
            loop = asyncio.get_running_loop()
            began = loop.time()
            while await acked_in_redis(env, token) != last + 1:
                assert loop.time() - began < 0.5, (
                    f"Redis holds {await acked_in_redis(env, token)}, the client acked {last}"
                )
            print(f"last ack in Redis {1000 * (loop.time() - began):.1f} ms after it was sent")
        assert [f["event"]["id"] for f in got] == [e.id for e in events[:dropped_after]]

        ids, after = await resumed_events(url, key, token)
        assert ids[0] == events[dropped_after].id, "the resume must start right after the last ack"
        assert ids == [e.id for e in events[dropped_after:]]
        assert after == {"kind": "caught_up"} or after["kind"] == "end"


async def test_resume_after_a_drop_while_live_starts_right_after_the_last_ack(
    stream_env: StreamEnv,
) -> None:
    async with scripted_run(stream_env, tokens=1500) as run:
        events, url, key = run.events, run.url, run.key
        async with await open_stream(f"{url}?from=start", key) as ws:
            token = (await next_frame(ws))["token"]
            assert (await next_frame(ws))["kind"] == "caught_up"
            emitting = asyncio.create_task(paced(run.em, events))
            try:
                got = await read_acking(ws, 1000)
            finally:
                await emitting
        assert [f["event"]["id"] for f in got] == [e.id for e in events[:1000]]

        ids, _ = await resumed_events(url, key, token)
        assert ids == [e.id for e in events[1000:]], "the resume must start after the last ack"


async def test_a_finished_run_acked_after_its_end_is_not_sent_again(
    stream_env: StreamEnv,
) -> None:
    async with scripted_run(stream_env, tokens=300, emitted=True) as run:
        events, url, key = run.events, run.url, run.key
        handle = stream_env.temporal.get_workflow_handle(events[0].run_id)
        await handle.terminate("the run is over")
        for trial in range(3):
            async with await open_stream(f"{url}?from=start", key) as ws:
                token = (await next_frame(ws))["token"]
                frames: list[dict[str, Any]] = []
                while (frame := await next_frame(ws))["kind"] != "end":
                    frames.append(frame)
                last = [f for f in frames if f["kind"] == "event"][-1]
                # The ack of the last event leaves after end arrived: still counted.
                await ws.send(json.dumps({"ack": last["cursor"]}))
                code, rest = await read_until_closed(ws, 5)
            assert code == 1000 and rest == [], f"trial {trial}"
            assert [f["event"]["id"] for f in frames if f["kind"] == "event"] == [
                e.id for e in events
            ]

            ids, after = await resumed_events(url, key, token)
            assert ids == [], f"trial {trial}: {len(ids)} events sent again after all were acked"
            assert after["kind"] in ("caught_up", "end")


KILL_CLIENTS = 20
# Acks sent this long before the kill must be in Redis (docs/protocol.md).
ACK_WINDOW = 0.05


async def test_resume_after_a_gateway_kill_repeats_only_the_last_acks(
    stream_env: StreamEnv,
) -> None:
    env = stream_env
    key = env.key(env.tenant)
    loop = asyncio.get_running_loop()
    async with (
        gateway_process(env.settings(), env.keys) as doomed,
        served(env.settings()) as (survivor, em),
        temporal_run(env.temporal, env.tenant) as run,
    ):
        assert doomed.process is not None
        events = script(env.tenant, run, tokens=600)
        index = {e.id: i for i, e in enumerate(events)}
        await em.emit_many(events[:5])
        killed_at: list[float] = []
        repeats: dict[int, int] = {}

        async def client(n: int) -> None:
            acks: list[tuple[float, int]] = []  # when each ack left, and its event's index
            seen: list[str] = []
            async with await open_stream(f"{ws_url(doomed.url, run)}?from=start", key) as ws:
                token = (await next_frame(ws))["token"]
                try:
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame["kind"] == "event":
                            seen.append(frame["event"]["id"])
                            await ws.send(json.dumps({"ack": frame["cursor"]}))
                            acks.append((loop.time(), index[seen[-1]]))
                except ConnectionClosed:
                    pass
            # Its first events are enough: where the resume starts.
            ids, _ = await resumed_events(ws_url(survivor.url, run), key, token)
            assert ids, f"client {n}: nothing after the resume"
            first = index[ids[0]]
            safe = [i for at, i in acks if at <= killed_at[0] - ACK_WINDOW]
            if safe:
                assert first >= safe[-1] + 1, (
                    f"client {n} resumed at event {first}, before its ack of event {safe[-1]} "
                    f"sent {ACK_WINDOW * 1000:.0f} ms before the kill"
                )
            assert first <= len(seen), f"client {n}: a gap after the resume"
            repeats[n] = len(seen) - first

        clients = [asyncio.create_task(client(n)) for n in range(KILL_CLIENTS)]
        for start in range(5, len(events), 4):
            await em.emit_many(events[start : start + 4])
            # Paced as a model streams tokens, so acks are in flight at the kill.
            await asyncio.sleep(0.005)
            if start >= len(events) // 2 and not killed_at:
                killed_at.append(loop.time())
                doomed.process.kill()
        async with asyncio.timeout(60):
            await asyncio.gather(*clients)
        counts = sorted(repeats.values())
        print(
            f"repeats per client after a gateway SIGKILL ({KILL_CLIENTS} clients acking every "
            f"event): min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}, "
            f"all {counts}"
        )
