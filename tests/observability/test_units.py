"""The pieces without services: lag contract, reader, quota, token buffer, logs."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from typing import Any

import pytest
from pydantic import SecretStr

from activities.coalesce import CoalescePolicy, TokenBuffer
from activities.quota import TenantQuota
from tidings.lag import LagReader, encode, lag_key, tenant_lag
from tidings.observability import (
    JsonFormatter,
    RedactingFilter,
    bind_log_context,
    secrets_of,
    span_from_headers,
    start_span,
    trace_headers,
)
from tidings.settings import ModelSettings, RedisSettings, Settings, TenantSettings

pytestmark = pytest.mark.unit


def test_lag_is_the_largest_fresh_field() -> None:
    fields = {
        b"gw-1:8000": encode(120, 10_000).encode(),
        b"gw-2:8000": encode(40, 10_000).encode(),
        b"gw-dead:8000": encode(9_999, 1_000).encode(),  # stale: that gateway stopped
        b"junk": b"not a value",
    }
    assert tenant_lag(fields, now_ms=12_000, stale_ms=5_000) == 120
    assert tenant_lag({}, now_ms=0) == 0
    assert lag_key("tidings", "acme") == "tidings:lag:tidings.events.acme"


class FakeRedis:
    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.calls = 0
        self.fail = False

    async def hgetall(self, name: str) -> dict[str, str]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("down")
        return dict(self.fields)


async def test_reader_caches_refreshes_in_the_background_and_fails_open() -> None:
    from tidings.lag import now_ms

    redis = FakeRedis()
    now = [0.0]
    reader = LagReader(redis, "p", refresh_seconds=1.0, clock=lambda: now[0])
    redis.fields["gw"] = encode(500, now_ms())
    assert await reader.lag("t") == 500  # the first call waits for a value
    redis.fields["gw"] = encode(10, now_ms())
    assert await reader.lag("t") == 500 and redis.calls == 1  # cached within a second
    now[0] = 2.0
    assert await reader.lag("t") == 500  # stale: answers at once, refreshes behind
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert reader.cached("t") == 10
    redis.fail, now[0] = True, 4.0
    await reader.lag("t")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert reader.cached("t") == 10  # Redis down: the last value, no exception
    await reader.close()


async def test_quota_lets_a_burst_through_then_paces() -> None:
    quota = TenantQuota(200, burst=5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waits = [await quota.acquire("a") for _ in range(25)]
    elapsed = loop.time() - started
    # The burst is free; past it the pace holds overall (a late wake-up
    # credits the next event, so not every one of them has to wait).
    assert waits[:5] == [0.0] * 5 and waits[5] > 0
    assert elapsed >= 20 / 200 * 0.9
    assert await quota.acquire("b") == 0.0  # another tenant has its own bucket


def test_token_buffer_is_full_by_bytes() -> None:
    buffer = TokenBuffer(CoalescePolicy(lag_threshold=10, max_ms=10_000, max_bytes=8))
    buffer.add("abcd")
    assert not buffer.full
    buffer.add("efgh")
    assert buffer.full
    assert buffer.take() == ("abcdefgh", 2) and buffer.parts == []
    assert CoalescePolicy(lag_threshold=10).lag_release == 5


def _settings() -> Settings:
    return Settings(
        tenants=TenantSettings(api_keys={"sk-live-abcdef123456": "acme"}),
        model=ModelSettings(api_key=SecretStr("model-key-xyz789")),
        redis=RedisSettings(url=SecretStr("redis://:hunter2pass@127.0.0.1:6379/0")),
    )


def test_json_lines_carry_context_and_never_a_secret() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(secrets_of(_settings())))
    logger = logging.getLogger("tidings.test.obs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def log_some() -> None:
        bind_log_context(run_id="acme-r1", tenant="acme")
        with start_span("unit"):
            logger.info("key %s model %s", "sk-live-abcdef123456", "model-key-xyz789")
        logger.warning("url redis://:hunter2pass@h/0 auth Bearer abc.def ?access_token=zz1")
        try:
            raise RuntimeError("failed with sk-live-abcdef123456")
        except RuntimeError:
            logger.exception("boom")

    try:
        # A copied context: the bound run id must not follow later tests.
        contextvars.copy_context().run(log_some)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in ("sk-live-abcdef123456", "model-key-xyz789", "hunter2pass", "abc.def", "zz1"):
        assert secret not in text
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines()]
    assert [line["level"] for line in lines] == ["INFO", "WARNING", "ERROR"]
    first = lines[0]
    assert first["run_id"] == "acme-r1" and first["tenant"] == "acme"
    assert first["logger"] == "tidings.test.obs" and first["ts"].endswith("Z")
    assert "[redacted]" in first["message"]
    assert "RuntimeError" in lines[2]["exc"]


def test_trace_context_round_trips_through_kafka_headers() -> None:
    with start_span("produce") as parent:
        headers = trace_headers()
    assert dict(headers).keys() >= {"traceparent"}
    with span_from_headers(headers, "consume") as child:
        assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    with span_from_headers(None, "orphan") as orphan:
        assert orphan.get_span_context().trace_id != parent.get_span_context().trace_id
