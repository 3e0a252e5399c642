"""Give memory back after a connection burst (docs/operations.md, "Memory after a burst").

A burst of short-lived sockets leaves two kinds of memory behind once the
sockets are gone. Cyclic garbage: each socket's objects include reference
cycles (tasks, futures, exceptions and their tracebacks), which only a full
collection frees, and :func:`gateway.server.command.tune_gc` makes full collections
rare on purpose (they re-walk every open socket's objects). And free memory
the allocators keep: CPython's object arenas are returned only when wholly
empty, glibc's heap only from its top unless asked (``malloc_trim``).

So every ``interval`` seconds the keeper reads the process's RSS, and once it
has grown by ``growth_bytes`` since the last clean-up (or the lowest it has
been since) and stopped growing (less than an eighth of that since the
previous look: the burst is over) runs one full collection and
``malloc_trim(0)``: a cost paid once per burst-sized growth, never in a
steady state. The collection holds the event loop for its duration (0.4-0.6 s
with ~160,000 dead objects on 2 busy cores), which is why it waits for growth
and for the burst to end instead of running on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> object:
        return trim(0)

    return call


class MemoryKeeper:
    def __init__(
        self,
        interval: float,
        growth_bytes: int,
        *,
        rss: Callable[[], int] = rss_bytes,
        trim: Callable[[], object] | None = None,
        collect: Callable[[], int] = gc.collect,
    ) -> None:
        self._interval = interval
        self._growth = growth_bytes
        self._rss = rss
        self._trim = trim
        self._collect = collect
        self._low = self._last = rss()
        self._task: asyncio.Task[None] | None = None
        self.cleanups = 0

    def check(self) -> bool:
        """One look at RSS; cleans up (and says so) if it grew enough and has
        stopped growing: the collection stalls the loop, so not mid-burst."""
        now, previous = self._rss(), self._last
        self._last = now
        if now < self._low + self._growth:
            self._low = min(self._low, now)
            return False
        if now > previous + self._growth // 8:
            return False  # still growing: a burst is on
        began = time.perf_counter()
        found = self._collect()
        if self._trim is not None:
            self._trim()
        after = self._rss()
        self._low = self._last = after
        self.cleanups += 1
        log.info(
            "memory clean-up: RSS %.0f -> %.0f MiB, %d unreachable objects freed, %.3f s",
            now / 2**20,
            after / 2**20,
            found,
            time.perf_counter() - began,
        )
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
