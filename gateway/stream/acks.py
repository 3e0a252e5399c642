"""Acks on their own path: read as fast as they arrive, written to Redis coalesced.

A socket's reader only parses an ack and records it here (latest wins per
session); it never waits for Redis. One writer per gateway sends every
session's latest ack in one Redis call at most every ``interval`` seconds,
so a client acking every event costs Redis one small write per interval,
not one round trip per ack, and a gateway killed with ``kill -9`` loses at
most the acks of the last interval plus one round trip (the resume then
repeats those events; it never skips one). A socket that closes, ends or
resumes writes its session's latest ack at once (:meth:`AckLedger.settle`),
so a clean drop resumes right after the last ack the gateway read.

Redis being away does not end a socket: acks wait here, newest kept, and go
out once Redis answers again (a warning is logged once per outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Advance = Callable[[dict[str, int]], Awaitable[dict[str, bool]]]


class AckLedger:
    def __init__(self, advance: Advance, *, interval: float) -> None:
        """``advance`` writes ``{sid: next offset}`` and says, per session,
        whether it still existed (``SessionStore.advance_many``)."""
        self._advance = advance
        self._interval = interval
        self._due: dict[str, int] = {}
        self._expired: dict[str, Callable[[], None]] = {}
        self._in_flight: dict[str, int] = {}
        self._sent: asyncio.Future[None] | None = None  # done when the write in flight is
        self._writer: asyncio.Task[None] | None = None
        self._failing = False

    def record(self, sid: str, next_offset: int, on_expired: Callable[[], None]) -> None:
        """Everything before ``next_offset`` of session ``sid`` is acked;
        ``on_expired`` is called if Redis no longer has the session."""
        due = self._due
        if due.get(sid, -1) < next_offset:
            due[sid] = next_offset
            self._expired[sid] = on_expired
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run())

    def pending(self, sid: str) -> bool:
        return sid in self._due or sid in self._in_flight

    async def settle(self, sid: str) -> None:
        """Write ``sid``'s latest ack now, after any write of it in flight.

        Raises what Redis raised (the ack stays due, for the writer)."""
        while sid in self._in_flight and self._sent is not None:
            await asyncio.shield(self._sent)
        due = self._due.pop(sid, None)
        if due is None:
            return
        on_expired = self._expired.pop(sid, None)
        try:
            answers = await self._advance({sid: due})
        except BaseException:
            self._requeue({sid: due}, {sid: on_expired} if on_expired else {})
            raise
        if not answers.get(sid, True) and on_expired is not None:
            on_expired()

    def forget(self, sid: str) -> None:
        """Stop telling the socket of ``sid`` about expiry (it is gone); its
        ack is still written."""
        self._expired.pop(sid, None)

    async def close(self) -> None:
        """Write what is due, once (on shutdown), then stop the writer."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if self._due:
            due, self._due = self._due, {}
            try:
                await self._advance(due)
            except Exception as exc:
                log.warning("%d sessions' last acks not written (%s)", len(due), type(exc).__name__)

    async def _run(self) -> None:
        try:
            while self._due:
                await asyncio.sleep(self._interval)
                await self._write_due()
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _write_due(self) -> None:
        due, self._due = self._due, {}
        expired = {sid: self._expired.pop(sid) for sid in due if sid in self._expired}
        self._in_flight = due
        sent = self._sent = asyncio.get_running_loop().create_future()
        try:
            answers = await self._advance(due)
        except BaseException as exc:
            self._requeue(due, expired)
            if not isinstance(exc, Exception):
                raise
            if not self._failing:
                self._failing = True
                # The error's kind only: its text may carry the Redis URL.
                log.warning("acks not written to Redis, kept to retry (%s)", type(exc).__name__)
            # Do not spin against a Redis that is away.
            await asyncio.sleep(min(1.0, self._interval * 100))
            return
        finally:
            self._in_flight = {}
            if not sent.done():
                sent.set_result(None)
        if self._failing:
            self._failing = False
            log.warning("acks written to Redis again")
        for sid, alive in answers.items():
            callback = expired.get(sid)
            if not alive and callback is not None:
                callback()

    def _requeue(self, due: dict[str, int], expired: dict[str, Callable[[], None]]) -> None:
        for sid, offset in due.items():
            if self._due.get(sid, -1) < offset:
                self._due[sid] = offset
                callback = expired.get(sid)
                if callback is not None and sid not in self._expired:
                    self._expired[sid] = callback
