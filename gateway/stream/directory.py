"""Which runs exist, and whose they are: the stream asks before it opens a socket.

:class:`RunDirectory` is the seam; the gateway passes
``gateway.rest.run_directory.OwnedRunDirectory``, which answers from Temporal
(the source of truth for runs) by the REST routes' ownership rule. Unit tests
may pass a stand-in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from tidings.runs import RunState

from .run_index import IndexedRun

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    tenant: str
    state: str  # a RunState value
    # Lets a from=start replay seek by time instead of scanning the whole partition.
    started_at: datetime | None = None
    # ``state`` may be stale (a cache, or a lagging index): the socket settles
    # it later (CachedRunDirectory, connection.py).
    cached: bool = False

    @property
    def finished(self) -> bool:
        return self.state in RunState.FINISHED


class RunDirectory(Protocol):
    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        """The run if it exists and belongs to ``tenant``; otherwise None, so
        another tenant's run is indistinguishable from a missing one."""
        ...


class RunRecords(Protocol):
    """Where gateways share what they learned of runs (``run_index.RunIndex``)."""

    async def find(self, run_id: str) -> IndexedRun | None: ...

    def record_soon(self, run_id: str, tenant: str, started_at: datetime) -> None: ...


@dataclass(slots=True)
class _Watch:
    since: float
    callbacks: list[Callable[[RunInfo], None]] = field(default_factory=list)


class CachedRunDirectory:
    """Runs seen before, answered without a round trip.

    A socket open would otherwise ask Temporal to describe the run every time
    (one gRPC call, the slowest step of an open): a burst of sockets on the
    same runs asks once. What is cached never goes wrong: a run's owner and
    existence never change, and a finished state is final. A RUNNING state
    may be stale, so it comes back marked ``cached``, and the socket asks
    :meth:`asked_since` in the background whether the run has finished since
    it opened (a terminated run emits no terminal event, and its sockets must
    still get ``end``); sockets of one run share those questions. Unknown
    runs are not cached: the run may be started the next moment.

    With an ``index`` (``run_index.py``), a run this gateway has not seen is
    looked up there first, where any gateway that started or looked it up
    left its owner and start: one Redis round trip per batch of opens instead
    of a Temporal query. What Temporal answers is written there for the
    others. ``counted`` is told what answered each open's lookup: ``cache``,
    ``index`` or ``temporal``.
    """

    def __init__(
        self,
        inner: RunDirectory,
        *,
        max_runs: int = 100_000,
        settle_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        index: RunRecords | None = None,
        counted: Callable[[str], None] = lambda source: None,
    ) -> None:
        self._inner = inner
        self._index = index
        self._counted = counted
        self._max_runs = max_runs
        self._settle_seconds = settle_seconds
        self.clock = clock
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._settling: set[asyncio.Task[None]] = set()
        # Each known run, with when the question behind its answer was asked.
        self._runs: OrderedDict[tuple[str, str], tuple[float, RunInfo]] = OrderedDict()
        self._asking: dict[tuple[str, str], tuple[float, asyncio.Future[RunInfo | None]]] = {}

    async def lookup(self, tenant: str, run_id: str) -> RunInfo | None:
        key = (tenant, run_id)
        known = self._runs.get(key)
        if known is None:
            if self._index is not None:
                indexed = await self._index.find(run_id)
                if indexed is not None and indexed.tenant == tenant:
                    self._counted("index")
                    info = RunInfo(
                        run_id, tenant, RunState.RUNNING, indexed.started_at, cached=True
                    )
                    # Asked of nobody: the socket's settling question goes to Temporal.
                    self._remember(key, float("-inf"), info)
                    return info
            self._counted("temporal")
            # Any answer will do, one in flight included: a burst asks once.
            found = await self.asked_since(tenant, run_id, float("-inf"))
            if found is not None and self._index is not None and found.started_at is not None:
                self._index.record_soon(run_id, tenant, found.started_at)
            return found
        self._counted("cache")
        self._runs.move_to_end(key)
        info = known[1]
        return info if info.finished else replace(info, cached=True)

    async def asked_since(self, tenant: str, run_id: str, since: float) -> RunInfo | None:
        """An answer to a question asked at or after ``since``: the one in
        flight or the last one if recent enough, else a new one."""
        key = (tenant, run_id)
        known = self._runs.get(key)
        if known is not None and (known[0] >= since or known[1].finished):
            return known[1]
        asking = self._asking.get(key)
        if asking is None or asking[0] < since:
            asked_at = self.clock()
            future = asyncio.ensure_future(self._ask(key, asked_at))
            asking = self._asking[key] = (asked_at, future)
            future.add_done_callback(lambda done: self._forget(key, done))
        # Shielded: one socket giving up must not cancel the others' answer.
        return await asyncio.shield(asking[1])

    def watch(
        self, tenant: str, run_id: str, since: float, on_finished: Callable[[RunInfo], None]
    ) -> None:
        """Call ``on_finished`` if a question asked after ``since`` finds the
        run finished (nothing if it is running, unknown, or the question fails:
        the next socket asks again)."""
        key = (tenant, run_id)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(since)
            asyncio.get_running_loop().call_later(self._settle_seconds, self._settle, key)
        watch.since = max(watch.since, since)
        watch.callbacks.append(on_finished)

    async def close(self) -> None:
        for task in list(self._settling):
            task.cancel()
        await asyncio.gather(*self._settling, return_exceptions=True)

    def _settle(self, key: tuple[str, str]) -> None:
        watch = self._watches.pop(key, None)
        if watch is not None:
            task = asyncio.create_task(self._answer(key, watch))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _answer(self, key: tuple[str, str], watch: _Watch) -> None:
        try:
            info = await self.asked_since(*key, watch.since)
        except Exception as exc:
            log.warning("cannot settle the state of %s: %s", key[1], exc)
            return
        if info is not None and info.finished:
            for callback in watch.callbacks:
                callback(info)

    def _forget(self, key: tuple[str, str], done: asyncio.Future[RunInfo | None]) -> None:
        asking = self._asking.get(key)
        if asking is not None and asking[1] is done:
            del self._asking[key]

    async def _ask(self, key: tuple[str, str], asked_at: float) -> RunInfo | None:
        info = await self._inner.lookup(*key)
        if info is not None:
            self._remember(key, asked_at, info)
        return info

    def _remember(self, key: tuple[str, str], asked_at: float, info: RunInfo) -> None:
        known = self._runs.get(key)
        if known is None or known[0] <= asked_at:
            self._runs[key] = (asked_at, info)
        self._runs.move_to_end(key)
        while len(self._runs) > self._max_runs:
            self._runs.popitem(last=False)
