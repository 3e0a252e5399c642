"""What an emit does while the event plane is away, as pure logic.

The producer here is a stand-in that refuses, fails or holds records on cue;
the real broker outage is tests/reliability/test_event_plane_outage.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, LeaderNotAvailableError, MessageSizeTooLargeError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.delivery import EmitBackoff, RecentIds
from activities.emitter import Emitter
from activities.run_events import RunActivities
from activities.steps import StepActivities, StepContext, StepOutput, step
from activities.types import CLOSING_SEQ, RunEventInput, StepFailureInput, StepInput
from tests.reliability.verify import kept
from tests.support import wait_for
from tidings.errors import ActivityErrorType
from tidings.events import Event, EventType
from tidings.settings import KafkaSettings
from tidings.topics import dlq_topic, events_topic

pytestmark = pytest.mark.unit


class Plane:
    """Stands in for the producer: ``refuse`` sends raise a timeout, ``fail``
    batches fail after being taken, ``hold`` keeps them unacknowledged."""

    def __init__(self) -> None:
        self.refuse = 0
        self.fail = 0
        self.hold = False
        self.written: list[bytes] = []
        self.held: list[tuple[asyncio.Future[None], bytes]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: Any) -> Any:
        if self.refuse:
            self.refuse -= 1
            raise KafkaTimeoutError()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            self.fail -= 1
            future.set_exception(LeaderNotAvailableError())
        elif self.hold:
            self.held.append((future, value))
        else:
            self.written.append(value)
            future.set_result(None)
        return future

    def release(self) -> None:
        self.hold = False
        for future, value in self.held:
            self.written.append(value)
            future.set_result(None)
        self.held.clear()

    def fail_held(self, error: BaseException) -> None:
        """The producer gives up on the batches it holds (nothing of them landed)."""
        self.hold = False
        for future, _ in self.held:
            future.set_exception(error)
        self.held.clear()

    async def flush(self) -> None:
        return None


def emitter_on(plane: Plane) -> Emitter:
    emitter = Emitter(KafkaSettings(), backoff=EmitBackoff(initial=0.001, maximum=0.004))
    emitter._producer = plane  # type: ignore[assignment]
    emitter._topics.update(
        {events_topic(emitter.topic_prefix, "t"), dlq_topic(emitter.topic_prefix)}
    )
    return emitter


def event(seq: int = 0, type_: str = EventType.RUN_STARTED) -> Event:
    return Event(type=type_, tenant="t", run_id="t-run", step=None, attempt=1, seq=seq, data={})


async def test_an_emit_waits_out_refusals_and_failed_batches() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.refuse, plane.fail = 3, 2
    await asyncio.wait_for(emitter.emit(event()), 5)
    assert len(plane.written) == 1
    assert emitter.metrics.emit_retries._value.get() == 5


async def test_a_retried_emit_joins_the_first_and_an_acknowledged_id_is_not_sent_again() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    first = asyncio.create_task(emitter.emit(event()))
    await wait_for(lambda: len(plane.held) == 1, 5, "the first send handed over")
    first.cancel()  # the activity attempt timed out while the broker was away
    retry = asyncio.create_task(emitter.emit(event()))
    await asyncio.sleep(0)
    assert not retry.done() and len(plane.held) == 1
    plane.release()
    await asyncio.wait_for(retry, 5)
    await emitter.emit(event())  # a third attempt after the write landed
    assert len(plane.written) == 1


async def test_flush_waits_for_tokens_still_held() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    await emitter.emit(event(1, EventType.STEP_TOKEN), wait=False)
    flushing = asyncio.create_task(emitter.flush())
    await asyncio.sleep(0)
    assert not flushing.done()
    plane.release()
    await asyncio.wait_for(flushing, 5)


async def test_flush_is_not_failed_by_another_emit_cancelled_before_it_was_handed_over() -> None:
    # One worker, many steps: a step's flush waits for every record in the
    # process. Another step's emit, refused by the producer and cancelled
    # meanwhile (its activity timed out), never lands; the flush must still
    # wait for the records that will, and succeed, not raise CancelledError.
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    await emitter.emit(event(1, EventType.STEP_TOKEN), wait=False)
    plane.refuse = 1_000_000
    other = asyncio.create_task(emitter.emit(event(2, EventType.STEP_TOKEN), wait=False))
    await wait_for(lambda: emitter.metrics.emit_retries._value.get() >= 1, 5, "refused")
    flushing = asyncio.create_task(emitter.flush())
    for _ in range(3):  # the flush takes its list of records in flight
        await asyncio.sleep(0)
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other
    await asyncio.sleep(0)
    assert not flushing.done()  # the held token has not landed yet
    plane.release()
    await asyncio.wait_for(flushing, 5)
    assert len(plane.written) == 1


def test_recent_ids_forget_the_oldest() -> None:
    ids = RecentIds(2)
    for key in ("a", "b", "c"):
        ids.add(key)
    assert "a" not in ids and "b" in ids and "c" in ids


def test_backoff_doubles_up_to_its_maximum() -> None:
    delays = EmitBackoff(initial=1, maximum=5).delays()
    assert [next(delays) for _ in range(5)] == [1, 2, 4, 5, 5]


async def test_the_real_producer_never_expires_a_batch() -> None:
    emitter = Emitter(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    producer: AIOKafkaProducer = emitter._producer
    assert producer._message_accumulator._batch_ttl == math.inf


# -- the step attempt heartbeats while its emits wait --------------------------


class Speaker(StepActivities):
    @step("test.speak")
    async def speak(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        await ctx.token("one ")
        return {"text": "one "}


async def test_an_attempt_heartbeats_while_its_announcements_and_flush_wait() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    env.info = dataclasses.replace(env.info, attempt=3, heartbeat_timeout=timedelta(seconds=0.03))
    data = StepInput(tenant="t", run_id="t-run", pipeline="p", step="draft")
    plane.hold = True  # the broker is away from the first emit (an announcement) on
    attempt = asyncio.create_task(env.run(Speaker(emitter).speak, data))
    await wait_for(lambda: len(beats) >= 3, 5, "heartbeats while the announcements wait")
    assert not attempt.done() and len(plane.held) == 1
    plane.release()
    assert await asyncio.wait_for(attempt, 5) == {"text": "one "}
    types = [Event.from_bytes(v).type for v in plane.written]
    assert types[-1] == EventType.STEP_COMPLETED


# -- step.failed comes after every earlier attempt is discarded ---------------


async def test_step_failed_discards_every_earlier_attempt_first() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    # Attempt 1 streamed, attempts 2 and 3 died before they could announce it.
    token = Event(
        type=EventType.STEP_TOKEN,
        tenant="t",
        run_id="t-run",
        step="draft",
        attempt=1,
        seq=1,
        data={"text": "stale "},
    )
    await emitter.emit(token)
    failure = StepFailureInput(
        tenant="t",
        run_id="t-run",
        pipeline="p",
        step="draft",
        attempt=3,
        input={},
        error="boom",
    )
    await ActivityEnvironment().run(RunActivities(emitter).record_step_failure, failure)
    dlq = [v for v in plane.written if b'"kind"' in v]
    assert len(dlq) == 1, "the DLQ record shares step.failed's id and must still be written"
    written = [Event.from_bytes(v) for v in plane.written if b'"kind"' not in v]
    assert [(e.type, e.attempt) for e in written[1:]] == [
        (EventType.STEP_RETRYING, 1),
        (EventType.STEP_RETRYING, 2),
        (EventType.STEP_FAILED, 3),
    ]
    assert all(e.seq == CLOSING_SEQ for e in written[1:3])
    assert not [e for e in kept(written) if e.type == EventType.STEP_TOKEN]


async def test_a_run_event_emit_heartbeats() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=0.03))
    plane.hold = True
    data = RunEventInput(tenant="t", run_id="t-run", type=EventType.RUN_COMPLETED, seq=9)
    emitting = asyncio.create_task(env.run(RunActivities(emitter).emit_run_event, data))
    await wait_for(lambda: len(beats) >= 3, 5, "heartbeats while the emit waits")
    assert not emitting.done()
    plane.release()
    await asyncio.wait_for(emitting, 5)


async def test_a_joined_emit_sends_itself_if_the_first_sender_gives_up() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.refuse = 1_000_000  # the producer takes nothing
    first = asyncio.create_task(emitter.emit(event()))
    await wait_for(lambda: emitter.metrics.emit_retries._value.get() > 0, 5, "a refusal")
    second = asyncio.create_task(emitter.emit(event()))
    await asyncio.sleep(0)
    first.cancel()  # its attempt ended before the record was handed over
    plane.refuse = 0
    await asyncio.wait_for(second, 5)
    assert len(plane.written) == 1


# -- an attempt out of time while the event plane is away ---------------------


async def test_an_attempt_out_of_time_on_the_event_plane_ends_uncounted() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        attempt=2,
        started_time=datetime.now(UTC),
        start_to_close_timeout=timedelta(seconds=3),
        heartbeat_timeout=None,
    )
    data = StepInput(tenant="t", run_id="t-run", pipeline="p", step="draft", attempt_base=3)
    plane.hold = True
    with pytest.raises(ApplicationError) as raised:
        await asyncio.wait_for(env.run(Speaker(emitter).speak, data), 5)
    assert raised.value.type == ActivityErrorType.EVENT_PLANE_UNAVAILABLE
    assert raised.value.non_retryable and raised.value.details == ({"attempt": 5},)
    # Attempt 5 (3 earlier schedules' attempts + this schedule's 2nd) was
    # announcing its predecessors, oldest first, when its time ran out.
    plane.release()
    (first,) = [Event.from_bytes(v) for v in plane.written]
    assert (first.type, first.attempt) == (EventType.STEP_RETRYING, 1)


class Slow(StepActivities):
    @step("test.slow")
    async def slow(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        await asyncio.sleep(1.5)  # the step's own slowness, past the margin
        return {}


async def test_an_attempt_slow_for_its_own_reasons_is_left_to_time_out() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        started_time=datetime.now(UTC),
        start_to_close_timeout=timedelta(seconds=1.2),
        heartbeat_timeout=None,
    )
    data = StepInput(tenant="t", run_id="t-run", pipeline="p", step="slow")
    # Nothing waits on the broker: the attempt is not ended early (Temporal's
    # own timeout would end it, and count it).
    assert await asyncio.wait_for(env.run(Slow(emitter).slow, data), 5) == {}


# -- tokens (wait=False): no future of their own, settled batch by batch -------


def token(seq: int) -> Event:
    return event(seq, EventType.STEP_TOKEN)


async def test_a_token_whose_batch_failed_with_a_passing_error_is_sent_again_unprompted() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    for seq in (1, 2):
        await emitter.emit(token(seq), wait=False)
    plane.fail_held(LeaderNotAvailableError())
    # No later emit nor flush comes: the failed batch alone gets them resent.
    await wait_for(lambda: len(plane.written) == 2, 5, "the tokens sent again")
    assert emitter.metrics.emit_retries._value.get() == 2
    assert emitter.stalled_for() == 0.0
    await asyncio.wait_for(emitter.flush(), 5)


async def test_an_awaited_emit_joining_an_unawaited_token_waits_for_its_acknowledgement() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    await emitter.emit(token(1), wait=False)
    joined = asyncio.create_task(emitter.emit(token(1)))
    await asyncio.sleep(0.01)
    assert not joined.done() and len(plane.held) == 1, "joined the token, not sent again"
    plane.release()
    await asyncio.wait_for(joined, 5)
    assert len(plane.written) == 1


async def test_an_awaited_emit_is_not_held_up_by_an_older_token_still_in_flight() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    await emitter.emit(token(1), wait=False)  # its partition's leader is away, say
    plane.hold = False
    await asyncio.wait_for(emitter.emit(event(2)), 5)
    assert emitter.stalled_for() > 0.0, "the token still waits"
    plane.release()
    await asyncio.wait_for(emitter.flush(), 5)
    assert emitter.stalled_for() == 0.0


async def test_flush_fails_if_a_token_it_waits_for_is_given_up_on() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    await emitter.emit(token(1), wait=False)
    flushing = asyncio.create_task(emitter.flush())
    await asyncio.sleep(0.01)
    assert not flushing.done()
    plane.fail_held(MessageSizeTooLargeError())
    with pytest.raises(MessageSizeTooLargeError):
        await asyncio.wait_for(flushing, 5)
    assert emitter.stalled_for() == 0.0 and not plane.written


async def test_tokens_are_counted_and_timed_once_each() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    for seq in range(3):
        await emitter.emit(token(seq), wait=False)
    await emitter.emit(token(1), wait=False)  # a repeat in flight: joined, not counted
    plane.release()
    await emitter.flush()
    sample = emitter.metrics.registry.get_sample_value
    timed = sample("tidings_worker_emit_seconds_count", {"tenant": "t"})
    counted = sample("tidings_worker_events_emitted_total", {"tenant": "t", "type": "step.token"})
    assert (timed, counted, len(plane.written)) == (3, 3, 3)


async def test_an_emit_joined_before_its_hand_over_is_settled_on_its_own_acknowledgement() -> None:
    plane = Plane()
    emitter = emitter_on(plane)
    plane.hold = True
    await emitter.emit(token(1), wait=False)  # held: the oldest record in flight
    plane.hold, plane.refuse = False, 1_000_000
    first = asyncio.create_task(emitter.emit(event(2)))
    await wait_for(lambda: emitter.metrics.emit_retries._value.get() > 0, 5, "refused")
    joined = asyncio.create_task(emitter.emit(event(2)))  # a retried activity's emit
    await asyncio.sleep(0)
    plane.refuse = 0
    await asyncio.wait_for(asyncio.gather(first, joined), 5)
    assert len(plane.written) == 1 and len(plane.held) == 1
    plane.release()
    await emitter.flush()
