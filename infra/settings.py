"""Settings of the local stack (``TIDINGS_STACK_*``): what ``tidings up``, the
test session and the benchmarks start. The processes never read these; their
settings are :mod:`tidings.settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.ports import free_port
from tidings import settings as process_settings


class StackSettings(BaseSettings):
    """The local stack that ``tidings up`` manages: ports, folders, versions."""

    model_config = SettingsConfigDict(
        env_prefix="TIDINGS_STACK_", extra="ignore", frozen=True, validate_default=True
    )

    host: str = "127.0.0.1"
    state_dir: Path = Path.home() / ".local" / "state" / "tidings"
    cache_dir: Path = Path.home() / ".cache" / "tidings"
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    # Several brokers form one KRaft cluster (each also a controller) whose
    # topics keep three copies, two in sync; node i listens on KAFKA_PORT + 2i
    # and KAFKA_CONTROLLER_PORT + 2i.
    kafka_brokers: int = Field(default=1, ge=1, le=5)
    redis_port: int = Field(default=6379, ge=1, le=65535)
    # `tidings up --redis-sentinel`: a replica and three sentinels (on
    # consecutive ports from redis_sentinel_port) watching the primary.
    redis_sentinel: bool = False
    redis_replica_port: int = Field(default=6380, ge=1, le=65535)
    redis_sentinel_port: int = Field(default=26379, ge=1, le=65533)
    gateway_port: int = Field(default=8000, ge=1, le=65535)
    gateways: int = Field(default=1, ge=0, le=16)
    # Processes per gateway, sharing its port (``tidings gateway --processes``).
    gateway_processes: int = Field(default=1, ge=1, le=16)
    workers: int = Field(default=1, ge=0, le=16)
    kafka_version: str = Field(default="4.1.1", pattern=r"^(3\.9|4)\.\d+(\.\d+)?$")
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mg]$")
    start_timeout_seconds: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackSettings:
        ports = [("TEMPORAL_PORT", self.temporal_port), ("TEMPORAL_UI_PORT", self.temporal_ui_port)]
        for i in range(self.kafka_brokers):
            ports += [
                ("KAFKA_PORT", self.kafka_port + 2 * i),
                ("KAFKA_CONTROLLER_PORT", self.kafka_controller_port + 2 * i),
            ]
        ports.append(("REDIS_PORT", self.redis_port))
        if self.redis_sentinel:
            ports.append(("REDIS_REPLICA_PORT", self.redis_replica_port))
            for i in range(3):
                ports.append((f"REDIS_SENTINEL_PORT (+{i})", self.redis_sentinel_port + i))
        gateway = range(self.gateway_port, self.gateway_port + max(self.gateways, 1))
        seen: dict[int, str] = {}
        for name, port in ports:
            if port in seen or port in gateway:
                other = seen.get(port, "GATEWAY_PORT")
                raise ValueError(f"TIDINGS_STACK_{name} clashes with TIDINGS_STACK_{other}")
            seen[port] = name
        return self


def private_stack_settings(state_dir: Path, **overrides: object) -> StackSettings:
    """Settings for a stack of our own: free ports, its own folder, no worker or gateway
    (the test session's stack and the benchmarks')."""
    ports = {
        name: free_port()
        for name in (
            "temporal_port",
            "temporal_ui_port",
            "kafka_port",
            "kafka_controller_port",
            "redis_port",
        )
    }
    # Gateways take consecutive ports from here (`--gateways N`).
    ports["gateway_port"] = free_port(block=8)
    values: dict[str, object] = {
        "state_dir": state_dir,
        "gateways": 0,
        "workers": 0,
        "kafka_heap": "384m",
        "start_timeout_seconds": 90.0,
        **ports,
        **overrides,
    }
    return StackSettings(**values)  # type: ignore[arg-type]


def all_settings_classes() -> list[type[BaseSettings]]:
    """Every settings class: the processes' and the stack's."""
    return [*process_settings.all_settings_classes(), StackSettings]


def env_names() -> set[str]:
    """Every environment variable any settings class reads."""
    return process_settings.env_names(all_settings_classes())
