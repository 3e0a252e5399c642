"""Kafka over SASL_SSL (SCRAM): a broker whose TLS certificate the test made
and whose users were written at format time; a worker emits and a gateway
streams a real run through it, and a wrong password or an untrusted CA stop
the process at start, naming the problem and never the secret."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.services.kafka import SecureListener
from infra.settings import private_stack_settings
from infra.stack import Stack
from tests.conftest import StackHandle
from tests.processes import ROOT, ChildProcess, module_argv
from tests.services import gateway_ready
from tests.support import free_port
from tests.tlsfiles import TestCA
from tidings.client import start_run, subscribe
from tidings.events import EventType
from tidings.kafka_connection import client_options, verify
from tidings.kafka_log import committed_reader
from tidings.settings import KafkaSettings, load

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "tidings-app"
KEY = "sasl-test-key-0001"
TENANT = "sasl"


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    password: str
    ca_file: Path
    rogue_ca_file: Path
    folder: Path

    def env(self, stack: StackHandle, tag: str, **extra: str) -> dict[str, str]:
        """A worker's or gateway's environment: Temporal and Redis from the
        session stack, Kafka over SASL_SSL with SCRAM-SHA-512."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        return {
            **base,
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_TEMPORAL_ADDRESS": stack.endpoints.temporal_address,
            "TIDINGS_TEMPORAL_TASK_QUEUE": f"sasl-{tag}",
            "TIDINGS_REDIS_URL": stack.endpoints.redis_url,
            "TIDINGS_TENANTS_API_KEYS": json.dumps({KEY: TENANT}),
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "TIDINGS_KAFKA_TOPIC_PREFIX": f"sasl{tag}",
            "TIDINGS_KAFKA_PARTITIONS": "1",
            "TIDINGS_KAFKA_REQUEST_TIMEOUT_MS": "5000",
            "TIDINGS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TIDINGS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TIDINGS_KAFKA_SASL_USERNAME": USER,
            "TIDINGS_KAFKA_SASL_PASSWORD": self.password,
            "TIDINGS_KAFKA_SSL_CA_FILE": str(self.ca_file),
            **extra,
        }


def _say(message: str) -> None:
    print(f"[sasl kafka] {message}", file=sys.stderr)


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    folder = tmp_path_factory.mktemp("kafka-sasl")
    ca, rogue = TestCA(folder / "ca"), TestCA(folder / "rogue", "not the brokers CA")
    broker = ca.issue("tidings-test-broker", server=True)
    # Kafka reads one PEM file: the broker's key, its certificate, then the chain.
    keystore = folder / "broker.pem"
    keystore.write_bytes(b"".join(p.read_bytes() for p in (broker.key, broker.cert, ca.cert)))
    password = f"scram-{uuid.uuid4().hex}"
    listener = SecureListener(free_port(), keystore, ((USER, password),), unsecured_oauth=True)
    settings = private_stack_settings(folder / "stack", kafka_heap="256m")
    kafka = Stack(settings, apps=False, attached=True, kafka_secure=listener)
    try:
        kafka.up(_say, only=["kafka"])
        yield SecureKafka(
            kafka.kafka.secure_bootstrap,
            password,
            ca.cert,
            rogue.cert,
            folder,
        )
    finally:
        kafka.down(_say)


async def test_run_streams_through_sasl_ssl(
    stack: StackHandle, secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = secure_kafka.env(stack, tag)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = ChildProcess("worker", module_argv("cli", "worker"), env, tmp_path / "worker.log")
    gateway = ChildProcess(
        "gateway",
        module_argv("cli", "gateway", "--port", str(port)),
        env,
        tmp_path / "gateway.log",
    )

    async def worker_ready() -> bool:
        return b"ready on task queue" in worker.log.read_bytes()

    try:
        await asyncio.gather(
            worker.start(worker_ready, 60), gateway.start(lambda: gateway_ready(url), 60)
        )
        run = await start_run(url, KEY, "research", {"question": "Is this stream encrypted?"})
        seen = []
        async with subscribe(url, run.run_id, KEY) as sub:
            async with asyncio.timeout(60):
                seen = [event async for event in sub]
        assert sub.status == "COMPLETED"
        types = [event.type for event in seen]
        assert types[0] == EventType.RUN_STARTED and types[-1] == EventType.RUN_COMPLETED
        assert types.count(EventType.STEP_TOKEN) > 0
        assert len({event.id for event in seen}) == len(seen)
        # Nothing reached the logs that should not have.
        for proc in (worker, gateway):
            assert secure_kafka.password not in proc.log.read_text(errors="replace")
    finally:
        gateway.stop()
        worker.stop()


async def _refused_start(command: str, env: dict[str, str]) -> tuple[int, str]:
    argv = module_argv(
        "cli", command, *(("--port", str(free_port())) if command == "gateway" else ())
    )
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_wrong_password_and_untrusted_ca_stop_at_start(
    stack: StackHandle, secure_kafka: SecureKafka
) -> None:
    tag = uuid.uuid4().hex[:8]
    wrong = f"wrong-{uuid.uuid4().hex}"
    bad_password = secure_kafka.env(stack, tag, TIDINGS_KAFKA_SASL_PASSWORD=wrong)
    untrusted = secure_kafka.env(
        stack, tag, TIDINGS_KAFKA_SSL_CA_FILE=str(secure_kafka.rogue_ca_file)
    )
    (code_w, out_w), (code_g, out_g) = await asyncio.gather(
        _refused_start("worker", bad_password), _refused_start("gateway", untrusted)
    )
    assert code_w == 2, out_w
    assert "refused the SASL login (SCRAM-SHA-512) of user 'tidings-app'" in out_w
    assert "TIDINGS_KAFKA_SASL_PASSWORD" in out_w
    assert wrong not in out_w and secure_kafka.password not in out_w
    assert code_g == 2, out_g
    assert "certificate is not trusted" in out_g and "TIDINGS_KAFKA_SSL_CA_FILE" in out_g
    assert secure_kafka.password not in out_g


class UnsignedToken(AbstractTokenProvider):
    """A token Kafka's default (unsecured) OAUTHBEARER validator accepts: an
    unsigned JWT naming a subject, as an identity provider's would."""

    async def token(self) -> str:
        def part(claims: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

        now = int(time.time())
        return f"{part({'alg': 'none'})}.{part({'sub': USER, 'iat': now, 'exp': now + 600})}."


def unsigned_token() -> UnsignedToken:
    return UnsignedToken()


async def test_oauthbearer_token_provider_hook(
    secure_kafka: SecureKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TIDINGS_KAFKA_SASL_OAUTH_TOKEN_PROVIDER`` names a callable loaded at
    start; its tokens log in, and a record goes through the broker and back."""
    for name, value in {
        "BOOTSTRAP_SERVERS": secure_kafka.bootstrap,
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "OAUTHBEARER",
        "SASL_OAUTH_TOKEN_PROVIDER": f"{__name__}:unsigned_token",
        "SSL_CA_FILE": str(secure_kafka.ca_file),
    }.items():
        monkeypatch.setenv(f"TIDINGS_KAFKA_{name}", value)
    kafka = load(KafkaSettings)
    await verify(kafka)
    topic = f"oauth.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**client_options(kafka), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"through OAUTHBEARER")
    finally:
        await producer.stop()
    consumer = committed_reader(kafka, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(20):
            batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    values = [record.value for records in batch.values() for record in records]
    assert sent.offset == 0 and values == [b"through OAUTHBEARER"]
