"""Abuse: fuzzed REST and WebSocket input, oversized frames and bodies, idle
sockets, bad tokens, header injection, and the concurrent-runs quota.

Runs against the deployment's real gateway processes (``tidings gateway``),
with the abuse tenant's key. Every case also checks that the gateway stayed
healthy for everyone else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.stream.tokens import TokenSigner
from tests.rawhttp import close_code_in, exchange, headers_of, status_of, ws_upgrade
from tests.reliability.conftest import Rel
from tests.reliability.deploy import PIPELINE, Deployment, Proc
from tests.reliability.verify import record
from tests.support import wait_for, wait_until
from tidings.runs import PIPELINE_WORKFLOW, TENANT_ATTRIBUTE

SLOWLORIS = 40
SILENT = 10
HEADER_TIMEOUT = 30.0  # a half-sent request must be dropped within this (the gateway: 10 s)
PING_DEADLINE = 50.0  # uvicorn's default keepalive ping (20 s) + pong timeout (20 s) + slack


def ws(url: str, run_id: str, query: str = "") -> str:
    base = url.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
    return f"{base}?{query}" if query else base


async def close_of(
    uri: str, key: str | None, send: str | bytes | None = None, wait: float = 8.0
) -> tuple[int | None, list[dict[str, Any]]]:
    """Connect, optionally send one frame, and read until the server closes:
    (close code or None if still open after ``wait``, frames received)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    frames: list[dict[str, Any]] = []
    async with connect(uri, additional_headers=headers, compression=None, max_size=2**24) as sock:
        try:
            async with asyncio.timeout(wait):
                if send is not None:
                    frames.append(json.loads(await sock.recv()))  # the token frame
                    await sock.send(send)
                while True:
                    frames.append(json.loads(await sock.recv()))
        except ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else 1006), frames
        except TimeoutError:
            return None, frames
    return None, frames


@dataclass
class Idle:
    """Sockets opened at the start of the module and judged at its end."""

    opened_at: float
    half_requests: list[socket.socket] = field(default_factory=list)
    silent: list[socket.socket] = field(default_factory=list)

    def dropped(self, sockets: list[socket.socket]) -> int:
        gone = 0
        for sock in sockets:
            try:
                data = sock.recv(65536)
                while data:
                    if b"\x88" in data and close_code_in(
                        b"\r\n\r\n" + data.split(b"\r\n\r\n", 1)[-1]
                    ):
                        break
                    data = sock.recv(65536)
                gone += 1
            except BlockingIOError:
                pass
            except OSError:
                gone += 1
        return gone


@dataclass
class Abuse:
    rel: Rel
    url: str
    port: int
    key: str
    waiting_run: str
    idle: Idle


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def abuse(rel: Rel) -> AsyncIterator[Abuse]:
    d = rel.deployment
    gw = d.gateways[0]
    key = d.secrets.abuse_key
    async with httpx.AsyncClient(
        base_url=gw.url, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        response = await http.post(
            "/v1/runs",
            json={
                "pipeline": PIPELINE,
                "input": {"question": "What is a slowloris?", "require_approval": True},
            },
        )
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
    idle = Idle(time.monotonic())
    assert gw.port is not None
    try:
        for _ in range(SLOWLORIS):
            sock = socket.create_connection(("127.0.0.1", gw.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            idle.half_requests.append(sock)
        for _ in range(SILENT):
            sock = socket.create_connection(("127.0.0.1", gw.port))
            sock.sendall(ws_upgrade(f"/v1/runs/{run_id}/stream", gw.port, key))
            sock.setblocking(False)
            idle.silent.append(sock)  # never read from, never answers a ping
        yield Abuse(rel, gw.url, gw.port, key, run_id, idle)
    finally:
        for sock in [*idle.half_requests, *idle.silent]:
            sock.close()
        handle = rel.temporal.get_workflow_handle(run_id)
        with contextlib.suppress(Exception):  # it may have ended already
            await handle.terminate("abuse tests done")
        await asyncio.to_thread(d.ensure_healthy)


async def healthy(url: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{url}/healthz")).status_code == 200


# --------------------------------------------------------------- the fuzzers --


async def test_list_with_an_undecodable_page_token_is_a_400(abuse: Abuse) -> None:
    """Found by the schemathesis run: ``GET /v1/runs?page=uST`` (valid base64url,
    not a Temporal page token) must be a 400 ``bad_request``, not a 500."""
    async with httpx.AsyncClient(
        base_url=abuse.url, headers={"Authorization": f"Bearer {abuse.key}"}, timeout=15
    ) as http:
        response = await http.get("/v1/runs", params={"page": "uST", "limit": 240})
    record(
        "abuse: undecodable page token",
        injected="GET /v1/runs?page=uST (found by schemathesis)",
        status=response.status_code,
        body=response.text[:120],
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"


def test_openapi_fuzz_no_5xx_no_schema_violation(abuse: Abuse) -> None:
    """schemathesis against the gateway's own /openapi.json: every operation,
    a bounded number of generated requests each."""
    schema = schemathesis.openapi.from_url(f"{abuse.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 8, [op.label for op in operations]
    calls: dict[str, int] = {}
    statuses: dict[int, int] = {}
    auth = {"Authorization": f"Bearer {abuse.key}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=abuse.url, headers=auth, timeout=15)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        exercise()
    record(
        "abuse: OpenAPI fuzz",
        injected="schemathesis, 12 generated requests per operation",
        operations=len(operations),
        requests=sum(calls.values()),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        server_errors=sum(v for k, v in statuses.items() if k >= 500),
    )
    assert sum(v for k, v in statuses.items() if k >= 500) == 0, statuses


_FRAMES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(
        lambda v: json.dumps({"ack": v}), st.one_of(st.text(max_size=40), st.integers(), st.none())
    ),
    st.builds(
        lambda p, o: json.dumps({"ack": f"{p}:{o}"}), st.integers(-2, 7), st.integers(-5, 10**12)
    ),
    st.builds(json.dumps, st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4)),
    st.sampled_from(["", "{", "null", "[]", '{"ack": "0:0", "ack": "9:9"}', "\x00", "\ud800"]),
)


def test_websocket_frame_fuzz(abuse: Abuse) -> None:
    """Random client frames on a live stream: the gateway closes with a protocol
    code (4400 bad frame, 1009 too big) or keeps serving; never 1011, never a crash."""
    codes: dict[str, int] = {}
    uri = ws(abuse.url, abuse.waiting_run)

    @given(frame=_FRAMES)
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exercise(frame: str | bytes) -> None:
        if isinstance(frame, str):
            try:
                frame.encode()
            except UnicodeEncodeError:
                frame = frame.encode("utf-8", "surrogatepass")  # invalid UTF-8 in a text frame
        code, _ = asyncio.run(close_of(uri, abuse.key, send=frame, wait=1.5))
        codes[str(code)] = codes.get(str(code), 0) + 1
        assert code in (None, 4400, 1007, 1009), f"frame {frame!r} closed the stream with {code}"

    exercise()
    record(
        "abuse: WebSocket frame fuzz",
        injected="hypothesis, 40 random client frames on a live stream",
        close_codes=codes,
    )
    wait_until(lambda: httpx.get(f"{abuse.url}/healthz").status_code == 200, 10, "healthy gateway")


# --------------------------------------------------------------- oversize --


async def test_oversized_bodies_and_frames(abuse: Abuse) -> None:
    limit = 256 * 1024
    big = json.dumps({"pipeline": PIPELINE, "input": {"question": "x" * (limit + 10)}}).encode()
    async with httpx.AsyncClient(
        base_url=abuse.url, headers={"Authorization": f"Bearer {abuse.key}"}, timeout=15
    ) as http:
        declared = await http.post(
            "/v1/runs", content=big, headers={"Content-Type": "application/json"}
        )

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 16384):
                yield big[i : i + 16384]

        chunked = await http.post(
            "/v1/runs", content=chunks(), headers={"Content-Type": "application/json"}
        )
    for response in (declared, chunked):
        assert response.status_code == 413, (response.status_code, response.text[:200])
        assert response.json()["error"]["code"] == "payload_too_large"
    uri = ws(abuse.url, abuse.waiting_run)
    over_stream_limit, _ = await close_of(uri, abuse.key, send='{"ack":"' + "x" * 70_000 + '"}')
    over_server_limit, _ = await close_of(uri, abuse.key, send="y" * 400_000)
    assert over_stream_limit == 1009
    assert over_server_limit == 1009
    await healthy(abuse.url)
    record(
        "abuse: oversize",
        injected="300 KB body (declared and chunked), 70 KB and 400 KB frames",
        body_statuses=[declared.status_code, chunked.status_code],
        frame_close_codes=[over_stream_limit, over_server_limit],
    )


async def test_oversized_header_block_is_refused(abuse: Abuse) -> None:
    """A 1 MB header block must be refused (431/400) or cut, not buffered and served."""
    huge = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 1_000_000}\r\n\r\n".encode()
    answer = await asyncio.to_thread(exchange, abuse.port, huge, 10)
    status = status_of(answer)
    record("abuse: 1 MB header block", injected="one request with a 1 MB header", status=status)
    await healthy(abuse.url)
    assert status is None or 400 <= status < 500, f"a 1 MB header block was served: {status}"


# ------------------------------------------------------------------ tokens --


async def _token_of(url: str, run_id: str, key: str) -> str:
    async with connect(
        ws(url, run_id), additional_headers={"Authorization": f"Bearer {key}"}
    ) as sock:
        frame = json.loads(await sock.recv())
        assert frame["kind"] == "token", frame
        token: str = frame["token"]
        return token


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[0]
    raw: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return raw


async def test_forged_replayed_expired_and_foreign_tokens(abuse: Abuse) -> None:
    rel, d = abuse.rel, abuse.rel.deployment
    url, key, run_id = abuse.url, abuse.key, abuse.waiting_run
    other_key = d.secrets.other_key
    token = await _token_of(url, run_id, key)
    claims = _claims(token)
    tampered_body = _b64(json.dumps({**claims, "r": run_id + "x"}, separators=(",", ":")).encode())
    signer = TokenSigner(d.secrets.token_secret, ttl_seconds=60, clock=lambda: time.time() - 3600)
    expired, _ = signer.issue(claims["t"], claims["r"], claims["s"])
    stranger = TokenSigner("not-the-gateway-secret-0123456789", ttl_seconds=600)
    forged, _ = stranger.issue(claims["t"], claims["r"], claims["s"])
    # Another run of the same tenant, and the same run under another tenant's key.
    second = await _start(url, key, approval=True)
    try:
        cases = {
            "garbage": ("resume=abc.def", key, run_id, 4401),
            "forged signature": (f"resume={forged}", key, run_id, 4401),
            "tampered claims": (f"resume={tampered_body}.{token.split('.')[1]}", key, run_id, 4401),
            "expired": (f"resume={expired}", key, run_id, 4410),
            "other run": (f"resume={token}", key, second, 4403),
            "token used with another tenant's key": (f"resume={token}", other_key, run_id, 4403),
            "another tenant's run, no token": ("from=start", other_key, run_id, 4404),
            "no key": ("from=start", None, run_id, 4401),
            "wrong key in query": ("access_token=wrong-key-123456", None, run_id, 4401),
        }
        got: dict[str, int | None] = {}
        for name, (query, who, run, want) in cases.items():
            code, frames = await close_of(ws(url, run, query), who, wait=5)
            got[name] = code
            assert code == want, f"{name}: closed with {code}, wanted {want}; frames {frames}"
            assert not any(f.get("kind") == "event" for f in frames), f"{name} leaked events"
        # Replayed: the same token on two sockets at once is a resume, not a leak: both
        # get the run's own events only.
        replay = await asyncio.gather(
            close_of(ws(url, run_id, f"resume={token}"), key, wait=2),
            close_of(ws(url, run_id, f"resume={token}"), key, wait=2),
        )
        for code, frames in replay:
            assert code is None, code
            assert all(f["event"]["run_id"] == run_id for f in frames if f.get("kind") == "event")
        # Replayed after its session is gone (expired in Redis): refused, never silently restarted.
        redis = Redis.from_url(rel.stack.endpoints.redis_url)
        try:
            assert await redis.delete(f"tidings:stream:session:{claims['s']}") == 1
        finally:
            await redis.aclose()
        code, _ = await close_of(ws(url, run_id, f"resume={token}"), key, wait=5)
        got["replayed after session expiry"] = code
        assert code == 4410
    finally:
        await rel.temporal.get_workflow_handle(second).terminate("abuse tests done")
    record(
        "abuse: tokens",
        injected="forged, tampered, expired, replayed, other-run and other-tenant tokens",
        close_codes=got,
    )


async def _start(url: str, key: str, *, approval: bool, idempotency: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency:
        headers["Idempotency-Key"] = idempotency
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as http:
        response = await http.post(
            "/v1/runs",
            json={
                "pipeline": PIPELINE,
                "input": {"question": "Who holds the lock?", "require_approval": approval},
            },
        )
    assert response.status_code in (200, 201), response.text
    run_id: str = response.json()["run_id"]
    return run_id


# --------------------------------------------------------- header injection --


def test_header_injection_in_keys(abuse: Abuse) -> None:
    """CR/LF (and friends) inside Authorization / Idempotency-Key: refused with a
    4xx, never reflected into response headers, never a forged log line."""
    port, key = abuse.port, abuse.key
    body = json.dumps({"pipeline": PIPELINE, "input": {"question": "q"}}).encode()

    def post(*header_lines: bytes) -> bytes:
        head = b"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += b"".join(line + b"\r\n" for line in header_lines)
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        return exchange(port, head + body, 10)

    auth = b"Authorization: Bearer " + key.encode()
    attempts = {
        "bare CR in Idempotency-Key": post(auth, b"Idempotency-Key: abc\rX-Injected: 1"),
        "bare LF in Idempotency-Key": post(auth, b"Idempotency-Key: abc\nX-Injected: 1"),
        "obs-fold Idempotency-Key": post(auth, b"Idempotency-Key: abc", b" X-Injected: 1"),
        "NUL in Idempotency-Key": post(auth, b"Idempotency-Key: abc\x00def"),
        "encoded CRLF in Idempotency-Key": post(auth, b"Idempotency-Key: abc%0d%0aX-Injected:%201"),
        "non-ASCII Idempotency-Key": post(auth, "Idempotency-Key: ключ".encode()),
        "CR in Authorization": post(b"Authorization: Bearer " + key.encode() + b"\rX-Injected: 1"),
        "LF in Authorization": post(b"Authorization: Bearer x\nX-Injected: 1"),
        "encoded CRLF in Authorization": post(b"Authorization: Bearer x%0d%0aX-Injected:%201"),
    }
    statuses: dict[str, int | None] = {}
    for name, answer in attempts.items():
        status = status_of(answer)
        statuses[name] = status
        if "encoded" in name:  # plain printable characters: a valid key, nothing to decode
            assert status is not None and status < 500, f"{name}: {answer[:300]!r}"
        else:
            assert status is not None and 400 <= status < 500, f"{name}: {answer[:300]!r}"
        for line in headers_of(answer):
            assert not line.lower().startswith(b"x-injected"), f"{name} reflected a header"
    logs = abuse.rel.deployment.logs()
    for name, text in logs.items():
        for line in text.splitlines():
            assert not line.strip().lower().startswith(b"x-injected"), f"forged log line in {name}"
    wait_until(lambda: httpx.get(f"{abuse.url}/healthz").status_code == 200, 10, "healthy gateway")
    record(
        "abuse: header injection",
        injected="CR, LF, NUL, obs-fold and %0d%0a in Authorization / Idempotency-Key",
        statuses=statuses,
    )


# ------------------------------------------------------------- rate limits --


@pytest.fixture(scope="module")
def limited(rel_deployment: Deployment) -> Iterator[Proc]:
    """A third gateway with a quota of 2 concurrent runs per tenant."""
    gw = rel_deployment.new_gateway(TIDINGS_TENANTS_MAX_CONCURRENT_RUNS="2")
    rel_deployment.extras.append(gw)
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.stop()
        rel_deployment.extras.remove(gw)


async def test_concurrent_runs_quota_answers_429(abuse: Abuse, limited: Proc) -> None:
    rel, d = abuse.rel, abuse.rel.deployment
    key, tenant = d.secrets.other_key, d.other_tenant
    tag = uuid.uuid4().hex[:8]
    started = [
        await _start(limited.url, key, approval=True, idempotency=f"quota-{tag}-{i}")
        for i in range(2)
    ]
    try:
        query = (
            f"{TENANT_ATTRIBUTE} = '{tenant}' AND WorkflowType = '{PIPELINE_WORKFLOW}' "
            "AND ExecutionStatus = 'Running'"
        )

        async def visible() -> bool:
            return (await rel.temporal.count_workflows(query)).count >= 2

        await wait_for(visible, 20, "both runs visible to the quota")
        async with httpx.AsyncClient(
            base_url=limited.url, headers={"Authorization": f"Bearer {key}"}, timeout=15
        ) as http:
            body = {"pipeline": PIPELINE, "input": {"question": "one too many"}}
            refused = [await http.post("/v1/runs", json=body) for _ in range(5)]
            again = await http.post(
                "/v1/runs",
                json={
                    **body,
                    "input": {"question": "Who holds the lock?", "require_approval": True},
                },
                headers={"Idempotency-Key": f"quota-{tag}-0"},
            )
        for response in refused:
            assert response.status_code == 429, response.text
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "rate_limited"
        # A retried start of an existing run is answered with that run, quota or not.
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] == started[0]
        assert (await rel.temporal.count_workflows(query)).count == 2, (
            "a refused start started a run"
        )
    finally:
        for run_id in started:
            await rel.temporal.get_workflow_handle(run_id).terminate("quota test done")
    record(
        "abuse: rate limit",
        injected="5 starts over a quota of 2 concurrent runs",
        statuses=[r.status_code for r in refused],
        retry_after=refused[0].headers.get("Retry-After"),
    )


# ---------------------------------------------------------------- idle sockets --


async def test_idle_sockets_do_not_block_others(abuse: Abuse) -> None:
    """With the half-sent requests and silent WebSockets still open, other clients are served."""
    assert len(abuse.idle.half_requests) == SLOWLORIS
    async with httpx.AsyncClient(timeout=5) as http:
        began = time.monotonic()
        for _ in range(20):
            assert (await http.get(f"{abuse.url}/healthz")).status_code == 200
        took = (time.monotonic() - began) / 20
    code, frames = await close_of(ws(abuse.url, abuse.waiting_run), abuse.key, wait=2)
    assert code is None and frames and frames[0]["kind"] == "token"
    record(
        "abuse: idle sockets, others served",
        injected=f"{SLOWLORIS} half-sent requests + {SILENT} silent WebSockets",
        healthz_mean_seconds=round(took, 4),
    )


async def test_silent_websockets_are_dropped(abuse: Abuse) -> None:
    """uvicorn's keepalive ping (20 s) goes unanswered; the pong timeout (20 s) drops them."""
    idle = abuse.idle

    def all_gone() -> bool:
        return idle.dropped(idle.silent) == len(idle.silent)

    remaining = PING_DEADLINE - (time.monotonic() - idle.opened_at)
    await wait_for(all_gone, max(remaining, 1), "the gateway to drop silent WebSockets")
    record(
        "abuse: silent WebSockets dropped",
        injected=f"{SILENT} WebSockets that never read or pong",
        dropped_within_seconds=round(time.monotonic() - idle.opened_at, 1),
    )


async def test_half_sent_requests_are_dropped(abuse: Abuse) -> None:
    idle = abuse.idle

    def all_gone() -> bool:
        return idle.dropped(idle.half_requests) == len(idle.half_requests)

    remaining = HEADER_TIMEOUT - (time.monotonic() - idle.opened_at)
    try:
        await wait_for(all_gone, max(remaining, 1), "the gateway to drop half-sent requests")
    finally:
        record(
            "abuse: half-sent requests dropped",
            injected=f"{SLOWLORIS} connections with half-sent headers, then silence",
            dropped=idle.dropped(idle.half_requests),
            of=len(idle.half_requests),
            after_seconds=round(time.monotonic() - idle.opened_at, 1),
        )
