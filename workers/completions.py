"""Delivers external-step completions from Kafka to the waiting workflows.

Offsets are committed only after Temporal has the signal, so a crash
redelivers; the workflow drops a completion whose idempotency key it has
already seen, so a redelivery (or a service answering twice) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.emitter import Emitter
from tidings.kafka_connection import client_options
from tidings.settings import KafkaSettings
from tidings.topics import completions_topic, dlq_topic
from workflows.pipeline import COMPLETE_EXTERNAL_SIGNAL

log = logging.getLogger(__name__)

DEFAULT_GROUP = "tidings-completions"
_TRANSIENT = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


class CompletionConsumer:
    def __init__(
        self,
        temporal: Client,
        kafka: KafkaSettings,
        emitter: Emitter,
        *,
        group_id: str = DEFAULT_GROUP,
    ) -> None:
        self._temporal = temporal
        self._kafka = kafka
        self._emitter = emitter
        self._group_id = group_id
        self.delivered = 0

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            completions_topic(self._kafka.topic_prefix),
            **client_options(self._kafka),
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=100)
                for records in batches.values():
                    for record in records:
                        await self._handle(record.value)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def _handle(self, value: bytes | None) -> None:
        try:
            completion = _parse(value)
        except ValueError as exc:
            await self._dead_letter(str(exc), value)
            return
        handle = self._temporal.get_workflow_handle(completion["run_id"])
        while True:
            try:
                await handle.signal(COMPLETE_EXTERNAL_SIGNAL, completion)
                self.delivered += 1
                return
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    # The run finished (or never existed): nothing waits for this.
                    log.info("completion for closed run %s dropped", completion["run_id"])
                    return
                if exc.status not in _TRANSIENT:
                    await self._dead_letter(f"signal refused: {exc.message}", value)
                    return
                log.warning("signal failed (%s); retrying", exc.status)
                await asyncio.sleep(1)

    async def _dead_letter(self, reason: str, value: bytes | None) -> None:
        raw = (value or b"").decode("utf-8", "replace")[:10_000]
        await self._emitter.publish(
            dlq_topic(self._kafka.topic_prefix),
            "completions",
            {"kind": "bad_completion", "reason": reason, "record": raw},
        )


def _parse(value: bytes | None) -> dict[str, Any]:
    try:
        completion = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"completion is not JSON: {exc}") from None
    if not isinstance(completion, dict):
        raise ValueError("completion must be a JSON object")
    for key in ("run_id", "idempotency_key"):
        if not isinstance(completion.get(key), str) or not completion[key]:
            raise ValueError(f"completion.{key} must be a non-empty string")
    return completion
