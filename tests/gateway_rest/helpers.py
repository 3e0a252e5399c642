"""Helpers for the REST tests: the tenants' keys, polling for a value
(``tests.support.wait_for`` only answers yes/no), a real uvicorn server on a
thread of its own, and run bookkeeping for cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client, WorkflowExecutionStatus

T = TypeVar("T")

DEMO_KEY = "dev-key-demo"
ACME_KEY = "test-key-acme-0001"
API_KEYS = {DEMO_KEY: "demo", ACME_KEY: "acme"}
MAX_BODY = 4096
EVENT_PARTITIONS = 3


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    delay = 0.02
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(delay)  # a poll interval, not a synchronisation
        delay = min(delay * 2, 0.25)


@contextmanager
def serve(make_app: Callable[[], FastAPI], port: int) -> Iterator[str]:
    """Run the app ``make_app`` builds under uvicorn on its own thread and event
    loop, as ``tidings gateway`` does (an app factory, called in the serving loop).

    A thread (not a task on the test loop) lets synchronous clients such as the
    CLI talk to it, and keeps the server's clients on the server's loop.
    """
    config = uvicorn.Config(
        make_app,
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class Runs:
    """Remembers the runs a test started and terminates the unfinished ones after it."""

    def __init__(self, temporal: Client) -> None:
        self.temporal = temporal
        self.ids: set[str] = set()

    def track(self, run_id: str) -> str:
        self.ids.add(run_id)
        return run_id

    async def status(self, run_id: str) -> WorkflowExecutionStatus | None:
        return (await self.temporal.get_workflow_handle(run_id).describe()).status

    async def close_all(self) -> None:
        for run_id in self.ids:
            handle = self.temporal.get_workflow_handle(run_id)
            with contextlib.suppress(Exception):  # already finished, or never started
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test cleanup")
