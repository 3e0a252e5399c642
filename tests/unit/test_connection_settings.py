"""Redis and Temporal connection settings: bad combinations stop the process at
start naming the variables (never a secret), and the one client builder for
each turns good ones into the right client options."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio.sentinel import SentinelConnectionPool
from temporalio.service import TLSConfig

from infra.services.sentinel import MASTER_NAME
from infra.settings import StackSettings
from infra.stack import Stack
from tidings.errors import ConfigError
from tidings.observability import RedactingFilter, secrets_of
from tidings.redis_connect import connect_redis
from tidings.settings import RedisSettings, Settings, TemporalSettings, load
from tidings.temporal_connect import tls_config

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "file.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


# A bad combination, the variables its message must name and the secrets it must not.
REFUSALS: dict[str, tuple[type, dict[str, str], list[str], list[str]]] = {
    "missing-temporal-tls-file": (
        TemporalSettings,
        {"TIDINGS_TEMPORAL_TLS_CA_FILE": "/nope/ca.pem"},
        ["TIDINGS_TEMPORAL_TLS_CA_FILE", "/nope/ca.pem"],
        [],
    ),
    "client-certificate-without-key": (
        TemporalSettings,
        {"TIDINGS_TEMPORAL_TLS_CERT_FILE": "{pem}"},
        ["TIDINGS_TEMPORAL_TLS_CERT_FILE", "TIDINGS_TEMPORAL_TLS_KEY_FILE"],
        [],
    ),
    "server-name-without-tls": (
        TemporalSettings,
        {"TIDINGS_TEMPORAL_TLS_SERVER_NAME": "t.example"},
        ["TIDINGS_TEMPORAL_TLS"],
        [],
    ),
    "sentinels-without-master": (
        RedisSettings,
        {"TIDINGS_REDIS_SENTINELS": "127.0.0.1:26379"},
        ["TIDINGS_REDIS_SENTINELS", "TIDINGS_REDIS_SENTINEL_MASTER"],
        [],
    ),
    "sentinel-not-host-port": (
        RedisSettings,
        {
            "TIDINGS_REDIS_SENTINELS": "127.0.0.1:26379,nowhere",
            "TIDINGS_REDIS_SENTINEL_MASTER": "tidings",
        },
        ["TIDINGS_REDIS_SENTINELS", "nowhere"],
        [],
    ),
    "redis-ca-file-without-rediss": (
        RedisSettings,
        {"TIDINGS_REDIS_TLS_CA_FILE": "{pem}"},
        ["TIDINGS_REDIS_TLS_CA_FILE", "rediss://"],
        [],
    ),
    "redis-credentials-in-two-places": (
        RedisSettings,
        {
            "TIDINGS_REDIS_URL": "redis://u:url-secret-99@127.0.0.1:6379/0",
            "TIDINGS_REDIS_PASSWORD": "env-secret-77",
        },
        ["TIDINGS_REDIS_URL"],
        ["url-secret-99", "env-secret-77"],
    ),
    "unknown-redis-scheme": (
        RedisSettings,
        {"TIDINGS_REDIS_URL": "http://127.0.0.1:6379"},
        ["TIDINGS_REDIS_URL"],
        [],
    ),
    # Three sentinels from 9090: the third lands on Kafka's 9092.
    "sentinel-ports-clash": (
        StackSettings,
        {"TIDINGS_STACK_REDIS_SENTINEL": "true", "TIDINGS_STACK_REDIS_SENTINEL_PORT": "9090"},
        ["TIDINGS_STACK_KAFKA_PORT", "TIDINGS_STACK_REDIS_SENTINEL_PORT"],
        [],
    ),
}


@pytest.mark.parametrize(("cls", "env", "named", "hidden"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_bad_combination_stops_the_process_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
    pem: Path,
    cls: type,
    env: dict[str, str],
    named: list[str],
    hidden: list[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(pem=pem))
    with pytest.raises(ConfigError) as raised:
        load(cls)
    message = str(raised.value)
    assert [n for n in named if n not in message] == [], message
    assert [h for h in hidden if h in message] == []


def test_an_api_key_turns_tls_on_and_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_TEMPORAL_API_KEY", "temporal-cloud-key-123456")
    settings = load(TemporalSettings)
    assert settings.uses_tls
    assert tls_config(settings) is True  # the system's CAs, as Temporal Cloud needs
    assert "temporal-cloud-key-123456" not in repr(settings)


def test_tls_files_become_the_sdk_tls_config(pem: Path) -> None:
    settings = TemporalSettings(
        tls_ca_file=pem, tls_cert_file=pem, tls_key_file=pem, tls_server_name="t.example"
    )
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == pem.read_bytes()
    assert config.client_cert == pem.read_bytes()
    assert config.domain == "t.example"
    assert tls_config(TemporalSettings()) is False


async def test_plain_client_carries_acl_and_tls_options(pem: Path) -> None:
    settings = RedisSettings(
        url=SecretStr("rediss://redis.example:6380/2"),
        username="gw",
        password=SecretStr("pw-123456"),
        tls_ca_file=pem,
        max_connections=7,
    )
    client = connect_redis(settings, timeout=2.0)
    try:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example", 6380, 2)
        assert (kwargs["username"], kwargs["password"]) == ("gw", "pw-123456")
        assert kwargs["ssl_ca_certs"] == str(pem)
        assert kwargs["socket_timeout"] == 2.0
        assert pool.max_connections == 7
    finally:
        await client.aclose()


async def test_sentinel_client_asks_the_sentinels_for_the_master() -> None:
    settings = RedisSettings(
        url=SecretStr("redis://:pw-abcdef@ignored:1/3"),
        sentinels=["10.0.0.1:26379", "10.0.0.2:26380"],
        sentinel_master="tidings",
    )
    client = connect_redis(settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "tidings"
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["password"] == "pw-abcdef"
        sentinels = pool.sentinel_manager.sentinels
        hosts = [s.connection_pool.connection_kwargs["host"] for s in sentinels]
        assert hosts == ["10.0.0.1", "10.0.0.2"]
    finally:
        await client.aclose()


def test_new_secrets_are_redacted_from_logs() -> None:
    settings = Settings(
        redis=RedisSettings(username="gw", password=SecretStr("redis-acl-pass-1")),
        temporal=TemporalSettings(api_key=SecretStr("temporal-api-key-2")),
    )
    redactor = RedactingFilter(secrets_of(settings))
    record = logging.LogRecord(
        "t",
        logging.INFO,
        __file__,
        1,
        "%s and %s",
        ("redis-acl-pass-1", "temporal-api-key-2"),
        None,
    )
    redactor.filter(record)
    assert "redis-acl-pass-1" not in record.getMessage()
    assert "temporal-api-key-2" not in record.getMessage()


def test_up_with_sentinel_hands_the_apps_the_sentinels(tmp_path: Path) -> None:
    settings = StackSettings(
        state_dir=tmp_path,
        redis_sentinel=True,
        redis_replica_port=16380,
        redis_sentinel_port=36379,
        gateways=1,
        workers=1,
    )
    stack = Stack(settings)
    names = [service.name for service in stack.infra]
    assert names[-4:] == [
        "redis-replica",
        "redis-sentinel-1",
        "redis-sentinel-2",
        "redis-sentinel-3",
    ]
    env = stack.wiring.env()
    assert env["TIDINGS_REDIS_SENTINELS"] == "127.0.0.1:36379,127.0.0.1:36380,127.0.0.1:36381"
    assert env["TIDINGS_REDIS_SENTINEL_MASTER"] == MASTER_NAME
    # What the apps then build from that environment is a Sentinel-backed client.
    redis = RedisSettings(
        url=SecretStr(env["TIDINGS_REDIS_URL"]),
        sentinels=env["TIDINGS_REDIS_SENTINELS"].split(","),
        sentinel_master=env["TIDINGS_REDIS_SENTINEL_MASTER"],
    )
    assert (
        redis.sentinels
        and "TIDINGS_REDIS_SENTINELS" not in Stack(StackSettings(state_dir=tmp_path)).wiring.env()
    )
