"""Read tokens (gateway/access.py) against the real stack: what POST /v1/runs
and POST /v1/tokens hand out, what a read token may and may not do over REST
and on the stream, expiry, key rotation, the customer's JWTs (HMAC, and
RS256/ES256 from a JWKS served here on 127.0.0.1) and production's refusal
of an API key in a query string."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.access import ReadTokens
from gateway.app import create_app
from tests.gateway_rest.helpers import DEMO_KEY, Runs, serve
from tests.gateway_rest.pipeline import start_run
from tests.support import free_port
from tidings.settings import (
    Environment,
    GatewaySettings,
    JwtIssuer,
    RuntimeSettings,
    Settings,
    TenantSettings,
)
from workers.catalog import open_catalog

pytestmark = pytest.mark.integration

PROD_KEY = "prod-key-demo-0123456789"
SECRET = "s" * 40
OLD_SECRET = "o" * 40
HMAC_ISSUER = "https://auth.hmac.test"
HMAC_SECRET = "h" * 40
JWKS_ISSUER = "https://auth.jwks.test"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ws_url(base: str, run_id: str, query: str = "") -> str:
    url = base.replace("http://", "ws://") + f"/v1/runs/{run_id}/stream"
    return f"{url}?{query}" if query else url


async def first_frame_or_close(url: str, **kwargs: Any) -> tuple[int | None, dict[str, Any]]:
    """The stream's first frame and, if it then closed, its close code (None: open)."""
    async with connect(url, **kwargs) as ws:
        try:
            async with asyncio.timeout(15):
                frame = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), {}
        if frame.get("kind") == "error":
            try:
                async with asyncio.timeout(15):
                    await ws.recv()
            except ConnectionClosed as exc:
                return (exc.rcvd.code if exc.rcvd else None), frame
        return None, frame


async def start(client: httpx.AsyncClient, runs: Runs) -> dict[str, Any]:
    response = await client.post("/v1/runs", json={"pipeline": "approval", "input": {"text": "t"}})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    runs.track(body["run_id"])
    return body


# ------------------------------------------------------------ own tokens --


async def test_start_answers_with_a_read_token_for_that_run_only(
    demo: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    runs: Runs,
    gateway_url: str,
    events_topic_name: str,
) -> None:
    mine = await start(demo, runs)
    other = await start(demo, runs)
    token = mine["stream_token"]
    run_id = mine["run_id"]
    assert token and token != other["stream_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["runs"] == [run_id] and claims["tid"] == "demo"
    assert 3590 <= claims["exp"] - time.time() <= 3600  # the default TTL

    read = bearer(token)
    assert (await anonymous.get(f"/v1/runs/{run_id}", headers=read)).status_code == 200
    events = await anonymous.get(f"/v1/runs/{run_id}/events", headers=read)
    assert events.status_code == 200, events.text
    # Everything else a key may do, a read token may not.
    refused = {
        "other run": await anonymous.get(f"/v1/runs/{other['run_id']}", headers=read),
        "start": await anonymous.post(
            "/v1/runs", headers=read, json={"pipeline": "approval", "input": {"text": "t"}}
        ),
        "list": await anonymous.get("/v1/runs", headers=read),
        "signal": await anonymous.post(f"/v1/runs/{run_id}/signals/approve", headers=read),
        "cancel": await anonymous.post(f"/v1/runs/{run_id}/cancel", headers=read),
        "history": await anonymous.get(f"/v1/runs/{run_id}/history", headers=read),
        "mint": await anonymous.post("/v1/tokens", headers=read, json={"runs": [run_id]}),
    }
    assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 403)
    assert all(r.json()["error"]["code"] == "forbidden" for r in refused.values())
    assert all(token not in r.text for r in refused.values())
    assert await runs.status(run_id) is not None  # still running: nothing was cancelled

    # The stream: its own run opens (the first frame is the resume token), another is 4403.
    code, frame = await first_frame_or_close(ws_url(gateway_url, run_id, f"access_token={token}"))
    assert (code, frame.get("kind")) == (None, "token")
    code, frame = await first_frame_or_close(
        ws_url(gateway_url, other["run_id"]), additional_headers=read
    )
    assert code == 4403 and frame["code"] == "forbidden"
    assert token not in json.dumps(frame)


async def test_minting_needs_an_api_key_and_respects_the_max_ttl(
    demo: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    runs: Runs,
    gateway_url: str,
    events_topic_name: str,
) -> None:
    a, b = (await start(demo, runs))["run_id"], (await start(demo, runs))["run_id"]
    minted = await demo.post("/v1/tokens", json={"runs": [b, a, a], "ttl_seconds": 120})
    assert minted.status_code == 201, minted.text
    body = minted.json()
    assert body["runs"] == sorted([a, b])
    remaining = time.mktime(
        time.strptime(body["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")
    ) - time.mktime(time.gmtime())
    assert 100 <= remaining <= 121
    for run_id in (a, b):
        got = await anonymous.get(f"/v1/runs/{run_id}", headers=bearer(body["token"]))
        assert got.status_code == 200, got.text

    too_long = await demo.post("/v1/tokens", json={"runs": [a], "ttl_seconds": 7 * 24 * 3600})
    assert too_long.status_code == 400 and "at most 86400" in too_long.json()["error"]["message"]
    assert (await demo.post("/v1/tokens", json={"runs": []})).status_code == 422
    assert (await anonymous.post("/v1/tokens", json={"runs": [a]})).status_code == 401
    # Another tenant's run: the token is minted for the key's tenant, so it reads nothing.
    acme_token = (
        await anonymous.post("/v1/tokens", headers=bearer("test-key-acme-0001"), json={"runs": [a]})
    ).json()["token"]
    assert (await anonymous.get(f"/v1/runs/{a}", headers=bearer(acme_token))).status_code == 404
    code, _ = await first_frame_or_close(ws_url(gateway_url, a, f"access_token={acme_token}"))
    assert code == 4404


async def test_an_expired_or_forged_read_token_is_401_and_4401_saying_so(
    demo: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    runs: Runs,
    gateway_url: str,
    events_topic_name: str,
) -> None:
    run_id = (await start(demo, runs))["run_id"]
    past = ReadTokens(
        "dev-token-secret-change-me",
        ttl_seconds=60,
        max_ttl_seconds=60,
        clock=lambda: time.time() - 3600,
    )
    expired, _ = past.mint("demo", [run_id])
    response = await anonymous.get(f"/v1/runs/{run_id}", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"
    assert expired not in response.text
    code, frame = await first_frame_or_close(ws_url(gateway_url, run_id, f"access_token={expired}"))
    assert code == 4401 and frame["code"] == "token_expired" and "expired" in frame["message"]

    forged, _ = ReadTokens("x" * 40, ttl_seconds=60, max_ttl_seconds=60).mint("demo", [run_id])
    response = await anonymous.get(f"/v1/runs/{run_id}", headers=bearer(forged))
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    code, frame = await first_frame_or_close(ws_url(gateway_url, run_id, f"access_token={forged}"))
    assert code == 4401 and frame["code"] == "unauthorized"


# ----------------------------------------- rotation, JWTs, production --


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose key set the test changes; counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.fetches += 1
            body = json.dumps({"keys": self.keys}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> JwksServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def public_jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(private.public_key()))
    return jwk | {"kid": kid, "alg": alg, "use": "sig"}


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """PyJWT refuses to HMAC with a public key; an attacker would not."""

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{part(signature)}"


def customer_token(key: Any, alg: str, runs: list[str], **extra: Any) -> str:
    claims: dict[str, Any] = {
        "iss": JWKS_ISSUER if alg != "HS256" else HMAC_ISSUER,
        "aud": "tidings",
        "exp": int(time.time()) + 300,
        "sub": "user-1",
        "tidings_runs": runs,
    }
    headers = extra.pop("headers", None)
    claims.update(extra)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    async with JwksServer() as server:
        yield server


@pytest.fixture
def prod_url(rest_settings: Settings, jwks: JwksServer) -> Iterator[str]:
    """A production gateway: a rotated secret, both kinds of customer issuer."""
    settings = rest_settings.replace(
        runtime=RuntimeSettings(env=Environment.PRODUCTION),
        tenants=TenantSettings(api_keys={PROD_KEY: "demo"}),
        gateway=GatewaySettings(
            token_secret=SECRET,
            token_secrets_previous=[OLD_SECRET],
            jwt_issuers={
                HMAC_ISSUER: JwtIssuer(tenant="demo", secret=HMAC_SECRET),
                JWKS_ISSUER: JwtIssuer(tenant="demo", jwks_url=jwks.url),
            },
            jwks_min_refresh_seconds=0,
        ),
    )
    with serve(
        lambda: create_app(settings, pipelines=open_catalog, starter=start_run), free_port()
    ) as url:
        yield url


async def test_rotation_customer_jwts_and_production_query_keys(
    demo: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    runs: Runs,
    prod_url: str,
    jwks: JwksServer,
    events_topic_name: str,
) -> None:
    run_id = (await start(demo, runs))["run_id"]
    other = (await start(demo, runs))["run_id"]

    async def status(token: str, run: str = run_id) -> tuple[int, str]:
        response = await anonymous.get(f"{prod_url}/v1/runs/{run}", headers=bearer(token))
        code = response.json()["error"]["code"] if response.status_code != 200 else ""
        return response.status_code, code

    # Rotation: a token signed with the previous secret still reads; an unknown one does not.
    old, _ = ReadTokens(OLD_SECRET, ttl_seconds=60, max_ttl_seconds=60).mint("demo", [run_id])
    assert await status(old) == (200, "")
    dev, _ = ReadTokens("dev-token-secret-change-me", ttl_seconds=60, max_ttl_seconds=60).mint(
        "demo", [run_id]
    )
    assert await status(dev) == (401, "unauthorized")

    # The customer's HMAC tokens: audience, exp and the runs claim are all required.
    assert await status(customer_token(HMAC_SECRET, "HS256", [run_id])) == (200, "")
    assert await status(customer_token(HMAC_SECRET, "HS256", [run_id]), other) == (403, "forbidden")
    assert await status(customer_token(HMAC_SECRET, "HS256", [run_id], aud="else")) == (
        401,
        "unauthorized",
    )
    assert await status(customer_token(HMAC_SECRET, "HS256", [run_id], exp=None)) == (
        401,
        "unauthorized",
    )
    assert await status(customer_token(HMAC_SECRET, "HS256", [run_id], exp=1)) == (
        401,
        "token_expired",
    )
    assert await status(customer_token(HMAC_SECRET, "HS256", [])) == (401, "unauthorized")
    assert await status(customer_token("w" * 40, "HS256", [run_id])) == (401, "unauthorized")

    # JWKS: RS256 and ES256; a new kid makes the gateway fetch the set again.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks.keys = [public_jwk(rsa_key, "k1", "RS256")]
    rs = customer_token(rsa_key, "RS256", [run_id], headers={"kid": "k1"})
    assert await status(rs) == (200, "")
    assert await status(rs) == (200, "") and jwks.fetches == 1  # cached
    jwks.keys.append(public_jwk(ec_key, "k2", "ES256"))
    es = customer_token(ec_key, "ES256", [run_id], headers={"kid": "k2"})
    assert await status(es) == (200, "") and jwks.fetches == 2
    assert await status(customer_token(ec_key, "ES256", [run_id], headers={"kid": "k9"})) == (
        401,
        "unauthorized",
    )
    # The JWKS issuer's public key used as an HMAC secret (algorithm confusion) is refused.
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"iss": JWKS_ISSUER, "aud": "tidings", "exp": int(time.time()) + 60}
    confused = hs256_by_hand(
        {"alg": "HS256", "kid": "k1"}, claims | {"tidings_runs": [run_id]}, pem
    )
    assert await status(confused) == (401, "unauthorized")

    # Streams: a customer's token in the query string opens its run, not another.
    code, frame = await first_frame_or_close(ws_url(prod_url, run_id, f"access_token={es}"))
    assert (code, frame.get("kind")) == (None, "token")
    code, _ = await first_frame_or_close(ws_url(prod_url, other, f"access_token={es}"))
    assert code == 4403

    # Production: an API key in a query string is refused; in a header it works.
    code, frame = await first_frame_or_close(ws_url(prod_url, run_id, f"access_token={PROD_KEY}"))
    assert code == 4401 and "query string" in frame["message"]
    assert PROD_KEY not in json.dumps(frame)
    code, frame = await first_frame_or_close(
        ws_url(prod_url, run_id), additional_headers=bearer(PROD_KEY)
    )
    assert (code, frame.get("kind")) == (None, "token")
    # The API key minted here reads through the rotated (current) secret.
    minted = await anonymous.post(
        f"{prod_url}/v1/tokens", headers=bearer(PROD_KEY), json={"runs": [run_id]}
    )
    assert minted.status_code == 201 and await status(minted.json()["token"]) == (200, "")
    assert DEMO_KEY not in minted.text
