"""Small helpers for tests: free ports and waiting on a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from infra.ports import free_port
from tidings.client import Subscription

__all__ = ["drop_connection", "free_port", "wait_for", "wait_until"]


def drop_connection(subscription: Subscription) -> None:
    """Drop ``subscription``'s connection abruptly, as a network failure would;
    the subscription resumes on its own. The client library offers no such
    call (applications never need one), so this reaches for its socket."""
    ws = subscription._ws
    if ws is not None:
        ws.transport.abort()


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109 (a deadline for polling, not for one awaitable)
    message: str,
    *,
    interval: float = 0.05,
) -> None:
    """Await until ``predicate()`` (sync or async) is true, or fail with ``message``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {message}")
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], bool], timeout: float, message: str, *, interval: float = 0.05
) -> None:
    """The same for synchronous tests."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {message}")
        time.sleep(interval)
