"""The run-close watcher: the terminal event of runs the workflow could not end.

A run ends in its log with exactly one terminal event, and that event is what
ends every open socket (the gateway sends ``end`` after it). The workflow
writes it when it closes itself (completed, failed, cancelled). It cannot
when Temporal closes it: ``temporal workflow terminate``, a workflow
execution timeout, a reset that closes the current execution; nor could a
run cancelled mid-step before the ``terminal-event-at-every-close`` patch.

Every worker process runs one :class:`RunCloseWatcher` for the runs of its
task queues (the workers that run a run's workflow own its end). Each pass
lists the runs Temporal closed recently with any status but COMPLETED (a completing
workflow returns only after its run.completed was written), checks the
run's partition for a terminal event and writes the missing one. The event
has the id the workflow would give it (``TERMINAL_SEQ``), so whoever writes
it, it is the same event and clients drop a repeat by id. Several workers
share the work through a short Redis claim per run, so the log normally
holds one copy; without Redis each worker checks and writes on its own,
and the rare repeat still has the same id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiokafka import TopicPartition
from redis.exceptions import RedisError
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistoryEventFilterType

from activities.emitter import Emitter
from activities.types import RUN_ATTEMPT, TERMINAL_SEQ
from tidings.events import Event, EventType
from tidings.kafka_log import committed_reader, partition_for, run_key, started
from tidings.runs import PIPELINE_WORKFLOW, tenant_of_run
from tidings.settings import KafkaSettings
from tidings.topics import events_topic

log = logging.getLogger(__name__)

# The terminal event of each way Temporal closes a run. COMPLETED is absent:
# the workflow returns only once run.completed is in the log.
TERMINAL_OF: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.FAILED: EventType.RUN_FAILED,
    WorkflowExecutionStatus.CANCELED: EventType.RUN_CANCELLED,
    WorkflowExecutionStatus.TERMINATED: EventType.RUN_TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT: EventType.RUN_TIMED_OUT,
}
_STATUS_NAMES = ("Failed", "Canceled", "Terminated", "TimedOut")

# Runs closed this long before a pass are listed again: visibility may show a
# close late, and a claim held by a worker that died expires within it.
_RELIST_SECONDS = 120.0
_CLAIM_SECONDS = 30
_CLAIM_KEY = "tidings:run-close:{}"
_MINE, _THEIRS, _DONE = "mine", "theirs", "done"
# A terminal event is written just before its close; records older than
# this before the close are not scanned (bounded work for a busy partition).
_LOOKBACK_SECONDS = 600.0
_MAX_SCAN = 200_000
_SCAN_BUDGET_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ClosedRun:
    run_id: str
    execution: str  # Temporal's run id of the closed execution
    status: WorkflowExecutionStatus
    started: datetime
    closed: datetime

    @property
    def tenant(self) -> str | None:
        return tenant_of_run(self.run_id)


def terminal_event(run: ClosedRun, tenant: str, data: dict[str, Any]) -> Event:
    """The terminal event the workflow would have written: same id."""
    return Event(
        type=TERMINAL_OF[run.status],
        tenant=tenant,
        run_id=run.run_id,
        step=None,
        attempt=RUN_ATTEMPT,
        seq=TERMINAL_SEQ,
        data=data,
    )


def close_query(task_queues: Sequence[str], since: datetime) -> str:
    statuses = " OR ".join(f"ExecutionStatus = '{name}'" for name in _STATUS_NAMES)
    queues = " OR ".join(f"TaskQueue = '{queue}'" for queue in task_queues)
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        f"WorkflowType = '{PIPELINE_WORKFLOW}' AND ({queues})"
        f" AND CloseTime >= '{stamp}' AND ({statuses})"
    )


class RunCloseWatcher:
    def __init__(
        self,
        temporal: Client,
        emitter: Emitter,
        kafka: KafkaSettings,
        task_queues: Sequence[str],
        *,
        redis: aioredis.Redis | None = None,
        poll_seconds: float = 1.0,
        catch_up_seconds: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._temporal = temporal
        self._emitter = emitter
        self._kafka = kafka
        self._task_queues = list(task_queues)
        self._redis = redis
        self._poll_seconds = poll_seconds
        self._clock = clock
        # The first pass also covers runs closed while no worker was running.
        self._since = clock() - timedelta(seconds=catch_up_seconds)
        self._settled: dict[str, datetime] = {}  # execution -> its close time
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.written = 0  # terminal events this watcher wrote (tests, logs)

    def has_settled(self, execution: str) -> bool:
        """Whether this watcher has seen the closed ``execution`` through."""
        return execution in self._settled

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Temporal or Kafka away: the next pass tries again.
                log.warning("run-close pass failed: %s", exc)
            await asyncio.sleep(max(self._poll_seconds - (time.monotonic() - started), 0.05))

    async def sweep(self) -> None:
        """One pass: every recently closed run gets its terminal event."""
        now = self._clock()
        since = self._since
        async for execution in self._temporal.list_workflows(close_query(self._task_queues, since)):
            if execution.close_time is None or execution.status not in TERMINAL_OF:
                continue
            if execution.run_id in self._settled:
                continue
            run = ClosedRun(
                execution.id,
                execution.run_id,
                execution.status,
                execution.start_time,
                execution.close_time,
            )
            if await self.settle(run):
                self._settled[run.execution] = run.closed
        self._since = max(since, now - timedelta(seconds=_RELIST_SECONDS))
        self._settled = {k: v for k, v in self._settled.items() if v >= self._since}

    async def settle(self, run: ClosedRun) -> bool:
        """Write ``run``'s terminal event unless its log has one; False when
        another worker holds the run (this one looks again next pass)."""
        tenant = run.tenant
        if tenant is None:
            return True  # not a run id Tidings made: no tenant topic to write to
        claim = await self._claim(run)
        if claim != _MINE:
            return claim == _DONE
        if await self._superseded(run):
            log.info("run %s goes on in a newer execution (reset)", run.run_id)
        elif not await self._has_terminal(run, tenant):
            event = terminal_event(run, tenant, await self._details(run))
            await self._emitter.emit(event)
            self.written += 1
            log.info(
                "wrote %s for run %s, closed by Temporal as %s",
                event.type,
                run.run_id,
                run.status.name,
            )
        await self._mark_done(run)
        return True

    async def _superseded(self, run: ClosedRun) -> bool:
        """A reset closes the execution it resets away (TERMINATED), yet the
        run goes on in the new one, whose own close is listed in turn."""
        latest = await self._temporal.get_workflow_handle(run.run_id).describe()
        return latest.run_id != run.execution

    async def _claim(self, run: ClosedRun) -> str:
        """_MINE: this watcher checks the run; _THEIRS: another one is at it;
        _DONE: another one saw it through."""
        if self._redis is None:
            return _MINE
        key = _CLAIM_KEY.format(run.execution)
        try:
            if await self._redis.set(key, self._owner, nx=True, ex=_CLAIM_SECONDS):
                return _MINE
            owner = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            # The claim only saves work: without it, write (same id) anyway.
            log.info("run-close claim unavailable (%s); checking %s alone", exc, run.run_id)
            return _MINE
        if isinstance(owner, bytes):
            owner = owner.decode()
        if owner == _DONE:
            return _DONE
        # Expired between the two calls: the next pass claims it.
        return _MINE if owner == self._owner else _THEIRS

    async def _mark_done(self, run: ClosedRun) -> None:
        if self._redis is None:
            return
        try:
            # Longer than the run stays listed: no other watcher rechecks it.
            await self._redis.set(
                _CLAIM_KEY.format(run.execution), _DONE, ex=int(_RELIST_SECONDS * 2)
            )
        except (RedisError, OSError) as exc:
            log.info("cannot mark %s done (%s): other workers will check it", run.run_id, exc)

    async def _has_terminal(self, run: ClosedRun, tenant: str) -> bool:
        topic = events_topic(self._kafka.topic_prefix, tenant)
        await self._emitter.ensure_topics([topic])
        consumer = await started(committed_reader(self._kafka))
        try:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                # A fresh consumer's metadata may predate a topic just created.
                partitions = await self._emitter.partitions(topic)
            if not partitions:
                return False
            tp = TopicPartition(topic, partition_for(run.run_id, list(partitions)))
            consumer.assign([tp])
            start = max(run.started, run.closed - timedelta(seconds=_LOOKBACK_SECONDS))
            found = await consumer.offsets_for_times({tp: int(start.timestamp() * 1000)})
            end = (await consumer.end_offsets([tp]))[tp]
            position = found[tp].offset if found.get(tp) is not None else end
            return await _scan_for_terminal(consumer, tp, position, end, run_key(run.run_id))
        finally:
            await consumer.stop()

    async def _details(self, run: ClosedRun) -> dict[str, Any]:
        """What Temporal says about the close, as the event's data."""
        data: dict[str, Any] = {"status": _STATE_OF[run.status]}
        if run.status == WorkflowExecutionStatus.CANCELED:
            data["steps"] = []
        handle = self._temporal.get_workflow_handle(run.run_id, run_id=run.execution)
        try:
            async for event in handle.fetch_history_events(
                event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
            ):
                if event.event_type == HistoryEventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
                    data["reason"] = event.workflow_execution_terminated_event_attributes.reason
                elif event.event_type == HistoryEventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                    failure = event.workflow_execution_failed_event_attributes.failure
                    data["error"] = failure.message
                    data["error_type"] = failure.application_failure_info.type or None
        except Exception as exc:
            log.info("no close details for %s: %s", run.run_id, exc)
        return data


_STATE_OF: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.FAILED: "FAILED",
    WorkflowExecutionStatus.CANCELED: "CANCELLED",
    WorkflowExecutionStatus.TERMINATED: "TERMINATED",
    WorkflowExecutionStatus.TIMED_OUT: "TIMED_OUT",
}


async def _scan_for_terminal(
    consumer: Any, tp: TopicPartition, position: int, end: int, key: bytes
) -> bool:
    """Whether a terminal event keyed ``key`` lies in [position, end)."""
    if position >= end:
        return False
    consumer.seek(tp, position)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SCAN_BUDGET_SECONDS
    scanned = 0
    while position < end and scanned < _MAX_SCAN and loop.time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=1000)
        records = batch.get(tp, [])
        if not records:
            position = max(position, await consumer.position(tp))
            continue
        for record in records:
            if record.offset >= end:
                return False
            position = record.offset + 1
            scanned += 1
            if record.key == key and _is_terminal(record.headers):
                return True
    # Not found within the bounds: writing again is safe (same id).
    return False


def _is_terminal(headers: Any) -> bool:
    for name, value in headers or ():
        if name == "type":
            return bool(value.decode(errors="replace") in EventType.TERMINAL)
    return False
