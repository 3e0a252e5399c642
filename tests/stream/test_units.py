"""Pure logic: tokens, cursors, frames and the subscriber's hand-over rules."""

from __future__ import annotations

import json

import pytest

from gateway.cursor import Cursor, CursorError
from gateway.stream.errors import StreamClosed
from gateway.stream.frames import event_frame, parse_ack
from gateway.stream.subscriber import Subscriber
from gateway.stream.tokens import TokenSigner
from tests.stream.drivers import next_item
from tidings.client import stream_url
from tidings.errors import CloseCode
from tidings.events import EnvelopeError, Event

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_round_trip_and_expiry() -> None:
    clock = Clock()
    signer = TokenSigner("s" * 32, ttl_seconds=600, clock=clock)
    token, claims = signer.issue("acme", "acme-1", "sid1")
    assert signer.verify(token) == claims
    assert not signer.due_for_refresh(claims)
    clock.now += 301
    assert signer.due_for_refresh(claims)
    clock.now += 300
    with pytest.raises(StreamClosed) as exc:
        signer.verify(token)
    assert exc.value.code == CloseCode.TOKEN_EXPIRED


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "x" + t,
        lambda t: t.replace(".", ""),
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "a" * 5000,
    ],
)
def test_forged_tokens_are_unauthorized(mangle: object) -> None:
    signer = TokenSigner("s" * 32, ttl_seconds=600)
    token, _ = signer.issue("acme", "acme-1", "sid1")
    with pytest.raises(StreamClosed) as exc:
        signer.verify(mangle(token))  # type: ignore[operator]
    assert exc.value.code == CloseCode.UNAUTHORIZED


def _flip_spare_bits(part: str) -> str:
    """The same bytes spelt differently: set the unused low bits of the last
    base64 character (the part's length is never a multiple of 4 here)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = {2: 0b1111, 3: 0b11}[len(part) % 4]
    last = alphabet.index(part[-1])
    return part[:-1] + alphabet[last | spare if last & spare == 0 else last & ~spare]


@pytest.mark.parametrize("which", ["claims", "signature"])
def test_non_canonical_token_text_is_unauthorized(which: str) -> None:
    # Base64 decoders ignore a final group's spare bits; a token whose text was
    # altered there decodes to the signed bytes but is not the token issued.
    signer = TokenSigner("s" * 32, ttl_seconds=600)
    for sid in ("sid1", "sid12", "sid123"):  # some claims length leaves spare bits
        token, _ = signer.issue("acme", "acme-1", sid)
        body, sig = token.split(".")
        part = body if which == "claims" else sig
        if len(part) % 4 in (2, 3):
            break
    if which == "claims":
        altered = f"{_flip_spare_bits(body)}.{sig}"
    else:
        altered = f"{body}.{_flip_spare_bits(sig)}"
    assert altered != token
    with pytest.raises(StreamClosed) as exc:
        signer.verify(altered)
    assert exc.value.code == CloseCode.UNAUTHORIZED
    # "=" padding is not the issued spelling either.
    with pytest.raises(StreamClosed):
        signer.verify(f"{body}.{sig}=" if len(sig) % 4 else f"{body}=.{sig}")


def test_rotation_accepts_previous_secret_and_signs_with_current() -> None:
    old = TokenSigner("old" * 11, ttl_seconds=600)
    token, claims = old.issue("acme", "acme-1", "sid1")
    rotated = TokenSigner("new" * 11, ["old" * 11], ttl_seconds=600)
    assert rotated.verify(token) == claims
    fresh, _ = rotated.issue("acme", "acme-1", "sid1")
    with pytest.raises(StreamClosed):
        old.verify(fresh)
    retired = TokenSigner("new" * 11, ttl_seconds=600)
    with pytest.raises(StreamClosed):
        retired.verify(token)


def test_cursor_encoding() -> None:
    cursor = Cursor(2, 12345)
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor(1, 5) < Cursor(1, 6)
    for bad in ["", "1", "1:", ":1", "a:1", "1:-1", "1:2:3", "\uff11:2", 5, None, "9" * 41]:
        with pytest.raises(CursorError):
            Cursor.decode(bad)


def test_event_frame_splices_the_envelope_bytes() -> None:
    event = Event("run.completed", "acme", "acme-1", None, 1, 0, {"ü": 1})
    raw = event.to_bytes()
    frame = event_frame(1, 7, raw, "acme-1")
    parsed = json.loads(frame.text)
    assert parsed == {"kind": "event", "cursor": "1:7", "event": event.to_dict()}
    assert raw.decode() in frame.text
    assert frame.end_status == "COMPLETED"
    with pytest.raises(EnvelopeError):
        event_frame(1, 7, b"not json", "acme-1")
    with pytest.raises(EnvelopeError):
        event_frame(1, 7, raw, "acme-2")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", CloseCode.BAD_FRAME),
        ('{"kind": "hello"}', CloseCode.BAD_FRAME),
        ('{"ack": 5}', CloseCode.BAD_FRAME),
        ('{"ack": "0:1", "x": 1}', CloseCode.BAD_FRAME),
        ("[]", CloseCode.BAD_FRAME),
    ],
)
def test_bad_client_frames(text: str, code: CloseCode) -> None:
    with pytest.raises(StreamClosed) as exc:
        parse_ack(text)
    assert exc.value.code == code


def test_ack_frame() -> None:
    assert parse_ack('{"ack": "0:42"}') == Cursor(0, 42)


def _frame(offset: int, run: str = "acme-1") -> object:
    event = Event("step.token", "acme", run, "s", 1, offset)
    return event_frame(0, offset, event.to_bytes(), run)


async def test_hand_over_drops_what_catch_up_already_queued() -> None:
    sub = Subscriber("acme", "acme-1", 0, max_events=100, max_bytes=1 << 20)
    sub.next_offset = 10
    sub.offer(_frame(12))  # type: ignore[arg-type]  # live, buffered while catching up
    sub.offer(_frame(13))  # type: ignore[arg-type]
    for offset in (10, 11, 12):
        await sub.put_paced(_frame(offset), 1.0)  # type: ignore[arg-type]
    pending = sub.take_pending()
    assert pending is not None
    for frame in pending:
        await sub.put_paced(frame, 1.0)
    assert sub.take_pending() == []
    sub.go_live()
    sub.offer(_frame(13))  # type: ignore[arg-type]  # a duplicate: dropped
    sub.offer(_frame(14))  # type: ignore[arg-type]
    offsets = []
    while sub.depth:
        offsets.append((await next_item(sub)).offset)
    assert offsets == [10, 11, 12, 13, -1, 14]  # -1: caught_up


async def test_full_queue_when_live_is_too_slow() -> None:
    sub = Subscriber("acme", "acme-1", 0, max_events=2, max_bytes=1 << 20)
    sub.go_live()
    for offset in range(3):
        sub.offer(_frame(offset))  # type: ignore[arg-type]
    assert sub.failure is not None and sub.failure.code == CloseCode.TOO_SLOW
    assert sub.depth == 0  # the queue is freed at once
    with pytest.raises(StreamClosed):
        await next_item(sub)


async def test_buffer_overflow_while_catching_up_forces_another_read() -> None:
    sub = Subscriber("acme", "acme-1", 0, max_events=2, max_bytes=1 << 20)
    for offset in range(3):
        sub.offer(_frame(offset))  # type: ignore[arg-type]
    assert sub.take_pending() is None
    assert sub.take_pending() == []


def test_stream_url() -> None:
    assert stream_url("http://h:1", "a-b") == "ws://h:1/v1/runs/a-b/stream"
    assert stream_url("https://h/base/", "a b") == "wss://h/base/v1/runs/a%20b/stream"
    with pytest.raises(ValueError):
        stream_url("ftp://h", "r")
