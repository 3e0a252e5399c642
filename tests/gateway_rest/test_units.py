"""Pure pieces of the gateway: partitioning, cursors, auth, redaction, error text."""

from __future__ import annotations

import logging

import pytest

from gateway.cursor import Cursor, CursorError
from gateway.rest import run_ops, runs
from gateway.rest.auth import tenant_from_key
from gateway.rest.errors import describe_validation
from gateway.server.redaction import RedactSecrets, redact
from gateway.stream.tokens import TokenSigner
from tidings.errors import BadRequest
from tidings.kafka_log import partition_for
from tidings.settings import Settings, TenantSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    # From Apache Kafka's UtilsTest: the Java client's murmur2 of these keys.
    [("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536)],
)
@pytest.mark.parametrize("partitions", [1, 3, 6, 7])
def test_partition_matches_the_java_and_aiokafka_default_partitioner(
    key: str, java_murmur2: int, partitions: int
) -> None:
    # Java: Utils.toPositive(Utils.murmur2(key)) % numPartitions
    expected = (java_murmur2 & 0x7FFFFFFF) % partitions
    assert partition_for(key, list(range(partitions))) == expected
    assert partition_for(key, list(reversed(range(partitions)))) == expected


@pytest.mark.parametrize("raw", ["0:0", "5:123456789012", "999999:9223372036854775807"])
def test_cursor_round_trips(raw: str) -> None:
    assert str(Cursor.decode(raw)) == raw


@pytest.mark.parametrize(
    "raw",
    [
        *["", "1", ":1", "1:", "a:1", "1:-1", "1:2:3", " 1:2", "1:2 ", "1:2\n"],
        # Other scripts' digits, a partition past 6 digits, an offset past 19.
        *["\u0661:\u0662", "1234567:1", "1:" + "9" * 20],
    ],
)
def test_malformed_cursors_are_bad_requests(raw: str) -> None:
    """The one cursor (REST and stream alike) refuses them; REST answers 400."""
    with pytest.raises(CursorError):
        Cursor.decode(raw)
    with pytest.raises(BadRequest, match="invalid cursor"):
        runs._cursor(raw)


def test_tenant_from_key() -> None:
    settings = Settings(
        tenants=TenantSettings(api_keys={"key-for-acme-1": "acme", "key-for-beta-1": "beta"})
    )
    assert tenant_from_key(settings, "key-for-acme-1") == "acme"
    assert tenant_from_key(settings, "key-for-beta-1") == "beta"
    for wrong in (None, "", "key-for-acme-", "key-for-acme-12", "KEY-FOR-ACME-1", "\udcff"):
        assert tenant_from_key(settings, wrong) is None


def test_redaction_hides_credentials_in_query_strings() -> None:
    line = '127.0.0.1 - "WebSocket /v1/runs/x/stream?access_token=dev-key-demo&from=start"'
    assert redact(line) == (
        '127.0.0.1 - "WebSocket /v1/runs/x/stream?access_token=[redacted]&from=start"'
    )
    assert redact("/stream?resume=abc.def") == "/stream?resume=[redacted]"
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:1", "/v1/runs/x/stream?access_token=secret-key-1"), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert "secret-key-1" not in record.getMessage()


@pytest.mark.parametrize("ttl", [60, 86_400])
def test_redaction_recognises_a_resume_token_under_any_name(ttl: int) -> None:
    token, _ = TokenSigner("s" * 32, ttl_seconds=ttl).issue("demo", "demo-1a2b", "sid-xyz")
    lines = [
        f'"GET /v1/runs/demo-1a2b/events?after={token}&limit=5 HTTP/1.1" 400',
        f'"WebSocket /v1/runs/demo-1a2b/stream?from={token}" 4400',
        f'"WebSocket /v1/runs/demo-1a2b/stream?resume_token={token}" [accepted]',
        f"/stream?x_resume_token={token[:20]}",  # a truncated token, by its name
        f"closing: bad cursor {token!r} sent by the client",
        f"/stream?from={token.replace('.', '%2E')}",
    ]
    for line in lines:
        cleaned = redact(line)
        assert "[redacted]" in cleaned, cleaned
        assert token not in cleaned and token.split(".")[1] not in cleaned, cleaned
        assert token[:20] not in cleaned, cleaned
    # Ordinary cursors and parameters stay readable.
    kept = "/v1/runs/demo-1a2b/events?after=0:42&limit=5&from=start&tokens=3"
    assert redact(kept) == kept


def test_validation_messages_name_fields_never_values() -> None:
    errors = [
        {"loc": ("body", "input"), "msg": "Input should be a valid dictionary", "input": "s3cr3t"},
        {"loc": ("query", "limit"), "msg": "Input should be greater than 0", "input": -1},
    ]
    text = describe_validation(errors)
    assert text == (
        "input: Input should be a valid dictionary; query.limit: Input should be greater than 0"
    )


@pytest.mark.parametrize("token_bytes", [1, 2, 3])  # every length of a final base64 group
def test_page_cursors_accept_only_the_spelling_handed_out(token_bytes: int) -> None:
    key, tenant, query = b"k" * 32, "demo", "TidingsTenant = 'demo'"
    page = run_ops._encode_page(b"t" * token_bytes, key, tenant, query)
    assert page is not None
    assert run_ops._decode_page(page, key, tenant, query) == b"t" * token_bytes
    variants = [page + ("=" * (-len(page) % 4) or "====")]
    if len(page) % 4:  # a final partial group has spare low bits base64 ignores
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        spare = {2: 0b1111, 3: 0b11}[len(page) % 4]
        variants.append(page[:-1] + alphabet[alphabet.index(page[-1]) ^ spare])
    for variant in variants:
        assert variant != page
        with pytest.raises(BadRequest):
            run_ops._decode_page(variant, key, tenant, query)
