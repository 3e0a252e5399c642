"""The discard rule when an attempt dies before it can announce anything.

The protocol: a client drops a step's attempt when it sees ``step.retrying``
for it. If attempt N dies before its first emit (its worker is SIGKILLed right
after picking it up, its heartbeat times out on a starved host before it runs,
or Kafka refuses that emit), it never announces attempt N-1. The reliability
suite's 100-run burst hit this on a starved 2-core host (draft text doubled:
attempts 1, 2, 4… announced, attempt 3 not). So
``activities.steps.run_step`` (``_announce_retry``) has attempt N announce
*every* earlier attempt k in 1..N-1, with an id and data that depend on k
only: a repeat is the same event, and clients drop it by id.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.steps import StepActivities, StepContext, StepOutput, step
from activities.types import StepInput
from tests.reliability.verify import kept
from tidings.events import Event, EventType


class CapturingEmitter:
    """Stands in for activities.emitter.Emitter: keeps what would go to Kafka."""

    coalesce_policy = None

    def __init__(self) -> None:
        from activities.metrics import WorkerMetrics

        self.metrics = WorkerMetrics()
        self.events: list[Event] = []

    async def emit(self, event: Event, *, wait: bool = True) -> None:
        self.events.append(event)

    async def flush(self) -> None:
        return None

    async def coalescing(self, tenant: str) -> bool:
        return False


class Speaker(StepActivities):
    @step("test.speak")
    async def speak(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        for word in ("one ", "two "):
            await ctx.token(word)
        return {"text": "one two "}


async def _attempt(emitter: CapturingEmitter, number: int) -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=number, heartbeat_timeout=None)
    speaker = Speaker(emitter)  # type: ignore[arg-type]
    data = StepInput(tenant="t", run_id="t-run", pipeline="p", step="draft")
    await env.run(speaker.speak, data)


async def test_attempt_dying_before_its_first_emit_still_gets_its_predecessor_discarded() -> None:
    emitter = CapturingEmitter()
    await _attempt(emitter, 1)  # streams "one two ", then (say) its heartbeat times out
    # Attempt 2 is dispatched but dies before running any code: it emits nothing.
    await _attempt(emitter, 3)  # the attempt that completes
    text = "".join(
        str(e.data["text"])
        for e in kept(emitter.events)
        if e.type == EventType.STEP_TOKEN and e.step == "draft"
    )
    retrying = sorted(e.attempt for e in emitter.events if e.type == EventType.STEP_RETRYING)
    assert text == "one two ", (
        f"the client assembles {text!r}; step.retrying for attempts {retrying}"
    )


async def test_a_repeated_announcement_is_the_same_event() -> None:
    emitter = CapturingEmitter()
    for number in (1, 2, 3):
        await _attempt(emitter, number)
    retrying = [e for e in emitter.events if e.type == EventType.STEP_RETRYING]
    # Attempt 2 announces 1; attempt 3 announces 1 again (a repeat) and 2, oldest first.
    assert [e.attempt for e in retrying] == [1, 1, 2]
    first, repeat = retrying[0], retrying[1]
    assert (repeat.id, repeat.seq, repeat.data) == (first.id, first.seq, first.data)
    assert [e.data for e in retrying[1:]] == [
        {"discard_attempt": 1, "next_attempt": 2},
        {"discard_attempt": 2, "next_attempt": 3},
    ]
    # What a client keeps after dropping repeats by id: only attempt 3's text.
    logical = list({e.id: e for e in emitter.events}.values())
    text = "".join(str(e.data["text"]) for e in kept(logical) if e.type == EventType.STEP_TOKEN)
    assert text == "one two "
