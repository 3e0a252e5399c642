"""Redis with an ACL user and over TLS (``rediss://``), as managed Redis serves it.

Each test starts its own ``redis-server`` (Debian's, the stack's binary) with
the default user switched off, so only the configured credentials work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from redis.exceptions import RedisError

from infra.install import ensure_redis
from infra.ports import exchange, free_port
from tests.conftest import StackHandle
from tests.processes import stop_process
from tests.support import wait_for
from tests.tlsfiles import TestCA
from tidings.errors import ConfigError
from tidings.redis_connect import check_credentials, connect_redis
from tidings.settings import RedisSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "tidings-gw", "acl-pass-5e1f0b7d"


def _start(
    folder: Path, args: list[str], probe: tuple[int, bytes] | None
) -> subprocess.Popen[bytes]:
    binary = ensure_redis(lambda line: print(line, file=sys.stderr))
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    port, answer = probe or (0, b"")
    while probe is not None and not exchange("127.0.0.1", port, b"PING\r\n").startswith(answer):
        assert proc.poll() is None, "redis-server exited at start"
        assert time.monotonic() < deadline, "redis-server not answering within 10 s"
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc = _start(
        tmp_path_factory.mktemp("redis-acl"),
        [
            "--port",
            str(port),
            # redis-server joins the words after an option into its value.
            *("--user", "default", "off"),
            *("--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"),
        ],
        (port, b"-NOAUTH"),
    )
    try:
        yield port
    finally:
        stop_process(proc)


async def test_acl_user_from_settings_and_from_url(acl_redis: int) -> None:
    url = f"redis://127.0.0.1:{acl_redis}/0"
    for settings in (
        RedisSettings(url=SecretStr(url), username=USER, password=SecretStr(PASSWORD)),
        RedisSettings(url=SecretStr(f"redis://{USER}:{PASSWORD}@127.0.0.1:{acl_redis}/0")),
    ):
        await check_credentials(settings)
        client = connect_redis(settings)
        try:
            assert await client.acl_whoami() == USER
        finally:
            await client.aclose()


async def test_wrong_or_missing_password_is_a_clear_error(acl_redis: int) -> None:
    url = SecretStr(f"redis://127.0.0.1:{acl_redis}/0")
    wrong = RedisSettings(url=url, username=USER, password=SecretStr("not-the-pass-41"))
    with pytest.raises(ConfigError, match="TIDINGS_REDIS_PASSWORD") as raised:
        await check_credentials(wrong)
    assert "not-the-pass-41" not in str(raised.value)
    with pytest.raises(ConfigError, match="TIDINGS_REDIS_USERNAME"):
        await check_credentials(RedisSettings(url=url))


def _gateway_env(stack: StackHandle, redis_port: int, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        {
            "TIDINGS_TEMPORAL_ADDRESS": stack.endpoints.temporal_address,
            "TIDINGS_KAFKA_BOOTSTRAP_SERVERS": stack.endpoints.kafka_bootstrap,
            "TIDINGS_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "TIDINGS_REDIS_USERNAME": USER,
            "TIDINGS_REDIS_PASSWORD": password,
            "TIDINGS_LOG_FORMAT": "text",
        }
    )
    return env


def test_gateway_with_a_wrong_password_stops_at_start(stack: StackHandle, acl_redis: int) -> None:
    gateway = subprocess.Popen(
        [sys.executable, "-m", "cli", "gateway", "--port", str(free_port())],
        cwd=ROOT,
        env=_gateway_env(stack, acl_redis, "wrong-pass-9c2d"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = gateway.communicate(timeout=60)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(5)
    assert gateway.returncode == 2, output
    assert "Redis refused the credentials" in output
    assert "TIDINGS_REDIS_PASSWORD" in output
    assert "wrong-pass-9c2d" not in output


async def test_gateway_ready_with_the_acl_user(stack: StackHandle, acl_redis: int) -> None:
    port = free_port()
    gateway = subprocess.Popen(  # noqa: ASYNC220 (started once; waited on below with a deadline)
        [sys.executable, "-m", "cli", "gateway", "--port", str(port)],
        cwd=ROOT,
        env=_gateway_env(stack, acl_redis, PASSWORD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=3) as http:

            async def ready() -> bool:
                assert gateway.poll() is None, "the gateway exited"
                try:
                    response = await http.get("/readyz")
                except httpx.HTTPError:
                    return False
                # The other checks (pipelines: no worker here) may still be down.
                return bool(response.json()["checks"]["redis"] == "ok")

            await wait_for(ready, 30, "the gateway ready, Redis reached as the ACL user")
    finally:
        gateway.terminate()
        gateway.wait(20)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    folder = tmp_path_factory.mktemp("redis-tls")
    ca = TestCA(folder)
    server = ca.issue("redis.test", server=True)
    port = free_port()
    proc = _start(
        folder,
        [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(server.cert),
            "--tls-key-file",
            str(server.key),
            "--tls-ca-cert-file",
            str(ca.cert),
            "--tls-auth-clients",
            "no",
        ],
        None,
    )
    try:
        yield port, ca.cert
    finally:
        stop_process(proc)


async def test_rediss_with_a_ca_file(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    settings = RedisSettings(url=SecretStr(f"rediss://127.0.0.1:{port}/0"), tls_ca_file=ca)

    async def answers() -> bool:
        client = connect_redis(settings, timeout=1.0)
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False  # still starting
        finally:
            await client.aclose()

    await wait_for(answers, 10, "redis answering over TLS")
    await check_credentials(settings)
    # Without the CA the server's certificate is not trusted: a clear error.
    untrusted = RedisSettings(url=SecretStr(f"rediss://127.0.0.1:{port}/0"))
    with pytest.raises(ConfigError, match="TIDINGS_REDIS_TLS_CA_FILE"):
        await check_credentials(untrusted)
