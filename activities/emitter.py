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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from activities.coalesce import CoalescePolicy
from activities.metrics import WorkerMetrics
from activities.quota import TenantQuota
from tidings.events import Event
from tidings.lag import LagReader
from tidings.observability import trace_headers
from tidings.settings import KafkaSettings
from tidings.topics import completions_topic, dlq_topic, events_topic, requests_topic

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


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
    ) -> None:
        self._kafka = kafka
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._quota = quota
        self._lag = lag
        self.coalesce_policy = coalesce
        # Tenants currently coalescing (kept per process for the hysteresis).
        self._coalescing: set[str] = set()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=kafka.request_timeout_ms,
        )
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
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
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    message = topic_error[2] if len(topic_error) > 2 else ""
                    raise RuntimeError(f"cannot create topic {name}: error {code} {message}")
                if code == 0:
                    log.info("created topic %s", name)
            self._topics.update(missing)

    async def emit(self, event: Event, *, wait: bool = True) -> None:
        """Send one event to its tenant's topic, keyed by run id.

        ``wait=False`` only enqueues (tokens stream without a round trip each);
        the caller must :meth:`flush` before it reports the step done.
        """
        started = time.perf_counter()
        tenant = event.tenant
        if self._quota is not None:
            waited = await self._quota.acquire(tenant)
            if waited:
                self.metrics.quota_delay.labels(tenant).inc(waited)
        topic = events_topic(self._kafka.topic_prefix, tenant)
        await self.ensure_topics([topic])
        future = await self._producer.send(
            topic,
            value=event.to_bytes(),
            key=event.run_id.encode(),
            headers=event.headers() + trace_headers(),
        )
        self.metrics.events.labels(tenant, event.type).inc()
        latency = self.metrics.emit_seconds.labels(tenant)
        future.add_done_callback(lambda _: latency.observe(time.perf_counter() - started))
        if wait:
            await future

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
        await self._producer.flush()

    async def publish(self, topic: str, key: str, payload: dict[str, Any]) -> None:
        """Send one JSON record to a plane topic (DLQ, requests) and wait for the broker."""
        await self.ensure_topics([topic])
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        future = await self._producer.send(
            topic, value=body, key=key.encode(), headers=trace_headers()
        )
        await future
        if topic == dlq_topic(self._kafka.topic_prefix):
            tenant = str(payload.get("tenant") or "")
            self.metrics.dlq.labels(tenant, str(payload.get("kind") or "")).inc()

    @property
    def topic_prefix(self) -> str:
        return self._kafka.topic_prefix
