"""Runs this deployment has started or looked up, shared by every gateway in Redis.

Temporal is the source of truth for runs, but asking it is the slowest step
of a stream open: a visibility query per 100 runs (tens of milliseconds on a
loaded server) or a describe, and a fresh replica (a deploy, a scale-up, a
reconnect storm after a crash) has no answer cached. Whose a run is and when
it started never change, so any gateway that learns them, by starting the
run (``POST /v1/runs``) or from Temporal, writes them here, and every other
gateway reads them in one round trip per batch of opens.

An entry is written only after Temporal has confirmed the run, so a run it
names exists (or existed: a run Temporal has since deleted replays its log
and ends, as a finished one does). What it does not say is whether the run
is still running: an answer from here is marked ``cached``, and the socket
asks Temporal later (``CachedRunDirectory.watch``). Entries expire after
``TIDINGS_GATEWAY_RUN_INDEX_TTL_SECONDS``, refreshed on every read, so Redis
holds the runs clients still watch, not every run ever started. A run not
found here is asked of Temporal: the index only ever saves a round trip. A
Redis that does not answer fails the open, as the session it would write
next would (1013, ``gateway.outages``), but never a start: a run that
started is answered whether or not it could be recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .batching import Batcher

log = logging.getLogger(__name__)

_PREFIX = "tidings:run:"

# Many runs in one command each way: a pipeline of one command per run cost
# the gateway more CPU per open (redis-py packs and parses each) than the
# Temporal query it saves. A missing key is false in Lua and nil again in
# the reply, so positions hold. ARGV[1] is the TTL.
_FIND = """
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('GETEX', key, 'EX', ARGV[1])
end
return found
"""
_RECORD = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""
# Opens of one loop turn share a script call; far below what Redis takes at once.
_MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class IndexedRun:
    tenant: str
    started_at: datetime


class RunIndex:
    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._find_many = redis.register_script(_FIND)
        self._record_many = redis.register_script(_RECORD)
        self._finding: Batcher[str, IndexedRun | None] = Batcher(self._find, max_batch=_MAX_BATCH)
        self._recording: Batcher[tuple[str, IndexedRun], None] = Batcher(
            self._record, max_batch=_MAX_BATCH
        )
        self._unrecorded: list[tuple[str, str, datetime]] = []
        self._recorder: asyncio.Task[None] | None = None

    async def find(self, run_id: str) -> IndexedRun | None:
        """The run's owner and start, if a gateway recorded them (None: ask
        Temporal). Raises Redis's error if it does not answer."""
        return await self._finding.ask(run_id)

    async def record(self, run_id: str, tenant: str, started_at: datetime) -> None:
        """Remember a run Temporal has confirmed. Never raises: a run the
        index misses is only asked of Temporal."""
        try:
            await self._recording.ask((run_id, IndexedRun(tenant, started_at)))
        except RedisError as exc:
            log.warning("cannot record run %s in the run index: %s", run_id, type(exc).__name__)

    def record_soon(self, run_id: str, tenant: str, started_at: datetime) -> None:
        """:meth:`record`, without waiting: for a socket that has its answer
        from Temporal already, and should not wait on Redis to share it."""
        self._unrecorded.append((run_id, tenant, started_at))
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record_pending())

    async def close(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
        await self._finding.close()
        await self._recording.close()

    async def _record_pending(self) -> None:
        try:
            while self._unrecorded:
                pending, self._unrecorded = self._unrecorded, []
                await asyncio.gather(*(self.record(*run) for run in pending))
        finally:
            self._recorder = None

    async def _find(self, run_ids: list[str]) -> dict[str, IndexedRun | None]:
        values = await self._find_many(
            keys=[_PREFIX + run_id for run_id in run_ids], args=[self._ttl]
        )
        return {run_id: _decode(value) for run_id, value in zip(run_ids, values, strict=True)}

    async def _record(
        self, runs: list[tuple[str, IndexedRun]]
    ) -> dict[tuple[str, IndexedRun], None]:
        await self._record_many(
            keys=[_PREFIX + run_id for run_id, _ in runs],
            args=[self._ttl, *(_encode(run) for _, run in runs)],
        )
        return dict.fromkeys(runs)


def _encode(run: IndexedRun) -> str:
    return f"{int(run.started_at.timestamp() * 1000)}:{run.tenant}"


def _decode(value: bytes | str | None) -> IndexedRun | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, tenant = text.partition(":")
    try:
        started_at = datetime.fromtimestamp(int(millis) / 1000, UTC)
    except ValueError:
        return None
    return IndexedRun(tenant, started_at) if tenant else None
