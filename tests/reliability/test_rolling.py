"""A rolling restart of the gateways while clients stream, as Kubernetes does
one (deploy/helm/tidings, maxSurge 1): a third replica comes up, then SIGTERM
one old replica, wait for its exit, then the other. Every socket on a
stopping replica gets 1001 with its reason, its client resumes on the next
replica with its token, and every client still sees every event of its run
once and in order (``run_case`` checks each client against the topic).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.reliability.conftest import Rel
from tests.reliability.deploy import PIPELINE
from tests.reliability.scenario import Case, run_case
from tests.support import wait_for
from tidings.errors import CloseCode

REASON = "gateway going away: reconnect with your resume token"


@dataclass
class Probe:
    """A raw stream socket on one replica, to read its close exactly."""

    frames: list[dict[str, object]] = field(default_factory=list)
    code: int | None = None
    reason: str = ""


async def probe(url: str, run_id: str, key: str, opened: asyncio.Event, out: Probe) -> None:
    ws_url = url.replace("http", "ws", 1) + f"/v1/runs/{run_id}/stream?from=now"
    async with connect(
        ws_url, additional_headers={"Authorization": f"Bearer {key}"}, compression=None
    ) as ws:
        try:
            while True:
                out.frames.append(json.loads(await ws.recv()))
                opened.set()
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                out.code, out.reason = exc.rcvd.code, exc.rcvd.reason


async def waiting_run(url: str, key: str) -> str:
    """A run that stops at its approval step: a stream that stays open."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        body = {"pipeline": PIPELINE, "input": {"question": "Why?", "require_approval": True}}
        response = await http.post(f"{url}/v1/runs", json=body, timeout=30)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def test_gateway_rolling_restart(rel: Rel, caplog: pytest.LogCaptureFixture) -> None:
    d = rel.deployment
    key = d.secrets.api_key
    caplog.set_level(logging.INFO, logger="tidings.client")
    held = await waiting_run(d.urls[1], key)
    # As a rolling update with maxSurge 1: the new replica is up before the
    # old ones stop, one at a time.
    surge = await asyncio.to_thread(d.new_gateway)
    d.extras.append(surge)
    await asyncio.to_thread(surge.wait_ready)
    streaming_at_stop: dict[int, int] = {}

    async def stop(case: Case, index: int) -> None:
        out, opened = Probe(), asyncio.Event()
        task = asyncio.create_task(probe(d.gateways[index].url, held, key, opened, out))
        await asyncio.wait_for(opened.wait(), 10)  # its token came: the socket is open
        streaming_at_stop[index] = sum(1 for w in case.watches if not w.done.is_set())
        case.notes[f"clients_streaming_at_stop_{index}"] = streaming_at_stop[index]
        began = time.monotonic()
        await asyncio.to_thread(d.gateways[index].stop)  # SIGTERM, then wait for the exit
        case.notes[f"gateway_{index}_sigterm_to_exit_seconds"] = round(time.monotonic() - began, 2)
        await asyncio.wait_for(task, 10)
        assert (out.code, out.reason) == (CloseCode.GOING_AWAY, REASON)
        assert out.frames[-1] == {"kind": "error", "code": "going_away", "message": REASON}
        # Every client that was on it has resumed on the next replica (or its run ended).
        await wait_for(
            lambda: all(
                w.done.is_set()
                or (w.subscription is not None and w.subscription.reconnects >= index + 1)
                for w in case.watches
            ),
            30,
            f"every client to leave gateway {index}",
        )

    async def inject(case: Case) -> None:
        # Clients start on gateway 0, move to 1 when it stops, then to the surge replica.
        await stop(case, 0)
        await stop(case, 1)

    try:
        tally = await run_case(
            rel,
            "gateway rolling restart",
            "SIGTERM each of two gateways in turn, with a third one up (maxSurge 1)",
            inject,
            gateways=[*d.urls, surge.url],
        )
    finally:
        await rel.temporal.get_workflow_handle(held).terminate("test over")
        d.extras.remove(surge)
        await asyncio.to_thread(surge.stop)
        await asyncio.to_thread(d.ensure_healthy)  # the stopped replicas start again
    # Both stops landed while clients streamed, and each streaming client moved.
    assert streaming_at_stop[1] > 0, "every run had ended before the second stop"
    assert tally.reconnects >= tally.clients, "clients did not follow the restarts"
    # The clients were told why, with the code and reason, on each stop.
    told = [r for r in caplog.records if f"closed (1001 {REASON})" in r.getMessage()]
    assert len(told) == tally.reconnects, f"{len(told)} 1001 closes, {tally.reconnects} reconnects"
