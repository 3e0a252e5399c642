"""The subscriber's state machine (catching up, live, ending, done, failed) and
its send queue, as pure logic: no socket, no Kafka. The real sockets are in
test_resume.py, test_run_end.py and test_slow.py."""

from __future__ import annotations

import json

import pytest

from gateway.stream.errors import StreamClosed, too_slow
from gateway.stream.frames import Frame, event_frame
from gateway.stream.subscriber import IllegalTransition, State, Subscriber
from gateway.stream.watermarks import Watermarks
from tidings.errors import CloseCode
from tidings.events import Event

pytestmark = pytest.mark.unit


class Sink:
    """A transport with room for ``room`` frames; records what it is handed."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.room = room
        self.wires: list[bytes] = []

    @property
    def writable(self) -> bool:
        return len(self.wires) < self.room

    def write(self, wire: bytes) -> bool:
        return self.write_many([wire])

    def write_many(self, wires: list[bytes]) -> bool:
        self.wires.extend(wires)
        return True

    def write_if_writable(self, wires: list[bytes]) -> bool:
        return self.writable and self.write_many(wires)

    async def drained(self) -> None:  # never waited on here
        raise AssertionError("not used")

    def close_now(self, wire: bytes, code: int, reason: str, linger: float) -> bool:
        raise AssertionError("not used")

    def kinds(self) -> list[str]:
        out = []
        for wire in self.wires:
            # Server frames are unmasked text; a small payload has a 2 or 4 byte header.
            payload = wire[4:] if wire[1] == 126 else wire[2:]
            raw = json.loads(payload)
            out.append(raw["cursor"] if raw["kind"] == "event" else raw["kind"])
        return out


def frame(offset: int, kind: str = "step.token") -> Frame:
    return event_frame(
        0, offset, Event(kind, "acme", "acme-1", "s", 1, offset).to_bytes(), "acme-1"
    )


def subscriber(sink: Sink | None = None, **kwargs: object) -> tuple[Subscriber, list[State]]:
    """A subscriber, and the states it was in each time it told its owner it is over."""
    options: dict[str, object] = {"max_events": 10, "max_bytes": 1 << 20} | kwargs
    sub = Subscriber("acme", "acme-1", 0, sink=sink, **options)  # type: ignore[arg-type]
    over: list[State] = []
    sub.on_over = lambda: over.append(sub.state)
    return sub, over


def test_the_whole_way_catching_up_live_ending_done() -> None:
    sink = Sink()
    sub, over = subscriber(sink)
    assert sub.state is State.CATCHING_UP and not sub.live and not sub.ended
    sub.go_live()
    assert sub.state is State.LIVE and sub.live
    assert sub.offer(frame(0, "run.completed"))
    # The end frame went straight out too: ENDING was passed on the way to DONE.
    assert sub.state is State.DONE and sub.done and sub.over and sub.ended
    assert sink.kinds() == ["caught_up", "0:0", "end"]
    assert over == [State.DONE]


def test_ending_lasts_while_the_end_frame_is_queued() -> None:
    sink = Sink(room=1)
    sub, over = subscriber(sink)
    sub.go_live()  # caught_up fills the transport
    assert not sub.offer(frame(0, "run.failed"))
    assert sub.state is State.ENDING and sub.ended and not sub.over and sub.depth == 2
    assert not sub.offer(frame(1))  # nothing after the end
    sub.pop()
    last = sub.pop()
    sub.sent(last)
    assert sub.state is State.DONE and over == [State.DONE]


@pytest.mark.parametrize(
    ("path", "to"),
    [
        ([], State.DONE),  # the end frame must be queued first
        ([State.LIVE], State.CATCHING_UP),
        ([State.LIVE], State.DONE),
        ([State.LIVE, State.ENDING], State.LIVE),
        ([State.LIVE, State.ENDING, State.DONE], State.FAILED),
        ([State.LIVE, State.ENDING, State.DONE], State.LIVE),
        ([State.FAILED], State.LIVE),
        ([State.FAILED], State.FAILED),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(path: list[State], to: State) -> None:
    sub, over = subscriber()
    for state in path:
        sub.move(state)
    before, told = sub.state, list(over)
    with pytest.raises(IllegalTransition):
        sub.move(to)
    assert sub.state is before and over == told


def test_failing_frees_the_queue_and_the_buffer_from_any_open_state() -> None:
    marks = Watermarks(1 << 20, 1 << 19)
    sub, over = subscriber(watermarks=marks)
    sub.offer(frame(0))  # buffered while catching up
    assert marks.bytes > 0
    sub.fail(too_slow())
    assert sub.state is State.FAILED and over == [State.FAILED] and marks.bytes == 0
    sub.fail(StreamClosed(CloseCode.NORMAL, "closed"))  # the first reason stays
    assert sub.failure is not None and sub.failure.code == CloseCode.TOO_SLOW
    assert over == [State.FAILED]

    sink = Sink(room=1)
    ending, over = subscriber(sink, watermarks=marks)
    ending.go_live()
    ending.offer(frame(0, "run.completed"))  # the end frame is queued
    assert ending.state is State.ENDING and marks.bytes > 0
    ending.fail(too_slow())
    assert ending.state is State.FAILED and ending.depth == 0 and marks.bytes == 0
    assert over == [State.FAILED]


def test_a_failure_after_done_is_the_close_reason_and_done_stays() -> None:
    sub, over = subscriber(Sink())
    sub.go_live()
    sub.offer(frame(0, "run.completed"))
    sub.fail(StreamClosed(CloseCode.GOING_AWAY, "gateway stopping"))
    assert sub.state is State.DONE and sub.done
    assert sub.failure is not None and sub.failure.code == CloseCode.GOING_AWAY
    assert over == [State.DONE]  # told once


async def test_a_failed_subscriber_sends_nothing_more() -> None:
    sink = Sink()
    sub, _ = subscriber(sink)
    sub.fail(too_slow())
    with pytest.raises(StreamClosed):
        await sub.put_paced(frame(0), 1.0)  # the catch-up stops with the failure
    assert not sub.offer(frame(1)) and sub.write_live([frame(1)]) == 0
    sub.go_live()
    sub.push_control('{"kind":"token","token":"t"}')
    assert sub.state is State.FAILED and sink.wires == [] and sub.depth == 0


def test_a_terminal_event_while_catching_up_ends_it_without_going_live() -> None:
    sink = Sink()
    sub, over = subscriber(sink)
    sub.offer(frame(0, "run.completed"))  # buffered
    assert sub.hand_over_now() == 1
    # As before: the end frame follows the run's last event at once, and
    # caught_up still closes the replay.
    assert sink.kinds() == ["0:0", "end", "caught_up"]
    assert sub.state is State.DONE and over == [State.DONE]


async def test_the_queue_keeps_order_through_partial_drains() -> None:
    sink = Sink(room=0)  # the transport is full: everything queues
    sub, _ = subscriber(sink, max_events=1000)
    sub.go_live()
    popped: list[int] = []
    offset = 0
    for burst in (100, 3, 150, 1, 70):  # pops of 80 leave it non-empty, then empty it
        for _ in range(burst):
            assert not sub.offer(frame(offset))
            offset += 1
        for _ in range(min(80, sub.depth)):
            await sub.readable()
            popped.append(sub.pop().offset)
    while sub.depth:
        popped.append(sub.pop().offset)
    assert popped == [-1, *range(offset)]  # caught_up, then every event once, in order
    assert sub.queued_bytes == 0 and sub.state is State.LIVE
