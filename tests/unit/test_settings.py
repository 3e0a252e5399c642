"""Settings fail at start with a message that names the variable, never a secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.commands.common import stack_settings
from infra.settings import StackSettings
from infra.stack import Stack
from tidings.errors import ConfigError
from tidings.settings import (
    GatewaySettings,
    RuntimeSettings,
    Settings,
    TenantSettings,
    load,
)

pytestmark = pytest.mark.unit

STRONG_SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_documented_local_ports() -> None:
    settings = load(StackSettings)
    assert settings.host == "127.0.0.1"
    assert (settings.temporal_port, settings.temporal_ui_port) == (7233, 8233)
    assert (settings.kafka_port, settings.redis_port, settings.gateway_port) == (9092, 6379, 8000)


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STACK_KAFKA_PORT", "abc")
    with pytest.raises(ConfigError, match="TIDINGS_STACK_KAFKA_PORT") as raised:
        load(StackSettings)
    assert "integer" in raised.value.message


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STACK_REDIS_PORT", "70000")
    monkeypatch.setenv("TIDINGS_STACK_KAFKA_HEAP", "lots")
    with pytest.raises(ConfigError) as raised:
        load(StackSettings)
    assert "TIDINGS_STACK_REDIS_PORT" in raised.value.message
    assert "TIDINGS_STACK_KAFKA_HEAP" in raised.value.message


def test_port_clash_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STACK_REDIS_PORT", "9092")
    with pytest.raises(ConfigError, match=r"TIDINGS_STACK_REDIS_PORT clashes with .*KAFKA_PORT"):
        load(StackSettings)


def test_gateway_replicas_may_not_run_into_another_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STACK_REDIS_PORT", "8002")
    assert load(StackSettings).redis_port == 8002  # one gateway on 8000: no clash
    with pytest.raises(ConfigError, match=r"TIDINGS_STACK_REDIS_PORT clashes with .*GATEWAY_PORT"):
        stack_settings(gateways=3)


def test_command_line_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STACK_GATEWAYS", "1")
    monkeypatch.setenv("TIDINGS_STACK_STATE_DIR", "/tmp/tidings-elsewhere")
    settings = stack_settings(gateways=4)
    assert settings.gateways == 4
    assert settings.state_dir == Path("/tmp/tidings-elsewhere")
    with pytest.raises(ConfigError, match="--gateways"):
        stack_settings(gateways=99)


def test_local_accepts_the_dev_key() -> None:
    settings = Settings()
    assert settings.tenants.tenant_for("dev-key-demo") == "demo"


def test_production_refuses_the_dev_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "production")
    with pytest.raises(ConfigError, match="TIDINGS_TENANTS_API_KEYS") as raised:
        Settings()
    assert "dev-key-demo" not in raised.value.message


def test_production_refuses_the_dev_token_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "production")
    monkeypatch.setenv("TIDINGS_TENANTS_API_KEYS", '{"prod-key-0123456789": "acme"}')
    with pytest.raises(ConfigError, match="TIDINGS_GATEWAY_TOKEN_SECRET"):
        Settings()
    monkeypatch.setenv("TIDINGS_GATEWAY_TOKEN_SECRET", STRONG_SECRET)
    settings = Settings()
    assert settings.runtime == RuntimeSettings(env="production")
    assert settings.tenants.tenant_for("prod-key-0123456789") == "acme"
    assert STRONG_SECRET not in repr(settings.gateway)


def test_bad_api_keys_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_TENANTS_API_KEYS", "{not json")
    with pytest.raises(ConfigError, match="TIDINGS_TENANTS_API_KEYS"):
        load(TenantSettings)


def test_previous_token_secrets_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_GATEWAY_TOKEN_SECRETS_PREVIOUS", "old-one,,old-two")
    secrets = load(GatewaySettings).token_secrets_previous
    assert [secret.get_secret_value() for secret in secrets] == ["old-one", "old-two"]


def test_replace_swaps_one_part_and_validates_again() -> None:
    from tidings.settings import GatewaySettings, KafkaSettings, Settings

    base = Settings()
    moved = base.replace(gateway=GatewaySettings(port=8123))
    assert moved.gateway.port == 8123 and moved.kafka is base.kafka
    with pytest.raises(ConfigError, match="TOKEN_TTL"):
        base.replace(kafka=KafkaSettings(retention_ms=60_000))


def test_kafka_brokers_take_every_other_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STACK_REDIS_PORT", "9096")
    assert load(StackSettings).redis_port == 9096  # one broker: 9092/9093 only
    with pytest.raises(ConfigError, match=r"--kafka-brokers.*REDIS_PORT clashes with .*KAFKA_PORT"):
        stack_settings(kafka_brokers=3)
    monkeypatch.setenv("TIDINGS_STACK_REDIS_PORT", "6379")
    assert stack_settings(kafka_brokers=3).kafka_brokers == 3


def test_three_brokers_are_one_cluster(tmp_path: Path) -> None:
    """What `tidings up --kafka-brokers 3` starts: three voters, every topic
    three copies with two in sync, and the apps told every node."""
    stack = Stack(StackSettings(state_dir=tmp_path, kafka_brokers=3), apps=False)
    assert [node.name for node in stack.kafkas] == ["kafka-1", "kafka-2", "kafka-3"]
    assert stack.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert stack.wiring.env()["TIDINGS_KAFKA_REPLICATION_FACTOR"] == "3"
    props = stack.kafkas[1]._server_properties().splitlines()
    assert "node.id=2" in props
    assert "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097" in props
    assert {"default.replication.factor=3", "min.insync.replicas=2"} <= set(props)
    single = Stack(StackSettings(state_dir=tmp_path), apps=False)
    assert [node.name for node in single.kafkas] == ["kafka"]
    assert "TIDINGS_KAFKA_REPLICATION_FACTOR" not in single.wiring.env()
