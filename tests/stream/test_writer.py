"""The frame writer, as pure logic: held writes during the tail's slice and
direct writes outside it, through one object. Sockets are in test_slow.py."""

from __future__ import annotations

import pytest

from gateway.stream.cork import Cork
from gateway.stream.writer import HOLD_MAX_BYTES, FrameWriter

pytestmark = pytest.mark.unit


class Sink:
    def __init__(self, writable: bool = True) -> None:
        self.writable = writable
        self.calls: list[list[bytes]] = []

    def write(self, wire: bytes) -> bool:
        return self.write_many([wire])

    def write_many(self, wires: list[bytes]) -> bool:
        self.calls.append(list(wires))
        return True

    def write_if_writable(self, wires: list[bytes]) -> bool:
        return self.writable and self.write_many(wires)

    async def drained(self) -> None:
        raise AssertionError("not used")

    def close_now(self, wire: bytes, code: int, reason: str, linger: float) -> bool:
        raise AssertionError("not used")


def test_outside_a_slice_each_frame_is_written_at_once() -> None:
    sink = Sink()
    writer = FrameWriter(sink, Cork())
    assert writer.write(b"a") and writer.write(b"b")
    assert sink.calls == [[b"a"], [b"b"]] and writer.held == []


def test_inside_a_slice_frames_are_held_and_written_together_at_its_end() -> None:
    sink, cork = Sink(), Cork()
    one, two = FrameWriter(sink, cork), FrameWriter(sink, cork)
    cork.open = True
    assert one.write(b"a") and two.write(b"x") and one.write(b"b")
    assert sink.calls == []
    cork.flush()
    assert sink.calls == [[b"a", b"b"], [b"x"]]  # one call per writer, in order
    assert not cork.open and one.held == [] and two.held == []


def test_a_transport_buffers_worth_is_written_without_waiting_for_the_slice() -> None:
    sink, cork = Sink(), Cork()
    writer = FrameWriter(sink, cork)
    cork.open = True
    big = b"x" * (HOLD_MAX_BYTES // 2)
    writer.write(big)
    assert sink.calls == []
    writer.write(big)
    assert sink.calls == [[big, big]] and writer.held == []
    cork.flush()  # the cork still knows the writer: nothing written twice
    assert sink.calls == [[big, big]]


def test_a_full_transport_takes_nothing() -> None:
    sink, cork = Sink(writable=False), Cork()
    writer = FrameWriter(sink, cork)
    assert not writer.write(b"a") and not writer.write_now([b"a", b"b"])
    cork.open = True
    assert not writer.write(b"a") and writer.held == []
    cork.flush()
    assert sink.calls == []


def test_dropped_frames_never_go_out() -> None:
    sink, cork = Sink(), Cork()
    writer = FrameWriter(sink, cork)
    cork.open = True
    writer.write(b"a")
    writer.drop()
    cork.flush()
    assert sink.calls == []
