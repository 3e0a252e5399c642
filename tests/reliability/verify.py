"""What every reliability case checks, and the results file it writes.

For each client: the events the application saw (what ``tidings.client``
yielded) must be the run's logical sequence read back from Kafka — records
deduplicated by id, in partition order — exactly once and in order; after
dropping the attempts that a ``step.retrying`` discarded (as the protocol
tells applications to), the draft text the client assembled must equal the
run's result. Every run must complete.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from tests.support import drop_connection
from tests.topics import records_to_end
from tidings.client import StreamError, Subscription
from tidings.events import Event, EventType
from tidings.topics import events_topic

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(
    os.environ.get("TIDINGS_RELIABILITY_RESULTS", ROOT / "tests/artifacts/reliability.json")
)


# ------------------------------------------------------------------ clients --


@dataclass
class Watch:
    """One application's view of one run through the client library."""

    run_id: str
    seen: list[tuple[float, Event]] = field(default_factory=list)
    status: str | None = None
    error: str | None = None
    reconnects: int = 0
    subscription: Subscription | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def ids(self) -> list[str]:
        return [e.id for _, e in self.seen]

    def tokens(self, attempt: int | None = None) -> int:
        return sum(
            1
            for _, e in self.seen
            if e.type == EventType.STEP_TOKEN and (attempt is None or e.attempt == attempt)
        )


def drop_live(watches: Sequence[Watch]) -> int:
    """Cut the connection of every watch still following its run; how many were cut."""
    live = [w.subscription for w in watches if w.subscription is not None and not w.done.is_set()]
    for subscription in live:
        drop_connection(subscription)
    return len(live)


async def _follow(watch: Watch, gateways: Sequence[str], key: str, options: dict[str, Any]) -> None:
    sub = Subscription(gateways, watch.run_id, key, **options)
    watch.subscription = sub
    try:
        async for event in sub:
            watch.seen.append((time.monotonic(), event))
        watch.status = sub.status
    except StreamError as exc:
        watch.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        watch.error = f"{type(exc).__name__}: {exc}"
    finally:
        watch.reconnects = sub.reconnects
        await sub.aclose()
        watch.done.set()


class Watchers:
    """Subscriptions in this process's loop; cancelled on exit."""

    def __init__(self) -> None:
        self.watches: list[Watch] = []
        self._tasks: list[asyncio.Task[None]] = []

    def follow(self, run_id: str, gateways: Sequence[str], key: str, **options: Any) -> Watch:
        # The library's own defaults (reconnect attempts, backoff, ack cadence):
        # what an application gets without tuning anything.
        watch = Watch(run_id)
        self.watches.append(watch)
        self._tasks.append(asyncio.create_task(_follow(watch, gateways, key, options)))
        return watch

    async def finish(self, timeout: float) -> None:  # noqa: ASYNC109
        pending = [w.done.wait() for w in self.watches]
        try:
            await asyncio.wait_for(asyncio.gather(*pending), timeout)
        except TimeoutError:
            late = [w.run_id for w in self.watches if not w.done.is_set()]
            raise AssertionError(f"not within {timeout:g}s: streams still open: {late}") from None

    async def __aenter__(self) -> Watchers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# -------------------------------------------------------------------- runs --


async def start_runs(gateway: str, key: str, pipeline: str, count: int, label: str) -> list[str]:
    async with httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as http:

        async def one(i: int) -> str:
            question = QUESTIONS[i % len(QUESTIONS)]
            response = await http.post(
                "/v1/runs", json={"pipeline": pipeline, "input": {"question": question}}
            )
            assert response.status_code == 201, (label, response.status_code, response.text)
            run_id: str = response.json()["run_id"]
            return run_id

        sem = asyncio.Semaphore(16)

        async def bounded(i: int) -> str:
            async with sem:
                return await one(i)

        return list(await asyncio.gather(*(bounded(i) for i in range(count))))


QUESTIONS = [
    "How do resume tokens work and what happens when a gateway is killed?",
    "How does Kafka keep one run's events in order, and what is a partition?",
    "What does Temporal do when a worker dies in the middle of an activity?",
    "How does continue-as-new keep a long workflow's history small?",
    "Why are event ids deterministic, and how do clients drop duplicates?",
]


async def wait_completed(temporal: Client, run_ids: Sequence[str], timeout: float) -> int:  # noqa: ASYNC109
    """Waits for every run to end; returns how many COMPLETED."""

    async def one(run_id: str) -> bool:
        handle = temporal.get_workflow_handle(run_id)
        try:
            await handle.result()
        except Exception:
            return False
        desc = await handle.describe()
        return desc.status == WorkflowExecutionStatus.COMPLETED

    results = await asyncio.wait_for(asyncio.gather(*(one(r) for r in run_ids)), timeout)
    return sum(results)


async def answers(temporal: Client, run_ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for run_id in run_ids:
        result: Any = await temporal.get_workflow_handle(run_id).result()
        output = result.get("output") if isinstance(result, dict) else result.output
        out[run_id] = str((output or {}).get("answer", ""))
    return out


# ------------------------------------------------------------------- topic --


async def topic_events(
    bootstrap: str,
    prefix: str,
    tenant: str,
    timeout: float = 30,  # noqa: ASYNC109 (a deadline for polling)
) -> dict[str, list[Event]]:
    """Every record of the tenant's topic, by run id, in partition order."""
    by_run: dict[str, list[Event]] = {}
    for record in await records_to_end(bootstrap, events_topic(prefix, tenant), timeout):
        if record.key is not None and record.value is not None:
            by_run.setdefault(record.key.decode(), []).append(Event.from_bytes(record.value))
    return by_run


def logical(records: Sequence[Event]) -> list[Event]:
    seen: set[str] = set()
    out: list[Event] = []
    for event in records:
        if event.id not in seen:
            seen.add(event.id)
            out.append(event)
    return out


def kept(events: Sequence[Event]) -> list[Event]:
    """What an application keeps: drop every (step, attempt) a step.retrying discarded."""
    discarded = {(e.step, e.attempt) for e in events if e.type == EventType.STEP_RETRYING}
    return [e for e in events if (e.step, e.attempt) not in discarded]


def draft_text(events: Sequence[Event]) -> str:
    return "".join(
        str(e.data.get("text", ""))
        for e in kept(events)
        if e.type == EventType.STEP_TOKEN and e.step == "draft"
    )


def undiscarded_attempts(events: Sequence[Event]) -> list[tuple[str | None, int]]:
    """(step, attempt)s that emitted output, were not discarded, and did not complete the step."""
    completing = {e.step: e.attempt for e in events if e.type == EventType.STEP_COMPLETED}
    alive = {(e.step, e.attempt) for e in kept(events) if e.step is not None}
    return sorted(
        (step_, attempt)
        for step_, attempt in alive
        if step_ in completing and attempt != completing[step_]
    )


# ---------------------------------------------------------------- checking --


@dataclass
class Tally:
    clients: int = 0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    records: int = 0
    retried_attempts: int = 0
    reconnects: int = 0
    text_mismatches: int = 0
    undiscarded_attempts: int = 0
    problems: list[str] = field(default_factory=list)


def check(
    watches: Sequence[Watch],
    topic: dict[str, list[Event]],
    results: dict[str, str] | None = None,
) -> Tally:
    tally = Tally(clients=len(watches))
    for watch in watches:
        records = topic.get(watch.run_id, [])
        expected = logical(records)
        ids = watch.ids()
        tally.records += len(records)
        tally.expected += len(expected)
        tally.reconnects += watch.reconnects
        tally.retried_attempts += sum(1 for e in expected if e.type == EventType.STEP_RETRYING)
        want = [e.id for e in expected]
        missing = set(want) - set(ids)
        dupes = len(ids) - len(set(ids))
        tally.lost += len(missing)
        tally.duplicated += dupes
        if not missing and not dupes and ids != want:
            tally.out_of_order += 1
        short = watch.run_id[-12:]
        if watch.error or watch.status != "COMPLETED":
            tally.problems.append(f"{short}: status={watch.status} error={watch.error}")
        if missing or dupes or ids != want:
            tally.problems.append(
                f"{short}: saw {len(ids)} events, topic has {len(want)} logical "
                f"({len(records)} records): {len(missing)} lost, {dupes} duplicated"
            )
        if results is not None:
            seen = [e for _, e in watch.seen]
            got = draft_text(seen)
            if got != results.get(watch.run_id):
                # An attempt left undiscarded (no step.retrying named it) is counted
                # as such, and fails like any other difference: every attempt a
                # retry replaced is announced (activities/steps.py, _announce_retry).
                stale = undiscarded_attempts(seen)
                tally.undiscarded_attempts += len(stale)
                tally.text_mismatches += 1
                where = dump_run(watch.run_id, records, got, results.get(watch.run_id, ""))
                left = f"; attempts left undiscarded: {stale}" if stale else ""
                tally.problems.append(
                    f"{short}: assembled draft differs from the run's answer{left} (see {where})"
                )
    return tally


def dump_run(run_id: str, records: Sequence[Event], got: str, want: str) -> Path:
    """The run's records, for a post-mortem of a failed check."""
    path = RESULTS.parent / f"reliability-{run_id[-12:]}.json"
    rows = [
        {
            "type": e.type,
            "step": e.step,
            "attempt": e.attempt,
            "seq": e.seq,
            "id": e.id[:8],
            "ts": e.ts,
            "data": e.data,
        }
        for e in records
    ]
    path.write_text(
        json.dumps({"run_id": run_id, "assembled": got, "answer": want, "records": rows}, indent=1)
    )
    return path


def assert_nothing_lost(tally: Tally) -> None:
    assert not tally.problems, "\n".join(tally.problems[:20])
    assert tally.lost == tally.duplicated == tally.out_of_order == tally.text_mismatches == 0


# ----------------------------------------------------------------- results --


def record(case: str, **fields: Any) -> None:
    """Add or replace one case's row in the results file."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        data: dict[str, Any] = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("cases", {})
    data["cases"][case] = {
        "case": case,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **fields,
    }
    data["machine"] = {"cpus": os.cpu_count()}
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def record_tally(
    case: str,
    injected: str,
    tally: Tally,
    *,
    runs: int,
    runs_completed: int,
    recover_seconds: float | None,
    duration_seconds: float,
    **extra: Any,
) -> None:
    record(
        case,
        injected=injected,
        clients=tally.clients,
        runs=runs,
        runs_completed=runs_completed,
        events_expected=tally.expected,
        records_in_topic=tally.records,
        events_lost=tally.lost,
        events_duplicated=tally.duplicated,
        out_of_order=tally.out_of_order,
        retried_attempts=tally.retried_attempts,
        undiscarded_attempts=tally.undiscarded_attempts,
        reconnects=tally.reconnects,
        recover_seconds=None if recover_seconds is None else round(recover_seconds, 2),
        duration_seconds=round(duration_seconds, 1),
        **extra,
    )


def recovery(watches: Sequence[Watch], fault_at: float) -> float | None:
    """Longest silence any still-streaming client saw from the fault on (time from
    the fault to its next event, or between two events after it): how long the
    fault held delivery up."""
    stalls = []
    for watch in watches:
        if any(e.is_terminal for t, e in watch.seen if t <= fault_at):
            continue
        times = [fault_at] + [t for t, _ in watch.seen if t > fault_at]
        if len(times) > 1:
            stalls.append(max(b - a for a, b in itertools.pairwise(times)))
    return max(stalls) if stalls else None
