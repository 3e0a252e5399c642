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
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from activities.coalesce import CoalescePolicy
from activities.delivery import EmitBackoff, RecentIds
from activities.metrics import WorkerMetrics
from activities.quota import TenantQuota
from tidings.events import Event
from tidings.kafka_connection import client_options
from tidings.lag import LagReader
from tidings.observability import trace_headers
from tidings.settings import KafkaSettings
from tidings.topics import completions_topic, dlq_topic, events_topic, requests_topic

log = logging.getLogger(__name__)

# Acknowledged ids remembered per process for the retried-emit check (about
# 100 bytes each).
_RECENT_IDS = 50_000

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class _Record:
    id: str
    topic: str
    value: bytes
    key: bytes
    headers: Headers
    remember: bool


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
        # Records sent and not yet acknowledged, by id; resolved once the broker has them.
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._acknowledged = RecentIds(_RECENT_IDS)
        self._resends: set[asyncio.Task[None]] = set()
        # Since when each pending record and each refused send has waited
        # (monotonic seconds), for stalled_for().
        self._since: dict[str, float] = {}
        self._refused: dict[object, float] = {}
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._quota = quota
        self._lag = lag
        self.coalesce_policy = coalesce
        # Tenants currently coalescing (kept per process for the hysteresis).
        self._coalescing: set[str] = set()
        self._producer = AIOKafkaProducer(
            **client_options(kafka),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
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
        if await self._joined(event.id, wait=wait):
            return
        started = time.perf_counter()
        tenant = event.tenant
        if self._quota is not None:
            waited = await self._quota.acquire(tenant)
            if waited:
                self.metrics.quota_delay.labels(tenant).inc(waited)
        topic = events_topic(self._kafka.topic_prefix, tenant)
        await self.ensure_topics([topic])
        # Again: a retried emit of the same id may have started meanwhile.
        if await self._joined(event.id, wait=wait):
            return
        outcome = await self._deliver(
            event.id,
            topic,
            event.to_bytes(),
            event.run_id.encode(),
            event.headers() + trace_headers(),
            remember=wait,
        )
        self.metrics.events.labels(tenant, event.type).inc()
        latency = self.metrics.emit_seconds.labels(tenant)
        outcome.add_done_callback(lambda _: latency.observe(time.perf_counter() - started))
        if wait:
            await asyncio.shield(outcome)

    async def _joined(self, record_id: str, *, wait: bool) -> bool:
        """Whether ``record_id`` is acknowledged or in flight already (then, with
        ``wait``, once the broker has it): if so, the caller must not send it."""
        while True:
            if record_id in self._acknowledged:
                return True
            pending = self._pending.get(record_id)
            if pending is None:
                return False
            if not wait:
                return True
            try:
                await asyncio.shield(pending)
                return True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # Its first sender was cancelled before handing it over: nothing
                # of it can land, so look again (and send it if nobody has).

    async def _deliver(
        self,
        record_id: str,
        topic: str,
        value: bytes,
        key: bytes,
        headers: Headers,
        *,
        remember: bool,
    ) -> asyncio.Future[None]:
        """Hand one record to the producer; the returned future resolves once the
        broker has it (sent again meanwhile if the producer failed its batch).

        ``remember``: keep its id once acknowledged. Only for awaited emits, the
        ones a retried activity repeats; tokens would crowd them out."""
        record = _Record(record_id, topic, value, key, headers, remember)
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[record_id] = outcome
        self._since[record_id] = time.monotonic()
        try:
            sent = await self._send(record)
        except BaseException:
            # Never handed over, so nothing of it can land; whoever joined it retries.
            self._pending.pop(record_id, None)
            self._since.pop(record_id, None)
            outcome.cancel()
            raise

        def landed(future: asyncio.Future[Any]) -> None:
            error = future.exception() if not future.cancelled() else KafkaTimeoutError()
            if error is not None and _passing(error):
                task = asyncio.create_task(self._redeliver(record, outcome, error))
                self._resends.add(task)
                task.add_done_callback(self._resends.discard)
            else:
                self._settle(record, outcome, error)

        sent.add_done_callback(landed)
        return outcome

    async def _redeliver(
        self, record: _Record, outcome: asyncio.Future[None], error: BaseException
    ) -> None:
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
                self._settle(record, outcome, exc)
                return
            self._settle(record, outcome, None)
            return

    def _settle(
        self, record: _Record, outcome: asyncio.Future[None], error: BaseException | None
    ) -> None:
        self._pending.pop(record.id, None)
        self._since.pop(record.id, None)
        if outcome.done():
            return
        if error is None:
            if record.remember:
                self._acknowledged.add(record.id)
            outcome.set_result(None)
            return
        log.error("record %s to %s lost: %s", record.id, record.topic, type(error).__name__)
        outcome.set_exception(error)
        # Awaited emits raise it; an unawaited token's loss is logged above.
        outcome.add_done_callback(lambda done: done.exception())

    async def _send(self, record: _Record) -> asyncio.Future[Any]:
        """``producer.send``, retried while the producer cannot take the record."""
        delays = self._backoff.delays()
        token = object()
        try:
            while True:
                try:
                    sent: asyncio.Future[Any] = await self._producer.send(
                        record.topic, value=record.value, key=record.key, headers=record.headers
                    )
                    return sent
                except KafkaError as exc:
                    if not _passing(exc):
                        raise
                    self.metrics.emit_retries.inc()
                    self._refused.setdefault(token, time.monotonic())
                    await self._wait_out(exc, next(delays), "sending a record")
        finally:
            self._refused.pop(token, None)

    def stalled_for(self) -> float:
        """Seconds the oldest record still waiting for the broker has waited (0 if none)."""
        oldest = min(
            next(iter(self._since.values()), math.inf),
            min(self._refused.values(), default=math.inf),
        )
        return 0.0 if oldest == math.inf else time.monotonic() - oldest

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
        the event plane is away)."""
        await self._producer.flush()
        pending = list(self._pending.values())
        if not pending:
            return
        # Not gather: the records are every activity's in this process, and
        # one of them cancelled before it was handed over (its own activity
        # cancelled, e.g. timed out on a busy worker) would fail this flush,
        # and with it every step finishing meanwhile, with CancelledError
        # (retried: each re-emitting all its tokens). Such a record cannot
        # land, so there is nothing of it to wait for; one given up on (lost)
        # still fails the flush.
        await asyncio.shield(asyncio.wait(pending))
        for outcome in pending:
            error = None if outcome.cancelled() else outcome.exception()
            if error is not None:
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
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        outcome = await self._deliver(
            key_of or uuid.uuid4().hex,
            topic,
            body,
            key.encode(),
            trace_headers(),
            remember=key_of is not None,
        )
        await asyncio.shield(outcome)
        if topic == dlq_topic(self._kafka.topic_prefix):
            tenant = str(payload.get("tenant") or "")
            self.metrics.dlq.labels(tenant, str(payload.get("kind") or "")).inc()

    @property
    def topic_prefix(self) -> str:
        return self._kafka.topic_prefix
