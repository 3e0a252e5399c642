"""Every close of a run reaches the sockets already open on it within 5 s,
and the run's log holds exactly one terminal event.

One real worker (with its run-close watcher), one real gateway, Temporal and
Kafka; each test opens a WebSocket on a running run, closes the run one way
and checks the socket, then the log.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.orchestration.harness import Harness, fixture_registry, running_worker
from tests.stream.conftest import StreamEnv
from tests.stream.harness import Gateway, gateway, wait_for, ws_url
from tests.topics import records_to_end
from tidings.events import Event, EventType
from tidings.runs import PipelineInput
from tidings.settings import Settings, TemporalSettings
from workers.run_close import RunCloseWatcher
from workflows.start import run_id_for, start_pipeline, start_run

pytestmark = [pytest.mark.integration]

END_WITHIN = 5.0


@dataclass
class EndStack:
    env: StreamEnv
    settings: Settings
    harness: Harness
    gateway: Gateway
    watcher: RunCloseWatcher

    @property
    def temporal(self) -> Client:
        return self.harness.client

    async def start(self, pipeline: str, data: dict[str, Any]) -> str:
        run_id, _ = await start_run(
            self.temporal,
            self.settings,
            self.env.tenant,
            pipeline,
            data,
            uuid.uuid4().hex,
            registry=self.harness.registry,
        )
        return run_id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack_end(stream_env: StreamEnv) -> AsyncIterator[EndStack]:
    base = stream_env.base
    settings = Settings(
        temporal=TemporalSettings(
            address=base.temporal.address, task_queue=f"run-end-{uuid.uuid4().hex[:8]}"
        ),
        kafka=base.kafka,
        redis=base.redis,
    )
    async with (
        running_worker(settings, stream_env.temporal, fixture_registry()) as harness,
        gateway(stream_env.settings()) as gw,
    ):
        watcher = RunCloseWatcher(
            harness.client,
            harness.clients.emitter,
            settings.kafka,
            [settings.temporal.task_queue],
            redis=harness.clients.redis,
            poll_seconds=1.0,  # the default
            catch_up_seconds=0,
        )
        task = asyncio.create_task(watcher.run())
        try:
            yield EndStack(stream_env, settings, harness, gw, watcher)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@dataclass
class Tap:
    """One open socket's frames, with the wall time ``end`` arrived."""

    opened_at: float = field(default_factory=time.time)
    frames: list[dict[str, Any]] = field(default_factory=list)
    ended_at: float | None = None
    close_code: int | None = None

    async def read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame["kind"] == "end":
                    self.ended_at = time.time()
        except ConnectionClosed:
            pass
        self.close_code = ws.close_code

    def events(self) -> list[dict[str, Any]]:
        return [f["event"] for f in self.frames if f["kind"] == "event"]

    def saw(self, type_: str) -> bool:
        return any(e["type"] == type_ for e in self.events())


@asynccontextmanager
async def open_socket(stack: EndStack, run_id: str) -> AsyncIterator[Tap]:
    headers = {"Authorization": f"Bearer {stack.env.key(stack.env.tenant)}"}
    async with connect(
        ws_url(stack.gateway.url, run_id), additional_headers=headers, compression=None
    ) as ws:
        tap = Tap()
        reader = asyncio.create_task(tap.read(ws))
        try:
            yield tap
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def run_log(stack: EndStack, run_id: str) -> list[Event]:
    """The run's records in its tenant topic, up to the end of the log now."""
    bootstrap = stack.settings.kafka.bootstrap_servers
    records = await records_to_end(bootstrap, stack.env.topic(stack.env.tenant), timeout=20)
    return [Event.from_bytes(r.value or b"") for r in records if r.key == run_id.encode()]


async def check_close(
    stack: EndStack,
    run_id: str,
    *,
    ready: str,
    close: Callable[[], Awaitable[object]] | None,
    status: str,
    terminal: str,
    by_watcher: bool,
) -> Tap:
    """Open a socket on the running ``run_id``; once it has seen ``ready``,
    ``close`` the run (or let it close itself); check the socket and the log."""
    handle = stack.temporal.get_workflow_handle(run_id)
    written_before = stack.watcher.written
    async with open_socket(stack, run_id) as tap:
        await wait_for(lambda: tap.saw(ready), 60, f"{ready} on the open socket")
        if close is not None:
            await close()
        await wait_for(lambda: tap.ended_at is not None, 60, "end on the open socket")
        await wait_for(lambda: tap.close_code is not None, 10, "the close after end")

    # The workflow writes its terminal event just before it closes.
    async def closed() -> bool:
        nonlocal described
        described = await handle.describe()
        return described.close_time is not None

    described = await handle.describe()
    await wait_for(closed, 10, "Temporal to close the run")
    closed_at = described.close_time
    assert closed_at is not None
    assert tap.opened_at < closed_at.timestamp(), "the socket opened after the close"
    assert tap.ended_at is not None
    delay = tap.ended_at - closed_at.timestamp()
    assert delay < END_WITHIN, f"end came {delay:.2f}s after the close"
    assert tap.frames[-1] == {"kind": "end", "status": status}
    assert tap.close_code == 1000
    terminals = [e for e in tap.events() if e["type"] in EventType.TERMINAL]
    assert [e["type"] for e in terminals] == [terminal]
    assert tap.events()[-1]["type"] == terminal

    # Once the watcher has looked at the run (it does for every close but
    # COMPLETED), the log holds one terminal event, written by the workflow
    # when it could, else by the watcher.
    execution = described.run_id
    if status != "COMPLETED":
        await wait_for(lambda: stack.watcher.has_settled(execution), 30, "the watcher to settle")
    assert stack.watcher.written - written_before == (1 if by_watcher else 0)
    log = await run_log(stack, run_id)
    assert [e.type for e in log if e.is_terminal] == [terminal]
    assert log[-1].type == terminal
    return tap


@dataclass(frozen=True)
class Close:
    """One way a run closes, and what its open socket and its log must show."""

    pipeline: str
    data: dict[str, Any]
    ready: str  # the event the socket sees before the close
    how: str | None  # "cancel", "terminate", or None: the run closes by itself
    status: str
    terminal: str
    by_watcher: bool  # the watcher, not the workflow, writes the terminal event
    last_data: dict[str, Any] | None = None  # the terminal event's data, where it says more


CLOSES = {
    "completed": Close(
        "slow-step", {"seconds": 2}, EventType.STEP_TOKEN, None,
        "COMPLETED", EventType.RUN_COMPLETED, by_watcher=False,
    ),
    "failed": Close(
        "slow-step", {"seconds": 2, "fail": True}, EventType.STEP_TOKEN, None,
        "FAILED", EventType.RUN_FAILED, by_watcher=False,
    ),
    # Written by the workflow itself, naming the step it cancelled.
    "cancelled-mid-step": Close(
        "slow-step", {"seconds": 60}, EventType.STEP_TOKEN, "cancel",
        "CANCELLED", EventType.RUN_CANCELLED, by_watcher=False, last_data={"steps": ["wait"]},
    ),
    "cancelled-waiting-for-approval": Close(
        "research-approval", {"question": "Why end?", "require_approval": True},
        EventType.RUN_WAITING, "cancel", "CANCELLED", EventType.RUN_CANCELLED, by_watcher=False,
    ),
    "terminated": Close(
        "slow-step", {"seconds": 60}, EventType.STEP_TOKEN, "terminate",
        "TERMINATED", EventType.RUN_TERMINATED, by_watcher=True,
        last_data={"status": "TERMINATED", "reason": "operator stopped it"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CLOSES.values(), ids=CLOSES.keys())
async def test_a_close_ends_open_sockets_with_one_terminal_event(
    stack_end: EndStack, case: Close
) -> None:
    run_id = await stack_end.start(case.pipeline, case.data)
    handle = stack_end.temporal.get_workflow_handle(run_id)
    closes: dict[str | None, Callable[[], Awaitable[object]] | None] = {
        None: None,
        "cancel": handle.cancel,
        "terminate": lambda: handle.terminate(reason="operator stopped it"),
    }
    tap = await check_close(
        stack_end,
        run_id,
        ready=case.ready,
        close=closes[case.how],
        status=case.status,
        terminal=case.terminal,
        by_watcher=case.by_watcher,
    )
    if case.last_data is not None:
        assert tap.events()[-1]["data"] == case.last_data


async def test_timed_out_run_gets_its_terminal_event(stack_end: EndStack) -> None:
    registry = stack_end.harness.registry
    spec = registry.get("slow-step")
    tenant = stack_end.env.tenant
    run_id, _ = await start_pipeline(
        stack_end.temporal,
        PipelineInput(
            tenant=tenant,
            pipeline="slow-step",
            input=registry.validate_input("slow-step", {"seconds": 60}),
            run_id=run_id_for(tenant, uuid.uuid4().hex),
            spec=spec.model_dump(mode="json"),
        ),
        stack_end.settings.temporal.task_queue,
        execution_timeout=timedelta(seconds=3),
    )
    await check_close(
        stack_end,
        run_id,
        ready=EventType.STEP_TOKEN,
        close=None,
        status="TIMED_OUT",
        terminal=EventType.RUN_TIMED_OUT,
        by_watcher=True,
    )


async def test_watchers_of_several_workers_write_one_event(stack_end: EndStack) -> None:
    """No socket open, a second worker's watcher starting after the close (it
    catches up), racing the first: the log still gets one terminal event."""
    run_id = await stack_end.start("slow-step", {"seconds": 60})
    handle = stack_end.temporal.get_workflow_handle(run_id)

    async def in_step() -> bool:
        return any(e.type == EventType.STEP_TOKEN for e in await run_log(stack_end, run_id))

    await wait_for(in_step, 30, "the run to be in its step")
    written_before = stack_end.watcher.written
    await handle.terminate(reason="no socket open")
    execution = (await handle.describe()).run_id
    second = RunCloseWatcher(
        stack_end.temporal,
        stack_end.harness.clients.emitter,
        stack_end.settings.kafka,
        [stack_end.settings.temporal.task_queue],
        redis=stack_end.harness.clients.redis,
        catch_up_seconds=60,
    )

    async def both_settled() -> bool:
        await second.sweep()
        return second.has_settled(execution) and stack_end.watcher.has_settled(execution)

    await wait_for(both_settled, 30, "both watchers to settle the run", interval=0.2)
    assert second.written + stack_end.watcher.written - written_before == 1
    log = await run_log(stack_end, run_id)
    assert [e.type for e in log if e.is_terminal] == [EventType.RUN_TERMINATED]


async def test_reset_execution_does_not_end_the_run(stack_end: EndStack) -> None:
    """A reset closes the execution it resets away (TERMINATED), but the run
    goes on: no terminal event then; its later close writes the one."""
    run_id = await stack_end.start("slow-step", {"seconds": 60})
    handle = stack_end.temporal.get_workflow_handle(run_id)
    async with open_socket(stack_end, run_id) as tap:
        await wait_for(lambda: tap.saw(EventType.STEP_TOKEN), 60, "the step's token")
        old = (await handle.describe()).run_id
        history = await handle.fetch_history()
        first_task = next(
            event.event_id
            for event in history.events
            if event.event_type == HistoryEventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        )
        await stack_end.temporal.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=stack_end.temporal.namespace,
                workflow_execution=WorkflowExecution(workflow_id=run_id, run_id=old),
                reason="operator reset",
                workflow_task_finish_event_id=first_task,
                request_id=uuid.uuid4().hex,
            )
        )
        await wait_for(lambda: stack_end.watcher.has_settled(old), 30, "the watcher to see it")
        assert tap.ended_at is None, "the reset ended the stream of a run that goes on"
        await handle.cancel()
        await wait_for(lambda: tap.ended_at is not None, END_WITHIN, "end after the cancel")
    assert tap.frames[-1] == {"kind": "end", "status": "CANCELLED"}
    log = await run_log(stack_end, run_id)
    assert [e.type for e in log if e.is_terminal] == [EventType.RUN_CANCELLED]
