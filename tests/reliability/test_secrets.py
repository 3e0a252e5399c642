"""Secrets never leak: API keys, the token signing key and the model provider's
key must not appear in logs, error bodies, event payloads or /metrics.

A second worker + gateway pair (own task queue, DEBUG logs, worker /metrics on)
calls a hostile model server that echoes the Authorization header it got back
in its error bodies, so the run fails on the model's answer. Then every log
file of the suite's processes, every error body and close reason the test
provoked, the failed run's events and DLQ records, and every /metrics page
are scanned for each secret (and for the resume tokens the test was issued).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.reliability.conftest import Rel
from tests.reliability.deploy import PIPELINE
from tests.reliability.verify import record, topic_events, wait_completed
from tests.support import free_port
from tests.topics import records_to_end, topic_partitions
from tidings.topics import dlq_topic


@asynccontextmanager
async def hostile_model_server() -> AsyncIterator[tuple[str, list[str]]]:
    """An OpenAI-compatible endpoint that fails, echoing the caller's credentials:
    first a 500 (retried), then 401 (permanent)."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            if length:
                await reader.readexactly(length)
            auth = next(
                (line for line in head.split("\r\n") if line.lower().startswith("authorization:")),
                "",
            )
            seen.append(auth)
            status = "500 Internal Server Error" if len(seen) == 1 else "401 Unauthorized"
            body = json.dumps({"error": {"message": f"rejected credentials [{auth}]"}}).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/v1", seen
    finally:
        server.close()
        await server.wait_closed()


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    if not await topic_partitions(bootstrap, topic, within=0):
        return []
    return [r.value or b"" for r in await records_to_end(bootstrap, topic)]


async def test_secrets_never_leak(rel: Rel) -> None:
    d = rel.deployment
    secrets = d.secrets.all()
    queue = f"rel-secrets-{uuid.uuid4().hex[:6]}"
    metrics_port = free_port()
    bodies: dict[str, str] = {}
    tokens: list[str] = []
    read_tokens: dict[str, str] = {}
    async with hostile_model_server() as (model_url, model_saw):
        worker = d.new_worker(
            TIDINGS_TEMPORAL_TASK_QUEUE=queue,
            TIDINGS_MODEL_PROVIDER="openai",
            TIDINGS_MODEL_BASE_URL=model_url,
            TIDINGS_WORKER_METRICS_PORT=str(metrics_port),
            TIDINGS_LOG_LEVEL="DEBUG",
        )
        gateway = d.new_gateway(TIDINGS_TEMPORAL_TASK_QUEUE=queue, TIDINGS_LOG_LEVEL="DEBUG")
        d.extras += [worker, gateway]
        try:
            await asyncio.to_thread(worker.wait_ready)
            await asyncio.to_thread(gateway.wait_ready)
            key = d.secrets.api_key
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as http:
                started = await http.post(
                    "/v1/runs",
                    headers=auth,
                    json={"pipeline": PIPELINE, "input": {"question": "Leak?"}},
                )
                assert started.status_code == 201, started.text
                run_id = started.json()["run_id"]
                read_tokens["stream token"] = started.json()["stream_token"]
                minted = await http.post("/v1/tokens", headers=auth, json={"runs": [run_id]})
                assert minted.status_code == 201, minted.text
                read_tokens["minted token"] = minted.json()["token"]
                read = {"Authorization": f"Bearer {read_tokens['stream token']}"}
                # The browser way: the key in the query string (the access log must redact it).
                frames: list[str] = []
                uri = gateway.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
                async with connect(f"{uri}?access_token={key}") as sock:
                    try:
                        async with asyncio.timeout(60):
                            while True:
                                frames.append(str(await sock.recv()))
                    except ConnectionClosed:
                        pass
                tokens += [
                    json.loads(f)["token"] for f in frames if '"kind":"token"' in f.replace(" ", "")
                ]
                assert tokens, frames[:3]
                assert any('"run.failed"' in f for f in frames), (
                    "the run should fail on the model's 401"
                )
                # Failures a client can provoke, each answered with an error body.
                provoke = {
                    "wrong key": http.get("/v1/runs", headers={"Authorization": f"Bearer {key}x"}),
                    "key as basic": http.get("/v1/runs", headers={"Authorization": f"Basic {key}"}),
                    "unknown run": http.get(f"/v1/runs/{d.tenant}-nope", headers=auth),
                    "bad input": http.post(
                        "/v1/runs",
                        headers=auth,
                        json={"pipeline": PIPELINE, "input": {"question": 7}},
                    ),
                    "bad idempotency key": http.post(
                        "/v1/runs",
                        headers={**auth, "Idempotency-Key": "a b"},
                        json={"pipeline": PIPELINE, "input": {}},
                    ),
                    "unknown pipeline": http.post(
                        "/v1/runs", headers=auth, json={"pipeline": "nope", "input": {}}
                    ),
                    "finished run cancel": http.post(f"/v1/runs/{run_id}/cancel", headers=auth),
                    "unknown signal": http.post(f"/v1/runs/{run_id}/signals/nope", headers=auth),
                    "too large": http.post("/v1/runs", headers=auth, content=b"x" * 300_000),
                    "bad cursor": http.get(f"/v1/runs/{run_id}/events?after=%00zz", headers=auth),
                    # A read token where it may not go.
                    "read token starts": http.post(
                        "/v1/runs", headers=read, json={"pipeline": PIPELINE, "input": {}}
                    ),
                    "read token lists": http.get("/v1/runs", headers=read),
                    "read token mints": http.post(
                        "/v1/tokens", headers=read, json={"runs": [run_id]}
                    ),
                    "read token, other run": http.get(f"/v1/runs/{d.tenant}-x", headers=read),
                }
                # A real resume token under other parameter names: logs must
                # recognise it by its shape, whatever it is called.
                provoke["token as after"] = http.get(
                    f"/v1/runs/{run_id}/events", params={"after": tokens[0]}, headers=auth
                )
                for name, call in provoke.items():
                    response = await call
                    assert response.status_code >= 400, (name, response.status_code)
                    bodies[name] = (
                        f"{response.status_code} {dict(response.headers)} {response.text}"
                    )
                accepted = await http.get(
                    f"/v1/runs/{run_id}", params={"resume_token": tokens[0]}, headers=auth
                )
                assert accepted.status_code == 200, accepted.text
                for name, query in {
                    "forged token": "resume=x.y",
                    "token on no key": f"resume={tokens[0]}",
                    "token as from": f"access_token={key}&from={tokens[0]}",
                    "token as resume_token": f"access_token={key}&resume_token={tokens[0]}",
                    "other run": f"access_token={read_tokens['minted token']}",
                }.items():
                    target = uri if name != "other run" else uri.replace(run_id, f"{run_id}x")
                    async with connect(f"{target}?{query}") as sock:
                        try:
                            async with asyncio.timeout(10):
                                while True:
                                    bodies[f"ws {name}"] = str(await sock.recv())
                        except ConnectionClosed as exc:
                            bodies[f"ws {name} close"] = f"{exc.rcvd}"
                metrics = {
                    url: (await http.get(f"{url}/metrics")).text for url in [*d.urls, gateway.url]
                }
                metrics["worker"] = (
                    await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
                ).text
            await wait_completed(rel.temporal, [run_id], 30)
        finally:
            for proc in (worker, gateway):
                proc.stop()
                d.extras.remove(proc)
    # The hostile server did get the key (so the echo held a secret to leak).
    assert any(d.secrets.model_key in line for line in model_saw), model_saw
    events = (await topic_events(rel.kafka, d.prefix, d.tenant)).get(run_id, [])
    dlq = await read_topic(rel.kafka, dlq_topic(d.prefix))
    places: dict[str, str] = {
        **{f"log {name}": text.decode("utf-8", "replace") for name, text in d.logs().items()},
        **{f"body {name}": text for name, text in bodies.items()},
        **{f"metrics {name}": text for name, text in metrics.items()},
        "events of the failed run": json.dumps([e.to_dict() for e in events]),
        "dlq records": "\n".join(v.decode("utf-8", "replace") for v in dlq),
    }
    assert any('"step.failed"' in places["events of the failed run"] for _ in [0])
    needles = {
        **secrets,
        **read_tokens,
        **{f"resume token {i}": t for i, t in enumerate(tokens)},
    }
    leaks = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, value in needles.items()
        if value in text and not (what.startswith("resume token") and where.startswith("body"))
    ]
    record(
        "secrets",
        injected="distinctive API keys, token secret and model key; a model server echoing "
        "credentials; 15 provoked errors and a resume token as after=, from= and "
        "resume_token=; DEBUG logs",
        places_scanned=len(places),
        bytes_scanned=sum(len(t) for t in places.values()),
        leaks=leaks,
    )
    assert not leaks, leaks
