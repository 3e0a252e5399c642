"""Kafka security settings: bad combinations stop at load with the variables
named, secrets stay out of repr and messages, and the one options builder
gives every client the same TLS and SASL setup."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka.abc import AbstractTokenProvider

from tidings.errors import ConfigError
from tidings.kafka_connection import client_options
from tidings.settings import KafkaSettings, load

pytestmark = pytest.mark.unit

PASSWORD = "kafka-pass-7f3c9e1d"


class StaticToken(AbstractTokenProvider):
    async def token(self) -> str:
        return "a-token"


def provider() -> StaticToken:
    return StaticToken()


def not_a_provider() -> object:
    return object()


def _refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(f"TIDINGS_KAFKA_{name}", value)
    with pytest.raises(ConfigError) as raised:
        load(KafkaSettings)
    message = raised.value.message
    assert PASSWORD not in message
    return message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SASL_USERNAME": "app"}, ["TIDINGS_KAFKA_SASL_USERNAME", "PLAINTEXT"]),
        ({"SASL_PASSWORD": PASSWORD}, ["TIDINGS_KAFKA_SASL_PASSWORD", "does not use SASL"]),
        ({"SSL_CA_FILE": "/etc/hosts"}, ["TIDINGS_KAFKA_SSL_CA_FILE", "does not use TLS"]),
        (
            {"SECURITY_PROTOCOL": "SSL", "SASL_MECHANISM": "SCRAM-SHA-256"},
            ["TIDINGS_KAFKA_SASL_MECHANISM", "SECURITY_PROTOCOL=SSL"],
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_PASSWORD": PASSWORD},
            ["needs TIDINGS_KAFKA_SASL_USERNAME"],
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "SCRAM-SHA-512"},
            ["TIDINGS_KAFKA_SASL_USERNAME and TIDINGS_KAFKA_SASL_PASSWORD"],
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "OAUTHBEARER"},
            ["needs TIDINGS_KAFKA_SASL_OAUTH_TOKEN_PROVIDER"],
        ),
        (
            {
                "SECURITY_PROTOCOL": "SASL_SSL",
                "SASL_USERNAME": "a",
                "SASL_PASSWORD": PASSWORD,
                "SASL_OAUTH_TOKEN_PROVIDER": f"{__name__}:provider",
            },
            ["only for OAUTHBEARER"],
        ),
        (
            {
                "SECURITY_PROTOCOL": "SASL_SSL",
                "SASL_MECHANISM": "OAUTHBEARER",
                "SASL_OAUTH_TOKEN_PROVIDER": f"{__name__}:not_a_provider",
            },
            ["not an aiokafka AbstractTokenProvider"],
        ),
        (
            {
                "SECURITY_PROTOCOL": "SASL_SSL",
                "SASL_MECHANISM": "OAUTHBEARER",
                "SASL_OAUTH_TOKEN_PROVIDER": "no.such.module:make",
            },
            ["TIDINGS_KAFKA_SASL_OAUTH_TOKEN_PROVIDER: cannot load"],
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_CA_FILE": "/nonexistent/ca.pem"},
            ["TIDINGS_KAFKA_SSL_CA_FILE: no such file /nonexistent/ca.pem"],
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_CERT_FILE": "/etc/hosts"},
            ["TIDINGS_KAFKA_SSL_CERT_FILE and TIDINGS_KAFKA_SSL_KEY_FILE"],
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_CA_FILE": "/etc/hostname"},
            ["cannot be loaded"],
        ),
        ({"SECURITY_PROTOCOL": "TLS"}, ["TIDINGS_KAFKA_SECURITY_PROTOCOL"]),
    ],
)
def test_bad_combinations_stop_at_load_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: list[str]
) -> None:
    message = _refused(monkeypatch, **env)
    for part in named:
        assert part in message, message


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    options = client_options(KafkaSettings(bootstrap_servers="a:1,b:2"))
    assert options == {"bootstrap_servers": "a:1,b:2", "security_protocol": "PLAINTEXT"}


def test_scram_over_tls_options_and_secret_kept_out_of_repr(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",  # type: ignore[arg-type]
        sasl_mechanism="SCRAM-SHA-512",  # type: ignore[arg-type]
        sasl_username="app",
        sasl_password=PASSWORD,  # type: ignore[arg-type]
    )
    assert PASSWORD not in repr(kafka) and PASSWORD not in str(kafka)
    assert PASSWORD not in kafka.model_dump_json()
    options = client_options(kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("app", PASSWORD)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_oauthbearer_provider_is_loaded_once_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TIDINGS_KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("TIDINGS_KAFKA_SASL_OAUTH_TOKEN_PROVIDER", f"{__name__}:provider")
    kafka = load(KafkaSettings)
    first, second = client_options(kafka), client_options(kafka)
    assert isinstance(first["sasl_oauth_token_provider"], StaticToken)
    assert first["sasl_oauth_token_provider"] is second["sasl_oauth_token_provider"]
    assert "sasl_plain_password" not in first
