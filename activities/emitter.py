"""The one way events leave the worker: an idempotent Kafka producer.

Idempotence (``enable_idempotence=True``, ``acks="all"``) makes the broker drop
a record the producer resends after a lost acknowledgement; deterministic
event ids (:func:`tidings.events.event_id`) make a record re-sent by a *retried
activity* recognisable downstream. Together a retry never yields a second
logical event.

On the way out the emitter also applies the tenant's events/s quota (a wait,
never a drop), stamps the current trace context into each record's headers
(``traceparent``), tells steps whether to coalesce tokens (the tenant's lag,
``tidings.lag``), and counts what it sends (``activities.metrics``).

While the event plane is away an emit waits, it does not fail: a record the
producer could not take, or whose batch the producer gave up on, is sent again
with bounded exponential backoff (``activities.delivery``) until the broker
acknowledges it; the caller decides how long to wait (a step attempt heartbeats
meanwhile). Duplicates are avoided on the writer side, within this process: a
record is sent at most once at a time (a second emit of an id still in flight
joins the first), and an id the broker already acknowledged is not sent again
(a retried emit activity whose first write landed). The producer keeps
retrying a record it took, with the same sequence number, for as long as it
takes (``_never_expire_batches``); a record is sent afresh only if the
producer failed its batch with an error that passes, which leaves nothing
acknowledged to duplicate.

Tokens stream thousands to a step, so an unawaited emit (``wait=False``) gets
no future nor callback of its own: the records the producer took are settled
oldest first, a batch at a time, from one callback on the oldest (``_reap``),
which also sends again the ones whose batch failed. A record gets a future of
its own only when someone waits for it (an awaited emit, an emit joining it, a
flush finding it still in flight), settled on its own acknowledgement.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
import uuid
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from prometheus_client import Counter, Histogram

from activities.coalesce import CoalescePolicy
from activities.delivery import EmitBackoff, RecentIds, Record
from activities.metrics import WorkerMetrics
from activities.quota import TenantQuota
from tidings.events import Event
from tidings.kafka_connection import client_options
from tidings.kafka_log import KeyHashPartitioner
from tidings.lag import LagReader
from tidings.observability import trace_headers
from tidings.settings import KafkaSettings
from tidings.topics import completions_topic, dlq_topic, events_topic, requests_topic

log = logging.getLogger(__name__)

# Acknowledged ids remembered per process for the retried-emit check (about
# 100 bytes each).
_RECENT_IDS = 50_000
# Losses a flush can still see when they happen while it waits.
_LOSSES_KEPT = 1_000

Headers = list[tuple[str, bytes]]


def _never_expire_batches(producer: AIOKafkaProducer) -> None:
    """Let the producer's batches wait for a partition leader as long as it takes.

    aiokafka fails a batch whose partition has had no leader for
    ``request_timeout_ms``, even with idempotence on (its sender otherwise
    never expires idempotent batches, since their retries cannot duplicate).
    The failed batch leaves a gap in the producer's sequence numbers, and the
    broker then refuses every later batch to that partition with
    ``OutOfOrderSequenceNumber``: one outage longer than the timeout broke the
    producer for good (docs/reliability.md). How long an emit waits
    is decided by its caller (a step attempt's own timeout), not here."""
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None or not hasattr(accumulator, "_batch_ttl"):
        raise RuntimeError("aiokafka's accumulator changed: review _never_expire_batches")
    accumulator._batch_ttl = math.inf


def _passing(error: BaseException) -> bool:
    """An error the event plane recovers from by itself: wait and try again."""
    return isinstance(error, KafkaTimeoutError) or (
        isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))
    )


class Emitter:
    """Publishes events, DLQ records and external-step requests.

    Owns one producer and one admin client; :meth:`start` and :meth:`stop`
    bracket their lives (the worker entry point calls them).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        metrics: WorkerMetrics | None = None,
        quota: TenantQuota | None = None,
        lag: LagReader | None = None,
        coalesce: CoalescePolicy | None = None,
        backoff: EmitBackoff | None = None,
    ) -> None:
        self._kafka = kafka
        self._backoff = backoff if backoff is not None else EmitBackoff()
        # Records not yet acknowledged nor given up on, by id, oldest first.
        self._inflight: dict[str, Record] = {}
        # Records the producer took, in hand-over order, until settled; one
        # callback on the oldest (armed) settles them batch by batch.
        self._queue: deque[Record] = deque()
        self._armed = False
        self._seq = 0
        self._acknowledged = RecentIds(_RECENT_IDS)
        self._resends: set[asyncio.Task[None]] = set()
        # Records given up on, as (loss number, hand-over seq, error), for the
        # flushes waiting meanwhile; _lost counts them all.
        self._losses: deque[tuple[int, int, BaseException]] = deque(maxlen=_LOSSES_KEPT)
        self._lost = 0
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._quota = quota
        self._lag = lag
        self.coalesce_policy = coalesce
        # Tenants currently coalescing (kept per process for the hysteresis).
        self._coalescing: set[str] = set()
        # Per tenant: its events topic, once known to exist, and its
        # emit-latency histogram; per (tenant, type): its events counter.
        self._tenants: dict[str, tuple[str, Histogram]] = {}
        self._counted: dict[tuple[str, str], Counter] = {}
        self._producer = AIOKafkaProducer(
            **client_options(kafka),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            partitioner=KeyHashPartitioner(),
            request_timeout_ms=kafka.request_timeout_ms,
        )
        _never_expire_batches(self._producer)
        self._admin = AIOKafkaAdminClient(
            **client_options(kafka),
            request_timeout_ms=kafka.request_timeout_ms,
        )
        # Topics known to exist; creating one is a controller round trip we
        # want once per process, not once per event.
        self._topics: set[str] = set()
        self._topic_lock = asyncio.Lock()

    async def start(self) -> None:
        await self._admin.start()
        await self._producer.start()
        prefix = self._kafka.topic_prefix
        await self.ensure_topics(
            [dlq_topic(prefix), requests_topic(prefix), completions_topic(prefix)]
        )

    async def stop(self) -> None:
        for task in list(self._resends):
            task.cancel()
        try:
            if self._lag is not None:
                await self._lag.close()
            await self._producer.stop()
        finally:
            await self._admin.close()

    async def ensure_topics(self, names: list[str]) -> None:
        missing = [name for name in names if name not in self._topics]
        if not missing:
            return
        delays = self._backoff.delays()
        while True:
            try:
                await self._create_topics(missing)
                return
            except KafkaError as exc:
                if not _passing(exc):
                    raise
                await self._wait_out(exc, next(delays), "creating topics")

    async def partitions(self, topic: str) -> set[int]:
        """``topic``'s partition ids as the cluster's metadata has them now
        (none if it does not exist)."""
        described = await self._admin.describe_topics([topic])
        return {p["partition"] for t in described if t["topic"] == topic for p in t["partitions"]}

    async def _create_topics(self, missing: list[str]) -> None:
        async with self._topic_lock:
            missing = [name for name in missing if name not in self._topics]
            if not missing:
                return
            response = await self._admin.create_topics(
                [
                    NewTopic(
                        name=name,
                        num_partitions=self._kafka.partitions,
                        replication_factor=self._kafka.replication_factor,
                        topic_configs={"retention.ms": str(self._kafka.retention_ms)},
                    )
                    for name in missing
                ]
            )
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, TopicAlreadyExistsError.errno):
                    message = topic_error[2] if len(topic_error) > 2 else ""
                    raise RuntimeError(f"cannot create topic {name}: error {code} {message}")
                if code == 0:
                    log.info("created topic %s", name)
            self._topics.update(missing)

    async def emit(self, event: Event, *, wait: bool = True) -> None:
        """Send one event to its tenant's topic, keyed by run id.

        ``wait=False`` only enqueues (tokens stream without a round trip each);
        the caller must :meth:`flush` before it reports the step done. While
        the event plane is away this waits (see the module's docstring).
        """
        record_id = event.id
        if (record_id in self._inflight or record_id in self._acknowledged) and await self._joined(
            record_id, wait=wait
        ):
            return
        started = since = time.monotonic()
        tenant = event.tenant
        known = self._tenants.get(tenant)
        if known is None or self._quota is not None:
            known = await self._prepare(tenant)
            since = time.monotonic()
            # Again: a retried emit of the same id may have started meanwhile.
            if await self._joined(record_id, wait=wait):
                return
        topic, latency = known
        headers = event.headers()
        traced = trace_headers()
        if traced:
            headers += traced
        record = self._record(
            record_id,
            topic,
            event.to_bytes(),
            event.run_id.encode(),
            headers,
            wait,
            started,
            since,
            latency,
        )
        try:
            sent = await self._producer.send(
                topic, value=record.value, key=record.key, headers=headers
            )
        except BaseException as exc:
            sent = await self._send_refused(record, exc)
        self._handed(record, sent)
        counted = self._counted.get((tenant, event.type))
        if counted is None:
            counted = self._counted[tenant, event.type] = self.metrics.events.labels(
                tenant, event.type
            )
        counted.inc()
        if wait:
            await asyncio.shield(self._watch(record))

    async def _prepare(self, tenant: str) -> tuple[str, Histogram]:
        """Wait out ``tenant``'s quota and make sure its topic exists; its
        topic and emit-latency histogram."""
        if self._quota is not None:
            waited = await self._quota.acquire(tenant)
            if waited:
                self.metrics.quota_delay.labels(tenant).inc(waited)
        known = self._tenants.get(tenant)
        if known is None:
            topic = events_topic(self._kafka.topic_prefix, tenant)
            await self.ensure_topics([topic])
            known = self._tenants[tenant] = (topic, self.metrics.emit_seconds.labels(tenant))
        return known

    async def _joined(self, record_id: str, *, wait: bool) -> bool:
        """Whether ``record_id`` is acknowledged or in flight already (then, with
        ``wait``, once the broker has it): if so, the caller must not send it."""
        while True:
            if record_id in self._acknowledged:
                return True
            record = self._inflight.get(record_id)
            if record is None:
                return False
            if not wait:
                return True
            pending = self._watch(record)
            try:
                await asyncio.shield(pending)
                return True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # Its first sender was cancelled before handing it over: nothing
                # of it can land, so look again (and send it if nobody has).

    def _record(
        self,
        record_id: str,
        topic: str,
        value: bytes,
        key: bytes,
        headers: Headers,
        remember: bool,
        started: float,
        since: float,
        latency: Histogram | None,
    ) -> Record:
        """A record in flight, next in hand-over order."""
        record = Record(
            record_id, topic, value, key, headers, remember, started, since, self._seq, latency
        )
        self._seq += 1
        self._inflight[record_id] = record
        return record

    def _handed(self, record: Record, sent: asyncio.Future[Any]) -> None:
        """The producer took ``record``: settle it once its batch is done."""
        record.sent = sent
        self._queue.append(record)
        if not self._armed:
            self._arm()
        if record.outcome is not None:
            # Someone waits for it: settle it as soon as it lands, not when
            # every record handed over before it has.
            sent.add_done_callback(functools.partial(self._landed, record))

    def _arm(self) -> None:
        """Reap again once the oldest record handed over is done.

        One callback for the whole queue instead of one per record: a batch's
        records are done together, and one reap settles all of them."""
        head = self._queue[0].sent
        if head is None:
            self._reap()
            return
        self._armed = True
        head.add_done_callback(self._advance)

    def _advance(self, _: asyncio.Future[Any]) -> None:
        self._armed = False
        self._reap()

    def _reap(self) -> None:
        """Settle the records handed over, oldest first, whose sends are done."""
        queue = self._queue
        while queue:
            record = queue[0]
            sent = record.sent
            if sent is not None:
                if not sent.done():
                    break
                self._landed(record, sent)
            queue.popleft()
        if queue and not self._armed:
            self._arm()

    def _landed(self, record: Record, sent: asyncio.Future[Any]) -> None:
        """``record``'s send ``sent`` is done: settle it, or send it again."""
        if record.sent is not sent:
            return  # settled already (by the reap or its own callback)
        record.sent = None
        error = sent.exception() if not sent.cancelled() else KafkaTimeoutError()
        if error is not None and _passing(error):
            task = asyncio.create_task(self._redeliver(record, error))
            self._resends.add(task)
            task.add_done_callback(self._resends.discard)
        else:
            self._settle(record, error)

    def _watch(self, record: Record) -> asyncio.Future[None]:
        """A future resolved once ``record`` is acknowledged (failed if it is
        given up on, cancelled if its sender was cancelled before hand-over)."""
        outcome = record.outcome
        if outcome is None:
            outcome = record.outcome = asyncio.get_running_loop().create_future()
            sent = record.sent
            if sent is not None:
                if sent.done():
                    self._landed(record, sent)
                else:
                    sent.add_done_callback(functools.partial(self._landed, record))
            # Else not handed over yet (_handed watches it then) or being sent
            # again (_redeliver settles it).
        return outcome

    async def _redeliver(self, record: Record, error: BaseException) -> None:
        # The producer failed the batch, so the broker acknowledged none of it:
        # sending the record again writes no second acknowledged copy.
        delays = self._backoff.delays()
        while True:
            self.metrics.emit_retries.inc()
            await self._wait_out(error, next(delays), "delivering a record")
            try:
                await (await self._send(record))
            except KafkaError as exc:
                if _passing(exc):
                    error = exc
                    continue
                self._settle(record, exc)
                return
            self._settle(record, None)
            return

    def _settle(self, record: Record, error: BaseException | None) -> None:
        if self._inflight.get(record.id) is record:
            del self._inflight[record.id]
        if record.latency is not None:
            record.latency.observe(time.monotonic() - record.started)
        outcome = record.outcome
        if error is None:
            if record.remember:
                self._acknowledged.add(record.id)
            if outcome is not None and not outcome.done():
                outcome.set_result(None)
            return
        log.error("record %s to %s lost: %s", record.id, record.topic, type(error).__name__)
        self._losses.append((self._lost, record.seq, error))
        self._lost += 1
        if outcome is not None and not outcome.done():
            outcome.set_exception(error)
            # Awaited emits raise it; an unawaited token's loss is logged above.
            outcome.add_done_callback(lambda done: done.exception())

    def _drop(self, record: Record) -> None:
        """``record`` was never handed over, so nothing of it can land; whoever
        joined it looks again."""
        if self._inflight.get(record.id) is record:
            del self._inflight[record.id]
        if record.outcome is not None:
            record.outcome.cancel()

    async def _send_refused(self, record: Record, refusal: BaseException) -> asyncio.Future[Any]:
        """The producer did not take ``record`` (``refusal``): send it again while
        the refusal passes, or drop it and raise."""
        try:
            if not (isinstance(refusal, KafkaError) and _passing(refusal)):
                raise refusal
            return await self._send(record, refusal)
        except BaseException:
            self._drop(record)
            raise

    async def _hand_over(self, record: Record) -> None:
        try:
            sent = await self._send(record)
        except BaseException:
            self._drop(record)
            raise
        self._handed(record, sent)

    async def _send(
        self, record: Record, refusal: BaseException | None = None
    ) -> asyncio.Future[Any]:
        """``producer.send``, retried while the producer cannot take the record
        (starting with a wait when it has just refused it: ``refusal``)."""
        delays = self._backoff.delays()
        while True:
            if refusal is not None:
                self.metrics.emit_retries.inc()
                await self._wait_out(refusal, next(delays), "sending a record")
            try:
                sent: asyncio.Future[Any] = await self._producer.send(
                    record.topic, value=record.value, key=record.key, headers=record.headers
                )
                return sent
            except KafkaError as exc:
                if not _passing(exc):
                    raise
                refusal = exc

    def stalled_for(self) -> float:
        """Seconds the oldest record still waiting for the broker has waited (0 if none)."""
        for record in self._inflight.values():
            sent = record.sent
            if sent is not None and sent.done() and not sent.cancelled() and not sent.exception():
                continue  # acknowledged, not settled yet
            return time.monotonic() - record.since
        return 0.0

    async def _wait_out(self, error: BaseException | None, delay: float, doing: str) -> None:
        log.warning(
            "event plane unavailable while %s (%s); trying again in %.1fs",
            doing,
            type(error).__name__ if error is not None else "unknown",
            delay,
        )
        await asyncio.sleep(delay)

    async def coalescing(self, tenant: str) -> bool:
        """Whether ``tenant``'s tokens should be coalesced now (its lag is high).

        Reads the process-wide cached lag (at most one Redis read per tenant
        per second, never on this call's path once the tenant has a value)."""
        policy = self.coalesce_policy
        if policy is None or self._lag is None:
            return False
        lag = await self._lag.lag(tenant)
        self.metrics.lag.labels(tenant).set(lag)
        if lag >= policy.lag_threshold:
            self._coalescing.add(tenant)
        elif lag < policy.lag_release:
            self._coalescing.discard(tenant)
        return tenant in self._coalescing

    async def flush(self) -> None:
        """Wait until the broker has every record handed over so far (however long
        the event plane is away); fail if one of them was given up on."""
        until, lost = self._seq, self._lost
        await self._producer.flush()
        self._reap()
        waiting = [self._watch(r) for r in list(self._inflight.values()) if r.seq < until]
        if waiting:
            # Not gather: the records are every activity's in this process, and
            # one of them cancelled before it was handed over (its own activity
            # cancelled, e.g. timed out on a busy worker) would fail this flush,
            # and with it every step finishing meanwhile, with CancelledError
            # (retried: each re-emitting all its tokens). Such a record cannot
            # land, so there is nothing of it to wait for; one given up on (lost)
            # still fails the flush.
            await asyncio.shield(asyncio.wait(waiting))
        for index, seq, error in self._losses:
            if index >= lost and seq < until:
                raise error

    async def publish(
        self, topic: str, key: str, payload: dict[str, Any], *, record_id: str | None = None
    ) -> None:
        """Send one JSON record to a plane topic (DLQ, requests) and wait for the broker.

        ``record_id`` names the record for the duplicate checks :meth:`emit` makes
        (per topic: a DLQ record shares its id with its ``step.failed`` event)."""
        key_of = f"{topic}/{record_id}" if record_id is not None else None
        if key_of is not None and await self._joined(key_of, wait=True):
            return
        await self.ensure_topics([topic])
        if key_of is not None and await self._joined(key_of, wait=True):
            return
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        now = time.monotonic()
        record = self._record(
            key_of or uuid.uuid4().hex,
            topic,
            body,
            key.encode(),
            trace_headers(),
            key_of is not None,
            now,
            now,
            None,
        )
        await self._hand_over(record)
        await asyncio.shield(self._watch(record))
        if topic == dlq_topic(self._kafka.topic_prefix):
            tenant = str(payload.get("tenant") or "")
            self.metrics.dlq.labels(tenant, str(payload.get("kind") or "")).inc()

    @property
    def topic_prefix(self) -> str:
        return self._kafka.topic_prefix
