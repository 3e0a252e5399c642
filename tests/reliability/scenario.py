"""One fault case end to end: start runs, follow each with the client library,
inject the fault mid-stream, wait for every run and stream to finish, then
compare every client's view with the topic and record the figures."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.reliability.deploy import PIPELINE
from tests.reliability.verify import (
    Tally,
    Watch,
    Watchers,
    answers,
    assert_nothing_lost,
    check,
    record_tally,
    recovery,
    start_runs,
    topic_events,
    wait_completed,
)
from tests.support import wait_for

if TYPE_CHECKING:
    from tests.reliability.conftest import Rel


@dataclass
class Case:
    rel: Rel
    watchers: Watchers
    run_ids: list[str]
    watches: list[Watch]
    fault_at: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


async def run_case(
    rel: Rel,
    name: str,
    injected: str,
    inject: Callable[[Case], Awaitable[None]],
    *,
    runs: int = 6,
    tokens_before: int = 5,
    gateways: list[str] | None = None,
    watch_options: dict[str, Any] | None = None,
    completion_timeout: float = 120,
) -> Tally:
    d = rel.deployment
    began = time.monotonic()
    key = d.secrets.api_key
    run_ids = await start_runs(d.urls[1], key, PIPELINE, runs, name)
    order = gateways or d.urls
    async with Watchers() as watchers:
        watches = [watchers.follow(r, order, key, **(watch_options or {})) for r in run_ids]
        case = Case(rel, watchers, run_ids, watches)
        await wait_for(
            lambda: all(w.tokens() >= tokens_before for w in watches)
            or any(w.error for w in watches),
            60,
            "every run streaming draft tokens",
        )
        case.fault_at = time.monotonic()
        await inject(case)
        completed = await wait_completed(rel.temporal, run_ids, completion_timeout)
        await watchers.finish(60)
    topic = await topic_events(rel.kafka, d.prefix, d.tenant)
    tally = check(watches, topic, await answers(rel.temporal, run_ids))
    record_tally(
        name,
        injected,
        tally,
        runs=runs,
        runs_completed=completed,
        recover_seconds=recovery(watches, case.fault_at),
        duration_seconds=time.monotonic() - began,
        **case.notes,
    )
    assert completed == runs, f"{runs - completed} of {runs} runs did not complete"
    assert_nothing_lost(tally)
    return tally
