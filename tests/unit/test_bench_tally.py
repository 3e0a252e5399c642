"""O1's per-socket tally (bench/tally.py) tells a socket that got ``end`` short
of its tokens (a delivery fault) from one still open and behind, and applies
the discard rule to a retried step's tokens, on the frames as the gateway
writes them."""

from __future__ import annotations

from typing import Any

import pytest

from bench.tally import Tally, summarise
from tidings.events import Event, EventType

pytestmark = pytest.mark.unit

START = 10_000_000_000
PERIOD = 200_000_000  # 5 tokens/s


def token(n: int, attempt: int = 1, late_ns: int = 0) -> bytes:
    event = Event(
        type=EventType.STEP_TOKEN, tenant="t", run_id="t-r", step="emit", attempt=attempt,
        seq=n + 1, data={"t_ns": START + n * PERIOD + late_ns, "n": n},
    )  # fmt: skip
    return b'{"kind":"event","cursor":"0:%d","event":%s}' % (n, event.to_bytes())


END = b'{"kind":"end","status":"COMPLETED"}'


def fed(*frames: bytes, at: int = START) -> Tally:
    tally = Tally()
    tally.schedule(START, 5)
    for i, frame in enumerate(frames):
        tally.see(frame, 0, len(frame), at + i)
    return tally


def socket(tally: Tally, *, closed: bool, code: int | None, at_cut: int) -> dict[str, Any]:
    return {**tally.report(), "closed": closed, "close_code": code, "kept_at_cut": at_cut}


def test_a_whole_stream_then_end_is_complete_and_not_early() -> None:
    tally = fed(*(token(n) for n in range(4)), END)
    got = summarise([socket(tally, closed=True, code=1000, at_cut=4)], 4, START, START)
    assert got["complete_sockets"] == 1 and got["ended_sockets"] == 1
    assert got["ended_early"] == 0 and got["out_of_order"] == 0
    assert got["close_codes"] == {"1000": 1}


def test_end_before_the_last_token_is_counted_as_ended_early() -> None:
    tally = fed(token(0), token(1), END, token(2), token(3))
    assert tally.kept_at_end == 2 and tally.after_end == 2
    got = summarise([socket(tally, closed=True, code=1000, at_cut=4)], 4, START, START)
    assert got["ended_early"] == 1 and got["tokens_after_end"] == 2


def test_a_normal_close_short_of_tokens_without_end_is_ended_early() -> None:
    tally = fed(token(0), token(1))
    got = summarise([socket(tally, closed=True, code=1000, at_cut=2)], 4, START, START)
    assert got["ended_early"] == 1


def test_an_open_socket_short_of_tokens_is_behind_not_early() -> None:
    behind = fed(token(0), token(1), token(2))
    whole = fed(*(token(n) for n in range(4)), END)
    got = summarise(
        [
            socket(behind, closed=False, code=None, at_cut=1),
            socket(whole, closed=True, code=1000, at_cut=3),
        ],
        4,
        START,
        START,
    )
    assert got["ended_early"] == 0 and got["complete_sockets"] == 1
    assert got["open_at_deadline"] == 1 and got["open_short"] == 1
    assert got["open_short_tokens_max"] == 1
    assert got["behind_at_cut"] == 2 and got["behind_at_cut_max"] == 3
    assert got["behind_at_cut_tokens"] == 4


def test_a_retried_attempt_replaces_the_earlier_tokens() -> None:
    tally = fed(token(0), token(1), token(0, 2), token(1, 2), token(2, 2), token(3, 2), END)
    assert tally.kept == 4 and tally.discarded == 2 and tally.disorder == 0
    got = summarise([socket(tally, closed=True, code=1000, at_cut=4)], 4, START, START)
    assert got["complete_sockets"] == 1 and got["retried_sockets"] == 1
    assert got["ended_early"] == 0 and got["discarded_tokens"] == 2


def test_a_gap_or_a_repeat_is_out_of_order_and_not_complete() -> None:
    tally = fed(token(0), token(2), token(2), token(3))
    assert tally.disorder == 2
    got = summarise([socket(tally, closed=False, code=None, at_cut=4)], 4, START, START)
    assert got["complete_sockets"] == 0 and got["out_of_order"] == 2


def test_how_late_the_worker_emitted_is_measured_against_the_schedule() -> None:
    tally = fed(token(0), token(1, late_ns=30_000_000), token(2, late_ns=5_000_000))
    assert tally.emit_late_ns == 30_000_000
    tally_end = fed(token(0), END, at=START + 4_000_000_000)
    got = summarise([socket(tally_end, closed=True, code=1000, at_cut=1)], 1, START, START)
    assert got["last_end_s"] == 4.0 and got["emit_late_max_ms"] == 0
