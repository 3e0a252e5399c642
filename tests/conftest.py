"""Session fixtures. PLACEHOLDER: uses a stack named by env vars until infra lands."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tidings.settings import KafkaSettings, RedisSettings, Settings, TemporalSettings


@dataclass(frozen=True)
class Endpoints:
    temporal_address: str
    kafka_bootstrap: str
    redis_url: str


class StackHandle:
    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    def settings(self) -> Settings:
        from pydantic import SecretStr

        return Settings(
            temporal=TemporalSettings(address=self.endpoints.temporal_address),
            kafka=KafkaSettings(bootstrap_servers=self.endpoints.kafka_bootstrap),
            redis=RedisSettings(url=SecretStr(self.endpoints.redis_url)),
        )


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    yield StackHandle(
        Endpoints(
            temporal_address=os.environ.get("TIDINGS_TEST_TEMPORAL_ADDRESS", "127.0.0.1:17233"),
            kafka_bootstrap=os.environ.get("TIDINGS_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            redis_url=os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:16379/0"),
        )
    )
