"""Questions asked while the last answer is pending, answered by one request.

A burst of socket opens asks the same services the same kind of question
hundreds of times a second: end offsets, session writes, run lookups. Each
round trip costs far more client CPU than the item it carries (a Temporal
describe about 350 us, a Redis transaction about 200 us, on the 2-core test
machine), and handshakes arrive one per loop turn, so batching by loop turn
alone gains nothing. :class:`Batcher` is group commit: at most
``max_in_flight`` requests are out at once (one by default), and every caller that asks
meanwhile joins the next one (up to ``max_batch`` keys). An idle service is
asked at once; a busy one gets fewer, larger requests as the load grows. Each
caller gets its own answer, or the request's exception.

A request starts after every one of its callers asked, which matters to
callers that need a sample taken after something they did first (replay.py's
hand-over proof samples end offsets after registering with the tail).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

Send = Callable[[list[K]], Awaitable[dict[K, R]]]


@dataclass(eq=False)
class _Batch(Generic[K, R]):
    answer: asyncio.Future[dict[K, R]]
    keys: dict[K, None] = field(default_factory=dict)


class Batcher(Generic[K, R]):
    def __init__(self, send: Send[K, R], *, max_batch: int = 1000, max_in_flight: int = 1) -> None:
        """``send`` answers a list of distinct keys with a value for each (a
        key it leaves out raises ``KeyError`` in its callers)."""
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: deque[_Batch[K, R]] = deque()
        self._in_flight = 0
        self._pump_due = False
        self._sending: set[asyncio.Task[None]] = set()

    async def ask(self, key: K) -> R:
        waiting = self._waiting
        if waiting and len(waiting[-1].keys) < self._max_batch:
            batch = waiting[-1]
        else:
            batch = _Batch(asyncio.get_running_loop().create_future())
            waiting.append(batch)
            self._schedule_pump()
        batch.keys[key] = None
        # Shielded: a caller that gives up must not cancel the others' answer.
        answers = await asyncio.shield(batch.answer)
        return answers[key]

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    def _schedule_pump(self) -> None:
        # On the next turn, not now: callers asking in this turn join first.
        if not self._pump_due:
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_due = False
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = self._waiting.popleft()
            self._in_flight += 1
            task = asyncio.create_task(self._request(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _request(self, batch: _Batch[K, R]) -> None:
        answer = batch.answer
        try:
            found = await self._send(list(batch.keys))
        except asyncio.CancelledError:
            answer.cancel()
            raise
        except Exception as exc:
            if not answer.done():
                answer.set_exception(exc)
                answer.exception()  # retrieved: joiners that left must not log it
        else:
            if not answer.done():
                answer.set_result(found)
        finally:
            self._in_flight -= 1
            if self._waiting:
                self._schedule_pump()
