"""Session fixtures: one private local stack (Temporal, Kafka, Redis) for the whole run.

It is started by the same code as ``tidings up`` on free ports in a temporary
state folder, and stopped at the end. To use a stack that is already running
instead, set all three of ``TIDINGS_TEST_TEMPORAL_ADDRESS``,
``TIDINGS_TEST_KAFKA_BOOTSTRAP`` and ``TIDINGS_TEST_REDIS_URL`` (restart tests
then skip, since we may not restart someone else's services).

Use: ``def test_x(stack): stack.endpoints.kafka_bootstrap``, ``stack.settings()``
(a :class:`tidings.settings.Settings` wired to the stack) and, in restart tests,
``stack.restart("kafka" | "temporal" | "redis")`` (or ``stack.stop(...)`` then
``stack.start(...)`` for an outage of a chosen length).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from infra.settings import private_stack_settings
from infra.stack import Stack
from tidings.settings import KafkaSettings, RedisSettings, Settings, TemporalSettings

_EXTERNAL = (
    "TIDINGS_TEST_TEMPORAL_ADDRESS",
    "TIDINGS_TEST_KAFKA_BOOTSTRAP",
    "TIDINGS_TEST_REDIS_URL",
)


@dataclass(frozen=True)
class Endpoints:
    temporal_address: str
    kafka_bootstrap: str
    redis_url: str


class StackHandle:
    def __init__(self, endpoints: Endpoints, stack: Stack | None = None) -> None:
        self.endpoints = endpoints
        self._stack = stack

    @property
    def private(self) -> bool:
        """True if this session started the stack itself (and so may restart it)."""
        return self._stack is not None

    def settings(self) -> Settings:
        return Settings(
            temporal=TemporalSettings(address=self.endpoints.temporal_address),
            kafka=KafkaSettings(bootstrap_servers=self.endpoints.kafka_bootstrap),
            redis=RedisSettings(url=SecretStr(self.endpoints.redis_url)),
        )

    def restart(self, service: str) -> None:
        """Stop ``service`` (SIGTERM, a clean shutdown) and start it again on the same port and
        data; returns once it is healthy. Blocks: fine from async tests, which wait for it anyway.
        """
        if self._stack is None:
            pytest.skip("restart needs the private test stack, not one named by TIDINGS_TEST_*")
        self._stack.restart(service, _say)

    def stop(self, service: str) -> None:
        """Stop ``service`` (SIGTERM) until :meth:`start` brings it back on the
        same port and data: an outage. Private stack only, as :meth:`restart`."""
        if self._stack is None:
            pytest.skip("stop needs the private test stack, not one named by TIDINGS_TEST_*")
        self._stack.down(_say, only=[service])

    def start(self, service: str) -> None:
        """Start a service :meth:`stop` stopped; returns once it is healthy."""
        assert self._stack is not None
        self._stack.up(_say, only=[service])


def _say(message: str) -> None:
    print(f"[test stack] {message}", file=sys.stderr)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    if all(os.environ.get(name) for name in _EXTERNAL):
        temporal, kafka, redis = (os.environ[name] for name in _EXTERNAL)
        yield StackHandle(Endpoints(temporal, kafka, redis))
        return
    settings = private_stack_settings(tmp_path_factory.mktemp("stack"))
    private = Stack(settings, apps=False, attached=True)
    try:
        private.up(_say)
        yield StackHandle(
            Endpoints(private.temporal.address, private.kafka.bootstrap, private.redis.redis_url),
            private,
        )
    finally:
        private.down(_say)
