"""Read tokens' pure logic: minting, rotation, scope, and the settings that configure them."""

from __future__ import annotations

import time

import pytest

from gateway.access import Access, ReadTokens, Rejected
from gateway.stream.tokens import TokenSigner
from tidings.errors import ConfigError
from tidings.settings import GatewaySettings, JwtIssuer, load

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def tokens(secret: str = "a" * 32, previous: tuple[str, ...] = (), now: float = NOW) -> ReadTokens:
    return ReadTokens(secret, previous, ttl_seconds=60, max_ttl_seconds=600, clock=lambda: now)


def test_a_token_reads_exactly_its_runs_of_its_tenant() -> None:
    token, expires_at = tokens().mint("demo", ["r2", "r1", "r1"])
    assert expires_at == NOW + 60
    access = tokens().verify(token)
    assert access == Access("demo", frozenset({"r1", "r2"}))
    assert access.may_read("r1") and not access.may_read("r3") and not access.is_api_key
    assert Access("demo").may_read("anything") and Access("demo").is_api_key


def test_rotation_and_expiry() -> None:
    old, _ = tokens("o" * 32).mint("demo", ["r"])
    assert tokens("n" * 32, ("o" * 32,)).verify(old).tenant == "demo"
    with pytest.raises(Rejected) as forged:
        tokens("n" * 32).verify(old)
    assert not forged.value.expired
    with pytest.raises(Rejected) as expired:
        tokens(now=NOW + 61).verify(tokens().mint("demo", ["r"])[0])
    assert expired.value.expired


def test_read_and_resume_tokens_never_pass_for_each_other() -> None:
    secret = "s" * 32
    resume, _ = TokenSigner(secret, ttl_seconds=60).issue("demo", "r", "sid")
    with pytest.raises(Rejected):
        tokens(secret).verify(resume)
    read, _ = tokens(secret, now=time.time()).mint("demo", ["r"])
    with pytest.raises(Exception, match="invalid resume token"):
        TokenSigner(secret, ttl_seconds=60).verify(read)


def test_issuer_settings_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="exactly one of secret or jwks_url"):
        JwtIssuer(tenant="demo")
    with pytest.raises(ValueError, match="at least 32"):
        JwtIssuer(tenant="demo", secret="short")
    monkeypatch.setenv("TIDINGS_GATEWAY_JWT_ISSUERS", "{not json")
    with pytest.raises(ConfigError, match="TIDINGS_GATEWAY_JWT_ISSUERS"):
        load(GatewaySettings)
    monkeypatch.setenv(
        "TIDINGS_GATEWAY_JWT_ISSUERS", '{"https://a": {"tenant": "demo", "jwks_url": "http://k"}}'
    )
    assert load(GatewaySettings).jwt_issuers["https://a"].jwks_url == "http://k"
    monkeypatch.setenv(
        "TIDINGS_GATEWAY_JWT_ISSUERS", '{"tidings": {"tenant": "demo", "jwks_url": "http://k"}}'
    )
    with pytest.raises(ConfigError, match="the gateway's own"):
        load(GatewaySettings)
    monkeypatch.delenv("TIDINGS_GATEWAY_JWT_ISSUERS")
    monkeypatch.setenv("TIDINGS_GATEWAY_STREAM_TOKEN_TTL_SECONDS", "90000")
    with pytest.raises(ConfigError, match="STREAM_TOKEN_MAX_TTL_SECONDS"):
        load(GatewaySettings)
