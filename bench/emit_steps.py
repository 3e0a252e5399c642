"""The bench pipeline's one step (O1): emit timestamped tokens at a set rate.

Registered with ``tidings worker --activities bench.emit_steps:activities``.
Each ``step.token`` carries ``t_ns`` (CLOCK_MONOTONIC when it was emitted,
comparable across the processes of one machine) and ``n`` in its data, the
fields every benchmark message carries, so the load generators time it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from activities.emitter import Emitter
from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.events import EventType
from tidings.settings import Settings
from workers.build import Clients

ACTIVITY = "bench.emit"


class BenchSteps(StepActivities):
    def __init__(self, emitter: Emitter) -> None:
        super().__init__(emitter)

    @step(ACTIVITY)
    async def emit(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        count, rate = int(data["count"]), float(data["rate"])
        # Every run begins at the same moment, once the driver's sockets are open.
        delay = (int(data["start_ns"]) - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        began = time.monotonic()
        for n in range(count):
            wait = began + n / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            data_ = {"t_ns": time.monotonic_ns(), "n": n}
            await ctx.emit(EventType.STEP_TOKEN, data_, wait=False)
        return {"sent": count}


def activities(clients: Clients, settings: Settings) -> BenchSteps:
    return BenchSteps(clients.emitter)
