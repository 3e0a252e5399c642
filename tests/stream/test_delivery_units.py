"""Pure logic of the direct delivery path: frames on the wire, the direct sink
as the subscriber uses it, held writes, group-committed lookups and the run
directory's cache. The real sockets are in test_resume.py and test_slow.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.streams import StreamReader

from gateway.server.wire import wire_text
from gateway.server.ws_protocol import Flag, Inbox
from gateway.stream.batching import Batcher
from gateway.stream.cork import Cork
from gateway.stream.directory import CachedRunDirectory, RunInfo
from gateway.stream.errors import too_slow
from gateway.stream.frames import Frame, event_frame
from gateway.stream.run_index import IndexedRun, RunIndex
from gateway.stream.subscriber import Subscriber
from tests.support import free_port, wait_for
from tidings.events import EnvelopeError, Event

pytestmark = pytest.mark.unit


def parse_server_frame(data: bytes) -> WsFrame:
    """Read ``data`` the way a client does (websockets' own parser, unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=False)
    try:
        while True:
            next(parser)
    except StopIteration as done:
        frame: WsFrame = done.value
        return frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_wire_text_is_a_frame_any_client_reads(size: int) -> None:
    payload = ("é" * (size // 2) + "a" * (size % 2)).encode()
    parsed = parse_server_frame(wire_text(payload))
    assert parsed.opcode is Opcode.TEXT and parsed.fin
    assert parsed.data == payload


def test_event_frame_wire_and_text_agree() -> None:
    event = Event("run.completed", "acme", "acme-1", None, 1, 0, {"ü": 1})
    frame = event_frame(1, 7, event.to_bytes(), "acme-1")
    assert parse_server_frame(frame.wire).data.decode() == frame.text
    assert json.loads(frame.text)["event"] == event.to_dict()
    assert frame.end_status == "COMPLETED"


@pytest.mark.parametrize(
    "value",
    [
        b"[1, 2]",
        b'{"schema": 1, "run_id": "acme-1"}',  # no type
        b'{"schema": 9, "run_id": "acme-1", "type": "x"}',
        '{"schema": 1, "run_id": "acme-1", "type": "x"}'.encode("utf-16"),
        b'{"schema": 1, "run_id": "acme-1", "type": "\xff"}',
    ],
)
def test_event_frame_refuses_what_cannot_be_spliced(value: bytes) -> None:
    with pytest.raises(EnvelopeError):
        event_frame(0, 0, value, "acme-1")


class FakeSink:
    """Records writes; ``room`` frames fit before the transport is full."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.room = room
        self.wires: list[bytes] = []
        self.calls = 0
        self.closed = False

    @property
    def writable(self) -> bool:
        return not self.closed and len(self.wires) < self.room

    def write(self, wire: bytes) -> bool:
        return self.write_many([wire])

    def write_many(self, wires: list[bytes]) -> bool:
        if self.closed:
            return False
        self.calls += 1
        self.wires.extend(wires)
        return True

    def write_if_writable(self, wires: list[bytes]) -> bool:
        return self.writable and self.write_many(wires)

    async def drained(self) -> None:
        await wait_for(lambda: self.writable or self.closed, 5, "the sink drains")


def frame(offset: int, run: str = "acme-1", kind: str = "step.token") -> Frame:
    return event_frame(0, offset, Event(kind, "acme", run, "s", 1, offset).to_bytes(), run)


def kinds(sink: FakeSink) -> list[str]:
    out = []
    for wire in sink.wires:
        raw = json.loads(parse_server_frame(wire).data)
        out.append(raw["cursor"] if raw["kind"] == "event" else raw["kind"])
    return out


def test_a_live_socket_with_room_gets_frames_straight_away() -> None:
    sink = FakeSink()
    sub = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, sink=sink)
    sub.push_control('{"kind":"token","token":"t"}')
    assert sub.hand_over_now() == 0
    assert all(sub.offer(frame(i)) for i in range(3))
    assert kinds(sink) == ["token", "caught_up", "0:0", "0:1", "0:2"]
    assert sub.depth == 0 and sub.sent_max == 2 and sub.next_offset == 3


def test_a_full_transport_queues_in_order_and_a_full_queue_cuts() -> None:
    sink = FakeSink(room=2)
    sub = Subscriber("acme", "acme-1", 0, max_events=3, max_bytes=1 << 20, sink=sink)
    sub.go_live()  # caught_up: one of the two that fit
    assert sub.offer(frame(0))
    assert not sub.offer(frame(1)) and sub.depth == 1  # the transport is full: queued
    sink.room = 100
    assert not sub.offer(frame(2)) and sub.depth == 2  # behind the queue, never around it
    sub.offer(frame(3))
    assert sub.failure is None
    sub.offer(frame(4))  # the fourth queued frame does not fit
    assert sub.failure is not None and sub.depth == 0


def test_a_terminal_event_sent_directly_ends_the_socket() -> None:
    sink = FakeSink()
    over: list[bool] = []
    sub = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, sink=sink)
    sub.on_over = lambda: over.append(True)
    sub.go_live()
    sub.offer(frame(0, kind="run.completed"))
    assert kinds(sink) == ["caught_up", "0:0", "end"]
    assert sub.done and over == [True]
    assert not sub.offer(frame(1))  # nothing after the end


def test_a_finished_run_ends_once_its_last_records_are_out() -> None:
    sink = FakeSink()
    sub = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, sink=sink)
    sub.finish("TERMINATED")  # learnt while catching up: ends after the hand-over
    assert not sub.done
    sub.offer(frame(0))  # buffered while catching up
    assert sub.hand_over_now() == 1
    assert kinds(sink) == ["0:0", "caught_up", "end"] and sub.done


def test_hand_over_now_declines_what_does_not_fit() -> None:
    sub = Subscriber("acme", "acme-1", 0, max_events=2, max_bytes=1 << 20, sink=FakeSink())
    for i in range(2):
        sub.offer(frame(i))
    assert sub.hand_over_now() is None  # the catch-up task will pace it
    assert not sub.live


def live_sub(sink: FakeSink, cork: Cork | None = None) -> Subscriber:
    sub = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, sink=sink, cork=cork)
    sub.go_live()
    return sub


def test_write_live_sends_a_fetch_in_one_write() -> None:
    sink = FakeSink()
    sub = live_sub(sink)
    assert sub.write_live([frame(i) for i in range(4)]) == 4
    assert kinds(sink) == ["caught_up", "0:0", "0:1", "0:2", "0:3"]
    assert sink.calls == 2  # caught_up, then the four frames together
    assert sub.sent_max == 3 and sub.next_offset == 4 and sub.depth == 0


def test_write_live_stops_where_offer_would_do_something_else() -> None:
    # A repeat (below next_offset): the tail offers it, which drops it.
    sink = FakeSink()
    sub = live_sub(sink)
    sub.next_offset = 2
    assert sub.write_live([frame(1), frame(2)]) == 0
    assert kinds(sink) == ["caught_up"]
    # Catching up: the tail's offer buffers instead.
    catching_up = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, sink=sink)
    assert catching_up.write_live([frame(0)]) == 0
    # A transport past its high-water mark: nothing written, offer queues.
    full = FakeSink(room=1)
    sub = live_sub(full)  # caught_up fills it
    assert sub.write_live([frame(0), frame(1)]) == 0
    assert not sub.offer(frame(0)) and sub.depth == 1
    # Something queued: never around it.
    full.room = 100
    assert sub.write_live([frame(1)]) == 0
    # Failed: nothing.
    failed = live_sub(FakeSink())
    failed.fail(too_slow())
    assert failed.write_live([frame(0)]) == 0


def test_write_live_ends_after_a_terminal_event() -> None:
    sink = FakeSink()
    over: list[bool] = []
    sub = live_sub(sink)
    sub.on_over = lambda: over.append(True)
    frames = [frame(0), frame(1, kind="run.failed"), frame(2)]
    assert sub.write_live(frames) == 2
    assert kinds(sink) == ["caught_up", "0:0", "0:1", "end"]
    assert sub.done and over == [True]
    assert not sub.offer(frames[2])  # the tail's offer of the rest is refused


def test_write_live_writes_a_transport_buffer_at_a_time() -> None:
    # Frames of ~300 bytes: a 64 KiB chunk holds a few hundred. The sink has
    # room for the first chunk only, so the rest is left for offer to queue.
    sink = FakeSink(room=2)
    sub = live_sub(sink)
    frames = [frame(i) for i in range(600)]
    done = sub.write_live(frames)
    assert 0 < done < 600 and sink.calls == 2
    assert sum(len(w) for w in sink.wires[1:]) >= 64 * 1024 - len(frames[0].wire)
    assert sub.next_offset == done and sub.sent_max == done - 1


def test_write_live_leaves_frames_held_in_the_slice_first() -> None:
    sink = FakeSink()
    cork = Cork()
    sub = live_sub(sink, cork=cork)
    cork.open = True
    assert sub.offer(frame(0))  # held until the slice ends
    assert sub.write_live([frame(1)]) == 0  # would overtake it
    assert sub.offer(frame(1))
    cork.flush()
    assert kinds(sink) == ["caught_up", "0:0", "0:1"]


def test_held_writes_go_out_together_in_order() -> None:
    sink = FakeSink()
    cork = Cork()
    sub = Subscriber("acme", "acme-1", 0, max_events=10, max_bytes=1 << 20, sink=sink, cork=cork)
    sub.go_live()
    cork.open = True
    for i in range(3):
        assert sub.offer(frame(i))
    assert sink.wires[1:] == []  # held until the slice ends
    cork.flush()
    assert kinds(sink) == ["caught_up", "0:0", "0:1", "0:2"]
    assert sink.calls == 2  # caught_up before the slice, then one write for the three
    cork.open = True
    sub.offer(frame(3))
    sub.fail(too_slow())
    cork.flush()
    assert kinds(sink)[-1] == "0:2"  # a failed socket's held frames are dropped


async def test_batcher_joins_callers_while_a_request_is_out() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(keys: list[int]) -> dict[int, int]:
        sent.append(keys)
        await release.wait()
        return {k: k * 10 for k in keys}

    batcher: Batcher[int, int] = Batcher(send, max_in_flight=1, max_batch=3)
    first = asyncio.ensure_future(batcher.ask(1))
    await wait_for(lambda: len(sent) == 1, 5, "the first request")
    rest = [asyncio.ensure_future(batcher.ask(k)) for k in (2, 3, 4, 5, 2)]
    await asyncio.sleep(0)  # a turn, not a synchronisation: nothing may be sent
    assert sent == [[1]]
    release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 20]
    assert sent == [[1], [2, 3, 4], [5, 2]]
    await batcher.close()


async def test_batcher_gives_every_caller_the_request_error() -> None:
    async def send(keys: list[str]) -> dict[str, str]:
        raise ConnectionError("down")

    batcher: Batcher[str, str] = Batcher(send)
    results = await asyncio.gather(batcher.ask("a"), batcher.ask("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


class Directory:
    def __init__(self) -> None:
        self.state = "RUNNING"
        self.asked: list[str] = []

    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        self.asked.append(run_id)
        await asyncio.sleep(0)
        if run_id == "acme-missing":
            return None
        return RunInfo(run_id, tenant, self.state, datetime(2026, 1, 1, tzinfo=UTC))


async def test_run_directory_caches_and_marks_a_running_state_stale() -> None:
    inner = Directory()
    runs = CachedRunDirectory(inner, settle_seconds=0.01)
    first, second = await asyncio.gather(
        runs.lookup("acme", "acme-1"), runs.lookup("acme", "acme-1")
    )
    assert inner.asked == ["acme-1"]  # one question for a burst
    assert first is not None and not first.cached and second is not None
    again = await runs.lookup("acme", "acme-1")
    assert again is not None and again.cached and inner.asked == ["acme-1"]
    assert await runs.lookup("acme", "acme-missing") is None
    assert await runs.lookup("acme", "acme-missing") is None
    assert inner.asked.count("acme-missing") == 2  # unknown runs are never cached


async def test_watchers_of_a_run_share_one_question_asked_after_they_opened() -> None:
    inner = Directory()
    runs = CachedRunDirectory(inner, settle_seconds=0.05)
    await runs.lookup("acme", "acme-1")
    inner.state = "TERMINATED"
    finished: list[str] = []
    for _ in range(5):
        runs.watch("acme", "acme-1", runs.clock(), lambda info: finished.append(info.state))
    await wait_for(lambda: len(finished) == 5, 5, "every watcher told")
    assert finished == ["TERMINATED"] * 5
    assert inner.asked == ["acme-1", "acme-1"]
    await runs.close()


class Records:
    """An in-memory run index (the real one is Redis: tests/gateway_rest/test_run_index.py)."""

    def __init__(self) -> None:
        self.runs: dict[str, IndexedRun] = {}

    async def find(self, run_id: str) -> IndexedRun | None:
        return self.runs.get(run_id)

    def record_soon(self, run_id: str, tenant: str, started_at: datetime) -> None:
        self.runs[run_id] = IndexedRun(tenant, started_at)


async def test_an_indexed_run_opens_without_a_question_and_still_settles() -> None:
    inner, records = Directory(), Records()
    sources: list[str] = []
    runs = CachedRunDirectory(inner, settle_seconds=0.01, index=records, counted=sources.append)
    started = datetime(2026, 1, 1, tzinfo=UTC)
    records.runs["acme-1"] = IndexedRun("acme", started)
    info = await runs.lookup("acme", "acme-1")
    # The index says whose and since when, never whether it still runs.
    assert info == RunInfo("acme-1", "acme", "RUNNING", started, cached=True)
    assert inner.asked == [] and sources == ["index"]
    assert await runs.lookup("acme", "acme-1") == info and sources[-1] == "cache"
    inner.state = "COMPLETED"
    finished: list[str] = []
    runs.watch("acme", "acme-1", runs.clock(), lambda done: finished.append(done.state))
    await wait_for(lambda: finished == ["COMPLETED"], 5, "the settling question")
    assert inner.asked == ["acme-1"]  # asked of the source of truth, not the index
    await runs.close()


async def test_a_run_the_index_misses_is_asked_once_and_recorded() -> None:
    inner, records = Directory(), Records()
    sources: list[str] = []
    runs = CachedRunDirectory(inner, index=records, counted=sources.append)
    # Another tenant's entry is no answer for this one: Temporal decides.
    records.runs["acme-2"] = IndexedRun("globex", datetime(2026, 1, 1, tzinfo=UTC))
    assert await runs.lookup("acme", "acme-missing") is None
    assert "acme-missing" not in records.runs
    found = await runs.lookup("acme", "acme-1")
    assert found is not None and records.runs["acme-1"] == IndexedRun("acme", found.started_at)
    assert await runs.lookup("acme", "acme-2") is not None
    assert inner.asked == ["acme-missing", "acme-1", "acme-2"]
    assert sources == ["temporal", "temporal", "temporal"]


async def test_an_index_whose_redis_is_away_fails_an_open_but_never_a_start() -> None:
    closed = free_port()  # nothing listens there
    redis = Redis(host="127.0.0.1", port=closed, retry=Retry(NoBackoff(), 0))
    index = RunIndex(redis, ttl_seconds=60)
    try:
        # What gateway.outages turns into the socket's 1013.
        with pytest.raises(RedisConnectionError):
            await index.find("acme-1")
        await index.record("acme-1", "acme", datetime(2026, 1, 1, tzinfo=UTC))
        index.record_soon("acme-2", "acme", datetime(2026, 1, 1, tzinfo=UTC))
        await asyncio.sleep(0)
    finally:
        await index.close()
        await redis.aclose()


async def test_inbox_and_flag_behave_like_the_asyncio_types_uvicorn_uses() -> None:
    inbox: Inbox[int] = Inbox()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await getter == 1 and inbox.qsize() == 1 and await inbox.get() == 2
    assert inbox.empty()
    cancelled = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    inbox.put_nowait(3)  # a cancelled get loses nothing
    assert await inbox.get() == 3

    flag = Flag()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.clear()
    assert not flag.is_set()
