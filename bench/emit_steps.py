"""The bench pipeline's one step (O1): emit timestamped tokens at a set rate.

Registered with ``tidings worker --activities bench.emit_steps:activities``.
Each ``step.token`` carries ``t_ns`` (CLOCK_MONOTONIC when it was emitted,
comparable across the processes of one machine) and ``n`` in its data, the
fields every benchmark message carries, so the load generators time it.

Every run begins at the same moment: ``start_ns`` in its input, or, with
``gate`` (a file path on this machine), the ``start_ns`` the driver writes
into that file once every run is started and every socket open, however long
that took (1,000 runs through REST on a busy box take tens of seconds).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from activities.emitter import Emitter
from activities.steps import StepActivities, StepContext, StepOutput, step
from tidings.events import EventType
from tidings.settings import Settings
from workers.build import Clients

ACTIVITY = "bench.emit"
# A gate is looked at this often, by one task per gate and worker, however
# many runs wait on it; and given up on after this long (the step fails).
_GATE_POLL_SECONDS = 0.05
_GATE_LIMIT_SECONDS = 600.0


class BenchSteps(StepActivities):
    def __init__(self, emitter: Emitter) -> None:
        super().__init__(emitter)
        self._gates: dict[str, asyncio.Future[int]] = {}

    @step(ACTIVITY)
    async def emit(self, ctx: StepContext, data: dict[str, Any]) -> StepOutput:
        count, rate = int(data["count"]), float(data["rate"])
        gate = data.get("gate")
        start_ns = await self._opened(str(gate)) if gate else int(data["start_ns"])
        delay = (start_ns - time.monotonic_ns()) / 1e9
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

    async def _opened(self, gate: str) -> int:
        waiting = self._gates.get(gate)
        if waiting is None:
            waiting = self._gates[gate] = asyncio.ensure_future(_poll(Path(gate)))
        # Shielded: one run's activity cancelled must not cancel the others' wait.
        return await asyncio.shield(waiting)


async def _poll(gate: Path) -> int:
    async with asyncio.timeout(_GATE_LIMIT_SECONDS):
        while True:
            try:
                text = gate.read_text()
            except FileNotFoundError:
                text = ""
            if text.strip():
                return int(text)
            await asyncio.sleep(_GATE_POLL_SECONDS)


def activities(clients: Clients, settings: Settings) -> BenchSteps:
    return BenchSteps(clients.emitter)
